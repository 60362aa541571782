//! The `[codefix]` section of the run config, and the sandbox policies it implies.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_sandbox::SandboxPolicy;

use crate::EnvError;

/// Settings of the code-fixing environment (used when `[task] family = "codefix"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodefixConfig {
    /// Policy turns per episode; the episode is judged after the last one. Each turn
    /// costs a generation and, usually, a sandboxed command.
    pub max_turns: u32,
    /// Bytes of a command's output shown to the policy (head and tail are kept). Every
    /// byte is a context token for the byte-level policy.
    pub observation_bytes: usize,
    /// Wall-clock limit of one agent command in the sandbox, in milliseconds.
    pub command_timeout_ms: u64,
    /// Wall-clock limit of one hidden-test run, in milliseconds; reaching it earns 0
    /// and counts as `timeout`.
    pub judge_timeout_ms: u64,
    /// Sandboxes each env host and each judge keep warm (one uid lease and scratch
    /// directory each); commands beyond it queue.
    pub sandboxes: usize,
    /// Largest diff an episode may submit, in bytes; a longer one is cut and no longer
    /// applies (`bad_diff`).
    pub diff_bytes: usize,
}

impl Default for CodefixConfig {
    fn default() -> Self {
        Self {
            max_turns: 6,
            observation_bytes: 256,
            command_timeout_ms: 10_000,
            judge_timeout_ms: 20_000,
            sandboxes: 4,
            diff_bytes: 64 << 10,
        }
    }
}

impl CodefixConfig {
    /// Checks every value is usable.
    pub fn validate(&self) -> Result<(), EnvError> {
        let bad = |key, reason: &str| {
            Err(EnvError::Config {
                key,
                reason: reason.to_string(),
            })
        };
        if !(1..=64).contains(&self.max_turns) {
            return bad("codefix.max_turns", "must be in 1..=64");
        }
        if self.observation_bytes < 32 {
            return bad("codefix.observation_bytes", "must be at least 32");
        }
        if self.command_timeout_ms < 100 || self.judge_timeout_ms < 100 {
            return bad(
                "codefix.command_timeout_ms",
                "timeouts must be at least 100 ms",
            );
        }
        if !(1..=128).contains(&self.sandboxes) {
            return bad("codefix.sandboxes", "must be in 1..=128");
        }
        if self.diff_bytes < 1024 {
            return bad("codefix.diff_bytes", "must be at least 1024");
        }
        Ok(())
    }

    /// The sandbox agent commands run in: the default policy with this config's timeout,
    /// no bytecode files, and output kept up to a diff's size.
    pub fn agent_policy(&self) -> SandboxPolicy {
        policy(
            Duration::from_millis(self.command_timeout_ms),
            self.diff_bytes,
        )
    }

    /// The sandbox the judge applies diffs and runs hidden tests in.
    pub fn judge_policy(&self) -> SandboxPolicy {
        policy(Duration::from_millis(self.judge_timeout_ms), 64 << 10)
    }
}

fn policy(timeout: Duration, stdout_bytes: usize) -> SandboxPolicy {
    let mut p = SandboxPolicy::default();
    p.env.push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
    p.limits.wall_timeout = timeout;
    p.limits.cpu_seconds = timeout.as_secs() + 1;
    p.limits.processes = 64;
    p.output.stdout_bytes = stdout_bytes;
    p.output.stderr_bytes = 16 << 10;
    p.output.kill_after_bytes = 16 << 20;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        let c = CodefixConfig::default();
        c.validate().unwrap();
        c.agent_policy().validate().unwrap();
        c.judge_policy().validate().unwrap();
        let bad = CodefixConfig {
            max_turns: 0,
            ..CodefixConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("max_turns")
        );
        let bad = CodefixConfig {
            sandboxes: 0,
            ..CodefixConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("sandboxes")
        );
    }
}
