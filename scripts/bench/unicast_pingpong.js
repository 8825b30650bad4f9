#!/usr/bin/env node
// Unicast ping-pong load generator for scripts/bench_cluster.py (usable on its own too).
//
// Opens N pairs of users in one fresh group, each with its own ticket (GET /ticket on
// `ticketUrl`) and its own WebSocket connection: the pair's sender (a teacher) on `senderUrl`,
// its receiver (a student) on `receiverUrl`. Each pair then plays ping-pong: the sender sends a
// unicast (`msg` type 0, target {id, type}) to its receiver, the receiver answers with a unicast
// back, and only then does the sender send the next one. The pairs run concurrently until
// `roundTrips` round trips in total are done. Everything runs in this one process, so the
// round-trip time and both one-way times (send → receive) are taken on one clock.
//
// Usage:
//   node scripts/bench/unicast_pingpong.js '{"ticketUrl":"http://127.0.0.1:30000"}'
//   echo '{"ticketUrl":"http://127.0.0.1:30000","pairs":10}' | node scripts/bench/unicast_pingpong.js
//
// Config (JSON object; every field but ticketUrl is optional):
//   ticketUrl      base URL for GET /ticket (a GRU_ROLE=ticket service, or an embedded node)
//   senderUrl      node the senders connect to, default ticketUrl
//   receiverUrl    node the receivers connect to, default senderUrl
//   pairs          N, default 50               roundTrips  total measured round trips, default 2000
//   warmup         unmeasured round trips per pair before the measurement, default 2
//   group          group id, default "pp-<random>"
//   token1         fixed token1 (accept verifier), default "bench"
//   token1Secret   sign token1 per user with the hmac scheme instead
//   setupTimeout   seconds for tickets + connect + auth + warm-up, default 60
//   runTimeout     seconds for the measured phase, default 60
//   connectConcurrency  tickets/connections opened at once, default 50
//   waitForGo      if true: print {"phase":"ready"} once everyone is authenticated and warmed up,
//                  and start the measured phase only after a line "go" arrives on stdin
//
// Exit code: 0 if ok (every round trip completed, nothing lost, duplicated or refused), 1 if not,
// 2 on a bad config.
// Result line: {"phase":"result","ok","pairs","requested","roundTrips","sent","received","lost",
//   "duplicated","outOfOrder","unexpected","refused","firstRefusal","durationMs","roundTripsPerSec",
//   "rttMs":{"p50","p99","max","mean"},"oneWayMs":{..},"setupMs","clientCpuMs":{"setup","phase"},"error"}
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
  process.stderr.write(`unicast_pingpong: ${text}\n`);
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

function stripSlash(url) {
  return url.replace(/\/+$/, '');
}

function withDefaults(raw) {
  if (!raw || typeof raw.ticketUrl !== 'string') throw new Error('config needs "ticketUrl"');
  const run = crypto.randomBytes(4).toString('hex');
  const ticketUrl = stripSlash(raw.ticketUrl);
  const senderUrl = stripSlash(raw.senderUrl ?? ticketUrl);
  const cfg = {
    ticketUrl,
    senderUrl,
    receiverUrl: stripSlash(raw.receiverUrl ?? senderUrl),
    pairs: raw.pairs ?? 50,
    roundTrips: raw.roundTrips ?? 2000,
    warmup: raw.warmup ?? 2,
    group: raw.group ?? `pp-${run}`,
    run,
    token1: raw.token1 ?? 'bench',
    token1Secret: raw.token1Secret ?? null,
    setupTimeout: (raw.setupTimeout ?? 60) * 1000,
    runTimeout: (raw.runTimeout ?? 60) * 1000,
    connectConcurrency: raw.connectConcurrency ?? 50,
    waitForGo: Boolean(raw.waitForGo),
  };
  for (const name of ['pairs', 'roundTrips']) {
    if (!Number.isInteger(cfg[name]) || cfg[name] < 1) throw new Error(`"${name}" must be a positive integer`);
  }
  if (!Number.isInteger(cfg.warmup) || cfg.warmup < 0) throw new Error('"warmup" must be an integer >= 0');
  return cfg;
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

function connectSocket(user) {
  const socket = io(user.url, {
    transports: ['websocket'], forceNew: true, reconnection: false, timeout: 10000,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(new Error(`connect ${user.id} to ${user.url}: ${err.message}`));
    });
  });
}

