#!/usr/bin/env node
// Broadcast load generator for scripts/bench_core.py (usable on its own too).
//
// Opens R receivers and 1 sender in one fresh group, each with its own ticket
// (GET /ticket) and its own WebSocket connection, authenticates them all, then
// the sender emits M broadcasts with at most `window` msg_results outstanding.
// By default everything goes to one URL; for a cluster, `ticketUrl` names the
// ticket service and `nodeUrls` the nodes the receivers are spread over.
// Every receiver records which messages it got and when; one JSON line with the
// counts and latencies is printed on stdout at the end. Progress goes to stderr.
//
// Usage:
//   node scripts/bench/broadcast_load.js '{"url":"http://127.0.0.1:30000"}'
//   echo '{"url":"http://127.0.0.1:30000","receivers":50}' | node scripts/bench/broadcast_load.js
//
// Config (JSON object; every field but url is optional):
//   url            base URL of the Gru node (loopback), used for /ticket and socket.io
//   ticketUrl      base URL for GET /ticket instead of url (e.g. a GRU_ROLE=ticket service)
//   nodeUrls       node URLs to spread the receivers over, round-robin (receiver i on
//                  nodeUrls[i % n]); default [url]: every receiver on url
//   senderUrl      node URL of the sender, default nodeUrls[0]
//   receivers      R, default 200            messages   M, default 500
//   window         unacknowledged msg_results allowed, default 20
//   group          group id, default "bench-<random>"
//   token1         fixed token1 (accept verifier), default "bench"
//   token1Secret   sign token1 per user with the hmac scheme instead
//   setupTimeout   seconds for tickets + connect + auth, default 60
//   sendTimeout    seconds for the broadcast phase (sending + draining), default 30
//   drainTimeout   seconds to wait for stragglers after the last msg_result, default 5
//   connectConcurrency  tickets/connections opened at once, default 50
//   waitForGo      if true: print {"phase":"ready"} once everyone is authenticated and
//                  start broadcasting only after a line "go" arrives on stdin
//
// Exit code: 0 if ok (nothing lost, duplicated, echoed or refused), 1 if not, 2 on a bad config.
// Result line: {"phase":"result","ok":..,"receivers","messages","sent","accepted","refused",
//   "deliveries","expected","lost","duplicated","echoed","unexpected","durationMs","receiversPerNode",
//   "deliveriesPerSec","latencyMs":{"p50","p99","max","mean"},"setupMs","clientCpuMs":{..},"error"}
'use strict';

const crypto = require('crypto');
const http = require('http');
const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const { io } = require(require.resolve('socket.io-client', { paths: [REPO_ROOT] }));

const SENDER_TYPE = 0; // teacher
const RECEIVER_TYPE = 1; // student

function log(text) {
  process.stderr.write(`broadcast_load: ${text}\n`);
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
        resolve(JSON.parse(line)); // settle before close(), which emits 'close' at once
      } catch (err) {
        reject(err);
      }
      rl.close();
    });
    rl.once('close', () => reject(new Error('no JSON config on argv or stdin')));
  });
}

function stripSlash(url) {
  return url.replace(/\/+$/, '');
}

function withDefaults(raw) {
  if (!raw || typeof raw.url !== 'string') throw new Error('config needs "url"');
  const run = crypto.randomBytes(4).toString('hex');
  const url = stripSlash(raw.url);
  if (raw.nodeUrls !== undefined && (!Array.isArray(raw.nodeUrls) || raw.nodeUrls.length === 0
      || !raw.nodeUrls.every((u) => typeof u === 'string'))) {
    throw new Error('"nodeUrls" must be a non-empty array of URLs');
  }
  const nodeUrls = raw.nodeUrls ? raw.nodeUrls.map(stripSlash) : [url];
  return {
    url,
    ticketUrl: stripSlash(raw.ticketUrl ?? url),
    nodeUrls,
    senderUrl: stripSlash(raw.senderUrl ?? nodeUrls[0]),
    receivers: raw.receivers ?? 200,
    messages: raw.messages ?? 500,
    window: Math.max(1, raw.window ?? 20),
    group: raw.group ?? `bench-${run}`,
    run,
    token1: raw.token1 ?? 'bench',
    token1Secret: raw.token1Secret ?? null,
    setupTimeout: (raw.setupTimeout ?? 60) * 1000,
    sendTimeout: (raw.sendTimeout ?? 30) * 1000,
    drainTimeout: (raw.drainTimeout ?? 5) * 1000,
    connectConcurrency: raw.connectConcurrency ?? 50,
    waitForGo: Boolean(raw.waitForGo),
  };
}

// ---------------------------------------------------------------- setup: tickets, connect, auth

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function token1For(cfg, userId, userType) {
  if (!cfg.token1Secret) return cfg.token1;
  const expires = Math.floor(Date.now() / 1000) + 3600;
  const hex = crypto.createHmac('sha256', cfg.token1Secret)
    .update(`${userId}|${userType}|${expires}`).digest('hex');
  return `${expires}.${hex}`;
}

