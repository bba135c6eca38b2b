"use strict";
// The dashboard page: one WebSocket (/api/watch) brings snapshots; settings and tools go
// through the REST API with the session's CSRF token.

let session = null;
const history = []; // [time, bytes_in, bytes_out]
const HISTORY = 120;

const $ = (id) => document.getElementById(id);
const el = (tag, text) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  return e;
};

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function bits(n) {
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function duration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
const endpoint = (e) => (e ? `${e[0]}:${e[1]}` : "—");

function fillList(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    dl.append(el("dt", k), el("dd", v));
  }
}

function fillTable(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) tr.append(el("td", c));
    body.append(tr);
  }
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "none");
    td.colSpan = table.tHead.rows[0].cells.length;
    td.className = "muted";
    tr.append(td);
    body.append(tr);
  }
}

function render(snap) {
  const s = snap.status;
  $("iface").textContent = s.interface;
  fillList($("state-list"), [
    ["MAC", s.mac],
    ["Link", `${s.link}, MTU ${s.mtu}`],
    ["IP", s.ip ? `${s.ip}/${s.prefix_len}` : "none yet"],
    ["mDNS name", s.mdns || "—"],
    ["IPv6", (s.ipv6 || []).map((a) => `${a.address}/${a.prefix_len}${a.state === "preferred" ? "" : ` (${a.state})`}`).join(", ") || "—"],
    ["IPv6 routers", (s.ipv6_routers || []).join(", ") || "—"],
    ["Netmask", s.netmask || "—"],
    ["Gateway", s.gateway || "—"],
    ["DNS", s.dns.join(", ") || "—"],
    ["Addressing", s.dhcp],
    ["Lease left", duration(s.lease_left)],
    ["Uptime", duration(s.uptime)],
    ["Dashboard clients", String(s.dashboard.clients)],
  ]);
  const c = s.counters;
  fillList($("counter-list"), [
    ["Frames in / out", `${c.frames_in} / ${c.frames_out}`],
    ["Bytes in / out", `${bytes(c.bytes_in)} / ${bytes(c.bytes_out)}`],
    ["Drops", String(Object.values(s.drops).reduce((a, b) => a + b, 0))],
    ["Checksum errors", String(c.checksum_errors)],
    ["Retransmissions", String(c.retransmits)],
    ["SYN cookies sent / accepted", `${c.syn_cookies_sent} / ${c.syn_cookies_accepted}`],
    ["TCP memory", bytes(s.tcp_memory)],
  ]);
  fillList($("drop-list"), Object.entries(s.drops).filter(([, v]) => v > 0).map(([k, v]) => [k, String(v)]));
  fillTable($("tcp"), snap.connections.map((t) => [
    t.state, endpoint(t.local), endpoint(t.remote), bytes(t.bytes_in), bytes(t.bytes_out),
    t.rtt === null ? "—" : `${(t.rtt * 1000).toFixed(2)} ms`, t.state === "LISTEN" ? "—" : bytes(t.cwnd),
    String(t.retransmits),
    t.state === "LISTEN" ? `${t.accept_queue}/${t.backlog} waiting` : `${bytes(t.send_queued)} ↑ ${bytes(t.recv_queued)} ↓`,
  ]));
  fillTable($("arp"), snap.arp.map((a) => [a.ip, a.mac || "(asking)", duration(a.expires_in)]));
  fillTable($("udp"), snap.udp.map((u) => [endpoint(u.local), endpoint(u.remote), String(u.queued), String(u.dropped)]));
  renderSettings(snap.config);
  const cap = snap.capture;
  $("capture-state").textContent = cap.limit
    ? `${cap.running ? "running" : "stopped"}, ${cap.frames} frames, ${bytes(cap.bytes)} of ${bytes(cap.limit)}` +
      (cap.dropped ? `, ${cap.dropped} oldest dropped` : "")
    : "none";
  renderMqtt(snap.mqtt);
  history.push([snap.time, c.bytes_in, c.bytes_out]);
  while (history.length > HISTORY) history.shift();
  drawChart();
}

