//! `cluster.toml`: nodes and the roles they host, the model, the task and the
//! algorithm. Every table rejects unknown keys, so a typo fails with the file, line
//! and key. A file that sets nothing gets the embedded single-machine default.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use troupe_env::{EnvSpec, TaskConfig, TaskFamily};
use troupe_learner::sft::LrSchedule;
use troupe_model::ModelConfig;
use troupe_model::device::DeviceName;
use troupe_model::tokenizer::ChatTokenizer;

use crate::ActorError;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Run-wide settings.
    pub run: RunConfig,
    /// Machines and the roles each hosts. Empty means one embedded node with defaults.
    pub nodes: Vec<NodeConfig>,
    /// Settings shared by the nodes of a multi-machine cluster.
    pub cluster: ClusterSettings,
    /// Policy shape, or the pretrained model to start from (resolved when the file is
    /// parsed: the shape then comes from the model file).
    pub model: ModelConfig,
    /// The tokenizer and chat template of `model` (byte-level unless pretrained).
    #[serde(skip)]
    pub tokenizer: ChatTokenizer,
    /// The built-in task.
    pub task: TaskSettings,
    /// The code-fixing environment (with `[task] family = "codefix"`).
    pub codefix: troupe_env::codefix::CodefixConfig,
    /// SFT warm start.
    pub sft: SftConfig,
    /// Asynchronous GRPO.
    pub rl: RlConfig,
    /// The replay buffer's durable log.
    pub buffer: BufferSettings,
    /// How judges score: weighted components (hidden tests, a rule, an LLM judge) and
    /// the LLM judge's client. Default: the task's verifier alone.
    pub judge: troupe_judge::JudgeConfig,
    /// Optimizer.
    pub optim: OptimConfig,
    /// The head node's web dashboard, JSON API and Prometheus `/metrics`.
    pub dashboard: DashboardConfig,
}

/// The dashboard the head node (the one hosting the coordinator) serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve it. Costs one HTTP listener and a ring of the last 4,096 steps' metrics
    /// (a few MiB at most) in the head process.
    pub enabled: bool,
    /// TCP address (`host:port`) to listen on; port 0 picks a free port. The actual URL
    /// and a bearer token are written to the run directory (`dashboard.url`,
    /// `dashboard.token`). Plain HTTP: keep it on loopback, or behind a TLS proxy.
    pub addr: String,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: "127.0.0.1:0".into(),
        }
    }
}

/// Run-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Seed for weights, tasks and sampling; `--seed` overrides it.
    pub seed: u64,
    /// Where run directories are created (`--out` picks one exactly).
    pub runs_dir: PathBuf,
    /// Where the learner computes: `cpu`, or `cuda` / `cuda:N` in a `--features cuda`
    /// build (weights and optimizer state then live in GPU memory).
    pub learner_device: String,
    /// Where samplers decode: `cpu` (with `model.sampler_weights`), or `cuda` / `cuda:N`
    /// (f32 weights). On the learner's own GPU each publication is a device-to-device
    /// copy that samplers load in place; otherwise weights pass through host memory.
    pub sampler_device: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            runs_dir: PathBuf::from("runs"),
            learner_device: "cpu".into(),
            sampler_device: "cpu".into(),
        }
    }
}

/// One machine of the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, unique in the cluster.
    pub name: String,
    /// UDP address (`host:port`) the node listens on for QUIC; used by `troupe node`,
    /// ignored by `troupe run`.
    #[serde(default)]
    pub addr: Option<String>,
    /// Roles and how many actors of each this node hosts.
    #[serde(default)]
    pub roles: Roles,
    /// The run does not wait for this node: it may join, leave and come back at any
    /// time (extra samplers, spare env hosts). It cannot host the coordinator.
    #[serde(default)]
    pub optional: bool,
}

