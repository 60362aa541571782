// The dashboard's trajectory viewer: a list of recent scored trajectories and the
// selected one's turns, its policy tokens coloured by policy version. page.js calls
// showTrajectories with the first list and viewerSeq with each status; the list is
// refetched from /api/trajectories (at most every REFETCH_MS) when its sequence grows.
"use strict";
const REFETCH_MS = 3000;
// Background of a policy token by how many versions it lags the trajectory's newest.
const LAG_COLORS = ["#cfe8cf", "#fff1b8", "#ffd59e", "#ffb3a7"];
const viewer = { list: [], selected: null, seq: null, wanted: null, fetching: false };

function viewerSeq(seq) {
  if (seq == null || seq === viewer.seq) return;
  viewer.wanted = seq;
  if (viewer.fetching) return;
  viewer.fetching = true;
  setTimeout(() => {
    const wanted = viewer.wanted;
    fetch("/api/trajectories" + q)
      .then(r => (r.ok ? r.json() : Promise.reject(r.status)))
      .then(list => showTrajectories(list, wanted))
      .catch(() => {})
      .finally(() => { viewer.fetching = false; });
  }, viewer.seq == null ? 0 : REFETCH_MS);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function purpose(t) {
  return t.purpose === "eval" ? `eval round ${t.round}` : `train step ${t.rl_step ?? "?"}`;
}

function versions(t) {
  const [lo, hi] = t.versions || [];
  return lo == null ? "–" : lo === hi ? `v${lo}` : `v${lo}–v${hi}`;
}

function showTrajectories(list, seq) {
  viewer.list = list;
  viewer.seq = seq;
  if (!list.some(t => t.seq === viewer.selected)) viewer.selected = list.length ? list[0].seq : null;
  const table = el("table");
  const head = el("tr");
  for (const h of ["id", "purpose", "task", "reward", "policy tokens", "versions"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (const t of list) {
    const tr = el("tr", "traj" + (t.seq === viewer.selected ? " selected" : ""));
    tr.dataset.seq = t.seq;
    tr.appendChild(el("td", null, t.id_str));
    tr.appendChild(el("td", null, purpose(t)));
    const prompt = el("td", "prompt", t.task.prompt);
    prompt.title = t.task.prompt;
    tr.appendChild(prompt);
    tr.appendChild(el("td", null, t.reward.total.toFixed(3)));
    tr.appendChild(el("td", null, t.policy_tokens));
    tr.appendChild(el("td", null, versions(t)));
    tr.addEventListener("click", () => { viewer.selected = t.seq; showTrajectories(viewer.list, viewer.seq); });
    table.appendChild(tr);
  }
  const box = document.getElementById("traj-list");
  box.replaceChildren(list.length ? table : el("p", null, "no trajectories yet"));
  showDetail(list.find(t => t.seq === viewer.selected));
}

function showDetail(t) {
  const box = document.getElementById("traj-detail");
  box.replaceChildren();
  if (!t) return;
  const title = el("h3", null, `trajectory ${t.id_str} · ${purpose(t)} · task ${t.task.id}`);
  box.appendChild(title);
  const reward = el("div", "reward");
  reward.appendChild(el("span", "chip", `reward ${t.reward.total.toFixed(3)}`));
  for (const b of t.reward.breakdown) reward.appendChild(el("span", "chip", `${b.name} ${+b.value.toFixed(3)}`));
  box.appendChild(reward);
  const newest = t.versions ? t.versions[1] : null;
  const legend = el("div", "legend");
  legend.appendChild(el("span", null, `${t.tokens} tokens, ${t.policy_tokens} from the policy (${versions(t)}): `));
  LAG_COLORS.forEach((c, lag) => {
    const chip = el("span", "chip", lag === LAG_COLORS.length - 1 ? `≥${lag} behind` : lag ? `${lag} behind` : "newest");
    chip.style.background = c;
    legend.appendChild(chip);
  });
  box.appendChild(legend);
  for (const turn of t.turns) {
    const div = el("div", "turn " + turn.role);
    div.dataset.role = turn.role;
    div.appendChild(el("div", "role", `${turn.role} · ${turn.token_count} tokens`));
    if (turn.tokens.length) {
      const line = el("div", "tokens");
      for (const k of turn.tokens) {
        const span = el("span", "traj-token" + (k.text == null ? " raw" : ""), k.text ?? `⟨${k.id}⟩`);
        span.dataset.version = k.version;
        span.style.background = LAG_COLORS[Math.min(Math.max(newest - k.version, 0), LAG_COLORS.length - 1)];
        span.title = `token ${k.id} · log-prob ${k.logprob.toFixed(3)} · version ${k.version}`;
        line.appendChild(span);
      }
      div.appendChild(line);
    } else {
      div.appendChild(el("pre", null, turn.text));
    }
    box.appendChild(div);
  }
}
