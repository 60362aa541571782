//! `troupe`: post-train a policy with RL. `troupe run` does the whole job on this machine.

mod progress;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use troupe_actors::{RunOptions, Summary, config::EMBEDDED_DEFAULT};

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
    println!(
        "  trajectories      generated {}   trained {}   dropped stale {}   filtered zero-signal {}   in flight {}",
        t.generated, t.trained, t.dropped_stale, t.filtered_zero_signal, t.in_flight
    );
    println!(
        "  throughput        sampled {:.0} tok/s   trained {:.0} tok/s   (over {:.1} s of RL)",
        s.throughput.sampled_tokens_per_s, s.throughput.trained_tokens_per_s, s.rl_seconds
    );
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
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let summary = runtime.block_on(troupe_actors::run(opts, progress))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_table(&summary);
            }
        }
    }
    Ok(())
}
