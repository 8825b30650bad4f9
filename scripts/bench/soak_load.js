#!/usr/bin/env node
// Soak load generator for Gru, driven by scripts/soak.py (usable on its own too).
//
//   node scripts/bench/soak_load.js '<JSON config>'      (or the config as the first line of stdin)
//
// Opens `connections` socket.io 4 clients (socket.io-client from the repository's node_modules,
// WebSocket only, no reconnection) in `groups` groups, each group with one teacher (userType 0)
// and students (userType 1): ticket -> connect -> auth (the JSON-string payload of the original
// clients). Then, for `seconds`, random members send broadcasts at `broadcastRate` per second in
// total and unicasts to a random classmate at `unicastRate` per second in total. Every message
// carries a unique content tag ("soak:<run>:<n>", n increasing over the run, so also per sender)
// and is tracked by that tag and by the server's message id:
//
//   lost          an expected delivery (every other connection of the sender's group for a
//                 broadcast, the target for a unicast) that never arrived (refused sends expect none)
//   duplicated    a receiver got the same message twice
//   outOfOrder    a receiver got a message from a sender after a later one from the same sender
//   misdelivered  a receiver got a message not meant for it (other group, echo to the sender)
//   idMismatch    one message seen with two different ids, or not with the id its msg_result gave
//   wrongSender   from.id is not the sender's user id
//
// Delivery latency is send -> receive in this one process (one clock). Counts are reported in
// total and per receiver. Stdout carries JSON lines only:
//   {"phase":"ready", ...}      everyone is authenticated (with waitForGo: waiting for "go" on stdin)
//   {"phase":"progress", ...}   every progressEvery seconds while sending and draining
//   {"phase":"result", ...}     the final report; exit code 0 if ok, 1 if not, 2 on a bad config
//
// Config (JSON): ticketUrl (required), nodeUrls (optional: connection i goes to
// nodeUrls[i % n]; otherwise to the ticket's addr), connections (200), groups (10), seconds (60),
// broadcastRate (50), unicastRate (20), seed (1), run (random), token1 ("soak"),
// connectConcurrency (20: below the server's GRU_MAX_PENDING_PER_ADDRESS of 50), setupTimeout (120 s),
// drainTimeout (15 s), progressEvery (1 s), waitForGo (false).
'use strict';

const crypto = require('crypto');
const http = require('http');
const https = require('https');
const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const { io } = require(require.resolve('socket.io-client', { paths: [REPO_ROOT] }));

const TEACHER = 0;
const STUDENT = 1;
const TICK_MS = 5;
const MAX_SENDS_PER_TICK = 1000; // bounds one tick's catch-up after a stall

function log(text) {
  process.stderr.write(`soak_load: ${text}\n`);
}

function emitLine(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ---------------------------------------------------------------- config

function readConfig() {
  if (process.argv[2]) return Promise.resolve(JSON.parse(process.argv[2]));
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.once('line', (line) => {
      try {
        resolve(JSON.parse(line));
      } catch (err) {
        reject(err);
      }
      rl.close();
    });
    rl.once('close', () => reject(new Error('no JSON config on argv or stdin')));
  });
}

function positive(value, name, { integer = true, allowZero = false } = {}) {
  const ok = typeof value === 'number' && Number.isFinite(value) && (allowZero ? value >= 0 : value > 0)
    && (!integer || Number.isInteger(value));
  if (!ok) throw new Error(`"${name}" must be a ${allowZero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}`);
  return value;
}