let mqttTopicSet = false;
function renderMqtt(m) {
  $("mqtt").hidden = !m;
  if (!m) return;
  $("mqtt-state").textContent = `${m.broker}, ${m.connected ? "connected" : "not connected"}` +
    (m.error && !m.connected ? ` (${m.error})` : "");
  if (!mqttTopicSet) { $("mqtt-form").topic.value = m.topic; mqttTopicSet = true; }
  fillTable($("mqtt-log"), m.messages.slice().reverse().map((x) => [
    new Date(x.time * 1000).toLocaleTimeString(), x.direction === "in" ? "⇐" : "⇒", x.topic, x.payload,
  ]));
}

let settingsTouched = false;
function renderSettings(cfg) {
  if (settingsTouched) return; // do not overwrite what the admin is typing
  const f = $("settings-form");
  f.log_level.value = cfg.log_level;
  f.refresh.value = cfg.refresh;
  f.congestion.value = cfg.congestion;
  for (const k of ["loss", "duplicate", "corrupt", "reorder"]) f[k].value = cfg.faults[k] || 0;
}

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i][0] - history[i - 1][0] || 1;
    rates.push([((history[i][1] - history[i - 1][1]) * 8) / dt, ((history[i][2] - history[i - 1][2]) * 8) / dt]);
  }
  if (!rates.length) return;
  const top = Math.max(1000, ...rates.map((r) => Math.max(r[0], r[1])));
  const last = rates[rates.length - 1];
  $("rate").textContent = `in ${bits(last[0])}, out ${bits(last[1])} (scale ${bits(top)})`;
  for (const [index, color] of [[0, "#2a9d8f"], [1, "#e76f51"]]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    rates.forEach((r, i) => {
      const x = (i / (HISTORY - 2)) * w;
      const y = h - (r[index] / top) * (h - 8) - 4;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": session ? session.csrf : "" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) location.href = "/login";
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/watch`);
  ws.onopen = () => { $("live").textContent = "live"; $("live").className = "badge ok"; };
  ws.onmessage = (m) => render(JSON.parse(m.data));
  ws.onclose = () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "badge";
    setTimeout(async () => {
      try { await api("GET", "/api/session"); } catch (e) { /* redirected on 401 */ }
      connect();
    }, 2000);
  };
}

async function main() {
  session = await api("GET", "/api/session");
  $("who").textContent = `${session.user} (${session.admin ? "admin" : "read only"})`;
  document.body.classList.add(session.admin ? "is-admin" : "is-user");
  $("logout").onclick = async () => { await api("POST", "/api/logout", {}); location.href = "/login"; };
  const f = $("settings-form");
  f.addEventListener("input", () => { settingsTouched = true; });
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/api/config", {
        log_level: f.log_level.value, refresh: Number(f.refresh.value), congestion: f.congestion.value,
        faults: {
          loss: Number(f.loss.value), duplicate: Number(f.duplicate.value),
          corrupt: Number(f.corrupt.value), reorder: Number(f.reorder.value),
        },
      });
      $("settings-msg").textContent = "applied";
      settingsTouched = false;
    } catch (err) { $("settings-msg").textContent = err.message; }
  });
  const out = $("tool-out");
  const tool = (id, path, read) => $(id).addEventListener("submit", async (e) => {
    e.preventDefault();
    out.textContent = "…";
    try { out.textContent = JSON.stringify(await api("POST", path, read(e.target)), null, 2); }
    catch (err) { out.textContent = err.message; }
  });
  tool("ping-form", "/api/tools/ping", (t) => ({ host: t.host.value, count: 4 }));
  tool("dns-form", "/api/tools/dns", (t) => ({ name: t.name.value }));
  tool("connect-form", "/api/tools/connect", (t) => ({ host: t.host.value, port: Number(t.port.value) }));
  $("mqtt-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      await api("POST", "/api/mqtt/publish", { topic: f.topic.value, payload: f.payload.value });
      $("mqtt-msg").textContent = "sent";
      f.payload.value = "";
    } catch (err) { $("mqtt-msg").textContent = err.message; }
  });
  $("capture-start").onclick = () => api("POST", "/api/capture/start", {});
  $("capture-stop").onclick = () => api("POST", "/api/capture/stop", {});
  connect();
}

window.mipfastApi = api;
main();
