//! ReplayBuffer: a thin shell over `troupe_buffer::DurableBuffer` — the replay buffer
//! with its durable log. Inserts are logged before they are acknowledged (a `Counts`
//! reply or a batch handed out is sent only after the records before it are synced);
//! under group commit a timer message flushes what waits.

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_buffer::{BufferConfig, BufferError, DurableBuffer, LogConfig, Recovery};
use troupe_core::{PolicyVersion, ScoredTrajectory};

use crate::messages::BufferMsg;

/// The replay buffer actor.
#[derive(Debug)]
pub struct Buffer;

/// What the buffer actor needs; a restart with the same arguments recovers from the log.
#[derive(Debug, Clone)]
pub struct BufferArgs {
    /// Group shape, staleness bound and capacity.
    pub config: BufferConfig,
    /// The durable log; `None` keeps everything in memory only.
    pub log: Option<LogConfig>,
    /// What to do with a log that already holds records.
    pub recovery: Recovery,
}

/// The buffer and whether a group-commit flush is scheduled.
#[derive(Debug)]
pub struct BufferState {
    buffer: DurableBuffer,
    flush_scheduled: bool,
}

impl BufferState {
    /// The buffer.
    pub fn buffer(&self) -> &DurableBuffer {
        &self.buffer
    }

