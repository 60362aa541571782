//! Messages between roles. Payloads are the bincode-encodable types of `troupe-core`
//! and the plain structs below (fixed-width integers), so every message can cross
//! the network unchanged; reply ports are ractor's and become remote replies there.

use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use troupe_core::{Author, ScoredTrajectory, TaskSpec, Trajectory};
use troupe_judge::JudgeStats;

use crate::remote;

pub use troupe_core::protocol::{EvalUnit, StepReport, TrainUnit, Work};

/// Coordinator inbox.
#[derive(Debug)]
pub enum CoordinatorMsg {
    /// Begin the run once every role the config requires has joined its group.
    Start,
    /// A sampler asks for work.
    RequestWork(u32, RpcReplyPort<Work>),
    /// A sampler finished training unit `unit` and reports the policy tokens it
    /// generated.
    Sampled {
        /// Which sampler.
        sampler: u32,
        /// The unit.
        unit: u64,
        /// The weight publication it generated with.
        publication: u64,
        /// Policy tokens.
        tokens: u64,
        /// Trajectories.
        trajectories: u64,
    },
    /// A sampler finished evaluation unit `unit` (its episodes went to judges).
    EvalDone {
        /// Which sampler.
        sampler: u32,
        /// The unit.
        unit: u64,
    },
    /// A sampler could not finish `unit` (an env host or judge went away): hand it out
    /// again.
    WorkFailed {
        /// Which sampler.
        sampler: u32,
        /// The unit.
        unit: u64,
        /// Why, for the log.
        reason: String,
    },
    /// A sampler (re)started: whatever an earlier incarnation of it held goes back.
    SamplerUp(u32),
    /// A node supervisor restarted one of its actors.
    Restarted {
        /// The node.
        node: String,
        /// The actor's name.
        actor: String,
        /// Restarts of that actor so far.
        restarts: u32,
    },
    /// Periodic check for lost work (the coordinator sends it to itself).
    Tick,
    /// A judge returns a scored evaluation episode.
    EvalResult(Box<ScoredTrajectory>),
    /// SFT progress from the learner.
    SftProgress {
        /// Steps done.
        step: u64,
        /// Loss of the last step.
        loss: f32,
    },
    /// SFT finished; weights published as `publication`.
    SftDone {
        /// Publication index.
        publication: u64,
    },
    /// An RL step finished.
    Stepped(Box<StepReport>),
    /// A judge's cumulative counters (sent by judges with an LLM component, at most a
    /// few times a second).
    JudgeStats {
        /// The judge's instance id (random per actor start).
        judge: u64,
        /// Its counters so far.
        stats: Box<JudgeStats>,
    },
}

/// Sampler inbox.
#[derive(Debug)]
pub enum SamplerMsg {
    /// Ask the coordinator for work and do it.
    Pull,
    /// Finish the unit in hand, then stop (scaling down).
    Retire,
}

/// An env host's answer to a step: `(observation, done, submission)`. The observation
/// comes with its author (the user, or a tool's result). When `done`, `submission` is
/// what the judge scores in place of the policy's last action, if the environment
/// decides it (a code-fixing episode's diff).
pub type StepReply = (Option<(Author, String)>, bool, Option<String>);

/// Env host inbox.
#[derive(Debug)]
pub enum EnvHostMsg {
    /// Start episode `episode` on `task`; reply with the first observation.
    Reset(u64, Box<TaskSpec>, RpcReplyPort<Result<String, String>>),
    /// Apply the policy's action; reply with a [`StepReply`].
    Step(u64, String, RpcReplyPort<Result<StepReply, String>>),
    /// The policy can act no more (its context or turn budget is spent): end the
    /// episode and reply with its submission, if the environment makes one.
    Finish(u64, RpcReplyPort<Result<Option<String>, String>>),
}

