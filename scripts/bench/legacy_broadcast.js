#!/usr/bin/env node
// Broadcast throughput of one client generation, for scripts/bench_legacy.py.
//
// R receivers and 1 sender, all of one socket.io-client module (e.g. "socket.io-client-2"
// for Engine.IO 3, "socket.io-client" for Engine.IO 4) and one transport, join one fresh
// group on a Gru node (loopback); the sender emits M broadcasts with at most `window`
// msg_results outstanding. Prints one JSON line: deliveries, lost, duplicated, durationMs,
// deliveriesPerSec. Bounded: M messages and a time limit for each phase.
//
// Usage: node scripts/bench/legacy_broadcast.js '{"url":"http://127.0.0.1:30000","module":"socket.io-client-2"}'
// Config: url, module, transport ("websocket"|"polling"), receivers (100), messages (300),
//         window (20), setupTimeout (60 s), sendTimeout (60 s)
'use strict';

const http = require('http');
const path = require('path');
const { performance } = require('perf_hooks');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const config = Object.assign({ transport: 'websocket', receivers: 100, messages: 300, window: 20,
  setupTimeout: 60, sendTimeout: 60, module: 'socket.io-client' }, JSON.parse(process.argv[2] || '{}'));
const lib = require(require.resolve(config.module, { paths: [REPO_ROOT] }));
const io = typeof lib === 'function' ? lib : lib.io;
const group = `bench-legacy-${process.pid}-${Date.now()}`;

function ticket(userId, userType) {
  const query = `userType=${userType}&userName=u${userId}&userId=${userId}&token1=bench`;
  return new Promise((resolve, reject) => {
    http.get(`${config.url}/ticket?${query}`, (res) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        try { resolve(JSON.parse(body).data); } catch (err) { reject(err); }
      });
    }).on('error', reject);
  });
}

async function member(userId, userType, onMsg) {
  const t = await ticket(userId, userType);
  const socket = io(config.url, { transports: [config.transport], upgrade: false, forceNew: true,
    reconnection: false, timeout: 20000 });
  socket.on('msg', onMsg);
  await new Promise((resolve, reject) => {
    socket.on('auth_result', (r) => (r.success ? resolve() : reject(new Error(JSON.stringify(r)))));
    socket.on('connect', () => socket.emit('auth', JSON.stringify({ id: userId, name: 'n', groupId: group,
      token1: 'bench', token2: t.token, type: userType })));
    socket.on('connect_error', reject);
    socket.on('error', reject);
  });
  return socket;
}

function withTimeout(promise, seconds, what) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), seconds * 1000); });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main() {
  const seen = new Map(); // message content -> deliveries
  let deliveries = 0;
  let lastDelivery = 0;
  let expectedDone;
  const allDelivered = new Promise((resolve) => { expectedDone = resolve; });
  const expected = config.receivers * config.messages;
  const onMsg = (m) => {
    deliveries += 1;
    seen.set(m.content, (seen.get(m.content) || 0) + 1);
    lastDelivery = performance.now();
    if (deliveries >= expected) expectedDone();
  };
  const receivers = [];
  await withTimeout((async () => {
    for (let i = 0; i < config.receivers; i += 10) {
      const batch = [];
      for (let j = i; j < Math.min(i + 10, config.receivers); j += 1) batch.push(member(1000 + j, 1, onMsg));
      receivers.push(...(await Promise.all(batch)));
    }
  })(), config.setupTimeout, 'setup');
  const sender = await member(1, 0, () => {});
  const started = performance.now();
  await withTimeout(new Promise((resolve) => {
    let sent = 0;
    let acked = 0;
    const send = () => {
      while (sent < config.messages && sent - acked < config.window) {
        sender.emit('msg', JSON.stringify({ type: 1, content: `m${sent}` }));
        sent += 1;
      }
    };
    sender.on('msg_result', () => {
      acked += 1;
      if (acked >= config.messages) resolve();
      else send();
    });
    send();
  }), config.sendTimeout, 'sending');
  await withTimeout(allDelivered, config.sendTimeout, 'delivery').catch(() => {});
  const duplicated = [...seen.values()].filter((n) => n > config.receivers).length;
  const result = { module: config.module, version: require(`${config.module}/package.json`).version,
    transport: config.transport, receivers: config.receivers, messages: config.messages, deliveries, expected,
    lost: expected - deliveries, duplicated, durationMs: Math.round(lastDelivery - started),
    deliveriesPerSec: Math.round(deliveries / ((lastDelivery - started) / 1000)) };
  process.stdout.write(JSON.stringify(result) + '\n');
  for (const s of [...receivers, sender]) s.close();
  setTimeout(() => process.exit(result.lost === 0 && duplicated === 0 ? 0 : 1), 200);
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }) + '\n');
  process.exit(1);
});
