"""Gru: a long-connection push service for classrooms (ticket API + socket.io nodes)."""

__version__ = "0.1.0"