/// Judge inbox.
#[derive(Debug)]
pub enum JudgeMsg {
    /// Score a finished trajectory and forward it (buffer for training, coordinator
    /// for evaluation).
    Score(Box<Trajectory>),
    /// A trajectory scored by one of the judge's own tasks (hidden tests, an LLM
    /// verdict), to forward (never crosses the network).
    Scored(Box<ScoredTrajectory>),
    /// Reply with the judge's instance id and cumulative counters.
    Stats(RpcReplyPort<(u64, JudgeStats)>),
}

/// Replay buffer inbox.
#[derive(Debug)]
pub enum BufferMsg {
    /// Store a scored training trajectory.
    Insert(Box<ScoredTrajectory>),
    /// Store many scored training trajectories: one message, one log record.
    InsertBatch(Vec<ScoredTrajectory>),
    /// Take RL batch `batch` if complete, classifying staleness against `version`; the
    /// take is durable before the reply.
    TakeBatch(u64, u64, RpcReplyPort<Option<troupe_buffer::Batch>>),
    /// Reply with the buffer's counts once everything sent before is durable: the
    /// acknowledgement of earlier inserts.
    Counts(RpcReplyPort<troupe_buffer::Counts>),
    /// The learner checkpointed after this many RL steps (its next take is that
    /// batch): the buffer may compact its log now.
    Checkpointed(u64),
    /// Reply with the groups of batch `batch` that are neither complete nor taken
    /// (their trajectories are missing).
    Missing(u64, RpcReplyPort<Vec<u32>>),
    /// Group-commit timer (the buffer sends it to itself; never crosses the network).
    Flush,
}

/// A node supervisor's inbox: one per node, it starts, restarts and scales the node's
/// samplers, env hosts and judges.
#[derive(Debug)]
pub enum NodeMsg {
    /// Run `samplers` samplers on this node; replies with the count now running.
    Scale(u32, RpcReplyPort<u32>),
    /// Kill the actor named so (fault injection: like a crash, it gets no chance to
    /// finish); replies whether there was one.
    Kill(String, RpcReplyPort<bool>),
    /// Start the actor named so again (the supervisor's own restart timer).
    Restart(String),
}

/// Learner inbox.
#[derive(Debug)]
pub enum LearnerMsg {
    /// Run the SFT warm start on `examples`.
    RunSft(Vec<troupe_learner::SftExample>),
    /// Run RL until `steps` total RL steps are done.
    RunRl {
        /// Target RL step count.
        steps: u64,
    },
    /// Try to train on the next batch.
    Next,
}

// With ractor's `cluster` feature every message type states how it crosses the
// network. Messages between nodes are serialised below; the rest are node-local.
// Samplers are counted across nodes through their process group, which only lists
// actors whose messages can cross the network.
impl ractor::Message for SamplerMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            SamplerMsg::Pull => remote::cast("Pull", &()),
            SamplerMsg::Retire => remote::cast("Retire", &()),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, .. } if variant == "Pull" => Ok(SamplerMsg::Pull),
            SerializedMessage::Cast { variant, .. } if variant == "Retire" => {
                Ok(SamplerMsg::Retire)
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl ractor::Message for NodeMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            NodeMsg::Scale(n, reply) => remote::call("Scale", &n, reply),
            NodeMsg::Kill(name, reply) => remote::call("Kill", &name, reply),
            NodeMsg::Restart(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } => match variant.as_str() {
                "Scale" => Ok(NodeMsg::Scale(
                    remote::decode(&args)?,
                    remote::reply_port(reply),
                )),
                "Kill" => Ok(NodeMsg::Kill(
                    remote::decode(&args)?,
                    remote::reply_port(reply),
                )),
                _ => Err(BoxedDowncastErr),
            },
            _ => Err(BoxedDowncastErr),
        }
    }
}
impl ractor::Message for LearnerMsg {}

