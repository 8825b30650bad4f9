#!/usr/bin/env node
// Load generator of scripts/bench_compare.py: many WebSocket clients of Gru's API in one process.
//
// Every client goes through the real API: GET /ticket → socket.io connect (WebSocket only) →
// auth with token2 → msg / online. The same script drives Gru and the Node reference server.
// It talks to the driver in JSON lines: it prints {"phase": ...} lines on stdout and, when the
// driver has to take a measurement first, waits for a line "go" on stdin.
//
// Scenarios (config JSON on argv: {"scenario", "url", ...}):
//   broadcast {receivers, messages, window}: one teacher sends `messages` broadcasts (at most
//     `window` msg_results outstanding) to a group of `receivers` students.
//     ready → go → result {deliveries, lost, duplicated, outOfOrder, durationMs, perSec, latencyMs}
//   pingpong {pairs, roundTrips}: pairs of teacher/student exchange unicasts, one in flight per pair.
//     ready → go → result {roundTrips, lost, duplicated, outOfOrder, durationMs, perSec, latencyMs}
//   conns {count}: start → go → (connect + auth `count` clients) connected {durationMs, perSec}
//     → go → every client closes at once → closed
// Every phase is bounded by `timeout` seconds; exit 1 on any failure, loss or duplicate.
'use strict';

const crypto = require('crypto');
const http = require('http');
const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const { io } = require(require.resolve('socket.io-client', { paths: [REPO_ROOT] }));

const TEACHER = 0;
const STUDENT = 1;
const cfg = Object.assign({ receivers: 200, messages: 200, window: 10, pairs: 50, roundTrips: 2000, count: 2000,
  concurrency: 50, timeout: 120, token1: 'bench' }, JSON.parse(process.argv[2] || '{}'));
cfg.url = cfg.url.replace(/\/+$/, '');
const run = crypto.randomBytes(4).toString('hex');
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on('line', (line) => { if (line.trim() === 'go' && waiting.length) waiting.shift()(); });

function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function go() {
  return new Promise((resolve) => waiting.push(resolve));
}

function bounded(promise, what, seconds = cfg.timeout) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function getJson(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 15000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        try {
          const parsed = JSON.parse(body);
          if (res.statusCode === 200 && parsed.success) resolve(parsed.data);
          else reject(new Error(`HTTP ${res.statusCode} ${body.slice(0, 200)}`));
        } catch (err) {
          reject(new Error(`HTTP ${res.statusCode}: not JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('ticket timeout')));
    req.on('error', reject);
  });
}

function once(socket, event, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no ${event}`)), 30000);
    socket.once(event, (arg) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

async function open(user, group) {
  const query = new URLSearchParams({ userType: String(user.type), userName: user.id, userId: user.id,
    token1: cfg.token1 });
  const ticket = await getJson(`${cfg.url}/ticket?${query}`);
  const socket = io(cfg.url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 30000 });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (err) => reject(new Error(`connect ${user.id}: ${err.message}`)));
  });
  const answer = once(socket, 'auth_result', `auth ${user.id}`);
  socket.emit('auth', JSON.stringify({ id: user.id, name: user.id, groupId: group, token1: cfg.token1,
    token2: ticket.token, type: user.type }));
  const result = await answer;
  if (!result || result.success !== true) throw new Error(`auth ${user.id} refused: ${JSON.stringify(result)}`);
  user.socket = socket;
  return user;
}

async function openAll(users, group) {
  let next = 0;
  const worker = async () => {
    while (next < users.length) await open(users[next++], group);
  };
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, users.length) }, worker));
}

