// The troupe dashboard: the actor table and charts, updated live from /api/events; the
// trajectory viewer (viewer.js) refetches /api/trajectories when new ones arrive.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const q = "?token=" + encodeURIComponent(token);
const steps = [];
let heldout = [];

// Steps whose staleness histograms add up to the staleness chart.
const STALENESS_WINDOW = 20;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

// Each chart: a title, the x axis, its series ({label, scale, dash}) and a function
// returning uPlot's aligned data [xs, ys...]. `dynamic` charts take their series'
// labels from the data and are rebuilt when the set changes (samplers can join).
const CHARTS = [
  { id: "reward", title: "reward, held-out pass@1 by step", x: "RL step",
    series: [{ label: "train reward" }, { label: "held-out pass@1", points: true }],
    data: () => aligned([
      steps.map(s => [s.step, s.mean_reward]),
      heldout.map(p => [p.step, p.pass_at_1])]) },
  { id: "reward-wall", title: "reward, held-out pass@1 by wall clock", x: "wall clock",
    wall: true,
    series: [{ label: "train reward" }, { label: "held-out pass@1", points: true }],
    data: () => aligned([
      steps.map(s => [s.wall_seconds, s.mean_reward]),
      heldout.filter(p => p.wall_seconds != null).map(p => [p.wall_seconds, p.pass_at_1])]) },
  { id: "throughput", title: "trajectories/s, tokens/s (right)", x: "RL step",
    series: [{ label: "trajectories/s" }, { label: "tokens/s", scale: "right" }],
    data: () => perStep([(s, p) => rate(s, p, "trained"), (s, p) => rate(s, p, "trained_tokens")]) },
  { id: "staleness", title: `staleness, last ${STALENESS_WINDOW} steps`,
    x: "versions behind", bars: true, series: [{ label: "trajectories" }],
    data: () => stalenessBars() },
  { id: "buffer", title: "replay buffer fill (trajectories)", x: "RL step",
    series: [{ label: "held at take" }, { label: "capacity", dash: [6, 4] }],
    data: () => perStep([s => s.buffer_pending, s => s.buffer_capacity]) },
  { id: "drops", title: "dropped and filtered per step", x: "RL step",
    series: [{ label: "stale" }, { label: "zero signal" }, { label: "judge error" }],
    data: () => perStep([s => s.dropped_stale, s => s.filtered_zero_signal,
      s => s.dropped_judge_error]) },
  { id: "loss", title: "learner loss", x: "RL step", series: [{ label: "loss" }],
    data: () => perStep([s => s.loss]) },
  { id: "steptime", title: "learner step time (s)", x: "RL step",
    series: [{ label: "train" }, { label: "wait for batch" }],
    data: () => perStep([s => s.train_seconds, s => s.wait_seconds]) },
  { id: "weightsync", title: "weight publication per step (ms)", x: "RL step",
    series: [{ label: "publish" }], data: () => perStep([s => s.publish_seconds * 1000]) },
  { id: "lag", title: "sampler version lag (publications)", x: "RL step",
    dynamic: () => samplerKeys().map(k => ({ label: "sampler " + k })),
    data: () => perStep(samplerKeys().map(k => s => (s.sampler_version_lag || {})[k])) },
];
const plots = {};

