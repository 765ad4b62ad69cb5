"""WSGI entry point (production HTTP under gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectormlops.settings")
application = get_wsgi_application()
