//! `troupe`: post-train a policy with RL. `troupe run` does the whole job on this machine;
//! `troupe serve` answers OpenAI-style requests with a policy.

mod bench;
mod control;
mod export;
mod progress;
mod sandbox;
mod serve;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use troupe_actors::{RunOptions, Summary, config::EMBEDDED_DEFAULT};

/// mimalloc rather than glibc malloc: see the note on the dependency in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "troupe",
    version,
    about = "Actor-model distributed RL for post-training language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole job (evaluate, SFT warm start, async GRPO, evaluate) in one process.
    Run {
        /// Cluster configuration (default: ./cluster.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seed for weights, tasks and sampling (overrides run.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Run directory to create (default: a new one under run.runs_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in RUN_DIR from its latest checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "seed", "out", "seed_trajectories"])]
        resume: Option<PathBuf>,
        /// Chat-format JSONL to warm-start on instead of the built-in expert's trajectories.
        #[arg(long, value_name = "FILE")]
        seed_trajectories: Option<PathBuf>,
        /// Print the summary as JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start one node of a multi-machine cluster (run one per machine).
    Node {
        /// Cluster configuration listing every node.
        #[arg(long)]
        config: PathBuf,
        /// This node's name in the configuration.
        #[arg(long)]
        name: String,
        /// Seed (head node only; overrides run.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Run directory (head node only). One that already holds the run is resumed
        /// from its last checkpoint: restart a lost head with the same command.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary as JSON on stdout instead of the table (head node).
        #[arg(long)]
        json: bool,
    },
    /// Show a running cluster's nodes, actors, policy version and trajectory counts
    /// (from the head node's dashboard).
    Status(status::StatusArgs),
    /// Run N samplers on a running cluster (`samplers=N`): spread over the nodes that host
    /// samplers, or on one node with --node. New samplers pull the current weights;
    /// removed ones finish the unit in hand.
    Scale(control::ScaleArgs),
    /// Kill one actor of a running cluster, as a crash would (fault drills): its node
    /// restarts it and the coordinator hands its work out again.
    Kill(control::KillArgs),
    /// Make a cluster CA and one certificate per node of the configuration.
    Certs {
        /// Cluster configuration listing every node.
        #[arg(long)]
        config: PathBuf,
        /// Where to write ca.pem, ca.key and NAME.pem / NAME.key per node.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one command in the sandbox env hosts use (default policy) and exit with its status.
    Sandbox {
        /// Task repository, bound read-write at /repo; its files are chowned to the sandbox's host uid
        /// (default: a fresh temporary directory, removed afterwards).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Write a policy (GGUF, Hugging Face dir, checkpoint or run dir) as a Hugging Face
    /// directory that `transformers` loads.
    Export(export::ExportArgs),
    /// Serve a policy over an OpenAI-compatible HTTP API (chat and text completions).
    Serve(serve::ServeArgs),
    /// Measure parts of troupe against baselines from the same run (no thresholds).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

fn read_config(path: Option<PathBuf>) -> anyhow::Result<(String, PathBuf)> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok((text, p))
        }
        None => {
            let local = PathBuf::from("cluster.toml");
            match std::fs::read_to_string(&local) {
                Ok(text) => Ok((text, local)),
                Err(_) => Ok((
                    EMBEDDED_DEFAULT.to_string(),
                    PathBuf::from("<embedded cluster.toml>"),
                )),
            }
        }
    }
}