function withDefaults(raw) {
  if (!raw || typeof raw.ticketUrl !== 'string') throw new Error('config needs "ticketUrl"');
  const strip = (url) => url.replace(/\/+$/, '');
  const cfg = {
    ticketUrl: strip(raw.ticketUrl),
    nodeUrls: Array.isArray(raw.nodeUrls) && raw.nodeUrls.length ? raw.nodeUrls.map(strip) : null,
    connections: positive(raw.connections ?? 200, 'connections'),
    groups: positive(raw.groups ?? 10, 'groups'),
    seconds: positive(raw.seconds ?? 60, 'seconds', { integer: false }),
    broadcastRate: positive(raw.broadcastRate ?? 50, 'broadcastRate', { integer: false, allowZero: true }),
    unicastRate: positive(raw.unicastRate ?? 20, 'unicastRate', { integer: false, allowZero: true }),
    seed: raw.seed ?? 1,
    run: raw.run ?? crypto.randomBytes(4).toString('hex'),
    token1: raw.token1 ?? 'soak',
    connectConcurrency: positive(raw.connectConcurrency ?? 20, 'connectConcurrency'),
    setupTimeout: positive(raw.setupTimeout ?? 120, 'setupTimeout', { integer: false }) * 1000,
    drainTimeout: positive(raw.drainTimeout ?? 15, 'drainTimeout', { integer: false, allowZero: true }) * 1000,
    progressEvery: positive(raw.progressEvery ?? 1, 'progressEvery', { integer: false }) * 1000,
    waitForGo: Boolean(raw.waitForGo),
  };
  if (cfg.connections < 2 * cfg.groups) throw new Error('every group needs at least 2 members: connections >= 2 * groups');
  return cfg;
}

// ---------------------------------------------------------------- randomness (seeded, reproducible)

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- users and setup

function makeUsers(cfg) {
  const users = [];
  const groups = Array.from({ length: cfg.groups }, (_, g) => ({ id: `soak-${cfg.run}-g${g}`, members: [] }));
  for (let i = 0; i < cfg.connections; i++) {
    const group = groups[i % cfg.groups];
    const user = {
      index: i,
      id: `soak-${cfg.run}-${i}`,
      type: group.members.length === 0 ? TEACHER : STUDENT,
      group,
      groupIndex: i % cfg.groups,
      pos: group.members.length, // position in the group: the slot in a message's "seen" bitmap
      url: cfg.nodeUrls ? cfg.nodeUrls[i % cfg.nodeUrls.length] : null,
      socket: null,
      pending: [], // message numbers awaiting their msg_result, in send order
      lastFrom: new Map(), // sender index -> highest message number received from it
      received: 0,
      duplicated: 0,
      outOfOrder: 0,
      misdelivered: 0,
      disconnected: null,
    };
    group.members.push(user);
    users.push(user);
  }
  return { users, groups };
}

const agents = { 'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }) };

function getTicket(cfg, user) {
  const url = new URL(`${cfg.ticketUrl}/ticket`);
  url.search = new URLSearchParams({ userType: String(user.type), userName: user.id, userId: user.id, token1: cfg.token1 });
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.get(url, { agent: agents[url.protocol], timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        let parsed = null;
        try {
          parsed = JSON.parse(body);
        } catch (err) {
          // reported below
        }
        if (res.statusCode !== 200 || !parsed || !parsed.success) {
          reject(new Error(`ticket for ${user.id}: HTTP ${res.statusCode} ${body.slice(0, 200)}`));
        } else {
          resolve(parsed.data);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`ticket for ${user.id}: timeout`)));
    req.on('error', reject);
  });
}

