#!/usr/bin/env node
// Many-classes load generator for scripts/bench_scale.py: G groups, each one teacher and S students,
// every user placed by its ticket (GET /ticket), every teacher broadcasting M messages at once.
//
// Placement: "spread" connects every user to the node its own ticket names; "grouped" connects a
// whole group to the node its teacher's ticket names (the students still get tickets, for their
// token2), as a deployment that keeps a class on one node would. The teacher is the sender; each
// teacher keeps at most `window` msg_results outstanding. Deliveries are counted per receiver and
// per node: lost and duplicated must be 0.
//
// Config (JSON on argv): ticketUrl, groups, students, messages, window, placement, prefix (group and
// user id prefix: several loaders of one run need different ones), setupTimeout / sendTimeout (s),
// connectConcurrency, waitForGo (print {"phase":"ready"}, wait for "go" on stdin).
// Result line: {"phase":"result","ok","groups","receivers","sent","refused","firstRefusal","deliveries",
//   "expected","lost","duplicated","durationMs","ticketsPerNode":{name:n},"connectionsPerNode":{url:n},
//   "deliveriesPerNode":{url:n},"error"}
'use strict';

const http = require('http');
const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const { io } = require(require.resolve('socket.io-client', { paths: [REPO_ROOT] }));

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function log(text) {
  process.stderr.write(`scale_load: ${text}\n`);
}

function getTicket(cfg, id, type) {
  const query = new URLSearchParams({ userType: String(type), userName: id, userId: id, token1: 'bench' });
  return new Promise((resolve, reject) => {
    const req = http.get(`${cfg.ticketUrl}/ticket?${query}`, { agent, timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        try {
          const parsed = JSON.parse(body);
          if (res.statusCode === 200 && parsed.success) return resolve(parsed.data);
        } catch (err) { /* reported below */ }
        reject(new Error(`ticket for ${id}: HTTP ${res.statusCode} ${body.slice(0, 200)}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`ticket for ${id}: timeout`)));
    req.on('error', reject);
  });
}

function once(socket, event, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no ${event} within ${ms} ms`)), ms);
    socket.once(event, (arg) => { clearTimeout(timer); resolve(arg); });
  });
}

async function open(cfg, user) {
  const socket = io(user.url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 10000 });
  user.socket = socket;
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (err) => reject(new Error(`connect ${user.id} to ${user.url}: ${err.message}`)));
  });
  user.got = new Map();
  socket.on('msg', (msg) => {
    if (msg && msg.content) user.got.set(msg.content, (user.got.get(msg.content) || 0) + 1);
  });
  const answer = once(socket, 'auth_result', 10000, `auth ${user.id}`);
  socket.emit('auth', JSON.stringify({
    id: user.id, name: user.id, groupId: user.group, token1: 'bench', token2: user.token, type: user.type,
  }));
  const result = await answer;
  if (!result || result.success !== true) throw new Error(`auth ${user.id} refused: ${JSON.stringify(result)}`);
}

