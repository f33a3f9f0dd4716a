// herd's page: one EventSource on /ui/events; every `snapshot` event redraws the page from
// the API answers it carries. No framework, no build step.
"use strict";

const PAGE = 50;
const state = { snap: null, search: "", page: 0, open: new Set(), closed: new Set() };

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (v, d = 0) => (v ?? 0).toLocaleString(undefined,
  { minimumFractionDigits: d, maximumFractionDigits: d });
const pct = (r) => num((r ?? 0) * 100, 1) + "%";
const ago = (ms) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? s + "s" : s < 7200 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
};
const table = (el, head, rows, empty) => {
  el.innerHTML = "<tr>" + head.map((h) => {
    const n = h.startsWith("#");
    return `<th${n ? ' class="num"' : ""}>${esc(n ? h.slice(1) : h)}</th>`;
  }).join("") + "</tr>" + (rows.length ? rows.join("")
    : `<tr><td class="none" colspan="${head.length}">${esc(empty)}</td></tr>`);
};

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("herd-token", decodeURIComponent(m[1]));
  return sessionStorage.getItem("herd-token");
}

function connect() {
  const t = token();
  const es = new EventSource("/ui/events" + (t ? "?token=" + encodeURIComponent(t) : ""));
  es.addEventListener("snapshot", (e) => {
    $("live").textContent = "live";
    $("live").className = "badge live";
    state.snap = JSON.parse(e.data);
    render();
  });
  es.onerror = () => {
    $("live").textContent = "reconnecting";
    $("live").className = "badge down";
  };
}

function render() {
  const s = state.snap;
  const c = s.cluster, st = s.server;
  const leader = c && c.members.find((m) => m.id === c.leader);
  const deps = s.deployments ? s.deployments.deployments : [];
  $("summary").textContent = `${c ? c.members.length : "?"} server(s), leader ${
    leader ? leader.addr : "none"} · ${s.nodes ? s.nodes.nodes.length : 0} agent(s) · ${
    deps.length} service(s) · updated ${new Date(s.at_ms).toLocaleTimeString()}` +
    (st ? ` · this server: ${st.addr} (${st.role})` : "");
  renderAlerts(s);
  renderNodes(s);
  renderServices(deps);
  renderRollouts(deps);
  renderSeries(s.series);
  renderTop($("top-calls"), s.top_calls);
  renderTop($("top-p99"), s.top_p99);
  renderGraph(s.graph);
  $("errors").textContent = (s.errors || []).join(" · ");
}

function renderAlerts(s) {
  const a = s.alerts ? s.alerts.alerts : [];
  $("alerts").innerHTML = a.length ? a.map((x) =>
    `<div class="alert" data-rule="${esc(x.rule)}" data-subject="${esc(x.subject)}">` +
    `<b>${esc(x.rule)}</b> (${esc(x.kind)}): ${esc(x.summary)} — firing for ${ago(x.fired_ms)}` +
    `</div>`).join("")
    : `<div class="none">no alert firing (${s.alerts ? s.alerts.rules : 0} rule(s))</div>`;
}

function renderNodes(s) {
  const c = s.cluster;
  table($("servers"), ["id", "address", "role"], c ? c.members.map((m) =>
    `<tr data-server-id="${m.id}"><td>${m.id}</td><td>${esc(m.addr)}</td>` +
    `<td class="role">${esc(m.role)}</td></tr>`) : [], "unknown");
  const nodes = s.nodes ? s.nodes.nodes : [];
  table($("agents"), ["name", "address", "labels", "#cores", "#load", "up"], nodes.map((n) =>
    `<tr data-node="${esc(n.name)}"><td>${esc(n.name)}</td><td>${esc(n.address)}</td>` +
    `<td>${esc(Object.entries(n.labels).map(([k, v]) => k + "=" + v).join(", "))}</td>` +
    `<td class="num">${n.cores}</td><td class="num">${num(n.load, 2)}</td>` +
    `<td>${ago(n.started_ms)}</td></tr>`), "no agent has joined");
}

const healthy = (i) => i.state === "Run" && i.health !== "failing";

