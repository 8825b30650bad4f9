#!/usr/bin/env node
// A Node socket.io 4 server speaking Gru's API, the yardstick of scripts/bench_compare.py.
//
// It implements what a client of Gru sees, with work of comparable cost per event, so the two
// servers can be driven by the same load generator and compared per unit of work:
//   GET /ticket?userType&userName&userId&token1  → {"success","errorCode","msg","data":{..,"token"}}
//     token2 is an HS256 JWT (iss, sub, utp, nam, iat, exp) signed with node:crypto
//   auth (JSON string or object)  → verify the JWT (signature, issuer, expiry, claims = payload),
//     join rooms g:<group> and u:<type>:<id>, record presence, answer auth_result
//   msg  {type: 1 broadcast | 0 unicast, target: {id, type}, content}  → validate, give it an id
//     and createTime, emit msg to the group (minus the sender) or to the target user's room,
//     answer msg_result {data: {id, createTime}}
//   online (group id)  → online_result: user ids of the group
//   unauthenticated connections are closed after 10 s, like Gru's GRU_AUTH_TIMEOUT
// What it leaves out is Gru's own: history for recovery, offline unicasts, rate limits, metrics.
//
// Usage: node scripts/bench/node_reference.js '{"port": 30001, "host": "127.0.0.1"}'
'use strict';

const crypto = require('crypto');
const http = require('http');
const path = require('path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const { Server } = require(require.resolve('socket.io', { paths: [REPO_ROOT] }));

const cfg = Object.assign({ port: 30001, host: '127.0.0.1', secret: crypto.randomBytes(32).toString('hex'),
  ttl: 86400, authTimeout: 10, maxContent: 65536 }, JSON.parse(process.argv[2] || '{}'));
const OK = { success: true, errorCode: 0, msg: '' };
const USER_TYPES = new Set([0, 1]);

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function sign(claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const mac = crypto.createHmac('sha256', cfg.secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(mac)}`;
}

function verify(token) {
  if (typeof token !== 'string' || token.length > 4096) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
  if (header.alg !== 'HS256') return null;
  const mac = crypto.createHmac('sha256', cfg.secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== mac.length || !crypto.timingSafeEqual(given, mac)) return null;
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  if (claims.iss !== 'gru' || typeof claims.sub !== 'string' || !(claims.exp > Date.now() / 1000)) return null;
  return claims;
}

function fail(code, msg) {
  return { success: false, errorCode: code, msg };
}

function ticket(req, res) {
  const url = new URL(req.url, 'http://x');
  const q = url.searchParams;
  const type = Number(q.get('userType'));
  let answer;
  let status = 200;
  if (!USER_TYPES.has(type) || !q.get('userId') || !q.get('userName') || !q.get('token1')) {
    status = 400;
    answer = fail(400, 'missing or invalid parameter');
  } else {
    const now = Math.floor(Date.now() / 1000);
    const token = sign({ iss: 'gru', sub: q.get('userId'), utp: type, nam: q.get('userName'), iat: now,
      exp: now + cfg.ttl });
    answer = { ...OK, data: { time: Date.now(), addr: `http://${cfg.host}:${cfg.port}`, name: 'node_ref', token,
      backupNodes: [] } };
  }
  const body = JSON.stringify(answer);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url.startsWith('/ticket')) return ticket(req, res);
  if (req.url === '/stats') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ connections: io.engine.clientsCount }));
  }
  res.writeHead(404);
  return res.end();
});
const io = new Server(server, { transports: ['polling', 'websocket'], pingInterval: 25000, pingTimeout: 20000,
  maxHttpBufferSize: 1e6, serveClient: false });

const presence = new Map(); // group → Map(userId → connections)
let lastId = 0;

function parseObject(arg) {
  const value = typeof arg === 'string' ? JSON.parse(arg) : arg;
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
  return value;
}

function onAuth(socket, arg) {
  let payload;
  let claims;
  try {
    payload = parseObject(arg);
    claims = verify(payload.token2);
  } catch (err) {
    claims = null;
  }
  if (!claims || String(payload.id) !== claims.sub || Number(payload.type) !== claims.utp
      || payload.groupId === undefined) {
    socket.emit('auth_result', fail(-4, 'token2 is invalid'));
    socket.disconnect(true);
    return;
  }
  clearTimeout(socket.data.authTimer);
  const group = String(payload.groupId);
  socket.data.session = { id: claims.sub, type: claims.utp, name: claims.nam, group };
  socket.join([`g:${group}`, `u:${claims.utp}:${claims.sub}`]);
  if (!presence.has(group)) presence.set(group, new Map());
  const users = presence.get(group);
  users.set(claims.sub, (users.get(claims.sub) || 0) + 1);
  socket.emit('auth_result', { ...OK, data: { userType: claims.utp === 0 ? 'TEACHER' : 'STUDENT' } });
}

function onMsg(socket, arg) {
  const session = socket.data.session;
  if (!session) return socket.emit('msg_result', fail(-5, 'not authenticated'));
  let payload;
  try {
    payload = parseObject(arg);
  } catch (err) {
    return socket.emit('msg_result', fail(-1, 'payload is not valid JSON'));
  }
  if (typeof payload.content !== 'string' || payload.content.length > cfg.maxContent) {
    return socket.emit('msg_result', fail(-3, 'missing or invalid field'));
  }
  const body = { id: ++lastId, createTime: Date.now(), content: payload.content, expireTime: 0,
    from: { id: session.id, type: session.type, name: session.name } };
  if (payload.type === 1) {
    socket.to(`g:${session.group}`).emit('msg', body);
  } else if (payload.type === 0) {
    const target = payload.target;
    if (!target || target.id === undefined || !USER_TYPES.has(Number(target.type))) {
      return socket.emit('msg_result', fail(-3, 'missing or invalid field'));
    }
    io.to(`u:${Number(target.type)}:${target.id}`).emit('msg', body);
  } else {
    return socket.emit('msg_result', fail(-2, 'message type is invalid'));
  }
  return socket.emit('msg_result', { ...OK, data: { id: body.id, createTime: body.createTime } });
}

function onDisconnect(socket) {
  clearTimeout(socket.data.authTimer);
  const session = socket.data.session;
  if (!session) return;
  const users = presence.get(session.group);
  const left = (users.get(session.id) || 1) - 1;
  if (left > 0) users.set(session.id, left);
  else users.delete(session.id);
  if (users.size === 0) presence.delete(session.group);
}

io.on('connection', (socket) => {
  socket.data.authTimer = setTimeout(() => {
    if (!socket.data.session) socket.disconnect(true);
  }, cfg.authTimeout * 1000);
  socket.on('auth', (arg) => onAuth(socket, arg));
  socket.on('msg', (arg) => onMsg(socket, arg));
  socket.on('online', (arg) => {
    const group = String(typeof arg === 'object' && arg ? arg.groupId : arg);
    socket.emit('online_result', [...(presence.get(group) || new Map()).keys()]);
  });
  socket.on('disconnect', () => onDisconnect(socket));
});

server.listen(cfg.port, cfg.host, () => process.stderr.write(`node_reference: listening on ${cfg.host}:${cfg.port}\n`));
process.on('SIGTERM', () => process.exit(0));