async function openUser(cfg, user) {
  user.token1 = token1For(cfg, user.id, user.type);
  const ticket = await getTicket(cfg, user);
  // Connect to the node the bench chose (user.url), not ticket.addr: token2 is valid on every node.
  const socket = await connectSocket(user);
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
  await Promise.all(Array.from({ length: Math.min(cfg.connectConcurrency, users.length) }, worker));
}

// ---------------------------------------------------------------- ping-pong

function makeStats(capacity) {
  return {
    rtt: new Float64Array(capacity),
    oneWay: new Float64Array(2 * capacity),
    rounds: 0,
    oneWays: 0,
  };
}

function makeCounters() {
  return {
    sent: 0, received: 0, duplicated: 0, outOfOrder: 0, unexpected: 0, refused: 0, firstRefusal: null,
  };
}

// One ping-pong phase: `budget` round trips shared by all pairs; resolves with an error text or null.
function runPhase(cfg, pairs, counters, budget, stats, timeoutMs) {
  return new Promise((resolve) => {
    let issued = 0;
    let completed = 0;
    let finished = false;
    const finish = (error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const pair of pairs) pair.handlers = null;
      resolve(error || null);
    };
    const timer = setTimeout(() => finish(`${completed}/${budget} round trips after ${timeoutMs} ms`), timeoutMs);

    const ping = (pair) => {
      if (finished || issued >= budget) return false;
      issued++;
      const seq = ++pair.seq;
      pair.pingAt = performance.now();
      counters.sent++;
      pair.sender.socket.emit('msg', JSON.stringify({
        type: 0, target: { id: pair.receiver.id, type: RECEIVER_TYPE },
        content: JSON.stringify({ pp: cfg.run, pair: pair.index, seq, dir: 'ping' }),
      }));
      return true;
    };

    for (const pair of pairs) {
      pair.handlers = {
        ping(seq, now) { // at the receiver: answer at once
          if (stats) stats.oneWay[stats.oneWays++] = now - pair.pingAt;
          pair.pongAt = performance.now();
          counters.sent++;
          pair.receiver.socket.emit('msg', JSON.stringify({
            type: 0, target: { id: pair.sender.id, type: SENDER_TYPE },
            content: JSON.stringify({ pp: cfg.run, pair: pair.index, seq, dir: 'pong' }),
          }));
        },
        pong(seq, now) { // at the sender: one round trip done
          if (stats) {
            stats.oneWay[stats.oneWays++] = now - pair.pongAt;
            stats.rtt[stats.rounds++] = now - pair.pingAt;
          }
          completed++;
          if (completed === budget) finish(null);
          else ping(pair);
        },
        fail(error) { finish(error); },
      };
    }
    let started = 0;
    for (const pair of pairs) if (ping(pair)) started++;
    if (started === 0) finish(null);
  });
}

function attach(cfg, pair, counters) {
  const receive = (expectedDir) => (message) => {
    const now = performance.now();
    let body = null;
    try {
      body = JSON.parse(message.content);
    } catch (err) {
      body = null;
    }
    if (!body || body.pp !== cfg.run || body.pair !== pair.index || body.dir !== expectedDir) {
      counters.unexpected++;
      return;
    }
    const last = expectedDir === 'ping' ? 'lastPing' : 'lastPong';
    if (body.seq <= pair[last]) {
      counters.duplicated++;
      return;
    }
    if (body.seq !== pair.seq) counters.outOfOrder++;
    pair[last] = body.seq;
    counters.received++;
    if (pair.handlers) pair.handlers[expectedDir](body.seq, now);
  };
  pair.receiver.socket.on('msg', receive('ping'));
  pair.sender.socket.on('msg', receive('pong'));
  for (const user of [pair.sender, pair.receiver]) {
    user.socket.on('msg_result', (result) => {
      if (result && result.success === true) return;
      counters.refused++;
      if (!counters.firstRefusal) counters.firstRefusal = result;
      if (pair.handlers) pair.handlers.fail(`${user.id}: msg refused: ${JSON.stringify(result)}`);
    });
    user.socket.on('disconnect', (reason) => {
      if (pair.handlers) pair.handlers.fail(`${user.id} disconnected: ${reason}`);
    });
  }
}

// ---------------------------------------------------------------- report

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

function round(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function distribution(values) {
  const sorted = values.slice().sort();
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null;
  return {
    p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), max: round(percentile(sorted, 100)),
    mean: round(mean),
  };
}

