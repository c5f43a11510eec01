"""WSGI entry point: `gunicorn wsgi:app`. The one place that builds the app at import time."""

from campaigns.web.app import create_app

app = create_app()
