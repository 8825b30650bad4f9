#!/usr/bin/env node
// Reference server for the Socket.IO protocol 4 suite (tests/test_sio4_protocol.py):
// Node socket.io 2.5.0 (npm alias socket.io-2) with the same handlers and settings as
// `python -m gru.conformance --mode socketio`, so every expectation of the suite is
// checked against the original implementation before Gru is held to it.
// Usage: node tests/node/reference_server.js PORT     (prints "listening" when ready)
'use strict';

const http = require('http');
const io = require('socket.io-2');

const port = Number(process.argv[2]);
const server = http.createServer();
const sio = io(server, { pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6, cookie: false });

function handlers(socket) {
  const query = socket.handshake.query || {};
  socket.emit('auth', query.x !== undefined ? { x: query.x } : {});
  socket.on('message', (...args) => socket.emit('message-back', ...args));
  socket.on('message-with-ack', (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  socket.on('join', (room, ack) => {
    socket.join(room);
    if (typeof ack === 'function') ack(room);
  });
  socket.on('room-broadcast', (room, ...args) => sio.of(socket.nsp.name).to(room).emit('room-message', ...args));
}

sio.on('connection', handlers);
sio.of('/custom').on('connection', handlers);
sio.of('/refuse').use((socket, next) => next(new Error('Not authorized')));
sio.of('/refuse-data').use((socket, next) => {
  const err = new Error('refused');
  err.data = { code: 42 };
  next(err);
});

server.listen(port, '127.0.0.1', () => process.stdout.write('listening\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