function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
function rate(s, prev, key) {
  if (!prev || s.wall_seconds <= prev.wall_seconds) return null;
  return s[key] / (s.wall_seconds - prev.wall_seconds);
}
// One value per step and series: [steps, ys...].
function perStep(fs) {
  return [steps.map(s => s.step)].concat(fs.map(f => steps.map((s, i) => num(f(s, steps[i - 1])))));
}
// Series given as [x, y] pairs on a shared, sorted x axis (null where a series has no point).
function aligned(lists) {
  const xs = [...new Set(lists.flatMap(l => l.map(p => p[0]).filter(x => num(x) != null)))]
    .sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  return [xs].concat(lists.map(l => {
    const ys = xs.map(() => null);
    for (const [x, y] of l) if (at.has(x)) ys[at.get(x)] = num(y);
    return ys;
  }));
}
function stalenessBars() {
  const sum = [];
  for (const s of steps.slice(-STALENESS_WINDOW)) {
    (s.staleness_histogram || []).forEach((c, v) => { sum[v] = (sum[v] || 0) + c; });
  }
  return [sum.map((_, v) => v), Array.from(sum, c => c || 0)];
}
function samplerKeys() {
  const keys = new Set();
  for (const s of steps) Object.keys(s.sampler_version_lag || {}).forEach(k => keys.add(k));
  return [...keys].sort((a, b) => a - b);
}

// Whole-number ticks for steps, versions and counts of things.
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
// Wall-clock ticks in seconds, minutes or hours, by the axis's span.
function duration(u, splits) {
  const max = u.scales.x.max || 0;
  return splits.map(v => max >= 7200 ? (v / 3600).toFixed(1) + "h"
    : max >= 300 ? (v / 60).toFixed(0) + "m" : v.toFixed(0) + "s");
}

function makePlot(c, series) {
  const div = document.getElementById("chart-" + c.id);
  div.replaceChildren();
  const right = series.some(s => s.scale === "right");
  const x = c.wall ? { label: c.x, values: duration } : { label: c.x, incrs: WHOLE };
  const axes = [x, {}];
  if (right) axes.push({ scale: "right", side: 1, grid: { show: false } });
  const bars = c.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : null;
  const xScale = { time: false };
  if (c.bars) xScale.range = (u, lo, hi) => [Math.min(lo, 0) - 0.5, Math.max(hi, 1) + 0.5];
  plots[c.id] = {
    key: series.map(s => s.label).join("|"),
    plot: new uPlot({
      title: c.title, width: 400, height: 200,
      scales: { x: xScale },
      axes,
      legend: { live: false },
      series: [{ label: c.x }].concat(series.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2, scale: s.scale || "y",
        dash: s.dash, spanGaps: true, paths: bars || undefined,
        fill: c.bars ? COLORS[i] + "88" : undefined,
        points: { show: s.points ? true : undefined },
      }))),
    }, [[], ...series.map(() => [])], div),
  };
}

function makeCharts() {
  const box = document.getElementById("charts");
  for (const c of CHARTS) {
    const div = document.createElement("div");
    div.className = "chart"; div.id = "chart-" + c.id;
    box.appendChild(div);
    makePlot(c, c.dynamic ? c.dynamic() : c.series);
  }
}

