"""WSGI entry point at the top of the checkout: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from gru.wsgi import app, application  # noqa: F401 - gru.wsgi monkey-patches gevent first
