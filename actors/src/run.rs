//! Starting roles: the embedded run (every role in one process) and the pieces `troupe
//! node` shares with it (head preparation, coordinator, role spawning).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorCell, ActorRef};
use tokio::sync::oneshot;
use troupe_buffer::{BufferConfig, Recovery};
use troupe_env::{Role, TaskSource};
use troupe_learner::{LearnerConfig, SftExample, adamw::AdamWConfig, checkpoint, grpo::Clip};
use troupe_model::tokenizer::TurnRole;
use troupe_sampler::SamplingParams;

use crate::config::{ClusterConfig, Roles};
use crate::dashboard::{Dashboard, DashboardProgress};
use crate::messages::CoordinatorMsg;
use crate::progress::Progress;
use crate::roles::{
    buffer::{Buffer, BufferArgs},
    coordinator::{Coordinator, CoordinatorArgs, StartPoint},
    envhost::EnvHostArgs,
    judge::JudgeArgs,
    learner::{LearnerActor, LearnerArgs},
    sampler::SamplerArgs,
    supervisor::{NodeSupervisor, NodeSupervisorArgs},
};
use crate::schedule::{ScheduleConfig, mix};
use crate::summary::{RunState, Summary, read_json, write_json};
use crate::{ActorError, weights::WeightStore};

/// What `troupe run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration's text and where it came from.
    pub config: (String, PathBuf),
    /// Overrides `run.seed`.
    pub seed: Option<u64>,
    /// The run directory to create (default: a new one under `run.runs_dir`).
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint.
    pub resume: Option<PathBuf>,
    /// Seed trajectories to warm-start on instead of the built-in expert's.
    pub seed_trajectories: Option<PathBuf>,
}

const CONFIG_COPY: &str = "cluster.toml";
const SEEDS_COPY: &str = "seed_trajectories.jsonl";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ActorError + '_ {
    move |source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a fresh run directory, refusing one that already holds a run.
fn create_run_dir(
    cfg: &ClusterConfig,
    seed: u64,
    out: Option<PathBuf>,
) -> Result<PathBuf, ActorError> {
    let dir = out.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        cfg.run.runs_dir.join(format!("run-{stamp}-seed{seed}"))
    });
    if dir.join("run_state.json").exists() || dir.join("checkpoints").exists() {
        return Err(ActorError::RunDir {
            path: dir,
            reason: "already holds a run; continue it with --resume, or pick another --out".into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Reads seed trajectories, reporting every rejected line, and turns them into SFT
/// examples. Conversations on held-out problems are dropped so training never sees them.
pub fn load_seed_examples(
    path: &Path,
    cfg: &ClusterConfig,
    progress: &dyn Progress,
) -> Result<Vec<SftExample>, ActorError> {
    let mut set =
        troupe_env::read_seed_trajectories(path).map_err(|e| ActorError::Seeds(e.to_string()))?;
    for rejected in &set.rejected {
        progress.note(&format!("rejected seed trajectory {rejected}"));
    }
    let dropped = troupe_env::drop_heldout_of(&mut set, &cfg.task.task_config());
    if dropped > 0 {
        progress.note(&format!(
            "{dropped} seed trajectories pose held-out problems and were left out"
        ));
    }
    let tok = &cfg.tokenizer;
    let mut examples = Vec::with_capacity(set.conversations.len());
    for (i, conv) in set.conversations.iter().enumerate() {
        // Assistant turns are trained on what the policy would write: a tool call in
        // `tool_calls` becomes `<call>…</call>` text.
        let texts: Vec<(TurnRole, String)> = conv
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => TurnRole::System,
                    Role::User => TurnRole::User,
                    Role::Assistant => TurnRole::Assistant,
                    Role::Tool => TurnRole::Tool,
                };
                (role, m.policy_text())
            })
            .collect();
        let turns: Vec<(TurnRole, &str)> = texts.iter().map(|(r, t)| (*r, t.as_str())).collect();
        let (tokens, mask) = tok.encode_conversation(&turns);
        if tokens.len() > cfg.model.max_seq {
            progress.note(&format!(
                "{}: conversation {} is {} tokens, longer than model.max_seq = {}; left out",
                path.display(),
                i + 1,
                tokens.len(),
                cfg.model.max_seq
            ));
            continue;
        }
        examples.push(SftExample { tokens, mask });
    }
    if examples.is_empty() {
        return Err(ActorError::Seeds(format!(
            "{}: no usable seed trajectories",
            path.display()
        )));
    }
    progress.note(&format!(
        "{} seed trajectories from {} ({} lines rejected)",
        examples.len(),
        path.display(),
        set.rejected.len()
    ));
    Ok(examples)
}

