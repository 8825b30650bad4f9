"""Engine.IO 3 / Socket.IO protocol 4 clients (socket.io 1.x/2.x era) beside current ones.

See docs/legacy.md. The pieces: ``eio3_codec`` (pure wire functions), ``eio3_socket``
(the per-session transport edge), ``engine`` (request dispatcher and EIO3 handler) and
``sio4`` (Socket.IO protocol 4 shaping on top of python-socketio).
"""

from importlib import metadata

# The adapter overrides private methods of these exact releases (see docs/legacy.md).
UPSTREAM_VERSIONS = {"python-engineio": "4.15.1", "python-socketio": "5.18.1"}


def version_mismatches() -> dict[str, tuple[str, str]]:
    """``{package: (expected, installed)}`` for every upstream package that differs."""
    found = {}
    for package, expected in UPSTREAM_VERSIONS.items():
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != expected:
            found[package] = (expected, installed)
    return found
