// The troupe dashboard: the actor table and charts, updated live from /api/events.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const q = "?token=" + encodeURIComponent(token);
const steps = [];

// Each chart: a title and the series it draws from a metrics.jsonl line.
const CHARTS = [
  { id: "reward", title: "train reward", series: [["mean reward", s => s.mean_reward]] },
  { id: "heldout", title: "held-out pass@1", heldout: true },
  { id: "throughput", title: "trajectories/s and tokens/s", series: [
      ["trajectories/s", (s, p) => rate(s, p, "trained")],
      ["tokens/s", (s, p) => rate(s, p, "trained_tokens")]] },
  { id: "loss", title: "learner loss", series: [["loss", s => s.loss]] },
  { id: "steptime", title: "step time (s)", series: [
      ["train", s => s.train_seconds], ["wait", s => s.wait_seconds]] },
  { id: "staleness", title: "mean staleness (versions)", series: [["staleness", s => meanStaleness(s)]] },
  { id: "drops", title: "dropped and filtered per step", series: [
      ["stale", s => s.dropped_stale], ["zero signal", s => s.filtered_zero_signal]] },
];
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const plots = {};
let heldout = [];

function rate(s, prev, key) {
  if (!prev || s.wall_seconds <= prev.wall_seconds) return null;
  return s[key] / (s.wall_seconds - prev.wall_seconds);
}
function meanStaleness(s) {
  const h = s.staleness_histogram || [];
  let n = 0, sum = 0;
  h.forEach((c, v) => { n += c; sum += c * v; });
  return n ? sum / n : null;
}
function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }

function makeCharts() {
  const box = document.getElementById("charts");
  for (const c of CHARTS) {
    const div = document.createElement("div");
    div.className = "chart"; div.id = "chart-" + c.id;
    box.appendChild(div);
    const names = c.heldout ? ["pass@1"] : c.series.map(s => s[0]);
    plots[c.id] = new uPlot({
      title: c.title, width: 420, height: 220,
      scales: { x: { time: false } },
      axes: [{ label: "RL step" }, {}],
      series: [{ label: "step" }].concat(names.map((n, i) => ({ label: n, stroke: COLORS[i], width: 2 }))),
    }, [[], ...names.map(() => [])], div);
  }
}

function redraw() {
  for (const c of CHARTS) {
    let data;
    if (c.heldout) {
      data = [heldout.map(p => p.step), heldout.map(p => num(p.pass_at_1))];
    } else {
      data = [steps.map(s => s.step)].concat(
        c.series.map(([, f]) => steps.map((s, i) => num(f(s, steps[i - 1])))));
    }
    plots[c.id].setData(data);
    document.getElementById("chart-" + c.id).dataset.points =
      data[1].filter(v => v != null).length;
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text; if (cls) td.className = cls;
  tr.appendChild(td);
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
  const box = document.getElementById("nodes");
  box.replaceChildren();
  for (const node of st.nodes) {
    const h = document.createElement("h3");
    h.textContent = `${node.name} `;
    const badge = document.createElement("span");
    badge.textContent = node.up ? "up" : "down";
    badge.className = node.up ? "up" : "down";
    h.appendChild(badge);
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
  let st, ss;
  try {
    st = getNow("/api/status");
    ss = getNow("/api/steps");
  } catch (e) {
    document.getElementById("live").textContent = String(e) + " (open the URL with ?token=)";
    return;
  }
  steps.push(...ss);
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
