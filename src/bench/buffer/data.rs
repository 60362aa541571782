//! The bench's trajectories: token-exact, 64–256 tokens (a quarter prompt, the rest
//! generated), a reward spread within each group so groups carry signal, and vectors
//! allocated to their exact length, as decoded off the wire. Deterministic in the id.

use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};

/// Fewest tokens in a trajectory.
pub const MIN_TOKENS: usize = 64;
/// Most tokens in a trajectory.
pub const MAX_TOKENS: usize = 256;
/// Members per group (the default `rl.group_size`).
pub const GROUP_SIZE: u32 = 8;
/// Groups per batch (the default `rl.groups_per_batch`): a batch is 256 trajectories.
pub const GROUPS_PER_BATCH: u32 = 32;
/// Trajectories per batch.
pub const BATCH: usize = (GROUP_SIZE * GROUPS_PER_BATCH) as usize;
/// Trajectories per insert message: one sampler work unit (`rl.groups_per_sampler` 8
/// groups of 8), as the real samplers produce them.
pub const PER_MESSAGE: usize = 64;

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Trajectory number `n` (0-based): member `n % 8` of group `(n / 8) % 32` of batch
/// `n / 256`, generated at policy version `batch` (so a take at version `batch` finds it
/// fresh), with id `n`.
pub fn trajectory(n: u64) -> ScoredTrajectory {
    let batch = n / BATCH as u64;
    let group = ((n / u64::from(GROUP_SIZE)) % u64::from(GROUPS_PER_BATCH)) as u32;
    let r = mix(n);
    let len = MIN_TOKENS + (r % (MAX_TOKENS - MIN_TOKENS + 1) as u64) as usize;
    let prompt = len / 4;
    let tokens: Vec<u32> = (0..len as u64)
        .map(|i| (mix(r ^ i) % 32_000) as u32)
        .collect();
    let policy: Vec<u8> = (0..len).map(|i| u8::from(i >= prompt)).collect();
    let logprobs: Vec<f32> = (0..len)
        .map(|i| {
            if i >= prompt {
                -0.5 - (i % 7) as f32 * 0.25
            } else {
                0.0
            }
        })
        .collect();
    let versions: Vec<u64> = (0..len)
        .map(|i| if i >= prompt { batch } else { u64::MAX })
        .collect();
    let task = TaskSpec {
        id: batch * 65_536 + u64::from(group),
        prompt: String::new(),
        answer: String::new(),
        difficulty: 0,
    };
    let mut t = Trajectory::new(n, task, Purpose::Train { batch, group });
    t.tokens = tokens;
    t.policy = policy;
    t.logprobs = logprobs;
    t.versions = versions;
    debug_assert_eq!(t.oldest_version(), Some(PolicyVersion(batch)));
    ScoredTrajectory {
        trajectory: t,
        reward: Reward {
            total: (n % 2) as f32,
            breakdown: Vec::new(),
        },
    }
}

/// Trajectories `first..first + count`.
pub fn trajectories(first: u64, count: usize) -> Vec<ScoredTrajectory> {
    (first..first + count as u64).map(trajectory).collect()
}

/// Bytes a trajectory occupies in memory: the struct plus its heap allocations.
pub fn memory_bytes(t: &ScoredTrajectory) -> usize {
    let tr = &t.trajectory;
    std::mem::size_of::<ScoredTrajectory>()
        + tr.tokens.capacity() * 4
        + tr.policy.capacity()
        + tr.logprobs.capacity() * 4
        + tr.versions.capacity() * 8
        + tr.task.prompt.capacity()
        + tr.task.answer.capacity()
        + tr.response.capacity()
        + t.reward.breakdown.capacity() * std::mem::size_of::<(String, f32)>()
}

/// Mean tokens, memory bytes and encoded (wire and log) bytes over a sample.
pub fn shape() -> (f64, f64, f64) {
    let sample: Vec<_> = (0..2_000).map(trajectory).collect();
    let n = sample.len() as f64;
    let tokens = sample
        .iter()
        .map(|t| t.trajectory.tokens.len())
        .sum::<usize>() as f64;
    let memory = sample.iter().map(memory_bytes).sum::<usize>() as f64;
    let encoded = sample
        .iter()
        .map(|t| troupe_core::wire::encode_body(t).map_or(0, |b| b.len()))
        .sum::<usize>() as f64;
    (tokens / n, memory / n, encoded / n)
}

/// This process's resident and peak resident memory in bytes (Linux; 0 elsewhere).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this one); Linux,
/// NaN elsewhere.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // Clock ticks are 100 per second on Linux.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}
