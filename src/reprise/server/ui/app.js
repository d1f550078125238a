// Reprise dashboard: plain JS, hand-drawn SVG charts, talks only to the admin API.
// The master key lives in sessionStorage (this tab only) and is sent as a Bearer header.
"use strict";

const KEY_STORE = "reprise.masterKey";
const POLL_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const COLOR = { req: "#c9d3e6", hit: "#22a06b", line: "#3b6cf6", usd: "#b7791f" };
let timer = null;

// ---- API ---------------------------------------------------------------------------
async function api(path, body) {
  const init = { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY_STORE) } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401 || resp.status === 403) {
    signOut((data.error && data.error.message) || "Not authorised");
    throw new Error("unauthorised");
  }
  if (!resp.ok) throw new Error((data.error && data.error.message) || resp.statusText);
  return data;
}

// ---- formatting --------------------------------------------------------------------
function fmtInt(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n));
}
function fmtUsd(x) {
  if (!x) return "$0";
  return x < 0.01 ? "$" + x.toFixed(4) : x < 100 ? "$" + x.toFixed(2) : "$" + fmtInt(x);
}
function fmtDuration(s) {
  if (s === null || s === undefined) return "never";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
function fmtMs(ms) { return ms === null || ms === undefined ? "–" : ms < 10 ? ms.toFixed(2) + " ms" : Math.round(ms) + " ms"; }
function clock(t, seconds) { const d = new Date(t * 1000); return d.toTimeString().slice(0, seconds ? 8 : 5); }

// ---- tiny SVG kit ------------------------------------------------------------------
function node(tag, attrs, parent, text) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}
function canvas(el, w, h) {
  el.replaceChildren();
  return node("svg", { viewBox: `0 0 ${w} ${h}`, role: "img" }, el);
}
function emptyNote(svg, w, h, msg) { node("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, svg, msg); }

function hitRateChart(el, series) {
  const W = 1000, H = 220, L = 40, R = 44, T = 10, B = 24;
  const svg = canvas(el, W, H);
  const maxReq = Math.max(1, ...series.map((b) => b.requests));
  const bw = (W - L - R) / series.length;
  const y = (v) => T + (H - T - B) * (1 - v / maxReq);
  for (const f of [0, 0.5, 1]) {
    node("line", { x1: L, x2: W - R, y1: y(maxReq * f), y2: y(maxReq * f), class: "axis" }, svg);
    node("text", { x: L - 6, y: y(maxReq * f) + 4, "text-anchor": "end" }, svg, fmtInt(maxReq * f));
    node("text", { x: W - R + 6, y: T + (H - T - B) * (1 - f) + 4 }, svg, Math.round(f * 100) + "%");
  }
  const points = [];
  series.forEach((b, i) => {
    const x = L + i * bw;
    if (b.requests) node("rect", { x: x + bw * 0.1, width: bw * 0.8, y: y(b.requests), height: y(0) - y(b.requests), fill: COLOR.req }, svg);
    const hits = b.hits;
    if (hits) node("rect", { x: x + bw * 0.1, width: bw * 0.8, y: y(hits), height: y(0) - y(hits), fill: COLOR.hit }, svg);
    const lookups = b.hits + b.misses;
    if (lookups) points.push([x + bw / 2, T + (H - T - B) * (1 - b.hits / lookups)]);
    if (i % Math.ceil(series.length / 6) === 0) node("text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle" }, svg, clock(b.start, series.length <= 180));
  });
  if (points.length) {
    node("polyline", { points: points.map((p) => p.join(",")).join(" "), fill: "none", stroke: COLOR.line, "stroke-width": 2.5, "stroke-linejoin": "round" }, svg);
    for (const p of points) node("circle", { cx: p[0], cy: p[1], r: 2.5, fill: COLOR.line }, svg);
  } else {
    emptyNote(svg, W, H, "No cacheable traffic yet in this window");
  }
}

function savingsChart(el, series) {
  const W = 480, H = 200, L = 56, R = 10, T = 10, B = 24;
  const svg = canvas(el, W, H);
  let run = 0;
  const cum = series.map((b) => (run += b.saved_usd));
  const max = Math.max(...cum, 1e-9);
  if (!run) { emptyNote(svg, W, H, "Nothing saved yet in this window"); return; }
  const x = (i) => L + (W - L - R) * (i / Math.max(1, series.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (const f of [0, 0.5, 1]) {
    node("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: "axis" }, svg);
    node("text", { x: L - 6, y: y(max * f) + 4, "text-anchor": "end" }, svg, fmtUsd(max * f));
  }
  const line = cum.map((v, i) => `${x(i)},${y(v)}`).join(" ");
  node("polygon", { points: `${x(0)},${y(0)} ${line} ${x(cum.length - 1)},${y(0)}`, fill: COLOR.usd, opacity: 0.18 }, svg);
  node("polyline", { points: line, fill: "none", stroke: COLOR.usd, "stroke-width": 2.5 }, svg);
  node("text", { x: L, y: H - 6 }, svg, clock(series[0].start));
  node("text", { x: W - R, y: H - 6, "text-anchor": "end" }, svg, clock(series[series.length - 1].start));
}

function hbars(el, rows, W, opts) {
  // rows: [{label, value, text, color}]
  const rowH = 26, L = opts.labelWidth, R = 70;
  const H = Math.max(rows.length * rowH + 8, 60);
  const svg = canvas(el, W, H);
  if (!rows.length) { emptyNote(svg, W, H, opts.empty); return; }
  const max = Math.max(...rows.map((r) => r.value), 1e-9);
  rows.forEach((r, i) => {
    const y = 4 + i * rowH;
    const label = r.label.length > opts.chars ? r.label.slice(0, opts.chars - 1) + "…" : r.label;
    node("text", { x: L - 8, y: y + 15, "text-anchor": "end" }, svg, label).appendChild(node("title", {}, null, r.label));
    const w = Math.max(2, (W - L - R) * (r.value / max));
    node("rect", { x: L, y: y + 3, width: w, height: rowH - 10, rx: 3, fill: r.color }, svg);
    node("text", { x: L + w + 6, y: y + 15 }, svg, r.text);
  });
}

function latencyChart(el, models) {
  const rows = [];
  for (const m of models) {
    if (m.upstream_latency_ms_avg === null && m.hit_latency_ms_avg === null) continue;
    if (m.upstream_latency_ms_avg !== null) rows.push({ label: m.model + " · provider", value: m.upstream_latency_ms_avg, text: fmtMs(m.upstream_latency_ms_avg), color: COLOR.req });
    if (m.hit_latency_ms_avg !== null) rows.push({ label: m.model + " · cache hit", value: m.hit_latency_ms_avg, text: fmtMs(m.hit_latency_ms_avg), color: COLOR.hit });
  }
  hbars(el, rows.slice(0, 10), 480, { labelWidth: 190, chars: 28, empty: "No requests yet" });
}

function topChart(el, top) {
  const rows = top.map((t) => ({ label: t.preview || t.key, value: t.hits, text: t.hits + (t.hits === 1 ? " hit" : " hits"), color: COLOR.line }));
  hbars(el, rows, 480, { labelWidth: 210, chars: 30, empty: "No hits yet" });
}

function similarityChart(el, sim) {
  const W = 480, H = 180, L = 30, B = 24, T = 10;
  const svg = canvas(el, W, H);
  if (!sim.enabled) { emptyNote(svg, W, H, "Semantic caching is off"); return; }
  const buckets = sim.buckets.filter((b) => b.le !== null);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const bw = (W - L - 10) / buckets.length;
  buckets.forEach((b, i) => {
    const h = (H - T - B) * (b.count / max);
    node("rect", { x: L + i * bw + 2, y: H - B - h, width: bw - 4, height: h, fill: COLOR.line }, svg);
    node("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" }, svg, "≤" + b.le);
  });
}

// ---- views -------------------------------------------------------------------------
function renderStats(s) {
  const t = s.totals;
  $("meta").innerHTML = "";
  const meta = document.createElement("span");
  // The numbers are the machine's: every worker of `reprise serve --workers N` (docs/operations.md).
  const w = s.workers;
  meta.innerHTML = `backend <b></b> · workers <b></b> · up <b></b>`;
  const b = meta.querySelectorAll("b");
  b[0].textContent = s.backend || "none";
  b[1].textContent = w.exited ? `${w.running} (+${w.exited} exited)` : String(w.running);
  b[2].textContent = fmtDuration(Math.max(0, Date.now() / 1000 - w.started_at));
  $("meta").appendChild(meta);
  $("kpi-hit-rate").textContent = t.hit_rate === null ? "–" : (t.hit_rate * 100).toFixed(1) + "%";
  $("kpi-hit-note").textContent = `${t.hits + t.semantic_hits} hits · ${t.misses} misses`;
  $("kpi-requests").textContent = fmtInt(t.requests);
  $("kpi-requests-note").textContent = `${t.bypasses} bypassed · ${t.upstream_errors} provider errors`;
  $("kpi-saved-tokens").textContent = fmtInt(t.saved_tokens);
  $("kpi-tokens-note").textContent = `${fmtInt(t.saved_prompt_tokens)} prompt · ${fmtInt(t.saved_completion_tokens)} completion`;
  $("kpi-saved-usd").textContent = fmtUsd(t.saved_usd);
  $("kpi-saved-time").textContent = fmtDuration(t.saved_seconds);
  $("kpi-latency-note").textContent = `hit ${fmtMs(t.hit_latency_ms_avg)} vs provider ${fmtMs(t.upstream_latency_ms_avg)}`;
  // A young server has no history: start the charts at its start (but show at least 5 minutes).
  const from = Math.min(w.started_at, s.series[s.series.length - 1].start - 290);
  const series = s.series.filter((b) => b.start + s.bucket_seconds > from);
  hitRateChart($("chart-hit-rate"), series);
  savingsChart($("chart-savings"), series);
  latencyChart($("chart-latency"), s.models);
  topChart($("chart-top"), s.top);
  similarityChart($("chart-similarity"), s.similarity);
}

function armed(button, label, action) {
  // First click arms the button, second runs the action: no native dialogs.
  button.addEventListener("click", async () => {
    if (!button.classList.contains("confirm")) {
      button.dataset.label = button.textContent;
      button.textContent = label;
      button.classList.add("confirm");
      setTimeout(() => { button.classList.remove("confirm"); button.textContent = button.dataset.label; }, 4000);
      return;
    }
    button.disabled = true;
    try { await action(); } catch (e) { $("entries-note").textContent = e.message; }
    button.disabled = false;
  });
}

function renderEntries(listing) {
  const body = document.querySelector("#entries-table tbody");
  body.replaceChildren();
  for (const e of listing.entries) {
    const tr = document.createElement("tr");
    tr.dataset.key = e.key;
    const cells = [e.preview || "(no preview)", e.model || "–", e.namespace || "–", fmtDuration(e.age_s),
      fmtDuration(e.ttl_left_s), fmtInt(e.size_bytes) + " B", String(e.hit_count)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0) {
        td.className = "prompt";
        const small = document.createElement("small");
        small.textContent = e.key;
        td.appendChild(small);
      }
      tr.appendChild(td);
    });
    const td = document.createElement("td");
    const del = document.createElement("button");
    del.className = "small danger delete-entry";
    del.textContent = "Delete";
    armed(del, "Confirm", async () => { await api("/cache/delete", { keys: [e.key] }); await refreshEntries(); await refreshStats(); });
    td.appendChild(del);
    tr.appendChild(td);
    body.appendChild(tr);
  }
  const more = listing.complete ? "" : ` (first ${listing.scanned} keys scanned)`;
  $("entries-note").textContent = `${listing.entries.length} newest entries${more}`;
}

async function refreshStats() {
  renderStats(await api(`/cache/stats?series=1&span=${$("span").value}`));
}
async function refreshEntries() {
  const ns = $("ns-filter").value.trim();
  renderEntries(await api(`/cache/entries?limit=50${ns ? "&namespace=" + encodeURIComponent(ns) : ""}`));
}
async function refresh() {
  try {
    await refreshStats();
    await refreshEntries();
  } catch (e) {
    if (e.message !== "unauthorised") $("entries-note").textContent = "Refresh failed: " + e.message;
  }
}

function signIn() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("logout").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}
function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  clearInterval(timer);
  $("dash").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("meta").textContent = "";
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("login-key").value.trim());
    $("login-key").value = "";
    try { await api("/cache/stats"); signIn(); } catch (e) { if (e.message !== "unauthorised") $("login-error").textContent = e.message; }
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("entries-refresh").addEventListener("click", refreshEntries);
  $("ns-filter").addEventListener("change", refreshEntries);
  $("span").addEventListener("change", refreshStats);
  armed($("flush"), "Confirm flush", async () => {
    const ns = $("ns-filter").value.trim();
    const r = await api("/cache/flushall", ns ? { namespace: ns } : {});
    await refresh();
    $("entries-note").textContent = `Flushed ${r.deleted} entries`;
  });
  if (sessionStorage.getItem(KEY_STORE)) signIn();
});
