import os

from comcenter.lib.wsgi_routing import routed_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
application = routed_application()
