//! `troupe status`: the head node's live status (`GET /api/status`), as a table or JSON;
//! and the head's locator and HTTP client that `troupe scale` and `troupe kill` share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use troupe_actors::dashboard::server::{TOKEN_FILE, URL_FILE};

/// Where the head's dashboard is and its token.
#[derive(Debug, clap::Args)]
pub struct HeadArgs {
    /// A running run's directory: the head wrote its dashboard URL and token there.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "config"])]
    run_dir: Option<PathBuf>,
    /// The dashboard's base URL (`http://host:port/`).
    #[arg(long, conflicts_with = "config")]
    url: Option<String>,
    /// A cluster configuration whose `[dashboard] addr` names a fixed port.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Bearer token (with --url or --config; default: $TROUPE_DASHBOARD_TOKEN).
    #[arg(long, env = "TROUPE_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Arguments of `troupe status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    head: HeadArgs,
    /// Print the status document as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `troupe status`.
pub fn main(args: StatusArgs) -> anyhow::Result<()> {
    let (url, token) = args.head.locate()?;
    let body = request(&url, "GET", "/api/status", &token, None)?;
    let status: Value =
        serde_json::from_str(&body).context("the head answered with invalid JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_table(&status);
    }
    Ok(())
}

impl HeadArgs {
    /// The dashboard's base URL and token.
    pub fn locate(&self) -> anyhow::Result<(String, String)> {
        let args = self;
        Ok(match (&args.run_dir, &args.url, &args.config) {
            (Some(dir), _, _) => {
                let read = |name: &str| {
                    let path = dir.join(name);
                    std::fs::read_to_string(&path)
                    .map(|s| s.trim().to_string())
                    .with_context(|| {
                        format!(
                            "cannot read {} (is the run's head started, with [dashboard] enabled?)",
                            path.display()
                        )
                    })
                };
                (read(URL_FILE)?, read(TOKEN_FILE)?)
            }
            (None, Some(url), _) => (
                url.clone(),
                args.token.clone().context("--url needs --token")?,
            ),
            (None, None, Some(config)) => {
                let cfg = troupe_actors::config::ClusterConfig::load(config)?;
                if cfg.dashboard.addr.ends_with(":0") {
                    bail!(
                        "{}: [dashboard] addr picks a free port; use --run-dir",
                        config.display()
                    );
                }
                let token = args.token.clone().context("--config needs --token")?;
                (format!("http://{}/", cfg.dashboard.addr), token)
            }
            (None, None, None) => {
                bail!("say where the head is: --run-dir DIR, --url URL or --config FILE")
            }
        })
    }
}

/// Sends `method path` (with a JSON `body`, if any) to the plain-HTTP base `url` with a
/// bearer token; the answer's body on 200, its status and body as the error otherwise.
pub fn request(
    url: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let host = url
        .strip_prefix("http://")
        .context("the dashboard URL must start with http://")?
        .trim_end_matches('/');
    let mut stream =
        TcpStream::connect(host).with_context(|| format!("cannot reach the head at {url}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let payload = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("the head's answer is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!(
            "{url}{}: HTTP {code}: {}",
            path.trim_start_matches('/'),
            body.trim()
        );
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    Ok(if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    })
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("malformed chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).context("malformed chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

fn print_table(s: &Value) {
    let t = &s["trajectories"];
    println!(
        "phase {}   policy version {}   RL step {}",
        s["phase"].as_str().unwrap_or("-"),
        s["policy_version"],
        s["rl_step"]
    );
    println!(
        "trajectories: {} generated, {} trained, {} stale, {} zero-signal, {} judge errors, {} in flight",
        t["generated"],
        t["trained"],
        t["dropped_stale"],
        t["filtered_zero_signal"],
        t["dropped_judge_error"],
        t["in_flight"]
    );
    println!();
    println!(
        "{:<12} {:<5} {:<12} {:<14} {:<10} {:>8} {:>9}",
        "NODE", "UP", "ROLE", "ACTOR", "STATE", "MAILBOX", "RESTARTS"
    );
    for node in s["nodes"].as_array().into_iter().flatten() {
        let name = node["name"].as_str().unwrap_or("?");
        let up = if node["up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        };
        let actors = node["actors"].as_array().cloned().unwrap_or_default();
        if actors.is_empty() {
            println!("{name:<12} {up:<5}");
        }
        for a in actors {
            let mailbox = a["mailbox"]
                .as_u64()
                .map_or("n/a".to_string(), |m| m.to_string());
            println!(
                "{:<12} {:<5} {:<12} {:<14} {:<10} {:>8} {:>9}",
                name,
                up,
                a["role"].as_str().unwrap_or("?"),
                a["name"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?"),
                mailbox,
                a["restarts"].as_u64().unwrap_or(0)
            );
        }
    }
    let events = recent_events(s, 5);
    if !events.is_empty() {
        println!();
        println!("recent events:");
        for e in events {
            println!("  {e}");
        }
    }
}

/// The newest cluster events, at most `n`, oldest first.
fn recent_events(s: &Value, n: usize) -> Vec<String> {
    let all: Vec<String> = s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            super::dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n").unwrap(),
            "{\"a\":1}"
        );
        assert!(super::dechunk("9\r\nabc").is_err());
    }
}