    fn insert(
        &mut self,
        myself: &ActorRef<BufferMsg>,
        trajectories: impl IntoIterator<Item = ScoredTrajectory>,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let inserted = self.buffer.insert_batch(trajectories, now)?;
        if let Some(by) = inserted.sync_by {
            self.schedule_flush(myself, by, now);
        }
        for e in inserted.refused {
            match e {
                // A late trajectory for a batch already trained on is counted by the
                // caller's accounting as lost; say so rather than dropping silently.
                BufferError::BatchClosed { .. } => tracing::warn!(error = %e, "late trajectory"),
                e => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn schedule_flush(&mut self, myself: &ActorRef<BufferMsg>, by: Instant, now: Instant) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            myself.send_after(by.saturating_duration_since(now), || BufferMsg::Flush);
        }
    }
}

impl Actor for Buffer {
    type Msg = BufferMsg;
    type State = BufferState;
    type Arguments = BufferArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BufferArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let buffer = match &args.log {
            None => DurableBuffer::in_memory(args.config)?,
            Some(log) => {
                let started = Instant::now();
                let (buffer, report) = tokio::task::block_in_place(|| {
                    DurableBuffer::open(args.config, log, args.recovery)
                })?;
                let counts = buffer.buffer().counts();
                tracing::info!(
                    dir = %log.dir.display(),
                    generation = report.generation,
                    records = report.records,
                    pending = counts.pending,
                    takes_undone = report.takes_undone,
                    ms = started.elapsed().as_millis(),
                    "replay log recovered"
                );
                if let Some(torn) = report.torn_tail {
                    tracing::warn!(
                        dir = %log.dir.display(),
                        offset = torn.offset,
                        bytes = torn.bytes,
                        frames = torn.frames,
                        intact_frames = torn.intact_frames,
                        reason = ?torn.reason,
                        "replay log: cut a torn tail (records never acknowledged)"
                    );
                }
                buffer
            }
        };
        crate::remote::join(crate::remote::group::BUFFER, myself.get_cell());
        Ok(BufferState {
            buffer,
            flush_scheduled: false,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(state.buffer.sync()?)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BufferMsg::Insert(t) => state.insert(&myself, [*t])?,
            BufferMsg::InsertBatch(ts) => state.insert(&myself, ts)?,
            BufferMsg::TakeBatch(batch, version, reply) => {
                let taken =
                    state
                        .buffer
                        .take_batch(batch, PolicyVersion(version), Instant::now())?;
                let _ = reply.send(taken);
            }
            BufferMsg::Missing(batch, reply) => {
                let _ = reply.send(state.buffer.buffer().missing_groups(batch));
            }
            BufferMsg::Counts(reply) => {
                state.buffer.sync()?;
                let _ = reply.send(state.buffer.buffer().counts());
            }
            BufferMsg::Checkpointed(step) => {
                let started = Instant::now();
                if tokio::task::block_in_place(|| state.buffer.checkpointed())? {
                    tracing::info!(
                        step,
                        ms = started.elapsed().as_millis(),
                        "replay log compacted"
                    );
                }
            }
            BufferMsg::Flush => {
                state.flush_scheduled = false;
                let now = Instant::now();
                state.buffer.sync_if_due(now)?;
                if let Some(by) = state.buffer.sync_deadline() {
                    state.schedule_flush(&myself, by, now);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ractor::call;
    use troupe_buffer::SyncPolicy;
    use troupe_core::{Purpose, Reward, TaskSpec, Trajectory};

    use super::*;

    fn scored(id: u64, batch: u64, group: u32) -> ScoredTrajectory {
        let task = TaskSpec {
            id,
            prompt: "p".into(),
            answer: "a".into(),
            difficulty: 0,
        };
        let mut t = Trajectory::new(id, task, Purpose::Train { batch, group });
        t.push_context(&[1, 2]);
        t.push_policy(3, -0.5, PolicyVersion(batch));
        ScoredTrajectory {
            trajectory: t,
            reward: Reward {
                total: (id % 2) as f32,
                breakdown: vec![],
            },
        }
    }

    async fn spawn(
        args: &BufferArgs,
    ) -> (ActorRef<BufferMsg>, ractor::concurrency::JoinHandle<()>) {
        Actor::spawn(None, Buffer, args.clone()).await.unwrap()
    }

    async fn stop(actor: ActorRef<BufferMsg>, handle: ractor::concurrency::JoinHandle<()>) {
        actor.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_buffer_recovers_and_a_resumed_one_rewinds() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = BufferArgs {
            config: BufferConfig {
                group_size: 2,
                groups_per_batch: 2,
                max_staleness: 4,
                capacity_groups: 8,
            },
            log: Some(LogConfig {
                dir: dir.path().join("buffer"),
                sync: SyncPolicy::Group {
                    max_records: 64,
                    max_delay: Duration::from_millis(5),
                },
                compact_bytes: 1 << 20,
            }),
            recovery: Recovery::Fresh,
        };
        let (buffer, handle) = spawn(&args).await;
        let batch0: Vec<_> = (0..4).map(|i| scored(i, 0, (i / 2) as u32)).collect();
        buffer.cast(BufferMsg::InsertBatch(batch0)).unwrap();
        for i in 4..8 {
            buffer
                .cast(BufferMsg::Insert(Box::new(scored(
                    i,
                    1,
                    ((i - 4) / 2) as u32,
                ))))
                .unwrap();
        }
        buffer
            .cast(BufferMsg::Insert(Box::new(scored(7, 1, 1))))
            .unwrap();
        let counts = call!(buffer, BufferMsg::Counts).unwrap();
        assert_eq!(
            (counts.inserted, counts.duplicates, counts.pending),
            (8, 1, 8)
        );
        let first = call!(buffer, BufferMsg::TakeBatch, 0, 0).unwrap().unwrap();
        let before = call!(buffer, BufferMsg::Counts).unwrap();
        // Killed without a clean stop: everything acknowledged is in the log.
        buffer.kill();
        let _ = handle.await;

        args.recovery = Recovery::Exact;
        let (buffer, handle) = spawn(&args).await;
        assert_eq!(call!(buffer, BufferMsg::Counts).unwrap(), before);
        assert_eq!(call!(buffer, BufferMsg::TakeBatch, 0, 0).unwrap(), None);
        stop(buffer, handle).await;

        // A learner resumed from its checkpoint at step 0 is served batch 0 again.
        args.recovery = Recovery::Rewind(0);
        let (buffer, handle) = spawn(&args).await;
        assert_eq!(call!(buffer, BufferMsg::Counts).unwrap().pending, 8);
        let again = call!(buffer, BufferMsg::TakeBatch, 0, 0).unwrap();
        assert_eq!(again, Some(first));
        buffer.cast(BufferMsg::Checkpointed(1)).unwrap();
        stop(buffer, handle).await;

        // A new run refuses a log that holds records.
        args.recovery = Recovery::Fresh;
        assert!(Actor::spawn(None, Buffer, args.clone()).await.is_err());
    }
}
