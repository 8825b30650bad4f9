"""Engine.IO 3 / Socket.IO protocol 4 clients (socket.io 1.x/2.x era) beside current ones.

See docs/legacy.md. The pieces: ``eio3_codec`` (pure wire functions), ``eio3_socket``
(the per-session transport edge), ``engine`` (request dispatcher and EIO3 handler) and
``sio4`` (Socket.IO protocol 4 shaping on top of python-socketio).
"""