fn print_table(s: &Summary) {
    let h = &s.heldout;
    let t = &s.trajectories;
    println!();
    println!(
        "  held-out pass@1   initial {:.3}   after SFT {:.3}   after RL {:.3}   (RL {:+.1} points)",
        h.initial,
        h.after_sft,
        h.after_rl,
        100.0 * (h.after_rl - h.after_sft)
    );
    let parts = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = &s.reward_parts;
    if !p.rl.is_empty() {
        println!("  reward parts      RL: {}", parts(&p.rl));
    }
    for (label, name) in [
        ("initial", "initial"),
        ("after_sft", "after SFT"),
        ("after_rl", "after RL"),
    ] {
        if let Some(m) = p.heldout.get(label).filter(|m| !m.is_empty()) {
            println!("                    held-out {name}: {}", parts(m));
        }
    }
    let b = &h.breakdown;
    let calls = |m: &std::collections::BTreeMap<String, f32>, k: &str| m.get(k).copied();
    if let (Some(sft), Some(rl)) = (
        calls(&b.after_sft, "tool_calls"),
        calls(&b.after_rl, "tool_calls"),
    ) && sft + rl > 0.0
    {
        let bad = |m| calls(m, "malformed_calls").unwrap_or(0.0);
        println!(
            "  tool use          calls/episode after SFT {sft:.2}   after RL {rl:.2}   malformed/episode after SFT {:.2}   after RL {:.2}",
            bad(&b.after_sft),
            bad(&b.after_rl)
        );
    }
    println!(
        "  trajectories      generated {}   trained {}   dropped stale {}   filtered zero-signal {}{}   in flight {}{}",
        t.generated,
        t.trained,
        t.dropped_stale,
        t.filtered_zero_signal,
        if t.dropped_judge_error > 0 {
            format!("   dropped judge error {}", t.dropped_judge_error)
        } else {
            String::new()
        },
        t.in_flight,
        if t.duplicates > 0 {
            format!("   resent (ignored) {}", t.duplicates)
        } else {
            String::new()
        }
    );
    println!(
        "  throughput        sampled {:.0} tok/s   trained {:.0} tok/s   (over {:.1} s of RL)",
        s.throughput.sampled_tokens_per_s, s.throughput.trained_tokens_per_s, s.rl_seconds
    );
    if let Some(j) = &s.judge {
        println!(
            "  judge             scored {}   unscored {}   calls {} ({} failed, {} retries, {} timeouts, {} HTTP errors)   malformed verdicts {}   tokens {}   latency p50 {:.0} ms p99 {:.0} ms",
            j.scored,
            j.unscored,
            j.calls,
            j.failures,
            j.retries,
            j.timeouts,
            j.http_errors,
            j.malformed_verdicts,
            j.budget.tokens,
            j.latency.p50_ms,
            j.latency.p99_ms
        );
    }
    println!(
        "  policy            version {} after {} RL steps   wall {:.1} s",
        s.policy_version, s.rl_steps, s.wall_seconds
    );
    println!(
        "  summary           {}",
        PathBuf::from(&s.run_dir).join("summary.json").display()
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TROUPE_LOG")
                .unwrap_or_else(|_| "warn,ractor_cluster=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    let report = |summary: &Summary, json: bool| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(summary)?);
        } else {
            print_table(summary);
        }
        Ok(())
    };
    match cli.command {
        Command::Run {
            config,
            seed,
            out,
            resume,
            seed_trajectories,
            json,
        } => {
            let opts = RunOptions {
                config: read_config(config)?,
                seed,
                out,
                resume,
                seed_trajectories,
            };
            let progress: Arc<dyn troupe_actors::Progress> = Arc::new(progress::Bars::new());
            let summary = runtime()?.block_on(troupe_actors::run(opts, progress))?;
            report(&summary, json)?;
        }
        Command::Node {
            config,
            name,
            seed,
            out,
            json,
        } => {
            let opts = troupe_actors::NodeOptions {
                config,
                name,
                seed,
                out,
            };
            let progress: Arc<dyn troupe_actors::Progress> = Arc::new(progress::Bars::new());
            if let Some(summary) = runtime()?.block_on(troupe_actors::node(opts, progress))? {
                report(&summary, json)?;
            }
        }
        Command::Certs { config, out } => {
            let cfg = troupe_actors::config::ClusterConfig::load(&config)?;
            let names: Vec<String> = cfg.nodes().into_iter().map(|n| n.name).collect();
            let certs = troupe_transport::generate_cluster(&names)?;
            troupe_transport::write_cluster(&out, &certs)?;
            println!(
                "wrote a cluster CA and certificates for {} to {}",
                names.join(", "),
                out.display()
            );
            println!(
                "copy ca.pem and each node's NAME.pem / NAME.key to that node; keep ca.key offline"
            );
        }
        Command::Sandbox { repo, command } => std::process::exit(sandbox::main(repo, command)?),
        Command::Serve(args) => serve::main(args)?,
        Command::Bench { what } => bench::main(what)?,
        Command::Export(args) => export::main(args)?,
        Command::Status(args) => status::main(args)?,
        Command::Scale(args) => control::scale(args)?,
        Command::Kill(args) => control::kill(args)?,
    }
    Ok(())
}
