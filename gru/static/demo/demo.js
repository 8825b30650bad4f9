// Gru demo page: a real client of the ticket API and the socket.io events, plus an admin view
// over the publish API. Everything received is shown with textContent (never as HTML).
"use strict";
const $ = (id) => document.getElementById(id);
const ROLES = { 0: "Teacher", 1: "Student" };
let socket = null;
let me = null;
let onlineTimer = null;
let adminTimer = null;
const pendingSends = [];

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}

fetch("/healthz").then((r) => r.json()).then((h) => { $("node").textContent = `${h.node} · v${h.version}`; })
  .catch(() => { $("node").textContent = "offline"; });

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  me = { id: $("userId").value.trim(), name: $("userName").value.trim(), type: Number($("userType").value),
         groupId: $("groupId").value.trim(), token1: $("token1").value };
  const query = new URLSearchParams({ userType: me.type, userName: me.name, userId: me.id, token1: me.token1 });
  let body;
  try {
    body = await (await fetch(`/ticket?${query}`)).json();
  } catch (err) {
    $("login-error").textContent = `ticket request failed: ${err}`;
    return;
  }
  if (!body.success) {
    $("login-error").textContent = `ticket refused (${body.errorCode}): ${body.msg}`;
    return;
  }
  connect(body.data);
});

function connect(ticket) {
  $("status").textContent = `connecting to ${ticket.name} at ${ticket.addr}…`;
  socket = io(ticket.addr, { reconnection: true, forceNew: true });
  socket.on("connect", () => {
    socket.emit("auth", JSON.stringify({ id: me.id, name: me.name, groupId: me.groupId, token1: me.token1,
                                         token2: ticket.token, type: me.type }));
  });
  socket.on("auth_result", (result) => {
    if (!result.success) {
      $("login-error").textContent = `auth refused (${result.errorCode}): ${result.msg}`;
      leave();
      return;
    }
    $("login-panel").hidden = true;
    $("room-panel").hidden = false;
    $("room-group").textContent = me.groupId;
    $("status").textContent = `${result.data.userType} ${me.name} (id ${me.id}) on ${ticket.name} via ${socket.io.engine.transport.name}`;
    askOnline();
    clearInterval(onlineTimer);
    onlineTimer = setInterval(askOnline, 2000);
  });
  socket.on("online_result", showOnline);
  socket.on("msg", (message) => addMessage(message, false));
  socket.on("msg_result", (result) => {
    const sent = pendingSends.shift();
    if (!result.success) {
      $("send-error").textContent = `not sent (${result.errorCode}): ${result.msg}`;
      return;
    }
    $("send-error").textContent = "";
    if (sent) addMessage({ ...result.data, content: sent.content, from: { id: me.id, type: me.type, name: me.name },
                           to: sent.to }, true);
  });
  socket.on("connect_error", (err) => { $("status").textContent = `cannot connect: ${err.message}`; });
  socket.on("disconnect", (reason) => { $("status").textContent = `disconnected (${reason}), reconnecting…`; });
}

function askOnline() {
  if (socket && socket.connected) socket.emit("online", me.groupId);
}

function showOnline(list) {
  const ul = $("online");
  ul.replaceChildren();
  if (!Array.isArray(list)) {
    ul.append(text("li", `error ${list.errorCode}: ${list.msg}`, "error"));
    return;
  }
  for (const id of list) ul.append(text("li", String(id) === me.id ? `${id} (you)` : String(id)));
  $("online-count").textContent = String(list.length);
}

function addMessage(message, mine) {
  const from = message.from || {};
  const li = document.createElement("li");
  li.className = mine ? "mine" : (from.type === -1 ? "system" : "");
  const who = mine ? `you → ${message.to || "group"}` : `${from.name || from.id} (${ROLES[from.type] || "system"})`;
  li.append(text("div", `${clock(message.createTime)} · ${who} · id ${message.id}`, "meta"));
  li.append(text("div", message.content, "content"));
  $("messages").prepend(li);
}

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = $("content").value;
  const type = Number(document.querySelector("input[name=mode]:checked").value);
  const payload = { type, content };
  let to = "group";
  if (type === 0) {
    payload.target = { id: $("targetId").value.trim(), type: Number($("targetType").value) };
    to = `${ROLES[payload.target.type]} ${payload.target.id}`;
  }
  pendingSends.push({ content, to });
  socket.emit("msg", JSON.stringify(payload));
  $("content").value = "";
});

function leave() {
  clearInterval(onlineTimer);
  if (socket) socket.close();
  socket = null;
  $("room-panel").hidden = true;
  $("login-panel").hidden = false;
}
$("disconnect").addEventListener("click", leave);

// --- admin view: the publish API with an API key (kept in this tab only) ---------------------
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${$("apiKey").value}`, "Content-Type": "application/json" };
  const body = await (await fetch(path, { ...options, headers })).json();
  if (!body.success) throw new Error(`${body.errorCode}: ${body.msg}`);
  return body.data;
}

async function refreshAdmin() {
  const group = $("adminGroup").value.trim();
  try {
    const [nodes, online] = await Promise.all([api("/api/nodes"),
                                               api(`/api/online?groupId=${encodeURIComponent(group)}`)]);
    const tbody = $("nodes").querySelector("tbody");
    tbody.replaceChildren();
    for (const node of nodes.nodes) {
      const tr = document.createElement("tr");
      tr.append(text("td", node.name), text("td", node.addr || "(this address)"),
                text("td", node.state, `state-${node.state}`), text("td", String(node.connections)));
      tbody.append(tr);
    }
    $("admin-group-name").textContent = group;
    $("admin-online").replaceChildren(...online.online.map((id) => text("li", String(id))));
    $("admin-error").textContent = "";
    $("admin-view").hidden = false;
    $("push").hidden = false;
  } catch (err) {
    $("admin-error").textContent = `publish API: ${err.message}`;
  }
}

$("admin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("gru-demo-key", $("apiKey").value);
  refreshAdmin();
  clearInterval(adminTimer);
  adminTimer = setInterval(refreshAdmin, 2000);
});
$("apiKey").value = sessionStorage.getItem("gru-demo-key") || "";

$("push").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("/api/push", { method: "POST", body: JSON.stringify({ groupId: $("adminGroup").value.trim(),
                                                                     content: $("pushContent").value }) });
    $("pushContent").value = "";
    $("admin-error").textContent = "";
  } catch (err) {
    $("admin-error").textContent = `push refused: ${err.message}`;
  }
});
