from __future__ import annotations

from bench.floor.wsgi import application as wsgi_application
from comcenter.lib.rsgi import rsgi_application

application = rsgi_application(wsgi_application)
