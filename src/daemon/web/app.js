// The status page's script: polls /api/status every second and /api/history every five
// (and at once when a state changes), and draws everything itself (no library, no CDN).
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const colours = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#b35900", "#0a7ea4", "#6e7781", "#cf222e"];
let range = "hour";
let lastStates = "";
let historyDue = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function ago(secs) {
  secs = Math.max(0, Math.floor(secs));
  if (secs < 60) return secs + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m" + String(secs % 60).padStart(2, "0") + "s";
  if (secs < 86400) return Math.floor(secs / 3600) + "h" + String(Math.floor(secs % 3600 / 60)).padStart(2, "0") + "m";
  return Math.floor(secs / 86400) + "d" + String(Math.floor(secs % 86400 / 3600)).padStart(2, "0") + "h";
}
function num(v, digits, unit) { return v === null || v === undefined ? "–" : v.toFixed(digits) + (unit || ""); }
async function get(path) {
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Error("this page needs its token: open it as /?token=…");
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function showError(e) {
  const box = document.getElementById("error");
  box.textContent = e ? String(e.message || e) : "";
  box.style.display = e ? "block" : "none";
}

function card(u, fam, now) {
  const name = fam ? u.name + " ipv6" : u.name;
  const s = fam || u;
  const c = el("div", { class: "card " + s.state, "data-uplink": name, "data-state": s.state });
  const h = el("h2");
  h.append(el("span", {}, name), el("span", { class: "state" }, s.state + (u.standby ? " · standby" : "")));
  c.append(h);
  const dl = el("dl");
  const row = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
  row("since", s.since_unix ? ago(now - s.since_unix) + " ago" : "–");
  row("weight", (fam ? "" : u.weight + " → ") + num(s.effective_weight, 0) + ", share " + num(s.share_percent, 1, " %"));
  row("RTT", num(s.rtt_ms, 2, " ms") + " ± " + num(s.jitter_ms, 2, " ms"));
  row("loss", num(s.loss_percent, 1, " %"));
  row("via", (fam ? "" : u.interface + " ") + (s.address || "?") + (s.gateway ? " → " + s.gateway : ""));
  if (s.connections !== null && s.connections !== undefined) row("connections", String(s.connections));
  if (s.last_transition) row("last change", s.last_transition.from + " → " + s.last_transition.to + ": " + s.last_transition.reason);
  c.append(dl);
  return c;
}

function renderStatus(st) {
  const now = Date.now() / 1000;
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  const parts = [];
  for (const u of st.uplinks) {
    cards.append(card(u, null, now));
    parts.push(u.name + " " + u.state);
    if (u.ipv6) cards.append(card(u, u.ipv6, now));
  }
  document.getElementById("summary").textContent = st.all_down ? "EVERY UPLINK IS DOWN" : parts.join(", ");
  document.getElementById("ha").textContent = st.ha ? "HA " + st.ha.node + ": " + st.ha.role : "";
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const warnings = st.warnings || [];
  document.getElementById("warnings-section").hidden = warnings.length === 0;
  document.getElementById("warnings").replaceChildren(...warnings.map(w => el("li", {}, w)));
  const pol = document.getElementById("policies");
  pol.replaceChildren(el("tr"));
  pol.firstChild.append(el("th", {}, "policy"), el("th", {}, "now"), el("th", {}, "new connections"));
  for (const p of st.policies) { const r = el("tr"); r.append(el("td", {}, p.name), el("td", {}, p.target), el("td", {}, p.hits ?? "–")); pol.append(r); }
  const sets = document.getElementById("sets");
  sets.replaceChildren(el("tr"));
  sets.firstChild.append(el("th", {}, "set"), el("th", {}, "members"), el("th", {}, "learned"));
  for (const s of st.sets || []) { const r = el("tr"); r.append(el("td", {}, s.name), el("td", {}, s.members ?? "–"), el("td", {}, s.learned ?? "–")); sets.append(r); }
  const fw = document.getElementById("forwards");
  document.getElementById("forwards-section").hidden = !(st.forwards || []).length;
  fw.replaceChildren();
  for (const f of st.forwards || []) {
    for (const b of f.backends) {
      const r = el("tr");
      r.append(el("td", {}, f.name), el("td", {}, b.target), el("td", { class: b.up ? "up" : "down" }, b.up ? "up" : "down"), el("td", {}, b.in_rotation ? "in rotation" : "out"));
      fw.append(r);
    }
  }
  const states = st.uplinks.map(u => u.name + u.state + (u.ipv6 ? u.ipv6.state : "")).join();
  if (states !== lastStates) { lastStates = states; historyDue = 0; }
}

function chart(svg, series, field, scaleMax, since, until) {
  const W = 600, H = 170, pad = 24;
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const x = t => pad + (t - since) / (until - since) * (W - pad - 4);
  let max = scaleMax || 0;
  for (const s of Object.values(series)) for (const v of s[field]) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const y = v => H - 14 - v / max * (H - 24);
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
  add("line", { x1: pad, y1: H - 14, x2: W, y2: H - 14, stroke: "#d0d7de" });
  add("text", { x: 2, y: 12 }, max.toFixed(max < 10 ? 1 : 0));
  add("text", { x: 2, y: H - 16 }, "0");
  Object.entries(series).forEach(([name, s], i) => {
    // Down periods as red bands.
    for (let k = 0; k < s.t.length; k++) {
      if (s.state[k] === 0) {
        const x0 = x(k > 0 ? s.t[k - 1] : s.t[k] - 1), x1 = x(s.t[k]);
        add("rect", { x: x0, y: 2, width: Math.max(1, x1 - x0), height: H - 16, fill: "#cf222e", opacity: 0.15, class: "down-band" });
      }
    }
    const pts = [];
    s.t.forEach((t, k) => { const v = s[field][k]; if (v !== null) pts.push(x(t).toFixed(1) + "," + y(v).toFixed(1)); });
    add("polyline", { points: pts.join(" "), fill: "none", stroke: colours[i % colours.length], "stroke-width": 1.5, "data-series": name, "data-points": pts.length });
  });
}

function renderHistory(h) {
  // The range, or as much of it as there is history for (a daemon that just started).
  const until = Date.now() / 1000;
  const first = Math.min(...Object.values(h.series).filter(s => s.t.length).map(s => s.t[0]), until);
  const since = Math.max(until - h.range_seconds, Math.min(first, until - 60));
  chart(document.getElementById("chart-rtt"), h.series, "rtt_ms", 0, since, until);
  chart(document.getElementById("chart-loss"), h.series, "loss_percent", 100, since, until);
  chart(document.getElementById("chart-bytes"), h.series, "bytes_per_second", 0, since, until);
  chart(document.getElementById("chart-conns"), h.series, "connections", 0, since, until);
  const legend = document.getElementById("legend");
  legend.replaceChildren(...Object.keys(h.series).map((name, i) => {
    const s = el("span"); const sw = el("i"); sw.style.background = colours[i % colours.length]; s.append(sw, name); return s;
  }));
  const tl = document.getElementById("timeline");
  tl.replaceChildren(...h.events.map(e => {
    const li = el("li", { "data-kind": e.kind });
    li.append(el("time", {}, new Date(e.at_unix * 1000).toLocaleString()), el("span", { class: e.level }, e.text));
    return li;
  }));
}

async function tick() {
  try {
    renderStatus(await get("/api/status"));
    if (Date.now() >= historyDue) {
      historyDue = Date.now() + 5000;
      renderHistory(await get("/api/history?range=" + range));
    }
    showError(null);
  } catch (e) {
    showError(e);
  }
  setTimeout(tick, 1000);
}

for (const b of document.querySelectorAll(".ranges button")) {
  b.addEventListener("click", () => {
    range = b.dataset.range;
    for (const o of document.querySelectorAll(".ranges button")) o.classList.toggle("on", o === b);
    historyDue = 0;
  });
}
if (token) document.getElementById("raw").href = "/api/status?token=" + encodeURIComponent(token);
tick();
