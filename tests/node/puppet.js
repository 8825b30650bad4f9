#!/usr/bin/env node
// Test puppet: one long-lived Node process hosting many named socket.io
// client sockets, so Python tests can drive real JS clients cheaply.
//
// Usage: node tests/node/puppet.js [module]   (default module: socket.io-client)
// The module may be an npm alias such as "socket.io-client-2"; a connect
// command may name another module, so one puppet drives 1.x, 2.x and 4.x
// clients side by side.
//
// stdin:  one JSON command per line
//   {"op":"connect","name":"a","url":"http://127.0.0.1:1234","transports":["websocket"],"reconnection":false,
//    "module":"socket.io-client-1"}   (module optional)
//   {"op":"emit","name":"a","event":"auth","args":[...]}
//   {"op":"close","name":"a"}
//   {"op":"exit"}
// stdout: one JSON report per line
//   {"type":"ready","version":"4.8.3"}
//   {"name":"a","type":"connect","transport":"polling"}
//   {"name":"a","type":"upgrade","transport":"websocket"}
//   {"name":"a","type":"event","event":"msg","args":[...]}
//   {"name":"a","type":"disconnect","reason":"..."}
//   {"name":"a","type":"connect_error","message":"..."}
//   {"type":"error","message":"..."}            (bad command; "name" if known)
// Binary values travel as {"$bytes_b64": "..."} in both directions.
'use strict';

const readline = require('readline');

const moduleName = process.argv[2] || 'socket.io-client';
const libraries = new Map();

// The lookup function of a client module: 1.x/2.x export it itself; 4.x also as `.io`.
function ioOf(name) {
  if (!libraries.has(name)) {
    const lib = require(name);
    libraries.set(name, typeof lib === 'function' ? lib : lib.io);
  }
  return libraries.get(name);
}
ioOf(moduleName);

function moduleVersion(name) {
  try {
    return require(`${name}/package.json`).version;
  } catch (err) {
    return 'unknown';
  }
}

const sockets = new Map();
let exiting = false;

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function errorMessage(err) {
  if (err && typeof err === 'object' && err.message) return String(err.message);
  return String(err);
}

// Buffers/ArrayBuffers -> {"$bytes_b64"}; ack callbacks are dropped.
function toWire(value) {
  if (Buffer.isBuffer(value)) return { $bytes_b64: value.toString('base64') };
  if (value instanceof ArrayBuffer) return toWire(Buffer.from(value));
  if (ArrayBuffer.isView(value)) {
    return toWire(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  if (Array.isArray(value)) return value.filter((v) => typeof v !== 'function').map(toWire);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (typeof v !== 'function') out[k] = toWire(v);
    }
    return out;
  }
  return value;
}

function fromWire(value) {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$bytes_b64') {
      return Buffer.from(value.$bytes_b64, 'base64');
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromWire(v);
    return out;
  }
  return value;
}

function recordEvents(name, socket) {
  const report = (event, args) => send({ name, type: 'event', event, args: toWire(args) });
  if (typeof socket.onAny === 'function') {
    socket.onAny((event, ...args) => report(event, args)); // 3.x/4.x
    return;
  }
  // 1.x/2.x: every incoming EVENT packet passes through socket.onevent.
  const orig = socket.onevent;
  socket.onevent = function (packet) {
    const data = packet.data || [];
    report(data[0], data.slice(1));
    return orig.call(this, packet);
  };
  // In 1.x/2.x a refused namespace / transport failure surfaces as 'error'
  // and a connect timeout as 'connect_timeout' rather than only 'connect_error'.
  socket.on('error', (err) => {
    if (!socket.connected) send({ name, type: 'connect_error', message: errorMessage(err) });
    else send({ name, type: 'error', message: errorMessage(err) });
  });
  socket.on('connect_timeout', () => send({ name, type: 'connect_error', message: 'timeout' }));
}

function connect(cmd) {
  const { name, url } = cmd;
  if (typeof name !== 'string' || typeof url !== 'string') {
    throw new Error('connect needs string "name" and "url"');
  }
  if (sockets.has(name)) throw new Error(`socket ${name} already exists`);
  const transports = cmd.transports || ['polling', 'websocket'];
  const pollingOnly = transports.length === 1 && transports[0] === 'polling';
  const io = ioOf(cmd.module || moduleName);
  const socket = io(url, {
    transports,
    upgrade: !pollingOnly,
    forceNew: true,
    reconnection: Boolean(cmd.reconnection),
    timeout: cmd.timeout || 5000,
  });
  sockets.set(name, socket);
  recordEvents(name, socket);
  // The engine (and its transport) only exists once the manager has opened.
  const transportName = () => {
    const engine = socket.io && socket.io.engine;
    return engine && engine.transport ? engine.transport.name : null;
  };
  socket.on('connect', () => {
    send({ name, type: 'connect', transport: transportName() });
    const engine = socket.io && socket.io.engine;
    if (engine && !engine.__puppetWatched) {
      engine.__puppetWatched = true;
      engine.on('upgrade', (t) => send({ name, type: 'upgrade', transport: t && t.name }));
    }
  });
  socket.on('disconnect', (reason) => send({ name, type: 'disconnect', reason: String(reason) }));
  socket.on('connect_error', (err) => send({ name, type: 'connect_error', message: errorMessage(err) }));
}

function getSocket(name) {
  const socket = sockets.get(name);
  if (!socket) throw new Error(`no socket named ${JSON.stringify(name)}`);
  return socket;
}

function shutdown() {
  if (exiting) return;
  exiting = true;
  for (const socket of sockets.values()) socket.close();
  sockets.clear();
  // Exit only once everything queued on stdout has been written.
  process.stdout.write('', () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

function handle(line) {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    send({ type: 'error', message: `bad JSON: ${errorMessage(err)}` });
    return;
  }
  try {
    switch (cmd.op) {
      case 'connect':
        connect(cmd);
        break;
      case 'emit':
        getSocket(cmd.name).emit(cmd.event, ...fromWire(cmd.args || []));
        break;
      case 'close':
        getSocket(cmd.name).close();
        sockets.delete(cmd.name);
        break;
      case 'exit':
        shutdown();
        break;
      default:
        throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
    }
  } catch (err) {
    const report = { type: 'error', message: errorMessage(err) };
    if (cmd && typeof cmd.name === 'string') report.name = cmd.name;
    send(report);
  }
}

process.stdout.on('error', () => process.exit(1)); // reader went away (EPIPE)
process.on('uncaughtException', (err) => {
  process.stderr.write(`uncaught: ${err && err.stack ? err.stack : err}\n`);
  send({ type: 'error', message: `uncaught: ${errorMessage(err)}` });
});

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', handle);
rl.on('close', shutdown);
send({ type: 'ready', version: moduleVersion(moduleName) });
