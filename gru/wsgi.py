"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from gevent import monkey

monkey.patch_all()

from gru.app import create_app  # noqa: E402 - patching must come first

app = application = create_app()