function makeUsers(n, type, prefix) {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${run}-${i}`, type }));
}

function quantiles(values) {
  const sorted = Float64Array.from(values).sort();
  const at = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null);
  return { p50: Number(at(0.5)?.toFixed(3)), p99: Number(at(0.99)?.toFixed(3)) };
}

function closeAll(users) {
  for (const user of users) if (user.socket) user.socket.disconnect();
}

// ------------------------------------------------------------------ broadcast

async function broadcast() {
  const group = `bc-${run}`;
  const teacher = makeUsers(1, TEACHER, 't')[0];
  const students = makeUsers(cfg.receivers, STUDENT, 's');
  await openAll([teacher, ...students], group);
  const sentAt = new Float64Array(cfg.messages + 1);
  const latencies = [];
  const counts = { deliveries: 0, duplicated: 0, outOfOrder: 0, unexpected: 0 };
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const expected = cfg.messages * cfg.receivers;
  for (const student of students) {
    student.last = 0;
    student.socket.on('msg', (m) => {
      const now = performance.now();
      const seq = Number(m.content.slice(m.content.indexOf(':') + 1));
      if (!m.content.startsWith(run)) { counts.unexpected++; return; }
      if (seq <= student.last) { counts.duplicated++; return; }
      if (seq !== student.last + 1) counts.outOfOrder++;
      student.last = seq;
      counts.deliveries++;
      latencies.push(now - sentAt[seq]);
      if (counts.deliveries === expected) resolveDone();
    });
  }
  say({ phase: 'ready' });
  await go();
  const start = performance.now();
  let seq = 0;
  let refused = null;
  const send = () => {
    if (seq >= cfg.messages) return;
    seq++;
    sentAt[seq] = performance.now();
    teacher.socket.emit('msg', JSON.stringify({ type: 1, content: `${run}:${seq}` }));
  };
  teacher.socket.on('msg_result', (r) => {
    if (!r || !r.success) refused = refused || r;
    send();
  });
  for (let i = 0; i < cfg.window; i++) send();
  let error = null;
  try {
    await bounded(done, 'broadcast');
  } catch (err) {
    error = err.message;
  }
  const durationMs = performance.now() - start;
  closeAll([teacher, ...students]);
  const lost = expected - counts.deliveries;
  say({ phase: 'result', ok: !error && !refused && lost === 0 && counts.duplicated === 0, error, refused,
    units: counts.deliveries, lost, ...counts, durationMs, perSec: counts.deliveries / (durationMs / 1000),
    latencyMs: quantiles(latencies) });
}

// ------------------------------------------------------------------ ping-pong

async function pingpong() {
  const group = `pp-${run}`;
  const pairs = makeUsers(cfg.pairs, TEACHER, 'pt').map((sender, i) => ({ sender,
    receiver: makeUsers(1, STUDENT, `pr${i}-`)[0], seq: 0, got: 0, back: 0 }));
  await openAll(pairs.flatMap((p) => [p.sender, p.receiver]), group);
  const latencies = [];
  const counts = { roundTrips: 0, duplicated: 0, outOfOrder: 0 };
  let issued = 0;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const unicast = (from, to, text) => from.socket.emit('msg', JSON.stringify({ type: 0,
    target: { id: to.id, type: to.type }, content: text }));
  const ping = (pair) => {
    if (issued >= cfg.roundTrips) return;
    issued++;
    pair.seq++;
    pair.at = performance.now();
    unicast(pair.sender, pair.receiver, `${pair.seq}`);
  };
  for (const pair of pairs) {
    pair.receiver.socket.on('msg', (m) => {
      const seq = Number(m.content);
      if (seq <= pair.got) { counts.duplicated++; return; }
      if (seq !== pair.got + 1) counts.outOfOrder++;
      pair.got = seq;
      unicast(pair.receiver, pair.sender, m.content);
    });
    pair.sender.socket.on('msg', (m) => {
      const seq = Number(m.content);
      if (seq <= pair.back) { counts.duplicated++; return; }
      pair.back = seq;
      latencies.push(performance.now() - pair.at);
      counts.roundTrips++;
      if (counts.roundTrips === cfg.roundTrips) resolveDone();
      else ping(pair);
    });
  }
  say({ phase: 'ready' });
  await go();
  const start = performance.now();
  for (const pair of pairs) ping(pair);
  let error = null;
  try {
    await bounded(done, 'pingpong');
  } catch (err) {
    error = err.message;
  }
  const durationMs = performance.now() - start;
  closeAll(pairs.flatMap((p) => [p.sender, p.receiver]));
  const lost = cfg.roundTrips - counts.roundTrips;
  say({ phase: 'result', ok: !error && lost === 0 && counts.duplicated === 0, error, units: counts.roundTrips, lost,
    ...counts, durationMs, perSec: counts.roundTrips / (durationMs / 1000), latencyMs: quantiles(latencies) });
}

// ------------------------------------------------------------------ connections

async function conns() {
  const users = makeUsers(cfg.count, STUDENT, 'c');
  say({ phase: 'start' });
  await go();
  const start = performance.now();
  await bounded(openAll(users, `cn-${run}`), 'connect');
  const durationMs = performance.now() - start;
  say({ phase: 'connected', ok: true, units: cfg.count, durationMs, perSec: cfg.count / (durationMs / 1000) });
  await go();
  closeAll(users);
  say({ phase: 'closed' });
  await go(); // the driver watched the server settle
}

const scenarios = { broadcast, pingpong, conns };
bounded(scenarios[cfg.scenario](), cfg.scenario, 4 * cfg.timeout).then(() => process.exit(0), (err) => {
  say({ phase: 'result', ok: false, error: err.message });
  process.exit(1);
});