/// Settings shared by every node of a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Shared secret of the actor sessions (ractor's magic cookie). Authentication only;
    /// encryption and peer identity come from mutual TLS.
    pub cookie: String,
    /// Directory holding `ca.pem` and each node's `NAME.pem` / `NAME.key`, as written by
    /// `troupe certs`; relative paths are relative to the config file.
    pub tls_dir: PathBuf,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            cookie: "troupe".into(),
            tls_dir: PathBuf::from("certs"),
        }
    }
}

/// Actor counts per role on one node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Roles {
    /// Hosts the coordinator (exactly one node must).
    pub coordinator: bool,
    /// Hosts the replay buffer (exactly one node must).
    pub buffer: bool,
    /// Hosts the learner (exactly one node must).
    pub learner: bool,
    /// Sampler actors: each holds a policy replica (memory: one copy of the weights) and
    /// generates `rl.groups_per_sampler * rl.group_size` episodes per forward batch.
    pub samplers: u32,
    /// Environment-host actors.
    pub env_hosts: u32,
    /// Judge actors.
    pub judges: u32,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            coordinator: true,
            buffer: true,
            learner: true,
            samplers: 2,
            env_hosts: 1,
            judges: 1,
        }
    }
}

/// The built-in task and its evaluation split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSettings {
    /// `"sort"` (sort a list of digits), `"add"` (add two numbers), `"calc"` (a product,
    /// sometimes plus a third number, solved by calling a calculator tool: multi-turn
    /// episodes) or `"codefix"` (fix a planted bug in a sandboxed git repository; see
    /// `[codefix]`).
    pub family: TaskFamily,
    /// Fewest digits per problem (list length for sort, operand length for add).
    pub min_digits: u32,
    /// Most digits per problem; longer problems are harder and need more tokens.
    pub max_digits: u32,
    /// Share of the problem space, in per mille, held out for evaluation only.
    pub heldout_per_mille: u32,
    /// Held-out problems evaluated at each phase boundary (greedy pass@1). More is
    /// less noisy and costs one greedy generation each per evaluation.
    pub heldout_size: usize,
    /// Environment instances each env host keeps at most (back-pressure beyond).
    pub env_capacity: usize,
    /// Most policy turns per episode (tool calls plus the answer). Each turn is one
    /// generation of up to `rl.max_new_tokens` tokens and one env-host round trip; the
    /// whole episode must also fit `model.max_seq` tokens, or it ends early unanswered.
    /// Single-turn families end after one turn whatever this says.
    pub max_turns: u32,
}

impl Default for TaskSettings {
    fn default() -> Self {
        let t = TaskConfig::default();
        Self {
            family: t.family,
            min_digits: t.min_digits,
            max_digits: t.max_digits,
            heldout_per_mille: t.heldout_per_mille,
            heldout_size: 400,
            env_capacity: 4096,
            max_turns: 8,
        }
    }
}

impl TaskSettings {
    /// The task generator's configuration.
    pub fn task_config(&self) -> TaskConfig {
        TaskConfig {
            family: self.family,
            min_digits: self.min_digits,
            max_digits: self.max_digits,
            heldout_per_mille: self.heldout_per_mille,
        }
    }

    /// What env hosts make for each task.
    pub fn env_spec(&self) -> EnvSpec {
        EnvSpec {
            family: self.family,
            max_turns: self.max_turns,
        }
    }
}

/// Supervised warm start on seed trajectories.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// How many seed trajectories the built-in expert writes when no
    /// `--seed-trajectories` file is given.
    pub seed_trajectories: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Conversations per step.
    pub batch_size: usize,
    /// Learning rate (the peak, under a schedule).
    pub lr: f64,
    /// How the learning rate moves over the steps.
    pub schedule: SftSchedule,
    /// Steps of linear warm-up (with `schedule = "cosine"`).
    pub warmup_steps: u64,
}

/// `[sft] schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SftSchedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Linear warm-up over `warmup_steps`, then cosine decay to a tenth of `lr` at the
    /// last step.
    Cosine,
}

