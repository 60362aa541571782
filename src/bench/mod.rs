//! `troupe bench buffer`: see [`buffer`].
//!
//! `troupe bench transport`: how fast troupe's transport is, each figure next to a baseline
//! measured in the same run on loopback; `troupe bench sampler`: how fast its sampler
//! decodes, next to llama.cpp ([`sampler`]). No thresholds are enforced; targets are
//! reported.
//!
//! - [`small`] (a): small actor messages to an actor in another process over a ractor_cluster
//!   session on QUIC, against the same actor in this process.
//! - [`bulk`] (b): blob goodput on QUIC streams against rustls over TCP ([`tls_tcp`]);
//!   (c): a weight broadcast to several receiver processes.
//! - [`peer`]: the other processes (`troupe bench transport-peer`, hidden); [`proc`] starts
//!   and reaps them; [`counter`] is the actor of part (a).

mod buffer;
mod bulk;
mod counter;
mod learner;
mod peer;
mod proc;
mod sampler;
mod small;
mod tls_tcp;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Subcommand;
use serde_json::json;

/// This process's node name in the bench cluster.
const LOCAL_NODE: &str = "bench";
/// Receivers of the broadcast in part (c).
const RECEIVERS: usize = 4;
/// The whole bench gives up after this long (peers are killed on the way out).
const DEADLINE: Duration = Duration::from_secs(180);

/// Targets from the transport issue; reported, never asserted.
const TARGET_REMOTE_MSGS_PER_S: f64 = 100_000.0;
const TARGET_QUIC_OVER_TLS: f64 = 0.5;
const TARGET_BROADCAST_EFFICIENCY: f64 = 0.8;

/// `troupe bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Actor messages across processes, QUIC bulk goodput against TLS over TCP, and a
    /// weight broadcast; each against a baseline from the same run.
    Transport {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// About ten times smaller, for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Learner step time, tokens/s and MFU, sampler decode tokens/s and the cost of
    /// bringing weights to host memory, for one model on one device (CPU or GPU).
    Learner(learner::LearnerArgs),
    /// Decode and prefill speed of the sampler on a GGUF model (Q8_0, Q4_1 and f32
    /// weights), against llama.cpp on the same file, prompt and thread count.
    Sampler {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Fewer tokens and repetitions, for a smoke run.
        #[arg(long)]
        quick: bool,
        /// The GGUF model [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
        /// Threads for troupe (candle) and llama.cpp [default: the CPUs available].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
    /// The other end of `bench transport` (started by it).
    #[command(hide = true)]
    TransportPeer(peer::PeerArgs),
    /// Replay buffer insert and sample rates, in this process and from another one over
    /// QUIC, and batch-take latency with 10k, 100k and 1M trajectories stored.
    Buffer {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// About ten times smaller, for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// The other end of `bench buffer` (started by it).
    #[command(hide = true)]
    BufferPeer(buffer::peer::BufferPeerArgs),
}

/// Runs a bench command.
pub fn main(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Transport { json, quick } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(async {
                tokio::time::timeout(DEADLINE, transport(Sizes::new(quick)))
                    .await
                    .map_err(|_| anyhow!("the transport bench did not finish in {DEADLINE:?}"))?
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_table(&report);
            }
            Ok(())
        }
        BenchCommand::Sampler {
            json,
            quick,
            model,
            threads,
        } => sampler::main(sampler::Options {
            json,
            quick,
            model: model.unwrap_or_else(|| PathBuf::from(sampler::DEFAULT_MODEL)),
            threads: threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, usize::from),
                usize::from,
            ),
        }),
        BenchCommand::TransportPeer(args) => peer::main(args),
        BenchCommand::Learner(args) => learner::main(args),
        BenchCommand::Buffer { json, quick } => buffer::main(json, quick),
        BenchCommand::BufferPeer(args) => buffer::peer::main(args),
    }
}

/// Sizes of one bench run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    quick: bool,
    small: small::SmallSizes,
    bulk_bytes: usize,
    bulk_rounds: usize,
    broadcast_bytes: usize,
    broadcast_rounds: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        let scale = if quick { 10 } else { 1 };
        Self {
            quick,
            small: small::SmallSizes {
                target_secs: 2.5 / scale as f64,
                max_batch: 1_000_000 / scale,
                calls: 2000 / scale as usize,
            },
            bulk_bytes: (256 << 20) / scale as usize,
            bulk_rounds: 3,
            broadcast_bytes: 100_000_000 / scale as usize,
            broadcast_rounds: 3,
        }
    }
}

/// The median of `values` (sorts them in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