/// Keeps only the metrics lines of steps up to `step` (those the checkpoint covers),
/// so a resumed run's `metrics.jsonl` has one line per step.
fn truncate_metrics(path: &Path, step: u64) -> Result<(), ActorError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(io(path))
}

fn spawn_err(role: &'static str) -> impl FnOnce(ractor::SpawnErr) -> ActorError {
    move |e| ActorError::Spawn {
        role,
        reason: e.to_string(),
    }
}

/// Runs the whole job in this process: every role of every node in `cluster.toml` as
/// local actors. Returns the summary also written to `RUN_DIR/summary.json`.
pub async fn run(opts: RunOptions, progress: Arc<dyn Progress>) -> Result<Summary, ActorError> {
    let head = prepare_head(&opts, progress.as_ref())?;
    let cfg = head.cfg.clone();
    let weights = WeightStore::new(cfg.rl.async_lag as usize + 3);
    let (coordinator, done, _) = spawn_coordinator(&head, progress).await?;
    let ctx = RoleContext {
        cfg: &cfg,
        seed: head.seed,
        weights,
        head: Some(head.context()),
        first_sampler: 0,
        node: head_node(&cfg),
    };
    spawn_roles(&ctx, &cfg.total_roles(), Some(coordinator.get_cell())).await?;
    wait_for_summary(coordinator, done).await
}

/// The name and position in `cluster.toml` of the node hosting the coordinator (the
/// embedded run hosts every role under that name).
pub(crate) fn head_node(cfg: &ClusterConfig) -> (String, u32) {
    cfg.nodes()
        .iter()
        .enumerate()
        .find(|(_, n)| n.roles.coordinator)
        .map_or(("local".into(), 0), |(i, n)| (n.name.clone(), i as u32))
}

/// What the head node (coordinator and learner) prepares before a run starts.
#[derive(Debug)]
pub(crate) struct Head {
    pub cfg: ClusterConfig,
    pub run_dir: PathBuf,
    pub seed: u64,
    pub state: RunState,
    pub start: StartPoint,
    pub resume: Option<PathBuf>,
    /// Whether this continues an earlier session of the run (`--resume`).
    pub resumed: bool,
    pub seed_examples: Vec<SftExample>,
    pub heldout: Vec<troupe_core::TaskSpec>,
}

impl Head {
    pub(crate) fn context(&self) -> HeadContext {
        HeadContext {
            run_dir: self.run_dir.clone(),
            resume: self.resume.clone(),
            buffer_recovery: self.buffer_recovery(),
        }
    }

    /// A new run starts with an empty replay log; a resumed one rebuilds the buffer as
    /// of the learner's checkpoint: batches taken after it are served again.
    pub(crate) fn buffer_recovery(&self) -> Recovery {
        match (self.resumed, self.start) {
            (false, _) => Recovery::Fresh,
            (true, StartPoint::Rl { step, .. }) => Recovery::Rewind(step),
            (true, _) => Recovery::Rewind(0),
        }
    }
}

