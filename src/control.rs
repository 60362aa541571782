//! `troupe scale` and `troupe kill`: change a running cluster through its head's
//! dashboard API (`POST /api/scale`, `POST /api/kill`), with the run's bearer token.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::status::{HeadArgs, request};

/// Arguments of `troupe scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// What to scale, as `samplers=N`.
    #[arg(value_name = "samplers=N")]
    what: String,
    /// Scale this node's samplers (default: spread N over the nodes that host samplers).
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    head: HeadArgs,
}

/// Arguments of `troupe kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The actor's name, as `troupe status` lists it (`sampler-1`, `env_host-0`, ...).
    actor: String,
    /// The node hosting it.
    #[arg(long)]
    node: String,
    #[command(flatten)]
    head: HeadArgs,
}

/// `samplers=N` → N.
fn parse_target(what: &str) -> anyhow::Result<u32> {
    let (key, n) = what
        .split_once('=')
        .with_context(|| format!("{what:?}: write it as samplers=N"))?;
    if key.trim() != "samplers" {
        bail!("{key:?}: only samplers can be scaled (write samplers=N)");
    }
    n.trim()
        .parse()
        .with_context(|| format!("{n:?}: N must be a whole number"))
}

/// Runs `troupe scale`.
pub fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let samplers = parse_target(&args.what)?;
    let (url, token) = args.head.locate()?;
    let body = json!({"samplers": samplers, "node": args.node}).to_string();
    let answer = request(&url, "POST", "/api/scale", &token, Some(&body))?;
    let v: Value = serde_json::from_str(&answer).context("the head answered with invalid JSON")?;
    for n in v["nodes"].as_array().into_iter().flatten() {
        println!(
            "{}: {} samplers",
            n["name"].as_str().unwrap_or("?"),
            n["samplers"]
        );
    }
    Ok(())
}

/// Runs `troupe kill`.
pub fn kill(args: KillArgs) -> anyhow::Result<()> {
    let (url, token) = args.head.locate()?;
    let body = json!({"node": args.node, "actor": args.actor}).to_string();
    request(&url, "POST", "/api/kill", &token, Some(&body))?;
    println!(
        "killed {} on {}; its node restarts it",
        args.actor, args.node
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn only_samplers_scale() {
        assert_eq!(parse_target("samplers=3").unwrap(), 3);
        assert!(parse_target("judges=2").is_err());
        assert!(parse_target("samplers").is_err());
        assert!(parse_target("samplers=-1").is_err());
    }
}