impl ractor::Message for CoordinatorMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            CoordinatorMsg::RequestWork(sampler, reply) => {
                remote::call("RequestWork", &sampler, reply)
            }
            CoordinatorMsg::Sampled {
                sampler,
                unit,
                publication,
                tokens,
                trajectories,
            } => remote::cast(
                "Sampled",
                &(sampler, unit, publication, tokens, trajectories),
            ),
            CoordinatorMsg::EvalDone { sampler, unit } => {
                remote::cast("EvalDone", &(sampler, unit))
            }
            CoordinatorMsg::WorkFailed {
                sampler,
                unit,
                reason,
            } => remote::cast("WorkFailed", &(sampler, unit, reason)),
            CoordinatorMsg::SamplerUp(sampler) => remote::cast("SamplerUp", &sampler),
            CoordinatorMsg::Restarted {
                node,
                actor,
                restarts,
            } => remote::cast("Restarted", &(node, actor, restarts)),
            CoordinatorMsg::EvalResult(s) => remote::cast("EvalResult", &*s),
            CoordinatorMsg::JudgeStats { judge, stats } => {
                remote::cast("JudgeStats", &(judge, *stats))
            }
            _ => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == "RequestWork" => Ok(CoordinatorMsg::RequestWork(
                remote::decode(&args)?,
                remote::reply_port(reply),
            )),
            SerializedMessage::Cast { variant, args, .. } => match variant.as_str() {
                "Sampled" => {
                    let (sampler, unit, publication, tokens, trajectories) = remote::decode(&args)?;
                    Ok(CoordinatorMsg::Sampled {
                        sampler,
                        unit,
                        publication,
                        tokens,
                        trajectories,
                    })
                }
                "EvalResult" => Ok(CoordinatorMsg::EvalResult(Box::new(remote::decode(&args)?))),
                "EvalDone" => {
                    let (sampler, unit) = remote::decode(&args)?;
                    Ok(CoordinatorMsg::EvalDone { sampler, unit })
                }
                "WorkFailed" => {
                    let (sampler, unit, reason) = remote::decode(&args)?;
                    Ok(CoordinatorMsg::WorkFailed {
                        sampler,
                        unit,
                        reason,
                    })
                }
                "SamplerUp" => Ok(CoordinatorMsg::SamplerUp(remote::decode(&args)?)),
                "Restarted" => {
                    let (node, actor, restarts) = remote::decode(&args)?;
                    Ok(CoordinatorMsg::Restarted {
                        node,
                        actor,
                        restarts,
                    })
                }
                "JudgeStats" => {
                    let (judge, stats): (u64, JudgeStats) = remote::decode(&args)?;
                    Ok(CoordinatorMsg::JudgeStats {
                        judge,
                        stats: Box::new(stats),
                    })
                }
                _ => Err(BoxedDowncastErr),
            },
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl ractor::Message for EnvHostMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            EnvHostMsg::Reset(episode, task, reply) => {
                remote::call("Reset", &(episode, *task), reply)
            }
            EnvHostMsg::Step(episode, action, reply) => {
                remote::call("Step", &(episode, action), reply)
            }
            EnvHostMsg::Finish(episode, reply) => remote::call("Finish", &episode, reply),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        let (variant, args, reply) = match msg {
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } => (variant, args, reply),
            _ => return Err(BoxedDowncastErr),
        };
        match variant.as_str() {
            "Reset" => {
                let (episode, task): (u64, TaskSpec) = remote::decode(&args)?;
                Ok(EnvHostMsg::Reset(
                    episode,
                    Box::new(task),
                    remote::reply_port(reply),
                ))
            }
            "Step" => {
                let (episode, action) = remote::decode(&args)?;
                Ok(EnvHostMsg::Step(episode, action, remote::reply_port(reply)))
            }
            "Finish" => Ok(EnvHostMsg::Finish(
                remote::decode(&args)?,
                remote::reply_port(reply),
            )),
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl ractor::Message for JudgeMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            JudgeMsg::Score(t) => remote::cast("Score", &*t),
            JudgeMsg::Stats(reply) => remote::call("Stats", &(), reply),
            JudgeMsg::Scored(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. } if variant == "Score" => {
                Ok(JudgeMsg::Score(Box::new(remote::decode(&args)?)))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == "Stats" => {
                let () = remote::decode(&args)?;
                Ok(JudgeMsg::Stats(remote::reply_port(reply)))
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl ractor::Message for BufferMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            BufferMsg::Insert(t) => remote::cast("Insert", &*t),
            BufferMsg::InsertBatch(ts) => remote::cast("InsertBatch", &ts),
            BufferMsg::TakeBatch(batch, version, reply) => {
                remote::call("TakeBatch", &(batch, version), reply)
            }
            BufferMsg::Counts(reply) => remote::call("Counts", &(), reply),
            BufferMsg::Checkpointed(step) => remote::cast("Checkpointed", &step),
            BufferMsg::Missing(batch, reply) => remote::call("Missing", &batch, reply),
            BufferMsg::Flush => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. } => match variant.as_str() {
                "Insert" => Ok(BufferMsg::Insert(Box::new(remote::decode(&args)?))),
                "InsertBatch" => Ok(BufferMsg::InsertBatch(remote::decode(&args)?)),
                "Checkpointed" => Ok(BufferMsg::Checkpointed(remote::decode(&args)?)),
                _ => Err(BoxedDowncastErr),
            },
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } => match variant.as_str() {
                "TakeBatch" => {
                    let (batch, version) = remote::decode(&args)?;
                    Ok(BufferMsg::TakeBatch(
                        batch,
                        version,
                        remote::reply_port(reply),
                    ))
                }
                "Counts" => {
                    let () = remote::decode(&args)?;
                    Ok(BufferMsg::Counts(remote::reply_port(reply)))
                }
                "Missing" => Ok(BufferMsg::Missing(
                    remote::decode(&args)?,
                    remote::reply_port(reply),
                )),
                _ => Err(BoxedDowncastErr),
            },
            _ => Err(BoxedDowncastErr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bincode::{Decode, Encode};
    use troupe_core::wire::{DEFAULT_FRAME_LIMIT, decode_frame, encode_frame};

    fn round_trip<T: Encode + Decode<()> + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode_frame(&value).unwrap();
        assert_eq!(
            decode_frame::<T>(&bytes, DEFAULT_FRAME_LIMIT).unwrap(),
            value
        );
    }

    #[test]
    fn payloads_cross_the_wire_unchanged() {
        let task = TaskSpec {
            id: 1 << 40,
            prompt: "sort 321".into(),
            answer: "123".into(),
            difficulty: 3,
        };
        round_trip(Work::Train(TrainUnit {
            unit: 4,
            batch: 3,
            groups: vec![(0, task.clone())],
            group_size: 8,
            publication: 2,
            sampling_seed: 9,
        }));
        round_trip(Work::Eval(EvalUnit {
            unit: 5,
            round: 1,
            tasks: vec![task],
            publication: 1,
        }));
        round_trip(Work::Wait);
        round_trip(StepReport {
            rl_step: 1,
            version: 201,
            publication: 2,
            loss: 0.5,
            mean_reward: 0.25,
            trained: 8,
            trained_tokens: 40,
            dropped_stale: 0,
            filtered_zero_signal: 8,
            dropped_judge_error: 0,
            staleness_histogram: vec![0, 8, 0],
            wait_seconds: 0.1,
            train_seconds: 0.2,
            grad_norm: 1.5,
            clip_fraction: 0.0,
            approx_kl: 0.001,
            logprob_gap: 0.01,
            tis_truncated: 0.0,
            reward_parts: vec![("solved".into(), 3.0), ("timeout".into(), 1.0)],
            buffer: Default::default(),
            publish_seconds: 0.01,
            best_trajectory: None,
        });
        round_trip(troupe_learner::SftExample {
            tokens: vec![257, 258, 49],
            mask: vec![0, 0, 1],
        });
        round_trip(troupe_buffer::Counts::default());
    }

    #[tokio::test]
    async fn env_host_messages_cross_the_wire() {
        use ractor::Message;
        let (tx, _rx) = ractor::concurrency::oneshot();
        let wire = EnvHostMsg::Finish(7, tx.into()).serialize().unwrap();
        assert!(matches!(
            EnvHostMsg::deserialize(wire),
            Ok(EnvHostMsg::Finish(7, _))
        ));
        round_trip::<Result<StepReply, String>>(Ok((
            Some((Author::Tool, "42".into())),
            false,
            None,
        )));
        round_trip::<Result<StepReply, String>>(Ok((None, true, Some("diff".into()))));
        let bad = SerializedMessage::Cast {
            variant: "Finish".into(),
            args: vec![1, 2],
            metadata: None,
        };
        assert!(EnvHostMsg::deserialize(bad).is_err());
    }

    #[test]
    fn judge_messages_cross_the_wire_and_local_ones_do_not() {
        use ractor::Message;
        let task = TaskSpec {
            id: 3,
            prompt: "sort 21".into(),
            answer: "12".into(),
            difficulty: 2,
        };
        let t = Trajectory::new(9, task, troupe_core::Purpose::Eval { round: 1 });
        let wire = JudgeMsg::Score(Box::new(t.clone())).serialize().unwrap();
        assert!(matches!(JudgeMsg::deserialize(wire), Ok(JudgeMsg::Score(x)) if *x == t));
        let scored = ScoredTrajectory {
            trajectory: t,
            reward: troupe_core::Reward::judge_error("llm"),
        };
        assert!(JudgeMsg::Scored(Box::new(scored)).serialize().is_err());

        let mut stats = JudgeStats {
            calls: 4,
            malformed_verdicts: 1,
            last_malformed: "I think so".into(),
            ..JudgeStats::default()
        };
        stats.latency.record(std::time::Duration::from_millis(12));
        let msg = CoordinatorMsg::JudgeStats {
            judge: 77,
            stats: Box::new(stats.clone()),
        };
        match CoordinatorMsg::deserialize(msg.serialize().unwrap()) {
            Ok(CoordinatorMsg::JudgeStats { judge, stats: s }) => {
                assert_eq!((judge, *s), (77, stats));
            }
            other => panic!("{other:?}"),
        }
        let bad = SerializedMessage::Cast {
            variant: "JudgeStats".into(),
            args: vec![2, 0, 255, 255, 255, 255, 255, 255, 255, 127],
            metadata: None,
        };
        assert!(CoordinatorMsg::deserialize(bad).is_err());
    }

    #[test]
    fn buffer_messages_cross_the_wire_and_bad_ones_are_refused() {
        use ractor::Message;
        let task = TaskSpec {
            id: 1,
            prompt: "p".into(),
            answer: "a".into(),
            difficulty: 0,
        };
        let t = ScoredTrajectory {
            trajectory: Trajectory::new(
                5,
                task,
                troupe_core::Purpose::Train { batch: 1, group: 0 },
            ),
            reward: troupe_core::Reward {
                total: 1.0,
                breakdown: vec![],
            },
        };
        let wire = BufferMsg::InsertBatch(vec![t.clone(), t.clone()])
            .serialize()
            .unwrap();
        assert!(matches!(
            BufferMsg::deserialize(wire),
            Ok(BufferMsg::InsertBatch(ts)) if ts == vec![t.clone(), t]
        ));
        let wire = BufferMsg::Checkpointed(7).serialize().unwrap();
        assert!(matches!(
            BufferMsg::deserialize(wire),
            Ok(BufferMsg::Checkpointed(7))
        ));
        assert!(BufferMsg::Flush.serialize().is_err());
        let bad = SerializedMessage::Cast {
            variant: "InsertBatch".into(),
            args: vec![1, 0, 9, 9, 9],
            metadata: None,
        };
        assert!(BufferMsg::deserialize(bad).is_err());
    }
}