impl SftConfig {
    /// The learner's schedule for this warm start.
    pub fn lr_schedule(&self) -> LrSchedule {
        match self.schedule {
            SftSchedule::Constant => LrSchedule::Constant,
            SftSchedule::Cosine => LrSchedule::Cosine {
                warmup: self.warmup_steps,
                total: self.steps,
            },
        }
    }
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            seed_trajectories: 256,
            steps: 200,
            batch_size: 32,
            lr: 1e-3,
            schedule: SftSchedule::Constant,
            warmup_steps: 0,
        }
    }
}

/// Asynchronous GRPO.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Learner steps.
    pub steps: u64,
    /// Samples per task (G); advantages are relative within the group.
    pub group_size: u32,
    /// Tasks per learner step.
    pub groups_per_batch: u32,
    /// Groups a sampler generates in one forward batch.
    pub groups_per_sampler: u32,
    /// Learning rate.
    pub lr: f64,
    /// PPO clip: ratio floor `1 - clip_low`.
    pub clip_low: f32,
    /// PPO clip: ratio ceiling `1 + clip_high`.
    pub clip_high: f32,
    /// Truncated importance sampling cap `C` (0 = off): the ratio is taken against the
    /// learner's own log-probs and each token weighted by `min(pi_learner / pi_sampler, C)`.
    /// Use it when samplers decode with other weights than the learner's (`sampler_weights
    /// = "q8_0"` or `"q4_1"`); costs nothing extra.
    pub tis_cap: f32,
    /// How many learner steps the samplers run ahead: batch `b` is generated with the
    /// weights published after step `b - async_lag`, overlapping generation and training.
    pub async_lag: u64,
    /// η: a trajectory more than this many versions behind the learner is dropped.
    pub max_staleness: u64,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus mass (1.0 = full distribution, unbiased log-probs).
    pub top_p: f32,
    /// Longest completion in tokens.
    pub max_new_tokens: usize,
    /// Held-out evaluation every this many learner steps (0: only at phase ends).
    pub eval_every: u64,
    /// Checkpoint every this many learner steps (0: only at phase ends).
    pub checkpoint_every: u64,
    /// Work is presumed lost after this many seconds without any sign of it (a judge or
    /// env host went away with it) and is handed out again; a duplicate result that
    /// arrives later anyway is counted and dropped, so too small only wastes work.
    pub lost_work_seconds: f64,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            group_size: 8,
            groups_per_batch: 32,
            groups_per_sampler: 8,
            lr: 3e-4,
            clip_low: 0.2,
            clip_high: 0.28,
            tis_cap: 0.0,
            async_lag: 1,
            max_staleness: 2,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 12,
            eval_every: 50,
            checkpoint_every: 100,
            lost_work_seconds: 20.0,
        }
    }
}

/// When the replay log makes appended records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// `sync_data` after every record (one record per insert message or take).
    Every,
    /// One `sync_data` per `group_commit_records` records or `group_commit_ms`.
    Group,
}

/// The replay buffer's durable log: every insert and take is appended to a checksummed
/// log before it is acknowledged, and a restarted buffer recovers from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSettings {
    /// Write the log. Off, the buffer lives in memory only and a resumed run regenerates
    /// every batch the learner had not trained on.
    pub log: bool,
    /// Log directory. Relative paths are relative to the run directory when the buffer
    /// is on the head node (the default), else to the directory `troupe node` runs in.
    /// Disk: every trajectory once, until the next compaction.
    pub log_dir: PathBuf,
    /// `"every"`: sync after each record — an acknowledged insert survives power loss,
    /// at one device flush (0.05–5 ms) per record. `"group"`: one flush per group.
    pub sync: SyncMode,
    /// Group commit: longest a record waits for its flush (and an acknowledgement
    /// for it). A power failure loses at most this window, which was never acknowledged.
    pub group_commit_ms: u64,
    /// Group commit: flush once this many records wait, whichever comes first.
    pub group_commit_records: u32,
    /// At the learner's next checkpoint after the log passes this many MiB, the buffer
    /// writes a snapshot of what it holds and starts a new log, so recovery reads at most
    /// one snapshot plus the records since the last compaction.
    pub compact_mib: u64,
}

