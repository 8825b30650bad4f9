"""Gru: a long-connection push service for classrooms (ticket API + socket.io nodes).

``from gru import Gru`` gives the Flask extension (``Gru(app)``); it is imported on first use so
that ``import gru`` stays cheap and gevent can patch the standard library first.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Gru":
        from gru.flask_ext import Gru

        return Gru
    raise AttributeError(f"module 'gru' has no attribute {name!r}")
