//! The head node's dashboard against a real `troupe run`: `/api/status`, `/api/steps`,
//! `/api/trajectories`, `/metrics`, server-sent events, the bearer token, `troupe
//! status`, and the page in Debian's headless `chromium` (installed by `.ci/run`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{config, temp_dir, troupe};

/// Runs share two cores; one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Kills the run when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `host:port` of a base URL `http://host:port/`.
fn host(url: &str) -> &str {
    url.strip_prefix("http://").unwrap().trim_end_matches('/')
}

/// A GET with an optional bearer token: (status code, body).
fn get(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let host = host(url);
    let mut s = TcpStream::connect(host).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "unexpected chunked answer: {head}"
    );
    (code, body.to_string())
}

/// Checks Prometheus text format: HELP and TYPE before each family's samples, every
/// name `troupe_`, every value a number. Returns (name with labels, value) samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(name.starts_with("troupe_"), "{line}");
            assert!(matches!(parts.next(), Some("gauge" | "counter")), "{line}");
            typed.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.starts_with("troupe_"), "{line}");
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE line: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            samples.push((series.to_string(), v));
        }
    }
    samples
}

/// Starts `troupe run` on a small config with `rl_steps` RL steps; returns the process,
/// its run directory, the dashboard URL and the token.
fn start_run(name: &str, rl_steps: &str) -> (Running, PathBuf, PathBuf, String, String) {
    let dir = temp_dir(name);
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "40"),
            ("sft", "seed_trajectories", "128"),
            ("sft", "steps", "40"),
            ("rl", "steps", rl_steps),
            ("rl", "groups_per_batch", "8"),
            ("rl", "eval_every", "50"),
        ],
    );
    let run_dir = dir.join("run");
    let log = std::fs::File::create(dir.join("stderr.txt")).unwrap();
    let run = Running(
        troupe()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&run_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let read = |name: &str| {
        std::fs::read_to_string(run_dir.join(name))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let (url, token) = wait_for(
        "dashboard.url and dashboard.token",
        Duration::from_secs(120),
        || Some((read("dashboard.url")?, read("dashboard.token")?)),
    );
    (run, dir, run_dir, url, token)
}

/// Polls `/api/status` until RL has published a policy and stepped.
fn wait_for_rl(url: &str, token: &str) -> Value {
    wait_for(
        "policy_version > 0 and an RL step",
        Duration::from_secs(400),
        || {
            let (code, body) = get(url, "/api/status", Some(token));
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            (v["policy_version"].as_u64()? > 0 && v["rl_step"].as_u64()? > 0).then_some(v)
        },
    )
}

#[test]
fn dashboard_serves_live_status_metrics_and_events() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_run, dir, run_dir, url, token) = start_run("dashboard", "300");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run_dir.join("dashboard.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is readable by others");
    }
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0/"),
        "{url}"
    );
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap();
    assert!(
        stderr.contains(&format!("dashboard {url}?token={token}")),
        "{stderr}"
    );

    // No token or a wrong one: 401 on the API, the events and /metrics; the page is open.
    for path in [
        "/api/status",
        "/api/steps",
        "/api/trajectories",
        "/api/events",
        "/metrics",
    ] {
        assert_eq!(get(&url, path, None).0, 401, "{path} without a token");
        assert_eq!(
            get(&url, path, Some("0123")).0,
            401,
            "{path} with a wrong token"
        );
    }
    let (code, page) = get(&url, "/", None);
    assert_eq!(code, 200);
    assert!(
        page.contains("uPlot.min.js") && page.contains("/page.js"),
        "{page}"
    );
    let (code, js) = get(&url, "/uPlot.min.js", None);
    assert_eq!(code, 200);
    assert!(
        js.len() > 40_000 && js.contains("uPlot"),
        "uPlot is not served"
    );

    // Server-sent events: a status event at once, then a step event per learner step.
    let events = {
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || {
            let host = host(&url);
            let mut s = TcpStream::connect(host).unwrap();
            write!(
                s,
                "GET /api/events?token={token} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .unwrap();
            let mut lines = BufReader::new(s).lines();
            let mut kinds = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                if let Some(kind) = line.strip_prefix("event: ") {
                    kinds.push(kind.to_string());
                } else if let Some(data) = line.strip_prefix("data: ")
                    && kinds.last().is_some_and(|k| k == "step")
                {
                    return (kinds, serde_json::from_str::<Value>(data).unwrap());
                }
            }
            panic!("the event stream ended after {kinds:?}");
        })
    };

    // The status once RL has published a policy and stepped.
    let status = wait_for_rl(&url, &token);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{status}");
    assert_eq!(nodes[0]["name"], "local");
    assert_eq!(nodes[0]["up"], true);
    let actors = nodes[0]["actors"].as_array().unwrap();
    let mut roles: Vec<&str> = actors.iter().map(|a| a["role"].as_str().unwrap()).collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "buffer",
            "coordinator",
            "env_host",
            "judge",
            "learner",
            "sampler",
            "sampler"
        ]
    );
    for a in actors {
        assert_eq!(a["state"], "running", "{a}");
        assert_eq!(a["restarts"], 0, "{a}");
        assert!(a["mailbox"].is_null() || a["mailbox"].is_u64(), "{a}");
    }
    let t = &status["trajectories"];
    let n = |k: &str| {
        t[k].as_u64()
            .unwrap_or_else(|| panic!("trajectories.{k}: {t}"))
    };
    assert!(n("generated") > 0, "{t}");
    assert_eq!(
        n("generated"),
        n("trained")
            + n("dropped_stale")
            + n("filtered_zero_signal")
            + n("dropped_judge_error")
            + n("in_flight"),
        "{t}"
    );
    assert_eq!(status["phase"], "RL (async GRPO)");
    assert!(status["sampled_tokens"].as_u64().unwrap() > 0);
    assert!(status["last_step"]["loss"].is_number(), "{status}");
    // Held-out pass@1 before training and after SFT, each with its wall-clock time.
    let heldout = status["heldout"].as_array().unwrap();
    assert!(heldout.len() >= 2, "{status}");
    for p in heldout {
        assert!(p["step"].is_u64() && p["pass_at_1"].is_number(), "{p}");
        assert!(p["wall_seconds"].as_f64().is_some_and(|w| w > 0.0), "{p}");
    }
    assert!(status["trajectory_seq"].as_u64().unwrap() > 0, "{status}");

    let (kinds, step) = events.join().unwrap();
    assert_eq!(kinds[0], "status", "{kinds:?}");
    assert!(step["step"]["step"].as_u64().unwrap() >= 1, "{step}");
    assert!(step["step"]["mean_reward"].is_number(), "{step}");
    assert!(
        step["status"]["policy_version"].as_u64().unwrap() > 0,
        "{step}"
    );

    let (code, steps) = get(&url, "/api/steps", Some(&token));
    assert_eq!(code, 200);
    let steps: Vec<Value> = serde_json::from_str(&steps).unwrap();
    assert!(!steps.is_empty() && steps[0]["step"] == 1, "{steps:?}");
    // Each step line: the buffer's fill against its capacity, the weight publication time,
    // the staleness histogram and each sampler's version lag.
    for s in &steps {
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
        assert!(n("buffer_capacity") > 0, "{s}");
        assert!(n("buffer_pending") <= n("buffer_capacity"), "{s}");
        assert!(n("buffer_groups") <= n("buffer_capacity_groups"), "{s}");
        assert!(
            n("buffer_pending") >= n("trained"),
            "the batch taken was held: {s}"
        );
        assert!(
            s["publish_seconds"].as_f64().is_some_and(|t| t >= 0.0),
            "{s}"
        );
        assert!(s["staleness_histogram"].is_array(), "{s}");
        assert!(s["sampler_version_lag"].is_object(), "{s}");
    }
    assert!(
        steps.iter().any(|s| s["buffer_pending"].as_u64() > Some(0)),
        "{steps:?}"
    );

    // Recent trajectories for the viewer: evaluation episodes and each step's best.
    let trajectories = wait_for(
        "a training trajectory in /api/trajectories",
        Duration::from_secs(120),
        || {
            let (code, body) = get(&url, "/api/trajectories", Some(&token));
            assert_eq!(code, 200, "{body}");
            let list: Vec<Value> = serde_json::from_str(&body).unwrap();
            list.iter().any(|t| t["purpose"] == "train").then_some(list)
        },
    );
    assert!(trajectories.len() <= 32, "{}", trajectories.len());
    assert!(trajectories.iter().any(|t| t["purpose"] == "eval"));
    let mut policy_tokens = 0;
    for t in &trajectories {
        let id = t["id"].as_u64().unwrap_or_else(|| panic!("{t}"));
        assert_eq!(t["id_str"], id.to_string(), "{t}");
        assert!(t["seq"].is_u64(), "{t}");
        assert!(t["task"]["prompt"].is_string(), "{t}");
        assert!(t["reward"]["total"].is_number(), "{t}");
        assert!(t["reward"]["breakdown"].is_array(), "{t}");
        if t["purpose"] == "train" {
            assert!(t["rl_step"].as_u64().is_some_and(|s| s >= 1), "{t}");
        } else {
            assert!(t["round"].is_u64(), "{t}");
        }
        let turns = t["turns"].as_array().unwrap();
        assert!(!turns.is_empty(), "{t}");
        for turn in turns {
            assert!(
                ["user", "tool", "policy"].contains(&turn["role"].as_str().unwrap()),
                "{turn}"
            );
            assert!(turn["text"].is_string(), "{turn}");
            for k in turn["tokens"].as_array().unwrap() {
                assert!(k["id"].is_u64() && k["logprob"].is_number(), "{k}");
                let v = k["version"].as_u64().unwrap_or_else(|| panic!("{k}"));
                let [lo, hi] = [0, 1].map(|i| t["versions"][i].as_u64().unwrap());
                assert!(lo <= v && v <= hi, "{k} outside {}", t["versions"]);
                assert!(k["text"].is_string() || k["text"].is_null(), "{k}");
                policy_tokens += 1;
            }
        }
        assert_eq!(
            turns
                .iter()
                .map(|t| t["tokens"].as_array().unwrap().len())
                .sum::<usize>() as u64,
            t["policy_tokens"].as_u64().unwrap(),
            "{t}"
        );
    }
    assert!(policy_tokens > 0, "no policy token in {trajectories:?}");

    let (code, metrics) = get(&url, "/metrics", Some(&token));
    assert_eq!(code, 200);
    let samples = parse_prometheus(&metrics);
    let value = |name: &str| {
        samples
            .iter()
            .find(|(s, _)| s == name)
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .1
    };
    assert!(value("troupe_policy_version") > 0.0, "{metrics}");
    assert!(value("troupe_rl_steps") >= 1.0, "{metrics}");
    assert!(
        value("troupe_trajectories{outcome=\"generated\"}") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        value("troupe_actor_up{node=\"local\",role=\"sampler\",actor=\"sampler-1\"}"),
        1.0
    );
    assert_eq!(value("troupe_node_up{node=\"local\"}"), 1.0);
    assert_eq!(
        value("troupe_actor_restarts{node=\"local\",role=\"sampler\",actor=\"sampler-1\"}"),
        0.0
    );
    assert!(
        value("troupe_buffer_capacity_trajectories") > 0.0,
        "{metrics}"
    );
    assert!(value("troupe_weight_publish_seconds") >= 0.0, "{metrics}");

    // `troupe status`: JSON and the table, from the run directory.
    let cli = common::cluster::status(&run_dir);
    assert!(cli["policy_version"].as_u64().unwrap() >= status["policy_version"].as_u64().unwrap());
    assert_eq!(
        cli["nodes"][0]["actors"].as_array().unwrap().len(),
        7,
        "{cli}"
    );
    let table = common::stdout_ok(troupe().args(["status", "--run-dir"]).arg(&run_dir));
    assert!(
        table.contains("sampler-1") && table.contains("running"),
        "{table}"
    );
    // A wrong token is refused by the CLI too.
    let out = troupe()
        .args(["status", "--token", "nope", "--url"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// The page in headless chromium: the actor table, the charts and the trajectory viewer
/// carry live data.
#[test]
fn dashboard_page_shows_actors_and_charts_in_chromium() {
    let chromium = "chromium";
    assert!(
        Command::new(chromium)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    );
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Enough RL steps that the run is still going while the browser looks.
    let (_run, dir, _run_dir, url, token) = start_run("dashboard-browser", "5000");
    wait_for_rl(&url, &token);
    let page = format!("{url}?token={token}");
    let browser = |extra: &[&str]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--timeout=10000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium").display()
            ))
            .args(extra)
            .arg(&page)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    assert_eq!(dom.matches("<tr class=\"actor\">").count(), 7, "{dom}");
    assert_eq!(dom.matches(">running<").count(), 7, "{dom}");
    assert!(dom.contains(">sampler-1<"), "{dom}");
    let version: u64 = dom
        .split("id=\"version\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no policy version on the page: {dom}"));
    assert!(version > 0, "{dom}");
    // Ten uPlot charts, each with a canvas and at least one point.
    let charts = [
        "reward",
        "reward-wall",
        "throughput",
        "staleness",
        "buffer",
        "drops",
        "loss",
        "steptime",
        "weightsync",
        "lag",
    ];
    assert_eq!(dom.matches("<canvas").count(), charts.len(), "{dom}");
    // A chart's points per series, from its data-series-points attribute.
    let series_points = |chart: &str| -> Vec<usize> {
        let tag = dom
            .split(&format!("id=\"chart-{chart}\""))
            .nth(1)
            .and_then(|r| r.split('>').next())
            .unwrap_or_else(|| panic!("no chart {chart}: {dom}"));
        tag.split("data-series-points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("chart {chart} has no data-series-points: {tag}"))
            .split(',')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{chart}: {tag}")))
            .collect()
    };
    for chart in charts {
        let points = series_points(chart);
        assert!(points.iter().sum::<usize>() >= 1, "chart {chart} is empty");
    }
    // Held-out pass@1 against the step and against the wall clock; buffer fill and
    // capacity; one lag series per sampler.
    for chart in ["reward", "reward-wall", "buffer"] {
        let points = series_points(chart);
        assert!(points.len() == 2 && points[1] >= 1, "{chart}: {points:?}");
    }
    assert_eq!(series_points("lag").len(), 2, "one series per sampler");
    assert!(
        dom.contains(">sampler 0<") && dom.contains(">sampler 1<"),
        "{dom}"
    );
    assert!(series_points("staleness")[0] >= 1, "no staleness bar");

    // The trajectory viewer lists trajectories and shows the newest one's turns with its
    // policy tokens tagged by version.
    assert!(dom.matches("<tr class=\"traj").count() >= 1, "{dom}");
    assert!(dom.contains("<h3>trajectory "), "{dom}");
    assert!(dom.contains("class=\"turn user\""), "{dom}");
    let tagged = dom
        .matches("class=\"traj-token")
        .count()
        .min(dom.matches("data-version=\"").count());
    assert!(tagged >= 1, "no policy token with a version: {dom}");

    let shot = dir.join("dashboard.png");
    browser(&[
        "--window-size=1400,2300",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        shot.display()
    );
    println!("dashboard screenshot: {}", shot.display());

    // The scale control, clicked like a user would in a live browser: the node runs one
    // more sampler, and the page shows it without a reload.
    let running_samplers = || -> usize {
        let (code, body) = get(&url, "/api/status", Some(&token));
        assert_eq!(code, 200, "{body}");
        let st: Value = serde_json::from_str(&body).unwrap();
        st["nodes"][0]["actors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["role"] == "sampler" && a["state"] == "running")
            .count()
    };
    assert_eq!(running_samplers(), 2);
    let mut live = common::cdp::Browser::open(&page, &dir.join("chromium-live"));
    let count = "document.querySelector('.sampler-count[data-node=\"local\"]')";
    live.wait_for(
        &format!("{count} !== null && {count}.textContent === '2'"),
        Duration::from_secs(30),
    );
    live.click("button.scale-up[data-node=\"local\"]");
    wait_for("a third sampler", Duration::from_secs(30), || {
        (running_samplers() == 3).then_some(())
    });
    live.wait_for(
        &format!("{count}.textContent === '3'"),
        Duration::from_secs(30),
    );
    let note = live.eval("document.getElementById('scale-msg').textContent");
    assert_eq!(note, "local: 3 samplers");
    live.wait_for(
        "[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('scaled samplers (local: 3)'))",
        Duration::from_secs(30),
    );
    // And back down: the added sampler finishes its unit and leaves.
    live.click("button.scale-down[data-node=\"local\"]");
    wait_for("back to two samplers", Duration::from_secs(60), || {
        (running_samplers() == 2).then_some(())
    });
}