function redraw() {
  for (const c of CHARTS) {
    if (c.dynamic) {
      const series = c.dynamic();
      if (series.map(s => s.label).join("|") !== plots[c.id].key) makePlot(c, series);
    }
    const data = c.data();
    plots[c.id].plot.setData(data);
    const counts = data.slice(1).map(ys => ys.filter(v => v != null).length);
    const div = document.getElementById("chart-" + c.id);
    div.dataset.points = counts.reduce((a, b) => a + b, 0);
    div.dataset.seriesPoints = counts.join(",");
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text; if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

// Scale control: the node's sampler count with − and + buttons (POST /api/scale).
function scaleControl(node) {
  const n = node.actors.filter(a => a.role === "sampler" && a.state === "running").length;
  const span = document.createElement("span");
  span.className = "scale";
  span.append(" samplers ");
  const count = document.createElement("b");
  count.className = "sampler-count"; count.dataset.node = node.name; count.textContent = n;
  span.appendChild(count);
  for (const [cls, label, delta] of [["scale-down", "−", -1], ["scale-up", "+", 1]]) {
    const b = document.createElement("button");
    b.className = cls; b.dataset.node = node.name; b.textContent = label;
    b.title = `${delta > 0 ? "add" : "remove"} a sampler on ${node.name}`;
    b.disabled = n + delta < 0;
    b.addEventListener("click", () => scale(node.name, n + delta));
    span.appendChild(b);
  }
  return span;
}

function scale(node, samplers) {
  const msg = document.getElementById("scale-msg");
  msg.textContent = `scaling ${node} to ${samplers} samplers…`;
  fetch("/api/scale", {
    method: "POST",
    headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify({ node, samplers }),
  }).then(async r => {
    const text = await r.text();
    msg.textContent = r.ok ? `${node}: ${samplers} samplers` : `scale refused: ${text}`;
  }).catch(e => { msg.textContent = "scale failed: " + e; });
}

function showStatus(st) {
  document.getElementById("phase").textContent = st.phase || "–";
  document.getElementById("version").textContent = st.policy_version;
  document.getElementById("step").textContent = st.rl_step;
  const t = st.trajectories;
  document.getElementById("trajectories").textContent =
    `${t.generated} generated, ${t.trained} trained, ${t.dropped_stale} stale, ` +
    `${t.filtered_zero_signal} filtered, ${t.in_flight} in flight`;
  heldout = st.heldout || [];
  viewerSeq(st.trajectory_seq);
  const ev = document.getElementById("events");
  ev.replaceChildren();
  for (const e of (st.events || []).slice(-8).reverse()) {
    const li = document.createElement("li");
    li.textContent = `${new Date(e.at * 1000).toLocaleTimeString()}  ${e.event}`;
    ev.appendChild(li);
  }
  const box = document.getElementById("nodes");
  box.replaceChildren();
  for (const node of st.nodes) {
    const h = document.createElement("h3");
    h.textContent = `${node.name} `;
    const badge = document.createElement("span");
    badge.textContent = node.up ? "up" : "down";
    badge.className = node.up ? "up" : "down";
    h.appendChild(badge);
    if (node.up) h.appendChild(scaleControl(node));
    box.appendChild(h);
    const table = document.createElement("table");
    table.className = "actors";
    const head = document.createElement("tr");
    for (const name of ["role", "actor", "state", "mailbox", "restarts"]) {
      const th = document.createElement("th"); th.textContent = name; head.appendChild(th);
    }
    table.appendChild(head);
    for (const a of node.actors) {
      const tr = document.createElement("tr");
      tr.className = "actor";
      cell(tr, a.role); cell(tr, a.name);
      cell(tr, a.state, a.state === "running" ? "up" : "down");
      cell(tr, a.mailbox == null ? "n/a" : a.mailbox); cell(tr, a.restarts);
      table.appendChild(tr);
    }
    box.appendChild(table);
  }
}

// The first view is fetched synchronously, so the page's load event (and a headless
// browser's screenshot) comes with data; everything after it arrives as events.
function getNow(path) {
  const r = new XMLHttpRequest();
  r.open("GET", path + q, false);
  r.send();
  if (r.status !== 200) throw new Error(path + ": HTTP " + r.status);
  return JSON.parse(r.responseText);
}

function start() {
  makeCharts();
  let st, ss, ts;
  try {
    st = getNow("/api/status");
    ss = getNow("/api/steps");
    ts = getNow("/api/trajectories");
  } catch (e) {
    document.getElementById("live").textContent = String(e) + " (open the URL with ?token=)";
    return;
  }
  steps.push(...ss);
  showTrajectories(ts, st.trajectory_seq);
  showStatus(st);
  redraw();
  const es = new EventSource("/api/events" + q);
  const live = document.getElementById("live");
  es.addEventListener("open", () => { live.textContent = "live"; });
  es.addEventListener("error", () => { live.textContent = "disconnected (retrying)"; });
  es.addEventListener("status", e => showStatus(JSON.parse(e.data)));
  es.addEventListener("step", e => {
    const ev = JSON.parse(e.data);
    if (!steps.length || steps[steps.length - 1].step < ev.step.step) steps.push(ev.step);
    showStatus(ev.status);
    redraw();
  });
}
start();