async function inParallel(items, limit, action) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await action(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function setup(cfg, tickets) {
  const groups = [];
  for (let g = 0; g < cfg.groups; g += 1) {
    const group = `${cfg.prefix}-g${g}`;
    const users = [{ id: `${group}-t`, type: 0, group }];
    for (let s = 0; s < cfg.students; s += 1) users.push({ id: `${group}-s${s}`, type: 1, group });
    groups.push({ group, teacher: users[0], users });
  }
  const everyone = groups.flatMap((g) => g.users);
  const ticketFor = async (user) => {
    const ticket = await getTicket(cfg, user.id, user.type);
    tickets[ticket.name] = (tickets[ticket.name] || 0) + 1;
    user.token = ticket.token;
    user.ticketAddr = ticket.addr;
  };
  // the teachers first: with "grouped", their tickets place the classes, evenly over equal nodes
  await inParallel(groups.map((g) => g.teacher), cfg.connectConcurrency, ticketFor);
  await inParallel(everyone.filter((user) => user.type !== 0), cfg.connectConcurrency, ticketFor);
  for (const g of groups) {
    for (const user of g.users) user.url = cfg.placement === 'grouped' ? g.teacher.ticketAddr : user.ticketAddr;
  }
  await inParallel(everyone, cfg.connectConcurrency, (user) => open(cfg, user));
  return groups;
}

function broadcastAll(cfg, groups) {
  const counts = { sent: 0, refused: 0, firstRefusal: null };
  const sendOne = (g) => new Promise((resolve) => {
    const n = g.next;
    g.next += 1;
    g.teacher.socket.emit('msg', { type: 1, content: `${g.group}:${n}` });
    counts.sent += 1;
    g.teacher.socket.once('msg_result', (result) => {
      if (!result || result.success !== true) {
        counts.refused += 1;
        counts.firstRefusal = counts.firstRefusal || result;
      }
      resolve();
    });
  });
  const runGroup = async (g) => {
    g.next = 0;
    const inFlight = new Set();
    while (g.next < cfg.messages) {
      const p = sendOne(g).then(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= cfg.window) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  };
  return Promise.all(groups.map(runGroup)).then(() => counts);
}

function tally(cfg, groups) {
  let deliveries = 0;
  let lost = 0;
  let duplicated = 0;
  const perNode = {};
  for (const g of groups) {
    for (const user of g.users.slice(1)) {
      let mine = 0;
      for (let n = 0; n < cfg.messages; n += 1) {
        const times = user.got.get(`${g.group}:${n}`) || 0;
        mine += times;
        if (times === 0) lost += 1;
        if (times > 1) duplicated += times - 1;
      }
      deliveries += mine;
      perNode[user.url] = (perNode[user.url] || 0) + mine;
    }
  }
  return { deliveries, lost, duplicated, perNode };
}

async function main() {
  const raw = JSON.parse(process.argv[2] || '{}');
  const cfg = {
    ticketUrl: raw.ticketUrl.replace(/\/+$/, ''), groups: raw.groups ?? 10, students: raw.students ?? 10,
    messages: raw.messages ?? 30, window: Math.max(1, raw.window ?? 5), placement: raw.placement ?? 'spread',
    prefix: raw.prefix ?? `scale-${process.pid}`, setupTimeout: (raw.setupTimeout ?? 120) * 1000,
    sendTimeout: (raw.sendTimeout ?? 120) * 1000, connectConcurrency: raw.connectConcurrency ?? 50,
    waitForGo: Boolean(raw.waitForGo),
  };
  const result = { phase: 'result', ok: false, groups: cfg.groups, receivers: cfg.groups * cfg.students };
  const tickets = {};
  let groups = [];
  try {
    const timer = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(what)), ms).unref());
    groups = await Promise.race([setup(cfg, tickets), timer(cfg.setupTimeout, 'setup timed out')]);
    const connections = {};
    for (const user of groups.flatMap((g) => g.users)) connections[user.url] = (connections[user.url] || 0) + 1;
    Object.assign(result, { ticketsPerNode: tickets, connectionsPerNode: connections });
    if (cfg.waitForGo) {
      process.stdout.write(`${JSON.stringify({ phase: 'ready' })}\n`);
      await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve));
    }
    const began = performance.now();
    const counts = await Promise.race([broadcastAll(cfg, groups), timer(cfg.sendTimeout, 'sending timed out')]);
    const expected = cfg.groups * cfg.students * cfg.messages;
    const drainUntil = performance.now() + 5000;
    while (tally(cfg, groups).deliveries < expected && performance.now() < drainUntil) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const done = tally(cfg, groups);
    Object.assign(result, counts, {
      deliveries: done.deliveries, expected, lost: done.lost, duplicated: done.duplicated,
      durationMs: performance.now() - began, deliveriesPerNode: done.perNode,
    });
    result.ok = done.lost === 0 && done.duplicated === 0 && counts.refused === 0;
  } catch (err) {
    result.error = String(err && err.message ? err.message : err);
    log(result.error);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  for (const user of groups.flatMap((g) => g.users)) if (user.socket) user.socket.close();
  agent.destroy();
  process.exit(result.ok ? 0 : 1);
}

main();