/// Creates or reopens the run directory, reads the seed trajectories and draws the
/// held-out set.
pub(crate) fn prepare_head(opts: &RunOptions, progress: &dyn Progress) -> Result<Head, ActorError> {
    let (cfg, run_dir, state, start, resume_ckpt) = match &opts.resume {
        Some(dir) => {
            let cfg = ClusterConfig::load(&dir.join(CONFIG_COPY))?;
            let state: RunState = read_json(&dir.join("run_state.json"))?;
            let ckpt = checkpoint::latest(dir).map_err(|e| ActorError::Failed(e.to_string()))?;
            let start = match &ckpt {
                None => StartPoint::Fresh,
                Some(c) => {
                    let ls: checkpoint::LearnerState =
                        checkpoint::read_json(&c.join("learner.json"))
                            .map_err(|e| ActorError::Failed(e.to_string()))?;
                    match (ls.sft_done, state.heldout.after_sft.is_some()) {
                        (false, _) => StartPoint::Fresh,
                        (true, false) => StartPoint::AfterSft,
                        (true, true) => StartPoint::Rl {
                            step: ls.rl_steps,
                            publication: 1 + ls.rl_steps,
                        },
                    }
                }
            };
            let ckpt = if start == StartPoint::Fresh {
                None
            } else {
                ckpt
            };
            if let StartPoint::Rl { step, .. } = start {
                truncate_metrics(&dir.join("metrics.jsonl"), step)?;
            }
            (cfg, dir.clone(), state, start, ckpt)
        }
        None => {
            let (text, path) = &opts.config;
            let cfg = ClusterConfig::parse(text, path)?;
            let seed = opts.seed.unwrap_or(cfg.run.seed);
            let dir = create_run_dir(&cfg, seed, opts.out.clone())?;
            let copy = dir.join(CONFIG_COPY);
            std::fs::write(&copy, text).map_err(io(&copy))?;
            let state = RunState {
                seed,
                ..RunState::default()
            };
            write_json(&dir.join("run_state.json"), &state)?;
            (cfg, dir, state, StartPoint::Fresh, None)
        }
    };
    let seed = state.seed;
    progress.note(&format!("run directory {}", run_dir.display()));

    // Seed trajectories: a user's file or the built-in expert's, copied into the run
    // dir for --resume. Problems in a user's file are reported against that file.
    let copy_path = run_dir.join(SEEDS_COPY);
    let seeds_path = match (&opts.resume, &opts.seed_trajectories) {
        (None, Some(src)) => src.clone(),
        _ => copy_path.clone(),
    };
    if opts.resume.is_none() {
        match &opts.seed_trajectories {
            Some(src) => {
                std::fs::copy(src, &copy_path).map_err(io(src))?;
            }
            None => {
                let mut source = TaskSource::new(cfg.task.task_config(), mix(seed, 0x5eed))
                    .map_err(|e| ActorError::Seeds(e.to_string()))?;
                match cfg.codefix() {
                    None => troupe_env::write_seed_trajectories(
                        &copy_path,
                        &mut source,
                        cfg.sft.seed_trajectories,
                    ),
                    Some(codefix) => {
                        progress.note(&format!(
                            "the expert is solving {} code-fixing tasks in sandboxes",
                            cfg.sft.seed_trajectories
                        ));
                        write_codefix_seeds(&copy_path, &mut source, &cfg, codefix)
                    }
                }
                .map_err(|e| ActorError::Seeds(e.to_string()))?;
            }
        }
    }
    let seed_examples = if start == StartPoint::Fresh {
        load_seed_examples(&seeds_path, &cfg, progress)?
    } else {
        Vec::new()
    };
    let source = TaskSource::new(cfg.task.task_config(), seed)
        .map_err(|e| ActorError::Seeds(e.to_string()))?;
    let heldout = source.heldout(cfg.task.heldout_size);
    Ok(Head {
        cfg,
        run_dir,
        seed,
        state,
        start,
        resume: resume_ckpt,
        resumed: opts.resume.is_some(),
        seed_examples,
        heldout,
    })
}

/// Runs the scripted expert on `cfg.sft.seed_trajectories` code-fixing tasks in real
/// sandboxes and writes its episodes as seed trajectories. Called from the async run, so
/// it blocks this worker thread (the run has not started yet).
fn write_codefix_seeds(
    path: &Path,
    source: &mut TaskSource,
    cfg: &ClusterConfig,
    codefix: troupe_env::codefix::CodefixConfig,
) -> Result<(), troupe_env::EnvError> {
    let n = cfg.sft.seed_trajectories;
    let parallel = codefix.sandboxes * 2;
    let work = async {
        let host = troupe_env::codefix::CodefixHost::new(codefix, parallel).await?;
        troupe_env::codefix::write_expert_seeds(path, source, n, &host, parallel).await
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(work)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| troupe_env::EnvError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .block_on(work),
    }
}

/// The coordinator's completion channel.
type Done = oneshot::Receiver<Result<Summary, String>>;

/// Starts the coordinator (and the dashboard, returned when enabled); it begins the run
/// once every role in the config has joined.
pub(crate) async fn spawn_coordinator(
    head: &Head,
    progress: Arc<dyn Progress>,
) -> Result<
    (
        ActorRef<CoordinatorMsg>,
        (ractor::concurrency::JoinHandle<()>, Done),
        Option<Dashboard>,
    ),
    ActorError,