async fn transport(sizes: Sizes) -> anyhow::Result<serde_json::Value> {
    troupe_transport::tls::install_crypto_provider();
    let started = Instant::now();
    let mut names = vec![LOCAL_NODE.to_owned(), "actor-0".to_owned()];
    names.extend((0..RECEIVERS).map(|i| format!("sink-{i}")));
    let certs = proc::CertDir::create(&names)?;

    let (remote, local) = small::run(&certs, sizes.small)
        .await
        .context("(a) small messages")?;
    let goodput = bulk::goodput(&certs, sizes.bulk_bytes, sizes.bulk_rounds)
        .await
        .context("(b) bulk goodput")?;
    let cast = bulk::broadcast(
        &certs,
        sizes.broadcast_bytes,
        RECEIVERS,
        sizes.broadcast_rounds,
    )
    .await
    .context("(c) broadcast")?;

    let efficiency = cast.aggregate_mib_s / goodput.quic_blob;
    let quic_over_tls = goodput.quic_blob / goodput.tls_tcp;
    Ok(json!({
        "small_msgs_per_s_remote": remote.msgs_per_s,
        "small_msgs_per_s_local": local.msgs_per_s,
        "small_remote_over_local": remote.msgs_per_s / local.msgs_per_s,
        "small_msgs_remote": remote.msgs,
        "small_msgs_local": local.msgs,
        "small_payload_bytes": small::PAYLOAD,
        "ask_rtt_us_remote": remote.rtt_us,
        "ask_rtt_us_local": local.rtt_us,
        "ask_rtt_p99_us_remote": remote.rtt_p99_us,
        "ask_rtt_p99_us_local": local.rtt_p99_us,
        "ask_rtt_remote_over_local": remote.rtt_us / local.rtt_us,
        "ask_calls": sizes.small.calls,
        "quic_goodput_mib_s": goodput.quic_blob,
        "quic_bare_goodput_mib_s": goodput.quic_bare,
        "tls_tcp_goodput_mib_s": goodput.tls_tcp,
        "quic_over_tls_tcp": quic_over_tls,
        "bulk_bytes": sizes.bulk_bytes,
        "bulk_rounds": sizes.bulk_rounds,
        "broadcast_efficiency": efficiency,
        "broadcast_seconds": cast.seconds,
        "broadcast_aggregate_mib_s": cast.aggregate_mib_s,
        "broadcast_bytes": sizes.broadcast_bytes,
        "broadcast_receivers": RECEIVERS,
        "targets_met": {
            "small_msgs_per_s_remote": remote.msgs_per_s >= TARGET_REMOTE_MSGS_PER_S,
            "quic_over_tls_tcp": quic_over_tls >= TARGET_QUIC_OVER_TLS,
            "broadcast_efficiency": efficiency >= TARGET_BROADCAST_EFFICIENCY,
        },
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "quick": sizes.quick,
        "wall_seconds": started.elapsed().as_secs_f64(),
    }))
}

fn print_table(r: &serde_json::Value) {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| match r["targets_met"][key].as_bool() {
        Some(true) => "met",
        _ => "MISSED",
    };
    println!();
    println!(
        "  troupe bench transport   loopback, {} CPUs{}",
        r["cpus"],
        if r["quick"] == true { ", quick" } else { "" }
    );
    println!(
        "  {:<34} {:>16} {:>22} {:>8}",
        "", "troupe", "baseline", "ratio"
    );
    println!(
        "  {:<34} {:>10.0} msg/s {:>12.0} msg/s local {:>8.3}   target >= {TARGET_REMOTE_MSGS_PER_S:.0} msg/s: {}",
        format!("(a) one-way, {} B, remote actor", small::PAYLOAD),
        f("small_msgs_per_s_remote"),
        f("small_msgs_per_s_local"),
        f("small_remote_over_local"),
        met("small_msgs_per_s_remote"),
    );
    println!(
        "  {:<34} {:>13.1} us {:>15.1} us local {:>7.1}x   p99 {:.0} / {:.1} us",
        format!("(a) ask RTT, median of {}", r["ask_calls"]),
        f("ask_rtt_us_remote"),
        f("ask_rtt_us_local"),
        f("ask_rtt_remote_over_local"),
        f("ask_rtt_p99_us_remote"),
        f("ask_rtt_p99_us_local"),
    );
    println!(
        "  {:<34} {:>10.0} MiB/s {:>10.0} MiB/s TLS/TCP {:>6.3}   target >= {TARGET_QUIC_OVER_TLS}: {}",
        format!(
            "(b) send_blob {:.1} MiB, QUIC",
            f("bulk_bytes") / (1 << 20) as f64
        ),
        f("quic_goodput_mib_s"),
        f("tls_tcp_goodput_mib_s"),
        f("quic_over_tls_tcp"),
        met("quic_over_tls_tcp"),
    );
    println!(
        "  {:<34} {:>10.0} MiB/s",
        "    same bytes, bare QUIC stream",
        f("quic_bare_goodput_mib_s"),
    );
    println!(
        "  {:<34} {:>10.0} MiB/s {:>10.0} MiB/s 1 link {:>7.3}   target >= {TARGET_BROADCAST_EFFICIENCY}: {}",
        format!(
            "(c) broadcast {:.0} MB to {}",
            f("broadcast_bytes") / 1e6,
            r["broadcast_receivers"]
        ),
        f("broadcast_aggregate_mib_s"),
        f("quic_goodput_mib_s"),
        f("broadcast_efficiency"),
        met("broadcast_efficiency"),
    );
    println!(
        "  (c) took {:.2} s (median); efficiency = receivers x bytes / (time x (b) QUIC goodput)",
        f("broadcast_seconds")
    );
    println!("  wall {:.1} s", f("wall_seconds"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn quick_is_about_ten_times_smaller() {
        let (full, quick) = (Sizes::new(false), Sizes::new(true));
        assert_eq!(full.bulk_bytes, 256 << 20);
        assert_eq!(full.broadcast_bytes, 100_000_000);
        assert_eq!(full.bulk_bytes / quick.bulk_bytes, 10);
        assert_eq!(full.small.calls / quick.small.calls, 10);
    }
}
