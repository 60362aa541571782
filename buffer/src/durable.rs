//! [`DurableBuffer`]: a [`ReplayBuffer`] with its optional [`ReplayLog`], so that every
//! change is logged in the order it is made and synced before it is acknowledged. The
//! buffer actor is a shell around this; so are the recovery tests.

use std::time::Instant;

use troupe_core::{PolicyVersion, ScoredTrajectory};

use crate::log::{LogConfig, Recovery, RecoveryReport, ReplayLog};
use crate::{Batch, BufferConfig, BufferError, InsertOutcome, LogError, ReplayBuffer};

/// What one insert message did.
#[derive(Debug, Default)]
pub struct Inserted {
    /// Trajectories stored.
    pub accepted: u64,
    /// Trajectories ignored as duplicates.
    pub duplicates: u64,
    /// Groups the message completed, as `(batch, group)`.
    pub completed: Vec<(u64, u32)>,
    /// Trajectories refused, with why (nothing of them was stored or logged).
    pub refused: Vec<BufferError>,
    /// When the log must be synced to make this message durable (`None`: it is).
    pub sync_by: Option<Instant>,
}

/// A replay buffer whose changes are logged before they are acknowledged (or an
/// in-memory one, without a log).
#[derive(Debug)]
pub struct DurableBuffer {
    buffer: ReplayBuffer,
    log: Option<ReplayLog>,
}

impl DurableBuffer {
    /// A buffer without a log: nothing survives the process.
    pub fn in_memory(cfg: BufferConfig) -> Result<Self, BufferError> {
        Ok(Self {
            buffer: ReplayBuffer::new(cfg)?,
            log: None,
        })
    }

    /// Opens the log in `log.dir` and rebuilds the buffer from it (see [`Recovery`]).
    pub fn open(
        cfg: BufferConfig,
        log: &LogConfig,
        recovery: Recovery,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let (buffer, log, report) = ReplayLog::open(log, cfg, recovery)?;
        Ok((
            Self {
                buffer,
                log: Some(log),
            },
            report,
        ))
    }

    /// Stores `trajectories` and logs the ones accepted, with the count of duplicates, as
    /// one record. Each is encoded before the buffer takes it, so nothing is copied.
    /// A refused trajectory is reported in [`Inserted::refused`], not logged.
    pub fn insert_batch(
        &mut self,
        trajectories: impl IntoIterator<Item = ScoredTrajectory>,
        now: Instant,
    ) -> Result<Inserted, LogError> {
        let mut out = Inserted::default();
        let mut record = self.log.as_mut().map(|l| l.begin_insert());
        for t in trajectories {
            let mark = match record.as_mut() {
                Some(r) => Some(r.push(&t)?),
                None => None,
            };
            let outcome = self.buffer.insert(t);
            if !matches!(
                outcome,
                Ok(InsertOutcome::Accepted | InsertOutcome::GroupComplete { .. })
            ) && let (Some(r), Some(m)) = (record.as_mut(), mark)
            {
                r.undo(m);
            }
            match outcome {
                Ok(InsertOutcome::Accepted) => out.accepted += 1,
                Ok(InsertOutcome::GroupComplete { batch, group }) => {
                    out.accepted += 1;
                    out.completed.push((batch, group));
                }
                Ok(InsertOutcome::Duplicate) => out.duplicates += 1,
                Err(e) => out.refused.push(e),
            }
        }
        if let Some(log) = self.log.as_mut() {
            out.sync_by = log.append_insert(out.duplicates, now)?;
        }
        Ok(out)
    }

    /// [`ReplayBuffer::take_batch`]; the take is durable before the batch is returned.
    pub fn take_batch(
        &mut self,
        batch: u64,
        current: PolicyVersion,
        now: Instant,
    ) -> Result<Option<Batch>, LogError> {
        let taken = self.buffer.take_batch_with_record(batch, current);
        self.log_take(taken, now)
    }

    /// [`ReplayBuffer::take_ready`]; the take is durable before the batch is returned.
    pub fn take_ready(
        &mut self,
        max_groups: usize,
        current: PolicyVersion,
        now: Instant,
    ) -> Result<Option<Batch>, LogError> {
        let taken = self.buffer.take_ready_with_record(max_groups, current);
        self.log_take(taken, now)
    }

    fn log_take(
        &mut self,
        taken: Option<(Batch, crate::Take)>,
        now: Instant,
    ) -> Result<Option<Batch>, LogError> {
        let Some((batch, take)) = taken else {
            return Ok(None);
        };
        if let Some(log) = self.log.as_mut() {
            log.append_take(&take, now)?;
            log.sync()?;
        }
        Ok(Some(batch))
    }

    /// Makes everything so far durable: call before acknowledging.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.log.as_mut().map_or(Ok(()), ReplayLog::sync)
    }

    /// Syncs if a group commit's delay has run out at `now`.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<(), LogError> {
        self.log.as_mut().map_or(Ok(()), |l| l.sync_if_due(now))
    }

    /// When waiting records must be synced (see [`ReplayLog::sync_deadline`]).
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.log.as_ref().and_then(ReplayLog::sync_deadline)
    }

    /// The learner has checkpointed (its next take is of the batch after the last one
    /// taken): compacts the log if it has grown past its threshold. Compacting only
    /// here keeps [`Recovery::Rewind`] to that checkpoint possible. Whether it compacted.
    pub fn checkpointed(&mut self) -> Result<bool, LogError> {
        match self.log.as_mut() {
            Some(log) if log.wants_compaction() => {
                log.compact(&self.buffer)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The buffer.
    pub fn buffer(&self) -> &ReplayBuffer {
        &self.buffer
    }

    /// The log, when there is one.
    pub fn log(&self) -> Option<&ReplayLog> {
        self.log.as_ref()
    }

    /// The log, mutably (compaction on demand, tests).
    pub fn log_mut(&mut self) -> Option<&mut ReplayLog> {
        self.log.as_mut()
    }
}