function renderServices(deps) {
  const q = state.search.toLowerCase();
  const shown = deps.filter((d) => d.name.toLowerCase().includes(q));
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  state.page = Math.min(state.page, pages - 1);
  const slice = shown.slice(state.page * PAGE, state.page * PAGE + PAGE);
  const expanded = (d) => state.open.has(d.name) ||
    (!state.closed.has(d.name) && deps.length <= 20);
  const rows = [];
  for (const d of slice) {
    const ok = d.instances.filter(healthy).length;
    rows.push(`<tr class="service" data-service="${esc(d.name)}">` +
      `<td>${expanded(d) ? "▾" : "▸"} ${esc(d.name)}</td><td>${esc(d.version)}</td>` +
      `<td class="state state-${esc(d.state)}">${esc(d.state)}</td>` +
      `<td class="num instances">${ok}/${d.instances.length}</td>` +
      `<td class="num">${d.count}</td><td class="num">${d.revision}</td></tr>`);
    if (expanded(d)) {
      const inner = d.instances.map((i) =>
        `<tr data-instance="${esc(i.id)}"><td>${esc(i.id)}</td><td>${esc(i.node)}</td>` +
        `<td class="num">${i.pid ?? "-"}</td><td class="num">${i.port ?? "-"}</td>` +
        `<td>${esc(i.version)}</td><td class="state state-${esc(i.state)}">${esc(i.state)}</td>` +
        `<td class="health health-${esc(i.health)}">${esc(i.health)}</td>` +
        `<td class="num">${i.restarts}</td><td>${ago(i.since_ms)}</td>` +
        `<td>${esc(i.message || "")}</td></tr>`).join("");
      rows.push(`<tr class="instances"><td colspan="6"><table><tr><th>instance</th>` +
        `<th>node</th><th class="num">pid</th><th class="num">port</th><th>version</th>` +
        `<th>state</th><th>health</th><th class="num">restarts</th><th>since</th><th></th>` +
        `</tr>${inner || '<tr><td class="none" colspan="10">no instance yet</td></tr>'}` +
        `</table></td></tr>`);
    }
  }
  table($("services"), ["service", "version", "state", "#healthy", "#wanted", "#revision"],
    rows, q ? "no service matches" : "no deployment; herd apply -f service.toml");
  $("pager").innerHTML = `${shown.length} of ${deps.length} · page ${state.page + 1}/${pages} ` +
    `<button id="prev"${state.page ? "" : " disabled"}>‹</button>` +
    `<button id="next"${state.page + 1 < pages ? "" : " disabled"}>›</button>`;
  $("prev").onclick = () => { state.page--; render(); };
  $("next").onclick = () => { state.page++; render(); };
  for (const tr of document.querySelectorAll("tr.service")) {
    tr.onclick = () => {
      const n = tr.dataset.service;
      const was = tr.textContent.startsWith("▾");
      if (was) { state.open.delete(n); state.closed.add(n); }
      else { state.closed.delete(n); state.open.add(n); }
      render();
    };
  }
}

function renderRollouts(deps) {
  const moving = deps.filter((d) => d.state !== "Run");
  $("rollouts").innerHTML = moving.length ? "<table>" + moving.map((d) => {
    const by = {};
    for (const i of d.instances) {
      const k = i.version + " " + i.state;
      by[k] = (by[k] || 0) + 1;
    }
    return `<tr data-rollout="${esc(d.name)}"><td>${esc(d.name)}</td>` +
      `<td class="state state-${esc(d.state)}">${esc(d.state)}</td><td>to ${esc(d.version)}</td>` +
      `<td>${esc(Object.entries(by).map(([k, n]) => n + "× " + k).join(", "))}</td></tr>`;
  }).join("") + "</table>" : '<div class="none">none: every service runs its version</div>';
}

function spark(values, color, fmt) {
  const max = Math.max(1e-9, ...values);
  const w = 300, h = 36;
  const pts = values.map((v, i) =>
    `${(i / Math.max(1, values.length - 1) * w).toFixed(1)},${(h - 2 - v / max * (h - 4)).toFixed(1)}`);
  return `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none"><polyline fill="none" ` +
    `stroke="${color}" stroke-width="1.5" points="${pts.join(" ")}"/>` +
    `<title>max ${fmt(max)}</title></svg>`;
}

