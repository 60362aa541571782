//! `troupe bench buffer`: how fast the replay buffer stores and serves trajectories, each
//! figure next to a baseline measured in the same run. No thresholds are enforced;
//! targets are reported.
//!
//! - [`store`]: the buffer core in this process — fill rate, and the latency of taking
//!   one RL batch (256 trajectories) with 10k, 100k and 1M trajectories stored.
//! - [`actor`]: the buffer actor with its durable log — inserts in messages of 64
//!   trajectories and learner `TakeBatch` calls, from another process over QUIC
//!   (`troupe bench buffer-peer`, [`peer`]) against the same actor in this process, and
//!   the log-writing core called directly.
//! - [`data`]: the trajectories (64–256 tokens, exact-size vectors).

mod actor;
mod data;
pub mod peer;
mod store;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ractor::Actor;
use serde_json::json;
use troupe_actors::messages::BufferMsg;
use troupe_actors::remote::group;
use troupe_actors::roles::buffer::{Buffer, BufferArgs};
use troupe_buffer::{LogConfig, Recovery, SyncPolicy};

use super::proc::{CertDir, Peer, Session, remote_member};
use super::{LOCAL_NODE, median};

/// The whole bench gives up after this long (the peer is killed on the way out).
const DEADLINE: Duration = Duration::from_secs(600);

/// Targets from the buffer issue; reported, never asserted.
const TARGET_REMOTE_INSERT_PER_S: f64 = 50_000.0;
const TARGET_SAMPLE_P99_US_1M: f64 = 1_000.0;
const TARGET_P99_1M_OVER_10K: f64 = 3.0;

/// The durable log as the buffer actor runs it by default (`[buffer]` defaults).
fn log_config(dir: PathBuf) -> LogConfig {
    LogConfig {
        dir,
        sync: SyncPolicy::Group {
            max_records: 64,
            max_delay: Duration::from_millis(5),
        },
        compact_bytes: 64 << 20,
    }
}