impl Default for BufferSettings {
    fn default() -> Self {
        Self {
            log: true,
            log_dir: PathBuf::from("buffer"),
            sync: SyncMode::Group,
            group_commit_ms: 5,
            group_commit_records: 64,
            compact_mib: 64,
        }
    }
}

impl BufferSettings {
    /// The log's configuration, with a relative `log_dir` resolved against `base`;
    /// `None` when the log is off.
    pub fn log_config(&self, base: &Path) -> Option<troupe_buffer::LogConfig> {
        self.log.then(|| troupe_buffer::LogConfig {
            dir: base.join(&self.log_dir),
            sync: match self.sync {
                SyncMode::Every => troupe_buffer::SyncPolicy::Every,
                SyncMode::Group => troupe_buffer::SyncPolicy::Group {
                    max_records: self.group_commit_records,
                    max_delay: std::time::Duration::from_millis(self.group_commit_ms),
                },
            },
            compact_bytes: self.compact_mib.saturating_mul(1 << 20),
        })
    }
}

/// AdamW settings shared by both phases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Most sequences per forward/backward pass (0: a whole batch at once). Larger
    /// batches are split and their gradients summed — the same update, with the learner's
    /// activation memory (sequences x length^2 x layers, through attention) bounded by
    /// the chunk; costs a little speed per extra pass.
    pub micro_batch: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            micro_batch: 0,
        }
    }
}

/// The embedded default, compiled in so `troupe run` works from any directory.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../cluster.toml");

impl ClusterConfig {
    /// The `[judge]` table judges run with. A code-fixing run left on the default
    /// components (the verifier's exact-match rule, which a diff never meets) is judged
    /// by its hidden tests alone: `{ tests = 1.0 }`.
    pub fn judge(&self) -> troupe_judge::JudgeConfig {
        let mut judge = self.judge.clone();
        let default = troupe_judge::JudgeConfig::default();
        if self.task.family == TaskFamily::Codefix
            && judge.components == default.components
            && judge.rule == default.rule
        {
            judge.components = troupe_judge::Components {
                tests: Some(1.0),
                rules: None,
                llm: None,
            };
        }
        judge
    }

    /// The code-fixing settings when the run poses code-fixing tasks.
    pub fn codefix(&self) -> Option<troupe_env::codefix::CodefixConfig> {
        (self.task.family == TaskFamily::Codefix).then(|| self.codefix.clone())
    }