function cpuMs(since) {
  const used = process.cpuUsage(since);
  return round((used.user + used.system) / 1000, 1);
}

function waitForGo() {
  emitLine({ phase: 'ready' });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        resolve();
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

// ---------------------------------------------------------------- main

async function main() {
  const cfg = withDefaults(await readConfig());
  const pairs = Array.from({ length: cfg.pairs }, (_, index) => ({
    index,
    sender: { id: `pp-t-${cfg.run}-${index}`, type: SENDER_TYPE, url: cfg.senderUrl },
    receiver: { id: `pp-s-${cfg.run}-${index}`, type: RECEIVER_TYPE, url: cfg.receiverUrl },
    seq: 0, lastPing: 0, lastPong: 0, pingAt: 0, pongAt: 0, handlers: null,
  }));
  const users = pairs.flatMap((pair) => [pair.sender, pair.receiver]);
  const counters = makeCounters();
  const stats = makeStats(cfg.roundTrips);
  const setupCpu = process.cpuUsage();
  const setupStart = performance.now();
  let error = null;
  let setupMs = null;
  let setupCpuMs = null;
  let phaseCpu = null;
  let phaseStart = null;
  let phaseEnd = null;
  try {
    log(`opening ${users.length} sockets: senders on ${cfg.senderUrl}, receivers on ${cfg.receiverUrl}`
        + ` (group ${cfg.group})`);
    await withTimeout(openAll(cfg, users), cfg.setupTimeout, 'setup (tickets, connect, auth)');
    for (const pair of pairs) attach(cfg, pair, counters);
    if (cfg.warmup > 0) {
      const warm = await runPhase(cfg, pairs, counters, cfg.warmup * cfg.pairs, null, cfg.setupTimeout);
      if (warm) throw new Error(`warm-up: ${warm}`);
    }
    setupMs = performance.now() - setupStart;
    setupCpuMs = cpuMs(setupCpu);
    const warmSent = counters.sent;
    const warmReceived = counters.received;
    counters.sent = 0;
    counters.received = 0;
    log(`${cfg.pairs} pairs ready in ${setupMs.toFixed(0)} ms (${warmSent} warm-up messages, `
        + `${warmReceived} received); measuring ${cfg.roundTrips} round trips`);
    if (cfg.waitForGo) await withTimeout(waitForGo(), cfg.setupTimeout, 'waiting for "go"');
    phaseCpu = process.cpuUsage();
    phaseStart = performance.now();
    error = await runPhase(cfg, pairs, counters, cfg.roundTrips, stats, cfg.runTimeout);
    phaseEnd = performance.now();
  } catch (err) {
    error = err.message;
  }
  // a straggler still in flight when the phase ended counts as lost
  const lost = counters.sent - counters.received;
  const durationMs = phaseStart !== null && phaseEnd !== null ? phaseEnd - phaseStart : null;
  const ok = !error && lost === 0 && counters.duplicated === 0 && counters.refused === 0
    && counters.unexpected === 0 && stats.rounds === cfg.roundTrips;
  emitLine({
    phase: 'result',
    ok,
    pairs: cfg.pairs,
    group: cfg.group,
    requested: cfg.roundTrips,
    roundTrips: stats.rounds,
    sent: counters.sent,
    received: counters.received,
    lost,
    duplicated: counters.duplicated,
    outOfOrder: counters.outOfOrder,
    unexpected: counters.unexpected,
    refused: counters.refused,
    firstRefusal: counters.firstRefusal,
    durationMs: round(durationMs),
    roundTripsPerSec: durationMs ? round(stats.rounds / (durationMs / 1000), 1) : null,
    rttMs: distribution(stats.rtt.subarray(0, stats.rounds)),
    oneWayMs: distribution(stats.oneWay.subarray(0, stats.oneWays)),
    setupMs: round(setupMs),
    clientCpuMs: { setup: setupCpuMs, phase: phaseCpu ? cpuMs(phaseCpu) : null },
    error: error || null,
  });
  for (const user of users) if (user.socket) user.socket.close();
  agent.destroy();
  process.exitCode = ok ? 0 : 1;
  setTimeout(() => process.exit(), 200).unref();
}

main().catch((err) => {
  emitLine({ phase: 'result', ok: false, error: String(err && err.message ? err.message : err) });
  process.exit(2);
});
