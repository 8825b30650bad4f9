"""gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app``; the logic lives in ``gru/gunicorn_conf.py``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gru.gunicorn_conf import *  # noqa: E402, F403