    /// Parses `text` (read from `path`, used in messages) and validates it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ActorError> {
        let mut cfg: ClusterConfig = toml::from_str(text).map_err(|e| ActorError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ActorError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        cfg.resolve_model(path)
            .map_err(|message| ActorError::Config {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(cfg)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ActorError> {
        let text = std::fs::read_to_string(path).map_err(|e| ActorError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// The node list, or the single embedded node when none is given.
    pub fn nodes(&self) -> Vec<NodeConfig> {
        if self.nodes.is_empty() {
            vec![NodeConfig {
                name: "local".into(),
                addr: None,
                roles: Roles::default(),
                optional: false,
            }]
        } else {
            self.nodes.clone()
        }
    }

    /// The roles the run waits for before it starts: those of every node that is not
    /// `optional`.
    pub fn required_roles(&self) -> Roles {
        let mut t = self.total_roles();
        for n in self.nodes().iter().filter(|n| n.optional) {
            t.samplers -= n.roles.samplers;
            t.env_hosts -= n.roles.env_hosts;
            t.judges -= n.roles.judges;
        }
        t
    }

    /// Total actors of each role over all nodes.
    pub fn total_roles(&self) -> Roles {
        let mut t = Roles {
            coordinator: false,
            buffer: false,
            learner: false,
            samplers: 0,
            env_hosts: 0,
            judges: 0,
        };
        for n in self.nodes() {
            t.coordinator |= n.roles.coordinator;
            t.buffer |= n.roles.buffer;
            t.learner |= n.roles.learner;
            t.samplers += n.roles.samplers;
            t.env_hosts += n.roles.env_hosts;
            t.judges += n.roles.judges;
        }
        t
    }

    /// Reads a pretrained model's shape and tokenizer (a relative `pretrained` path is
    /// taken from the config file's directory when it exists there).
    fn resolve_model(&mut self, path: &Path) -> Result<(), String> {
        if let Some(p) = &self.model.pretrained
            && p.is_relative()
            && let Some(dir) = path.parent()
            && dir.join(p).exists()
        {
            self.model.pretrained = Some(dir.join(p));
        }
        let spec = troupe_model::pretrained::resolve(&self.model).map_err(|e| {
            if self.model.pretrained.is_some() {
                format!("[model] pretrained: {e}")
            } else {
                format!("[model] {e}")
            }
        })?;
        self.model = spec.config;
        self.tokenizer = spec.tokenizer;
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        self.model.validate().map_err(|e| format!("[model] {e}"))?;
        for (key, name) in [
            ("learner_device", &self.run.learner_device),
            ("sampler_device", &self.run.sampler_device),
        ] {
            DeviceName::parse(name).map_err(|e| format!("run.{key}: {e}"))?;
        }
        let judge = self.judge().reward_spec().map_err(|e| e.to_string())?;
        let family = self.task.family;
        if judge.needs_tests() != (family == TaskFamily::Codefix) {
            return Err(if family == TaskFamily::Codefix {
                "judge.components: a code-fixing run is judged by its hidden tests; \
                 give `tests` a weight (the default does)"
                    .to_string()
            } else {
                format!(
                    "judge.components.tests: the {family:?} task family has no hidden tests \
                     (only the \"codefix\" family runs tests)"
                )
            });
        }
        self.task
            .task_config()
            .validate()
            .map_err(|e| format!("[task] {e}"))?;
        self.codefix
            .validate()
            .map_err(|e| format!("[codefix] {e}"))?;
        let nodes = self.nodes();
        let mut names = std::collections::HashSet::new();
        for n in &nodes {
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if n.name.is_empty() || !n.name.chars().all(valid) {
                return Err(format!(
                    "[[nodes]] name {:?}: use letters, digits, '-' and '_'",
                    n.name
                ));
            }
            if !names.insert(n.name.as_str()) {
                return Err(format!("[[nodes]] name {:?} appears twice", n.name));
            }
            if let Some(addr) = &n.addr
                && addr.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(format!(
                    "[[nodes]] {}: addr {addr:?} is not host:port (e.g. \"127.0.0.1:7401\")",
                    n.name
                ));
            }
        }
        for (role, count) in [
            (
                "coordinator",
                nodes.iter().filter(|n| n.roles.coordinator).count(),
            ),
            ("buffer", nodes.iter().filter(|n| n.roles.buffer).count()),
            ("learner", nodes.iter().filter(|n| n.roles.learner).count()),
        ] {
            if count != 1 {
                return Err(format!(
                    "[[nodes]] exactly one node must host the {role} (found {count})"
                ));
            }
        }
        if let Some(n) = nodes
            .iter()
            .find(|n| n.optional && (n.roles.coordinator || n.roles.buffer))
        {
            return Err(format!(
                "[[nodes]] {}: an optional node cannot host the coordinator, learner or buffer",
                n.name
            ));
        }
        if self.rl.lost_work_seconds.is_nan() || self.rl.lost_work_seconds <= 0.0 {
            return Err("[rl] lost_work_seconds must be positive".into());
        }
        if nodes.iter().any(|n| n.roles.coordinator != n.roles.learner) {
            return Err(
                "[[nodes]] the learner must be on the node that hosts the coordinator".into(),
            );
        }
        let roles = self.total_roles();
        for (key, v) in [
            ("samplers", roles.samplers),
            ("env_hosts", roles.env_hosts),
            ("judges", roles.judges),
        ] {
            if v == 0 {
                return Err(format!("[[nodes]] roles.{key}: at least one is required"));
            }
        }
        let rl = &self.rl;
        let checks: [(&str, bool); 12] = [
            (
                "buffer.group_commit_records must be at least 1",
                self.buffer.group_commit_records >= 1,
            ),
            (
                "buffer.compact_mib must be at least 1",
                self.buffer.compact_mib >= 1,
            ),
            ("rl.group_size must be at least 2", rl.group_size >= 2),
            (
                "rl.groups_per_batch must be at least 1",
                rl.groups_per_batch >= 1,
            ),
            (
                "rl.groups_per_sampler must be at least 1",
                rl.groups_per_sampler >= 1,
            ),
            (
                "rl.temperature must be > 0 for exploration",
                rl.temperature > 0.0,
            ),
            (
                "rl.top_p must be in (0, 1]",
                rl.top_p > 0.0 && rl.top_p <= 1.0,
            ),
            (
                "rl.max_new_tokens must be at least 1",
                rl.max_new_tokens >= 1,
            ),
            (
                "sft.batch_size must be at least 1",
                self.sft.batch_size >= 1,
            ),
            (
                "sft.warmup_steps must be below sft.steps",
                self.sft.warmup_steps == 0 || self.sft.warmup_steps < self.sft.steps,
            ),
            (
                "task.heldout_size must be at least 1",
                self.task.heldout_size >= 1,
            ),
            (
                "task.max_turns must be at least 1",
                self.task.max_turns >= 1,
            ),
        ];
        for (msg, ok) in checks {
            if !ok {
                return Err(msg.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let cfg = ClusterConfig::parse(EMBEDDED_DEFAULT, Path::new("cluster.toml")).unwrap();
        assert!(cfg.total_roles().samplers >= 1);
    }

    /// The shipped examples parse and validate; one naming a pretrained model file (not in
    /// the repository) is checked up to loading that file.
    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg: ClusterConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cfg.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if cfg.model.pretrained.is_none() {
                ClusterConfig::load(&path).unwrap();
            }
            seen += 1;
        }
        assert!(seen >= 4, "only {seen} examples in {}", dir.display());
    }

    #[test]
    fn typo_names_file_line_and_key() {
        let text = "[rl]\nsteps = 3\nstpes = 4\n";
        let err = ClusterConfig::parse(text, Path::new("my.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("my.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("stpes"), "{err}");
    }

    #[test]
    fn device_names_are_checked_with_their_key() {
        for (key, good) in [("learner_device", "cuda:1"), ("sampler_device", "cuda")] {
            let ok = format!("[run]\n{key} = \"{good}\"\n");
            ClusterConfig::parse(&ok, Path::new("c.toml")).unwrap();
            let bad = format!("[run]\n{key} = \"gpu0\"\n");
            let err = ClusterConfig::parse(&bad, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("run.{key}")), "{err}");
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{err}");
        }
    }

    #[test]
    fn typo_in_task_table_is_rejected() {
        let err = ClusterConfig::parse("[task]\nfamly = \"add\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("famly"), "{err}");
    }

    #[test]
    fn dashboard_defaults_to_a_free_loopback_port_and_rejects_typos() {
        let cfg = ClusterConfig::parse("", Path::new("c.toml")).unwrap();
        assert!(cfg.dashboard.enabled);
        assert_eq!(cfg.dashboard.addr, "127.0.0.1:0");
        let cfg = ClusterConfig::parse(
            "[dashboard]\nenabled = false\naddr = \"0.0.0.0:8080\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(!cfg.dashboard.enabled);
        assert_eq!(cfg.dashboard.addr, "0.0.0.0:8080");
        let err = ClusterConfig::parse("[dashboard]\nadress = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn nodes_need_unique_names_and_valid_addresses() {
        let two = "[[nodes]]\nname = \"a\"\n[[nodes]]\nname = \"a\"\n\
                   roles = { coordinator = false, buffer = false, learner = false }\n";
        let err = ClusterConfig::parse(two, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
        let bad = "[[nodes]]\nname = \"a\"\naddr = \"localhost\"\n";
        let err = ClusterConfig::parse(bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("host:port"), "{err}");
    }

    #[test]
    fn buffer_log_settings_parse_and_resolve() {
        let cfg = ClusterConfig::parse(
            "[buffer]\nsync = \"every\"\nlog_dir = \"/var/log/b\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let log = cfg.buffer.log_config(Path::new("runs/r1")).unwrap();
        assert_eq!(log.dir, PathBuf::from("/var/log/b"));
        assert_eq!(log.sync, troupe_buffer::SyncPolicy::Every);
        let default = ClusterConfig::default()
            .buffer
            .log_config(Path::new("runs/r1"));
        assert_eq!(default.unwrap().dir, PathBuf::from("runs/r1/buffer"));
        let off = ClusterConfig::parse("[buffer]\nlog = false\n", Path::new("c.toml")).unwrap();
        assert!(off.buffer.log_config(Path::new(".")).is_none());
        for bad in [
            "[buffer]\nsync = \"sometimes\"\n",
            "[buffer]\nlogdir = \"x\"\n",
            "[buffer]\ngroup_commit_records = 0\n",
        ] {
            assert!(
                ClusterConfig::parse(bad, Path::new("c.toml")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn codefix_settings_parse_and_are_checked() {
        let cfg = ClusterConfig::parse(
            "[task]\nfamily = \"codefix\"\n[codefix]\nmax_turns = 5\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(cfg.codefix().map(|c| c.max_turns), Some(5));
        // Judged by the hidden tests unless told otherwise; never by exact match alone.
        let spec = cfg.judge().reward_spec().unwrap();
        assert!(spec.needs_tests() && spec.rules.is_none());
        let err = ClusterConfig::parse(
            "[task]\nfamily = \"codefix\"\n[judge]\nrule = \"format\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("judge.components"), "{err}");
        assert!(ClusterConfig::default().codefix().is_none());
        for bad in ["[codefix]\nmax_turn = 5\n", "[codefix]\nsandboxes = 0\n"] {
            let err = ClusterConfig::parse(bad, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("max_turn") || err.contains("sandboxes"),
                "{err}"
            );
        }
    }

    #[test]
    fn judge_section_parses_and_defaults_to_the_verifier() {
        let default = ClusterConfig::parse(EMBEDDED_DEFAULT, Path::new("cluster.toml")).unwrap();
        let spec = default.judge.reward_spec().unwrap();
        assert!(!spec.needs_llm() && !spec.needs_tests());
        let text = "[judge]\ncomponents = { rules = 0.3, llm = 0.7 }\n\
                    [judge.llm]\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"smol\"\n\
                    api_key_env = \"JUDGE_KEY\"\nmax_calls = 100\n";
        let cfg = ClusterConfig::parse(text, Path::new("c.toml")).unwrap();
        let llm = cfg.judge.llm.as_ref().unwrap();
        assert_eq!(
            (llm.max_calls, llm.api_key_env.as_deref()),
            (100, Some("JUDGE_KEY"))
        );
        assert!(cfg.judge.reward_spec().unwrap().needs_llm());
    }

    #[test]
    fn judge_errors_name_file_line_and_key() {
        // Unknown keys: serde names the line and the key.
        for (text, line, key) in [
            (
                "[judge]\ncomponents = { rules = 1.0 }\nweights = 2\n",
                "line 3",
                "weights",
            ),
            (
                "[judge]\ncomponents = { llm = 1.0 }\n[judge.llm]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\napi_key = \"sk-secret\"\n",
                "line 6",
                "api_key",
            ),
            ("[judge]\ncomponents = { rule = 1.0 }\n", "line 2", "rule"),
        ] {
            let err = ClusterConfig::parse(text, Path::new("my.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("my.toml") && err.contains(line) && err.contains(key),
                "{text}: {err}"
            );
        }
        // Bad values: the message names the key.
        for (text, key) in [
            (
                "[judge]\ncomponents = { llm = 1.0 }\n",
                "judge.components.llm",
            ),
            (
                "[judge]\ncomponents = { llm = 1.0 }\n[judge.llm]\nbase_url = \"localhost\"\nmodel = \"m\"\n",
                "judge.llm.base_url",
            ),
            (
                "[judge]\ncomponents = { tests = 1.0 }\n",
                "judge.components.tests",
            ),
            (
                "[judge]\nrule = \"regex\"\npattern = \"[\"\n",
                "judge.pattern",
            ),
        ] {
            let err = ClusterConfig::parse(text, Path::new("my.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("my.toml") && err.contains(key),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn max_turns_parses_and_is_checked() {
        let cfg = ClusterConfig::parse(
            "[task]\nfamily = \"calc\"\nmax_turns = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.task.env_spec(),
            EnvSpec {
                family: TaskFamily::Calc,
                max_turns: 3
            }
        );
        assert_eq!(ClusterConfig::default().task.max_turns, 8);
        let err = ClusterConfig::parse("[task]\nmax_turns = 0\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("task.max_turns"),
            "{err}"
        );
        let err = ClusterConfig::parse(
            "[task]\nfamily = \"calc\"\nmax_turns = \"four\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.toml") && err.contains("line 3") && err.contains("max_turns"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_explained() {
        let err = ClusterConfig::parse("[rl]\ngroup_size = 1\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("group_size"), "{err}");
        let err = ClusterConfig::parse("[model]\nn_heads = 3\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("n_heads"), "{err}");
    }

    #[test]
    fn optional_nodes_are_not_waited_for_and_lost_work_is_checked() {
        let text = "[[nodes]]\nname = \"head\"\n\
            roles = { coordinator = true, buffer = true, learner = true, samplers = 1 }\n\
            [[nodes]]\nname = \"spare\"\noptional = true\n\
            roles = { coordinator = false, buffer = false, learner = false, samplers = 3 }\n";
        let cfg = ClusterConfig::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(
            (cfg.total_roles().samplers, cfg.required_roles().samplers),
            (4, 1)
        );
        let head_optional =
            text.replacen("name = \"head\"\n", "name = \"head\"\noptional = true\n", 1);
        let err = ClusterConfig::parse(&head_optional, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("optional node cannot host"), "{err}");
        for bad in ["0", "-1", "nan"] {
            let err = ClusterConfig::parse(
                &format!("[rl]\nlost_work_seconds = {bad}\n"),
                Path::new("c.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("lost_work_seconds"), "{bad}: {err}");
        }
    }

    #[test]
    fn sft_schedules_parse_and_bad_ones_name_the_key() {
        let parse = |text: &str| ClusterConfig::parse(text, Path::new("c.toml"));
        let cfg = parse("[sft]\nsteps = 100\n").unwrap();
        assert_eq!(cfg.sft.lr_schedule(), LrSchedule::Constant);
        let cfg = parse("[sft]\nsteps = 100\nschedule = \"cosine\"\nwarmup_steps = 10\n").unwrap();
        assert_eq!(
            cfg.sft.lr_schedule(),
            LrSchedule::Cosine {
                warmup: 10,
                total: 100
            }
        );
        let err = parse("[sft]\nschedule = \"cosin\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains("cosin"), "{err}");
        let err = parse("[sft]\nsteps = 10\nwarmup_steps = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("warmup_steps"), "{err}");
    }

    #[test]
    fn sampler_weights_name_each_format() {
        use troupe_model::config::SamplerWeights;
        for (name, weights) in [
            ("f32", SamplerWeights::F32),
            ("q8_0", SamplerWeights::Q8_0),
            ("q4_1", SamplerWeights::Q4_1),
        ] {
            let toml = format!("[model]\nsampler_weights = \"{name}\"\n");
            let cfg = ClusterConfig::parse(&toml, Path::new("c.toml")).unwrap();
            assert_eq!(cfg.model.sampler_weights, weights, "{name}");
        }
        let err =
            ClusterConfig::parse("[model]\nsampler_weights = \"q4_0\"\n", Path::new("c.toml"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("sampler_weights"), "{err}");
    }
}