function getTicket(cfg, user) {
  const query = new URLSearchParams({
    userType: String(user.type), userName: user.id, userId: user.id, token1: user.token1,
  });
  return new Promise((resolve, reject) => {
    const req = http.get(`${cfg.ticketUrl}/ticket?${query}`, { agent, timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        let parsed;
        try {
          parsed = JSON.parse(body);
        } catch (err) {
          reject(new Error(`ticket for ${user.id}: HTTP ${res.statusCode}, not JSON`));
          return;
        }
        if (res.statusCode !== 200 || !parsed.success) {
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

function connectSocket(cfg, user) {
  const socket = io(user.url, {
    transports: ['websocket'], forceNew: true, reconnection: false, timeout: 10000,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(new Error(`connect ${user.id}: ${err.message}`));
    });
  });
}

async function openUser(cfg, user) {
  user.token1 = token1For(cfg, user.id, user.type);
  const ticket = await getTicket(cfg, user);
  // Connect to the node under test (user.url: cfg.url, or one of cfg.nodeUrls) rather than
  // ticket.addr: the bench chooses where each user is; token2 is valid on every node.
  const socket = await connectSocket(cfg, user);
  user.socket = socket;
  const answer = waitFor(socket, 'auth_result', 10000, `auth ${user.id}`);
  socket.emit('auth', JSON.stringify({
    id: user.id, name: user.id, groupId: cfg.group, token1: user.token1, token2: ticket.token, type: user.type,
  }));
  const result = await answer;
  if (!result || result.success !== true) throw new Error(`auth ${user.id} refused: ${JSON.stringify(result)}`);
  return user;
}

async function openAll(cfg, users) {
  let next = 0;
  async function worker() {
    while (next < users.length) {
      const user = users[next++];
      await openUser(cfg, user);
    }
  }
  const workers = Array.from({ length: Math.min(cfg.connectConcurrency, users.length) }, worker);
  await Promise.all(workers);
}

// ---------------------------------------------------------------- broadcast phase

function makeState(cfg) {
  const { receivers: R, messages: M } = cfg;
  return {
    sendTimes: new Float64Array(M), // performance.now() just before each emit
    seen: new Uint8Array(R * M), // [receiver * M + seq]
    latencies: new Float64Array(R * M),
    deliveries: 0,
    duplicated: 0,
    echoed: 0, // broadcasts that came back to the sender (must not happen)
    unexpected: 0, // msg events that are not ours
    sent: 0,
    accepted: 0,
    refused: 0,
    firstRefusal: null,
    firstSend: 0,
    lastDelivery: 0,
    lastResult: 0,
  };
}

function contentFor(cfg, seq) {
  return JSON.stringify({ bench: cfg.run, seq, action: 'jump', page: 3 });
}

function seqOf(cfg, message) {
  try {
    const body = JSON.parse(message.content);
    if (body.bench === cfg.run && Number.isInteger(body.seq) && body.seq >= 0 && body.seq < cfg.messages) {
      return body.seq;
    }
  } catch (err) {
    // not one of ours
  }
  return -1;
}

function listenReceivers(cfg, state, receivers) {
  const M = cfg.messages;
  receivers.forEach((user, index) => {
    user.socket.on('msg', (message) => {
      const now = performance.now();
      const seq = seqOf(cfg, message);
      if (seq < 0) {
        state.unexpected++;
        return;
      }
      const slot = index * M + seq;
      if (state.seen[slot]) {
        state.duplicated++;
        return;
      }
      state.seen[slot] = 1;
      state.latencies[state.deliveries++] = now - state.sendTimes[seq];
      state.lastDelivery = now;
      if (state.deliveries === state.expectedTotal) state.onComplete();
    });
  });
}

function runBroadcast(cfg, state, sender, receivers) {
  state.expectedTotal = cfg.receivers * cfg.messages;
  return new Promise((resolve) => {
    let finished = false;
    let drainTimer = null;
    const finish = (error) => {
      if (finished) return;
      finished = true;
      clearTimeout(hardTimer);
      clearTimeout(drainTimer);
      resolve(error || null);
    };
    const hardTimer = setTimeout(() => finish(`broadcast phase exceeded ${cfg.sendTimeout} ms`), cfg.sendTimeout);
    const allAnswered = () => state.accepted + state.refused === cfg.messages;
    state.onComplete = () => { if (allAnswered()) finish(null); };

    const sendNext = () => {
      if (finished || state.sent >= cfg.messages) return;
      const seq = state.sent++;
      state.sendTimes[seq] = performance.now();
      sender.socket.emit('msg', JSON.stringify({ type: 1, content: contentFor(cfg, seq) }));
    };
    sender.socket.on('msg', () => { state.echoed++; });
    sender.socket.on('msg_result', (result) => {
      state.lastResult = performance.now();
      if (result && result.success === true) {
        state.accepted++;
      } else {
        state.refused++;
        if (!state.firstRefusal) state.firstRefusal = result;
      }
      if (allAnswered()) {
        if (state.deliveries >= state.accepted * cfg.receivers) finish(null);
        else drainTimer = setTimeout(() => finish(null), cfg.drainTimeout);
        return;
      }
      sendNext();
    });
    for (const user of [sender, ...receivers]) {
      user.socket.on('disconnect', (reason) => finish(`${user.id} disconnected during the phase: ${reason}`));
    }

    listenReceivers(cfg, state, receivers);
    state.firstSend = performance.now();
    for (let i = 0; i < Math.min(cfg.window, cfg.messages); i++) sendNext();
  });
}

// ---------------------------------------------------------------- report

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

function round(value, digits = 3) {
  if (value === null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function summarize(cfg, state, setupMs, cpu, error) {
  const expected = cfg.receivers * cfg.messages;
  const lat = state.latencies.subarray(0, state.deliveries).slice().sort();
  const mean = lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null;
  const durationMs = state.deliveries ? state.lastDelivery - state.firstSend : null;
  const lost = expected - state.deliveries;
  return {
    phase: 'result',
    ok: !error && lost === 0 && state.duplicated === 0 && state.echoed === 0 && state.refused === 0,
    receivers: cfg.receivers,
    messages: cfg.messages,
    window: cfg.window,
    group: cfg.group,
    sent: state.sent,
    accepted: state.accepted,
    refused: state.refused,
    firstRefusal: state.firstRefusal,
    deliveries: state.deliveries,
    expected,
    lost,
    duplicated: state.duplicated,
    echoed: state.echoed,
    unexpected: state.unexpected,
    durationMs: round(durationMs),
    deliveriesPerSec: durationMs ? round(state.deliveries / (durationMs / 1000), 1) : null,
    broadcastsPerSec: durationMs ? round(state.accepted / (durationMs / 1000), 1) : null,
    latencyMs: {
      p50: round(percentile(lat, 50)), p99: round(percentile(lat, 99)), max: round(percentile(lat, 100)),
      mean: round(mean),
    },
    setupMs: round(setupMs),
    receiversPerNode: cfg.nodeUrls.map((url, n) => ({
      url, receivers: Math.floor(cfg.receivers / cfg.nodeUrls.length) + (n < cfg.receivers % cfg.nodeUrls.length ? 1 : 0),
    })),
    clientCpuMs: cpu,
    error: error || null,
  };
}

function cpuMs(since) {
  const used = process.cpuUsage(since);
  return round((used.user + used.system) / 1000, 1);
}

// ---------------------------------------------------------------- main

function waitForGo() {
  emitLine({ phase: 'ready' });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        resolve(); // before close(): close() emits 'close' at once
        rl.close();
      }
    });
    rl.once('close', () => reject(new Error('stdin closed before "go"')));
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function closeAll(users) {
  for (const user of users) if (user.socket) user.socket.close();
  agent.destroy();
}

async function main() {
  const cfg = withDefaults(await readConfig());
  const sender = { id: `bench-t-${cfg.run}`, type: SENDER_TYPE, url: cfg.senderUrl };
  const receivers = Array.from({ length: cfg.receivers }, (_, i) => ({
    id: `bench-s-${cfg.run}-${i}`, type: RECEIVER_TYPE, url: cfg.nodeUrls[i % cfg.nodeUrls.length],
  }));
  const users = [sender, ...receivers];
  const state = makeState(cfg);
  const setupCpu = process.cpuUsage();
  const setupStart = performance.now();
  let error = null;
  let setupMs = null;
  let setupCpuMs = null;
  let phaseCpu = null;
  try {
    const where = cfg.nodeUrls.length === 1 && cfg.senderUrl === cfg.nodeUrls[0]
      ? cfg.nodeUrls[0] : `sender ${cfg.senderUrl}, receivers ${cfg.nodeUrls.join(' ')}`;
    log(`opening ${users.length} sockets to ${where} (group ${cfg.group})`);
    await withTimeout(openAll(cfg, users), cfg.setupTimeout, 'setup (tickets, connect, auth)');
    setupMs = performance.now() - setupStart;
    setupCpuMs = cpuMs(setupCpu);
    log(`all authenticated in ${setupMs.toFixed(0)} ms; broadcasting ${cfg.messages} x ${cfg.receivers}`);
    if (cfg.waitForGo) await withTimeout(waitForGo(), cfg.setupTimeout, 'waiting for "go"');
    phaseCpu = process.cpuUsage();
    error = await runBroadcast(cfg, state, sender, receivers);
  } catch (err) {
    error = err.message;
  }
  const cpu = { setup: setupCpuMs, phase: phaseCpu ? cpuMs(phaseCpu) : null };
  const result = summarize(cfg, state, setupMs, cpu, error);
  emitLine(result);
  closeAll(users);
  process.exitCode = result.ok ? 0 : 1;
  setTimeout(() => process.exit(), 200).unref();
}

main().catch((err) => {
  emitLine({ phase: 'result', ok: false, error: String(err && err.message ? err.message : err) });
  process.exit(2);
});