> {
    let (cfg, seed) = (&head.cfg, head.seed);
    let rl = &cfg.rl;
    let (done_tx, done_rx) = oneshot::channel();
    let (dashboard, progress) = start_dashboard(head, progress).await?;
    let coordinator_args = CoordinatorArgs {
        schedule: ScheduleConfig {
            task: cfg.task.task_config(),
            seed,
            group_size: rl.group_size,
            groups_per_batch: rl.groups_per_batch,
            groups_per_unit: rl.groups_per_sampler,
            async_lag: rl.async_lag,
            total_steps: rl.steps,
            eval_chunk: 100,
        },
        run_dir: head.run_dir.clone(),
        heldout: head.heldout.clone(),
        seed_examples: head.seed_examples.clone(),
        sft_steps: cfg.sft.steps,
        eval_every: rl.eval_every,
        checkpoint_every: rl.checkpoint_every,
        state: head.state.clone(),
        start: head.start,
        progress,
        done: Arc::new(Mutex::new(Some(done_tx))),
        required: cfg.required_roles(),
        // The buffer's counts cover the whole run unless a resumed run lost them with
        // an in-memory buffer.
        buffer_accounting: cfg.buffer.log || !head.resumed,
        judge_metrics: cfg.judge.components.llm.is_some(),
        dashboard: dashboard.clone(),
        lost_after: std::time::Duration::from_secs_f64(rl.lost_work_seconds),
    };
    let (coordinator, handle) =
        Actor::spawn(Some("coordinator".into()), Coordinator, coordinator_args)
            .await
            .map_err(spawn_err("coordinator"))?;
    coordinator
        .cast(CoordinatorMsg::Start)
        .map_err(|e| ActorError::Failed(e.to_string()))?;
    Ok((coordinator, (handle, done_rx), dashboard))
}

/// Serves the dashboard when `[dashboard] enabled`, prints its URL, and returns it with
/// a progress sink that also tells it the run's phase.
async fn start_dashboard(
    head: &Head,
    progress: Arc<dyn Progress>,
) -> Result<(Option<Dashboard>, Arc<dyn Progress>), ActorError> {
    let cfg = &head.cfg;
    if !cfg.dashboard.enabled {
        return Ok((None, progress));
    }
    let nodes = cfg.nodes();
    let here = nodes
        .iter()
        .find(|n| n.roles.coordinator)
        .map_or_else(|| "local".to_string(), |n| n.name.clone());
    let dashboard = Dashboard::new(here, nodes.iter().map(|n| n.name.clone()).collect())
        .for_run(&head.state, cfg.tokenizer.clone())
        .with_sampler_nodes(
            nodes
                .iter()
                .filter(|n| n.roles.samplers > 0)
                .map(|n| n.name.clone())
                .collect(),
        );
    let served =
        crate::dashboard::server::serve(dashboard.clone(), &cfg.dashboard.addr, &head.run_dir)
            .await?;
    progress.note(&format!(
        "dashboard {}?token={} (token also in {})",
        served.url,
        served.token,
        head.run_dir
            .join(crate::dashboard::server::TOKEN_FILE)
            .display()
    ));
    let progress: Arc<dyn Progress> = Arc::new(DashboardProgress {
        inner: progress,
        dashboard: dashboard.clone(),
    });
    Ok((Some(dashboard), progress))
}

/// Waits for the coordinator's summary, then stops it and every role it supervises.
pub(crate) async fn wait_for_summary(
    coordinator: ActorRef<CoordinatorMsg>,
    (handle, done): (ractor::concurrency::JoinHandle<()>, Done),
) -> Result<Summary, ActorError> {
    let outcome = done
        .await
        .map_err(|_| ActorError::Failed("the coordinator stopped without a result".into()));
    coordinator.get_cell().stop_children(None);
    coordinator.stop(None);
    let _ = handle.await;
    outcome?.map_err(ActorError::Failed)
}

/// What only the head node (the one hosting the learner) knows.
#[derive(Debug, Clone)]
pub(crate) struct HeadContext {
    /// Run directory.
    pub run_dir: PathBuf,
    /// Checkpoint to resume the learner from.
    pub resume: Option<PathBuf>,
    /// How the replay buffer treats an existing log.
    pub buffer_recovery: Recovery,
}

/// Everything a node needs to start its roles.
#[derive(Debug)]
pub(crate) struct RoleContext<'a> {
    pub cfg: &'a ClusterConfig,
    pub seed: u64,
    pub weights: WeightStore,
    pub head: Option<HeadContext>,
    /// Cluster-wide index of this node's first sampler.
    pub first_sampler: u32,
    /// This node's name and its position in `cluster.toml`.
    pub node: (String, u32),
}