function renderSeries(series) {
  if (!series || !series.services.length) {
    $("series").innerHTML = '<div class="none">no traced calls in the last hour</div>';
    return;
  }
  $("series").innerHTML = '<div class="row"><b class="label">service</b><b>calls/min</b>' +
    "<b>error %</b><b>p99 ms</b></div>" + series.services.map((s) => {
      const err = s.calls.map((c, i) => (c ? s.errors[i] / c : 0));
      const last = s.calls.length - 1;
      return `<div class="row" data-series="${esc(s.service)}"><span class="label">${esc(s.service)}` +
        ` <small>${num(s.calls[last])}/min</small></span>` +
        spark(s.calls, "#0969da", (v) => num(v)) + spark(err, "#cf222e", pct) +
        spark(s.p99_ms, "#9a6700", (v) => num(v, 1) + " ms") + "</div>";
    }).join("");
}

function renderTop(el, top) {
  const rows = top ? top.endpoints.map((r) =>
    `<tr><td>${esc(r.service)}</td><td>${esc(r.name)}</td><td class="num">${num(r.calls)}</td>` +
    `<td class="num">${pct(r.error_ratio)}</td><td class="num">${num(r.p99_ms, 1)}</td></tr>`) : [];
  table(el, ["service", "endpoint", "#calls", "#errors", "#p99 ms"], rows, "no traced calls");
}

function renderGraph(g) {
  const warn = $("cycles");
  if (!g || !g.edges.length) {
    warn.innerHTML = "";
    $("graph").innerHTML = '<div class="none">no calls between services seen</div>';
    return;
  }
  warn.innerHTML = g.cycles.map((c) =>
    `<div class="cycle-warning">dependency cycle: ${esc(c.concat(c[0]).join(" → "))}` +
    " — these services cannot start, fail or roll back alone</div>").join("");
  const names = g.nodes.map((n) => n.name);
  const n = names.length, W = 900, H = Math.max(360, Math.min(900, 60 * n));
  const R = Math.min(W, H) / 2 - 70, cx = W / 2, cy = H / 2;
  const pos = {};
  names.forEach((name, i) => {
    const a = 2 * Math.PI * i / n - Math.PI / 2;
    pos[name] = [cx + R * Math.cos(a), cy + R * Math.sin(a)];
  });
  const r = 14;
  const edges = g.edges.map((e) => {
    const [x1, y1] = pos[e.from], [x2, y2] = pos[e.to];
    const cls = "edge" + (e.in_cycle ? " cycle" : "");
    const tip = `${e.from} → ${e.to}: ${num(e.calls)} calls, ${pct(e.error_ratio)} errors, p99 ${num(e.p99_ms, 1)} ms`;
    if (e.from === e.to) {
      return `<circle class="${cls}" data-from="${esc(e.from)}" data-to="${esc(e.to)}" ` +
        `cx="${x1}" cy="${y1 - r - 10}" r="10"><title>${esc(tip)}</title></circle>`;
    }
    const d = Math.hypot(x2 - x1, y2 - y1) || 1;
    const [ux, uy] = [(x2 - x1) / d, (y2 - y1) / d];
    // Bend a little so a→b and b→a do not overlap.
    const mx = (x1 + x2) / 2 - uy * 18, my = (y1 + y2) / 2 + ux * 18;
    return `<path class="${cls}" data-from="${esc(e.from)}" data-to="${esc(e.to)}" ` +
      `marker-end="url(#${e.in_cycle ? "arrow-red" : "arrow"})" d="M${x1 + ux * r},${y1 + uy * r} ` +
      `Q${mx},${my} ${x2 - ux * (r + 4)},${y2 - uy * (r + 4)}"><title>${esc(tip)}</title></path>`;
  }).join("");
  const nodes = g.nodes.map((nd) => {
    const [x, y] = pos[nd.name];
    return `<g class="node${nd.in_cycle ? " cycle" : ""}" data-name="${esc(nd.name)}">` +
      `<circle cx="${x}" cy="${y}" r="${r}"/><text x="${x}" y="${y + r + 14}" ` +
      `text-anchor="middle">${esc(nd.name)}</text><title>${esc(nd.name)}: ${num(nd.calls_in)} ` +
      `calls in, ${num(nd.calls_out)} out</title></g>`;
  }).join("");
  $("graph").innerHTML = `<svg viewBox="0 0 ${W} ${H}"><defs>` +
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ' +
    'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#8c959f"/></marker>' +
    '<marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ' +
    'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#cf222e"/></marker></defs>' +
    edges + nodes + "</svg>";
}

$("search").addEventListener("input", (e) => {
  state.search = e.target.value;
  state.page = 0;
  if (state.snap) render();
});
connect();
