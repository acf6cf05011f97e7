"""comcenter under granian's RSGI interface (`granian --interface rsgi comcenter.rsgi:application`):
bodies buffered on the event loop, Django on one thread per process (comcenter/lib/rsgi.py)."""

from __future__ import annotations

from comcenter.lib.rsgi import rsgi_application
from comcenter.wsgi import application as wsgi_application

application = rsgi_application(wsgi_application)