function waitFor(socket, event, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no ${event} within ${ms} ms`)), ms);
    socket.once(event, (arg) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

async function openUser(cfg, user) {
  const ticket = await getTicket(cfg, user);
  const url = user.url || ticket.addr;
  user.url = url;
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 10000 });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (err) => {
      socket.close();
      reject(new Error(`connect ${user.id} to ${url}: ${err.message}`));
    });
  });
  user.socket = socket;
  const answer = waitFor(socket, 'auth_result', 10000, `auth ${user.id}`);
  socket.emit('auth', JSON.stringify({
    id: user.id, name: user.id, groupId: user.group.id, token1: cfg.token1, token2: ticket.token, type: user.type,
  }));
  const result = await answer;
  if (!result || result.success !== true) throw new Error(`auth ${user.id} refused: ${JSON.stringify(result)}`);
}

async function openAll(cfg, users) {
  let next = 0;
  let failed = null;
  async function worker() {
    while (next < users.length && !failed) {
      const user = users[next++];
      try {
        await openUser(cfg, user);
      } catch (err) {
        failed = failed || err;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.connectConcurrency, users.length) }, worker));
  if (failed) throw failed;
}

// ---------------------------------------------------------------- traffic and bookkeeping

class Latencies {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }

  push(value) {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.length++] = value;
  }

  sorted() {
    return this.values.subarray(0, this.length).slice().sort();
  }
}

function makeState(cfg, users, groups) {
  return {
    cfg,
    users,
    groups,
    prefix: `soak:${cfg.run}:`,
    messages: [], // n -> record
    sentBroadcasts: 0,
    sentUnicasts: 0,
    accepted: 0,
    refused: 0,
    firstRefusal: null,
    expected: 0, // deliveries expected from sent messages not (yet) refused
    delivered: 0,
    duplicated: 0,
    outOfOrder: 0,
    misdelivered: 0,
    idMismatch: 0,
    wrongSender: 0,
    foreign: 0, // msg events that are not from this run at all
    disconnects: [],
    latencies: new Latencies(),
    sending: false,
  };
}

function send(state, sender, kind, target) {
  const n = state.messages.length;
  const group = sender.group;
  const record = {
    n, kind, sender: sender.index, target: target ? target.index : -1, group: sender.groupIndex,
    sendT: performance.now(), state: 'pending', id: null, deliveredId: null,
    expected: kind === 'b' ? group.members.length - 1 : 1, got: 0,
    seen: new Uint8Array(kind === 'b' ? group.members.length : 1),
  };
  state.messages.push(record);
  state.expected += record.expected;
  const content = `${state.prefix}${n}`;
  const body = kind === 'b' ? { type: 1, content } : { type: 0, target: { id: target.id, type: target.type }, content };
  sender.pending.push(n);
  sender.socket.emit('msg', JSON.stringify(body));
  if (kind === 'b') state.sentBroadcasts++;
  else state.sentUnicasts++;
}

function onResult(state, sender, result) {
  const n = sender.pending.shift();
  const record = n === undefined ? null : state.messages[n];
  if (!record) return;
  if (result && result.success === true) {
    record.state = 'accepted';
    record.id = result.data && result.data.id;
    state.accepted++;
    if (record.deliveredId !== null && record.deliveredId !== record.id) state.idMismatch++;
  } else {
    record.state = 'refused';
    state.refused++;
    state.expected -= record.expected;
    if (!state.firstRefusal) state.firstRefusal = { kind: record.kind, result };
  }
}

function onMessage(state, receiver, message) {
  const now = performance.now();
  const content = message && typeof message.content === 'string' ? message.content : '';
  if (!content.startsWith(state.prefix)) {
    state.foreign++;
    return;
  }
  const record = state.messages[Number(content.slice(state.prefix.length))];
  if (!record) {
    state.foreign++;
    return;
  }
  const sender = state.users[record.sender];
  const meant = record.kind === 'b'
    ? receiver.groupIndex === record.group && receiver.index !== record.sender
    : receiver.index === record.target;
  if (!meant) {
    receiver.misdelivered++;
    state.misdelivered++;
    return;
  }
  if (!message.from || String(message.from.id) !== sender.id) state.wrongSender++;
  const slot = record.kind === 'b' ? receiver.pos : 0;
  if (record.seen[slot]) {
    receiver.duplicated++;
    state.duplicated++;
    return;
  }
  record.seen[slot] = 1;
  record.got++;
  receiver.received++;
  state.delivered++;
  state.latencies.push(now - record.sendT);
  if (record.deliveredId === null) record.deliveredId = message.id;
  if (message.id !== record.deliveredId || (record.id !== null && message.id !== record.id)) state.idMismatch++;
  const last = receiver.lastFrom.get(record.sender);
  if (last !== undefined && record.n < last) {
    receiver.outOfOrder++;
    state.outOfOrder++;
  } else {
    receiver.lastFrom.set(record.sender, record.n);
  }
}

function listen(state) {
  for (const user of state.users) {
    user.socket.on('msg', (message) => onMessage(state, user, message));
    user.socket.on('msg_result', (result) => onResult(state, user, result));
    user.socket.on('disconnect', (reason) => {
      user.disconnected = reason;
      state.disconnects.push({ id: user.id, reason, atS: round((performance.now() - (state.startT || 0)) / 1000, 2) });
    });
  }
}

function pickSender(state, rand) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const user = state.users[Math.floor(rand() * state.users.length)];
    if (!user.disconnected) return user;
  }
  return null;
}

function pickClassmate(sender, rand) {
  const others = sender.group.members.length - 1;
  for (let attempt = 0; attempt < 20; attempt++) {
    const candidate = sender.group.members[Math.floor(rand() * others + 1 + sender.pos) % sender.group.members.length];
    if (candidate !== sender && !candidate.disconnected) return candidate;
  }
  return null;
}

function progress(state, phase) {
  return {
    phase: 'progress', stage: phase, elapsedS: round((performance.now() - state.startT) / 1000, 2),
    sent: state.sentBroadcasts + state.sentUnicasts, accepted: state.accepted, refused: state.refused,
    delivered: state.delivered, expected: state.expected, duplicated: state.duplicated,
    outOfOrder: state.outOfOrder, misdelivered: state.misdelivered, disconnects: state.disconnects.length,
  };
}

function runTraffic(state) {
  const { cfg } = state;
  const rand = mulberry32(cfg.seed);
  return new Promise((resolve) => {
    state.startT = performance.now();
    let lastProgress = state.startT;
    let sendingEnded = null;
    const timer = setInterval(() => {
      const now = performance.now();
      const elapsed = (now - state.startT) / 1000;
      if (elapsed < cfg.seconds) {
        const dueB = Math.min(Math.floor(cfg.broadcastRate * elapsed) - state.sentBroadcasts, MAX_SENDS_PER_TICK);
        for (let k = 0; k < dueB; k++) {
          const sender = pickSender(state, rand);
          if (sender) send(state, sender, 'b', null);
        }
        const dueU = Math.min(Math.floor(cfg.unicastRate * elapsed) - state.sentUnicasts, MAX_SENDS_PER_TICK);
        for (let k = 0; k < dueU; k++) {
          const sender = pickSender(state, rand);
          const target = sender && pickClassmate(sender, rand);
          if (target) send(state, sender, 'u', target);
        }
      } else if (sendingEnded === null) {
        sendingEnded = now;
      }
      if (now - lastProgress >= cfg.progressEvery) {
        lastProgress = now;
        emitLine(progress(state, sendingEnded === null ? 'sending' : 'draining'));
      }
      if (sendingEnded !== null) {
        const answered = state.accepted + state.refused === state.messages.length;
        if ((answered && state.delivered >= state.expected) || now - sendingEnded >= cfg.drainTimeout) {
          clearInterval(timer);
          state.sendingS = (sendingEnded - state.startT) / 1000;
          state.drainS = (now - sendingEnded) / 1000;
          resolve();
        }
      }
    }, TICK_MS);
  });
}

// ---------------------------------------------------------------- report

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function round(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function summarize(state, setupMs, cpu, error) {
  const { cfg, users } = state;
  const expectedOf = new Array(users.length).fill(0);
  const lostOf = new Array(users.length).fill(0);
  let unanswered = 0;
  for (const record of state.messages) {
    if (record.state === 'refused') continue;
    if (record.state === 'pending') unanswered++;
    const recipients = record.kind === 'b' ? state.groups[record.group].members : [users[record.target]];
    for (const user of recipients) {
      if (user.index === record.sender) continue;
      expectedOf[user.index]++;
      if (!record.seen[record.kind === 'b' ? user.pos : 0]) lostOf[user.index]++;
    }
  }
  const lost = lostOf.reduce((a, b) => a + b, 0);
  const lat = state.latencies.sorted();
  const mean = lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null;
  const perNode = {};
  for (const user of users) perNode[user.url || '?'] = (perNode[user.url || '?'] || 0) + 1;
  const totals = {
    connections: users.length,
    groups: cfg.groups,
    sentBroadcasts: state.sentBroadcasts,
    sentUnicasts: state.sentUnicasts,
    accepted: state.accepted,
    refused: state.refused,
    unanswered,
    expectedDeliveries: expectedOf.reduce((a, b) => a + b, 0),
    delivered: state.delivered,
    lost,
    duplicated: state.duplicated,
    outOfOrder: state.outOfOrder,
    misdelivered: state.misdelivered,
    idMismatch: state.idMismatch,
    wrongSender: state.wrongSender,
    foreign: state.foreign,
    disconnects: state.disconnects.length,
  };
  const ok = !error && ['lost', 'duplicated', 'outOfOrder', 'misdelivered', 'idMismatch', 'wrongSender',
    'refused', 'unanswered', 'disconnects'].every((key) => totals[key] === 0);
  return {
    phase: 'result',
    ok,
    run: cfg.run,
    config: {
      connections: cfg.connections, groups: cfg.groups, seconds: cfg.seconds, broadcastRate: cfg.broadcastRate,
      unicastRate: cfg.unicastRate, seed: cfg.seed, ticketUrl: cfg.ticketUrl, nodeUrls: cfg.nodeUrls,
    },
    totals,
    latencyMs: {
      p50: round(percentile(lat, 50)), p90: round(percentile(lat, 90)), p99: round(percentile(lat, 99)),
      max: round(percentile(lat, 100)), mean: round(mean),
    },
    sendingS: round(state.sendingS ?? null), drainS: round(state.drainS ?? null), setupMs: round(setupMs),
    connectionsPerNode: perNode,
    perReceiver: users.map((user) => ({
      id: user.id, group: user.group.id, type: user.type, node: user.url, expected: expectedOf[user.index],
      received: user.received, lost: lostOf[user.index], duplicated: user.duplicated,
      outOfOrder: user.outOfOrder, misdelivered: user.misdelivered, disconnected: user.disconnected,
    })),
    firstRefusal: state.firstRefusal,
    disconnectSamples: state.disconnects.slice(0, 10),
    clientCpuMs: cpu,
    error: error || null,
  };
}

// ---------------------------------------------------------------- main

function waitForGo(ms) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`no "go" within ${ms} ms`));
    }, ms);
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        clearTimeout(timer);
        resolve();
        rl.close();
      }
    });
    rl.once('close', () => {
      clearTimeout(timer);
      reject(new Error('stdin closed before "go"'));
    });
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function cpuMs(since) {
  const used = process.cpuUsage(since);
  return round((used.user + used.system) / 1000, 1);
}

async function main() {
  let cfg;
  try {
    cfg = withDefaults(await readConfig());
  } catch (err) {
    exitWith({ phase: 'result', ok: false, error: `bad config: ${err.message}` }, 2);
    return;
  }
  const { users, groups } = makeUsers(cfg);
  const state = makeState(cfg, users, groups);
  let error = null;
  let setupMs = null;
  const cpu = { setup: null, traffic: null };
  const setupCpu = process.cpuUsage();
  const setupStart = performance.now();
  try {
    log(`opening ${users.length} sockets in ${groups.length} groups (run ${cfg.run})`);
    await withTimeout(openAll(cfg, users), cfg.setupTimeout, 'setup (tickets, connect, auth)');
    setupMs = performance.now() - setupStart;
    cpu.setup = cpuMs(setupCpu);
    listen(state);
    emitLine({ phase: 'ready', connections: users.length, setupMs: round(setupMs) });
    if (cfg.waitForGo) await waitForGo(cfg.setupTimeout);
    log(`traffic for ${cfg.seconds}s: ${cfg.broadcastRate} broadcasts/s, ${cfg.unicastRate} unicasts/s`);
    const trafficCpu = process.cpuUsage();
    await runTraffic(state);
    cpu.traffic = cpuMs(trafficCpu);
  } catch (err) {
    error = err.message;
  }
  const result = summarize(state, setupMs, cpu, error);
  for (const user of users) if (user.socket) user.socket.close();
  for (const agent of Object.values(agents)) agent.destroy();
  exitWith(result, result.ok ? 0 : 1);
}

function exitWith(line, code) {
  // a pipe takes a large line asynchronously: exit only once it has all of it
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
}

main().catch((err) => {
  exitWith({ phase: 'result', ok: false, error: String(err && err.message ? err.message : err) }, 2);
});