/// Starts the actors of `roles` (all but the coordinator), linked to `supervisor`.
pub(crate) async fn spawn_roles(
    ctx: &RoleContext<'_>,
    roles: &Roles,
    supervisor: Option<ActorCell>,
) -> Result<(), ActorError> {
    async fn start<A: Actor>(
        name: String,
        actor: A,
        args: A::Arguments,
        supervisor: &Option<ActorCell>,
        role: &'static str,
    ) -> Result<(), ActorError> {
        match supervisor {
            Some(s) => Actor::spawn_linked(Some(name), actor, args, s.clone())
                .await
                .map(|_| ()),
            None => Actor::spawn(Some(name), actor, args).await.map(|_| ()),
        }
        .map_err(spawn_err(role))
    }
    let (cfg, rl) = (ctx.cfg, &ctx.cfg.rl);
    if roles.buffer {
        let buffer_cfg = BufferConfig {
            group_size: rl.group_size,
            groups_per_batch: rl.groups_per_batch,
            max_staleness: rl.max_staleness,
            capacity_groups: (rl.groups_per_batch as usize) * (rl.async_lag as usize + 3),
        };
        // On the head the log lives in the run directory and follows the run's resume;
        // elsewhere it is relative to the working directory and must start empty (only the
        // head can resume a run).
        let (base, recovery) = match &ctx.head {
            Some(h) => (h.run_dir.clone(), h.buffer_recovery),
            None => (PathBuf::from("."), Recovery::Fresh),
        };
        let args = BufferArgs {
            config: buffer_cfg,
            log: cfg.buffer.log_config(&base),
            recovery,
        };
        start("buffer".into(), Buffer, args, &supervisor, "replay buffer").await?;
    }
    if roles.learner {
        let head = ctx
            .head
            .clone()
            .ok_or_else(|| ActorError::Failed("the learner must run on the head node".into()))?;
        let learner_args = LearnerArgs {
            model: cfg.model.clone(),
            learner: LearnerConfig {
                sft_lr: cfg.sft.lr,
                sft_schedule: cfg.sft.lr_schedule(),
                rl_lr: rl.lr,
                clip: Clip {
                    low: rl.clip_low,
                    high: rl.clip_high,
                    tis_cap: rl.tis_cap,
                },
                adamw: AdamWConfig {
                    beta1: cfg.optim.beta1,
                    beta2: cfg.optim.beta2,
                    eps: 1e-8,
                    weight_decay: cfg.optim.weight_decay,
                    max_grad_norm: cfg.optim.max_grad_norm,
                },
                micro_batch: cfg.optim.micro_batch,
            },
            seed: ctx.seed,
            run_dir: head.run_dir,
            resume: head.resume,
            device: cfg.run.learner_device.clone(),
            sampler_device: cfg.run.sampler_device.clone(),
            sft_steps: cfg.sft.steps,
            sft_batch: cfg.sft.batch_size,
            checkpoint_every: rl.checkpoint_every,
            staleness_buckets: rl.max_staleness as usize + 2,
            weights: ctx.weights.clone(),
        };
        start(
            "learner".into(),
            LearnerActor,
            learner_args,
            &supervisor,
            "learner",
        )
        .await?;
    }
    let params = SamplingParams {
        temperature: rl.temperature,
        top_p: rl.top_p,
        max_new_tokens: rl.max_new_tokens,
    };
    let sampler_device = if roles.samplers > 0 {
        troupe_model::device::open(&cfg.run.sampler_device).map_err(|e| ActorError::Spawn {
            role: "sampler",
            reason: format!("run.sampler_device: {e}"),
        })?
    } else {
        candle_core::Device::Cpu
    };
    // The node's samplers, env hosts and judges live under its supervisor, which
    // restarts them and scales the samplers.
    let (node, ordinal) = ctx.node.clone();
    let args = NodeSupervisorArgs {
        node: node.clone(),
        ordinal,
        env_hosts: roles.env_hosts,
        judges: roles.judges,
        samplers: roles.samplers,
        env_host: EnvHostArgs {
            capacity: cfg.task.env_capacity,
            spec: cfg.task.env_spec(),
            codefix: cfg.codefix(),
        },
        judge: JudgeArgs {
            codefix: cfg.codefix(),
            config: cfg.judge(),
        },
        sampler: SamplerArgs {
            index: ctx.first_sampler,
            model: cfg.model.clone(),
            tokenizer: cfg.tokenizer.clone(),
            params,
            max_turns: cfg.task.max_turns,
            weights: ctx.weights.clone(),
            device: sampler_device,
        },
    };
    start(
        format!("node-{node}"),
        NodeSupervisor,
        args,
        &supervisor,
        "node supervisor",
    )
    .await?;
    Ok(())
}
