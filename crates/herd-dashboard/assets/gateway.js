// A gateway's own page, on its admin listener: reads GET /status every 2 s (with the admin
// token from #token=… when one is needed) and redraws in place; rates come from the
// difference between two readings.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (v, d = 0) => (v ?? 0).toLocaleString(undefined,
  { minimumFractionDigits: d, maximumFractionDigits: d });
let last = null, search = "";

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("herd-admin-token", decodeURIComponent(m[1]));
  return sessionStorage.getItem("herd-admin-token");
}

async function poll() {
  try {
    const t = token();
    const r = await fetch("/status", { headers: t ? { Authorization: "Bearer " + t } : {},
      cache: "no-store" });
    if (!r.ok) throw new Error("GET /status: " + r.status + " " + (await r.text()));
    const s = await r.json();
    render(s, last);
    last = { s, at: Date.now() };
    $("live").textContent = "live";
    $("live").className = "badge live";
    $("errors").textContent = "";
  } catch (e) {
    $("live").textContent = "reconnecting";
    $("live").className = "badge down";
    $("errors").textContent = String(e.message || e);
  }
  setTimeout(poll, 2000);
}

function rate(now, prev, get) {
  if (!prev) return null;
  const secs = (Date.now() - prev.at) / 1000;
  const before = get(prev.s);
  return secs > 0 && before != null ? Math.max(0, (get(now) - before) / secs) : null;
}

function render(s, prev) {
  $("summary").textContent = `pid ${s.pid} · config revision ${s.config_revision} (${
    s.config_source}) · ${s.workers} worker(s) · ${num(s.client_connections)} client connection(s)`;
  $("listeners").innerHTML = "<tr><th>name</th><th>protocol</th><th>address</th>" +
    '<th class="num">open</th><th class="num">accepted</th><th class="num">rejected</th></tr>' +
    s.listeners.map((l) => `<tr data-listener="${esc(l.name)}"><td>${esc(l.name)}</td>` +
      `<td>${esc(l.protocol)}</td><td>${esc(l.addr)}</td><td class="num">${num(l.active_connections)}</td>` +
      `<td class="num">${num(l.connections)}</td><td class="num">${num(l.rejected_connections)}</td></tr>`).join("");
  const q = search.toLowerCase();
  const names = Object.keys(s.backends).sort();
  $("backends").innerHTML = names.map((name) => {
    const b = s.backends[name];
    const servers = b.servers.filter((x) => !q || name.toLowerCase().includes(q) ||
      x.addr.toLowerCase().includes(q));
    if (!servers.length && q) return "";
    const up = b.servers.filter((x) => x.usable).length;
    const rows = servers.map((x) => {
      const rps = rate(s, prev, (st) => {
        const pb = st.backends[name];
        const ps = pb && pb.servers.find((y) => y.addr === x.addr);
        return ps ? ps.requests : null;
      });
      const state = x.usable ? "up" : x.state;
      return `<tr data-server="${esc(x.addr)}"><td>${esc(x.addr)}</td>` +
        `<td class="server-state ${x.usable ? "state-Run" : "state-Failed"}">${esc(state)}</td>` +
        `<td>${esc(x.admin)}</td><td class="num">${x.weight}</td><td class="num">${num(x.active)}</td>` +
        `<td class="num">${num(x.requests)}</td><td class="num">${rps == null ? "-" : num(rps, 1)}</td>` +
        `<td class="num">${num(x.errors)}</td><td class="num">${num(x.responses["5xx"])}</td>` +
        `<td class="num">${x.latency_p99_s == null ? "-" : "≤ " + num(x.latency_p99_s * 1000, 1)}</td>` +
        `<td class="num">${num(x.health_checks.passed)}/${num(x.health_checks.failed)}</td></tr>`;
    }).join("");
    return `<h3 data-backend="${esc(name)}">${esc(name)} — ${esc(b.policy)}, ` +
      `<span class="up">${up}/${b.servers.length}</span> usable` +
      `${b.health_check ? ", " + esc(b.health_check.kind) + " health check" : ""}</h3>` +
      "<table><tr><th>server</th><th>state</th><th>admin</th><th class=\"num\">weight</th>" +
      '<th class="num">in flight</th><th class="num">requests</th><th class="num">req/s</th>' +
      '<th class="num">errors</th><th class="num">5xx</th><th class="num">p99 ms</th>' +
      '<th class="num">checks ok/failed</th></tr>' +
      (rows || '<tr><td class="none" colspan="11">no server</td></tr>') + "</table>";
  }).join("") || '<div class="none">no backend</div>';
}

$("search").addEventListener("input", (e) => { search = e.target.value; if (last) render(last.s, null); });
poll();