/// Sizes of one bench run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    quick: bool,
    /// Trajectories stored for the core latency figures (named 10k, 100k, 1m).
    stored: [usize; 3],
    /// Timed takes per stored size.
    core_samples: usize,
    /// Trajectories inserted through each actor.
    actor_total: usize,
    /// Timed `TakeBatch` calls per actor.
    actor_samples: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        let scale = if quick { 10 } else { 1 };
        Self {
            quick,
            stored: [10_000, 100_000, 1_000_000].map(|n| n / scale),
            core_samples: 2_000 / scale,
            actor_total: 200_000 / scale,
            actor_samples: 200 / scale,
        }
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self(std::env::temp_dir().join(format!(
            "troupe-bench-{what}-{}-{nanos:09}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `troupe bench buffer`.
pub fn main(json: bool, quick: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        tokio::time::timeout(DEADLINE, run(Sizes::new(quick)))
            .await
            .map_err(|_| anyhow!("the buffer bench did not finish in {DEADLINE:?}"))?
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn run(sizes: Sizes) -> anyhow::Result<serde_json::Value> {
    troupe_transport::tls::install_crypto_provider();
    let started = Instant::now();
    let (tokens, memory, encoded) = data::shape();

    // Actors first, while this process is small.
    let certs = CertDir::create(&[LOCAL_NODE.to_owned(), "buffer-0".to_owned()])?;
    let (remote, local, durable) = actors(&certs, sizes).await.context("buffer actor")?;

    let core = tokio::task::spawn_blocking(move || {
        sizes
            .stored
            .map(|n| store::measure(n, sizes.core_samples))
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let (_, peak_rss) = data::rss();

    let mut r = json!({
        "remote_insert_per_s": remote.insert_per_s,
        "local_insert_per_s": local.insert_per_s,
        "remote_over_local_insert": remote.insert_per_s / local.insert_per_s,
        "durable_insert_per_s": durable,
        "remote_sample_p50_us": remote.sample_p50_us,
        "remote_sample_p99_us": remote.sample_p99_us,
        "local_sample_p50_us": local.sample_p50_us,
        "local_sample_p99_us": local.sample_p99_us,
        "remote_over_local_sample_p50": remote.sample_p50_us / local.sample_p50_us,
        "remote_buffer_cpu_us_per_trajectory": remote.buffer_cpu_us,
        "remote_sender_cpu_us_per_trajectory": remote.sender_cpu_us,
        "local_cpu_us_per_trajectory": local.buffer_cpu_us,
        "load_average_1m": load_average(),
        "actor_trajectories": sizes.actor_total,
        "actor_samples": sizes.actor_samples,
        "insert_message_trajectories": data::PER_MESSAGE,
        "insert_ack_window_messages": actor::WINDOW,
        "log_sync": "group commit: 64 records or 5 ms",
        "sample_batch_trajectories": data::BATCH,
        "sample_p99_1m_over_10k": core[2].sample_p99_us / core[0].sample_p99_us,
        "core_samples": sizes.core_samples,
        "trajectory_tokens_min": data::MIN_TOKENS,
        "trajectory_tokens_max": data::MAX_TOKENS,
        "trajectory_tokens_mean": tokens,
        "trajectory_memory_bytes_mean": memory,
        "trajectory_encoded_bytes_mean": encoded,
        "memory_gib_per_1m_trajectories": memory * 1e6 / (1u64 << 30) as f64,
        "peak_rss_gib": peak_rss as f64 / (1u64 << 30) as f64,
        "targets_met": {
            "remote_insert_per_s": remote.insert_per_s >= TARGET_REMOTE_INSERT_PER_S,
            "sample_p99_us_1m": core[2].sample_p99_us < TARGET_SAMPLE_P99_US_1M,
            "sample_p99_1m_over_10k":
                core[2].sample_p99_us <= TARGET_P99_1M_OVER_10K * core[0].sample_p99_us,
        },
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "quick": sizes.quick,
    });
    for (name, c) in ["10k", "100k", "1m"].iter().zip(&core) {
        r[format!("stored_{name}")] = json!(c.stored);
        r[format!("sample_p50_us_{name}")] = json!(c.sample_p50_us);
        r[format!("sample_p99_us_{name}")] = json!(c.sample_p99_us);
        r[format!("sample_max_us_{name}")] = json!(c.sample_max_us);
        r[format!("core_insert_per_s_{name}")] = json!(c.insert_per_s);
        r[format!("rss_growth_gib_{name}")] = json!(c.rss_growth as f64 / (1u64 << 30) as f64);
    }
    r["core_insert_per_s"] = json!(median(
        &mut core.iter().map(|c| c.insert_per_s).collect::<Vec<_>>()
    ));
    r["wall_seconds"] = json!(started.elapsed().as_secs_f64());
    Ok(r)
}

/// The buffer actor in another process, in this one, and the log-writing core alone.
async fn actors(
    certs: &CertDir,
    sizes: Sizes,
) -> anyhow::Result<(actor::ActorFigures, actor::ActorFigures, f64)> {
    let total = sizes.actor_total;
    let remote_log = TempDir::new("buffer-remote");
    let cookie = format!("troupe-bench-{}", std::process::id());
    let args = vec![
        "buffer-peer".into(),
        "--total".into(),
        total.to_string().into(),
        "--log-dir".into(),
        remote_log.0.clone().into_os_string(),
    ];
    let peer = Peer::start("buffer-0", certs, &cookie, args).await?;
    let session = Session::open(certs, LOCAL_NODE, &peer, &cookie).await?;
    let remote = async {
        let buffer = remote_member::<BufferMsg>(group::BUFFER, Duration::from_secs(10)).await?;
        actor::measure(&buffer, total, sizes.actor_samples, peer.pid()).await
    }
    .await;
    session.close();
    peer.stop().await;
    let remote = remote.context("remote")?;

    let local_log = TempDir::new("buffer-local");
    let args = BufferArgs {
        config: actor::buffer_config(total),
        log: Some(log_config(local_log.0.clone())),
        recovery: Recovery::Fresh,
    };
    let (buffer, handle) = Actor::spawn(None, Buffer, args).await?;
    let local = actor::measure(&buffer, total, sizes.actor_samples, None).await;
    buffer.stop(None);
    let _ = handle.await;
    let local = local.context("local")?;

    let durable_log = TempDir::new("buffer-durable");
    let log = log_config(durable_log.0.clone());
    let durable =
        tokio::task::spawn_blocking(move || actor::durable_baseline(actor::messages(total), &log))
            .await??;
    Ok((remote, local, durable))
}

/// The machine's one-minute load average (Linux; NaN elsewhere): how much else ran.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn print_table(r: &serde_json::Value) {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| match r["targets_met"][key].as_bool() {
        Some(true) => "met",
        _ => "MISSED",
    };
    println!();
    println!(
        "  troupe bench buffer   loopback, {} CPUs{}; trajectories of {}-{} tokens (mean {:.0}): {:.0} B in memory, {:.0} B encoded",
        r["cpus"],
        if r["quick"] == true { ", quick" } else { "" },
        r["trajectory_tokens_min"],
        r["trajectory_tokens_max"],
        f("trajectory_tokens_mean"),
        f("trajectory_memory_bytes_mean"),
        f("trajectory_encoded_bytes_mean"),
    );
    println!(
        "  {:<44} {:>16} {:>24} {:>8}",
        "", "troupe", "baseline", "ratio"
    );
    println!(
        "  {:<44} {:>12.0} tr/s {:>14.0} tr/s local {:>8.3}   target >= {TARGET_REMOTE_INSERT_PER_S:.0} tr/s: {}",
        format!(
            "insert, remote actor, {} per message",
            r["insert_message_trajectories"]
        ),
        f("remote_insert_per_s"),
        f("local_insert_per_s"),
        f("remote_over_local_insert"),
        met("remote_insert_per_s"),
    );
    println!(
        "  {:<44} {:>12.0} tr/s   (durable core, no actor)",
        "",
        f("durable_insert_per_s"),
    );
    println!(
        "  {:<44} {:>9.1} us CPU/tr in the buffer's process, {:.1} in the sender's ({:.1} in one process)",
        "",
        f("remote_buffer_cpu_us_per_trajectory"),
        f("remote_sender_cpu_us_per_trajectory"),
        f("local_cpu_us_per_trajectory"),
    );
    println!(
        "  {:<44} {:>13.0} us {:>16.0} us local {:>7.1}x   p99 {:.0} / {:.0} us",
        format!(
            "take batch ({} tr), remote actor, p50",
            r["sample_batch_trajectories"]
        ),
        f("remote_sample_p50_us"),
        f("local_sample_p50_us"),
        f("remote_over_local_sample_p50"),
        f("remote_sample_p99_us"),
        f("local_sample_p99_us"),
    );
    for name in ["10k", "100k", "1m"] {
        println!(
            "  {:<44} {:>10.1} us p50 {:>11.1} us p99      max {:.0} us; fill {:.0} tr/s",
            format!("take batch, core, {} stored", r[format!("stored_{name}")]),
            f(&format!("sample_p50_us_{name}")),
            f(&format!("sample_p99_us_{name}")),
            f(&format!("sample_max_us_{name}")),
            f(&format!("core_insert_per_s_{name}")),
        );
    }
    println!(
        "  p99 at 1m / p99 at 10k {:.2} (target <= {TARGET_P99_1M_OVER_10K}: {}); p99 at 1m < {TARGET_SAMPLE_P99_US_1M:.0} us: {}",
        f("sample_p99_1m_over_10k"),
        met("sample_p99_1m_over_10k"),
        met("sample_p99_us_1m"),
    );
    println!(
        "  memory: {:.2} GiB per 1M trajectories (estimate), {:.2} GiB resident growth filling {}; peak RSS {:.2} GiB",
        f("memory_gib_per_1m_trajectories"),
        f("rss_growth_gib_1m"),
        r["stored_1m"],
        f("peak_rss_gib"),
    );
    println!(
        "  wall {:.1} s; load average {:.1} at the end",
        f("wall_seconds"),
        f("load_average_1m")
    );
}
