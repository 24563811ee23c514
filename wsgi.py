"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from ecard import create_app

app = create_app()
