//! Figures of the buffer actor (`troupe_actors::roles::buffer::Buffer`, durable log on):
//! inserts in messages of 64 trajectories as the samplers produce them, each window of
//! messages acknowledged by a `Counts` call (answered once the window is synced), and
//! learner-style `TakeBatch` calls. The same code measures the actor in another process
//! (QUIC + ractor_cluster, troupe's real path) and in this one (the baseline).

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use ractor::ActorRef;
use troupe_actors::messages::BufferMsg;
use troupe_buffer::{BufferConfig, Counts, DurableBuffer, LogConfig, Recovery};

use super::data::{self, BATCH, GROUP_SIZE, GROUPS_PER_BATCH, PER_MESSAGE};
use super::store::quantile;

/// Messages between acknowledgements (2,048 trajectories); two windows are in flight.
pub const WINDOW: usize = 32;
/// Longest one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// One actor's figures.
#[derive(Debug, Clone, Copy)]
pub struct ActorFigures {
    /// Trajectories acknowledged (durable) per second.
    pub insert_per_s: f64,
    /// Median `TakeBatch` round trip, microseconds.
    pub sample_p50_us: f64,
    /// 99th percentile, microseconds.
    pub sample_p99_us: f64,
    /// CPU time of the buffer's process per trajectory inserted, microseconds.
    pub buffer_cpu_us: f64,
    /// CPU time of the sending process per trajectory inserted, microseconds.
    pub sender_cpu_us: f64,
}

/// Inserts `total` trajectories and times `samples` takes, accounting the CPU time of
/// the buffer's process (`buffer_pid`, `None`: this one) and of this one.
pub async fn measure(
    actor: &ActorRef<BufferMsg>,
    total: usize,
    samples: usize,
    buffer_pid: Option<u32>,
) -> anyhow::Result<ActorFigures> {
    let msgs = messages(total);
    let (buffer_cpu, sender_cpu) = (data::cpu_seconds(buffer_pid), data::cpu_seconds(None));
    let insert_per_s = insert(actor, msgs).await?;
    let per = |before: f64, after: f64| (after - before) * 1e6 / total as f64;
    let buffer_cpu_us = per(buffer_cpu, data::cpu_seconds(buffer_pid));
    let sender_cpu_us = per(sender_cpu, data::cpu_seconds(None));
    let (sample_p50_us, sample_p99_us) = sample(actor, samples).await?;
    Ok(ActorFigures {
        insert_per_s,
        sample_p50_us,
        sample_p99_us,
        // In one process the two are the same clock.
        buffer_cpu_us,
        sender_cpu_us: if buffer_pid.is_some() {
            sender_cpu_us
        } else {
            f64::NAN
        },
    })
}

/// The buffer shape for `total` trajectories: the bench's groups, room for all of them.
pub fn buffer_config(total: usize) -> BufferConfig {
    BufferConfig {
        group_size: GROUP_SIZE,
        groups_per_batch: GROUPS_PER_BATCH,
        max_staleness: 2,
        capacity_groups: total / GROUP_SIZE as usize + GROUPS_PER_BATCH as usize,
    }
}

/// Insert messages carrying trajectories `0..total`.
pub fn messages(total: usize) -> Vec<Vec<troupe_core::ScoredTrajectory>> {
    (0..total / PER_MESSAGE)
        .map(|m| data::trajectories((m * PER_MESSAGE) as u64, PER_MESSAGE))
        .collect()
}

async fn counts(rx: ractor::concurrency::OneshotReceiver<Counts>) -> anyhow::Result<Counts> {
    tokio::time::timeout(CALL_TIMEOUT, rx)
        .await
        .map_err(|_| anyhow!("no acknowledgement within {CALL_TIMEOUT:?}"))?
        .map_err(|_| anyhow!("the buffer dropped an acknowledgement"))
}

/// Inserts `messages` (trajectories `0..total`, into an empty buffer); trajectories
/// acknowledged per second.
pub async fn insert(
    actor: &ActorRef<BufferMsg>,
    messages: Vec<Vec<troupe_core::ScoredTrajectory>>,
) -> anyhow::Result<f64> {
    let total = messages.iter().map(Vec::len).sum::<usize>() as u64;
    let n = messages.len();
    let started = Instant::now();
    let mut in_flight = None;
    for (i, msg) in messages.into_iter().enumerate() {
        actor
            .cast(BufferMsg::InsertBatch(msg))
            .map_err(|e| anyhow!("insert: {e}"))?;
        if (i + 1) % WINDOW == 0 || i + 1 == n {
            let (tx, rx) = ractor::concurrency::oneshot();
            actor
                .cast(BufferMsg::Counts(tx.into()))
                .map_err(|e| anyhow!("counts: {e}"))?;
            if let Some(previous) = in_flight.replace(rx) {
                counts(previous).await?;
            }
        }
    }
    let last = counts(in_flight.context("nothing inserted")?).await?;
    let took = started.elapsed();
    ensure!(
        last.inserted == total && last.pending == total,
        "sent {total} trajectories, the buffer holds {:?}",
        last
    );
    Ok(total as f64 / took.as_secs_f64())
}

/// Times `samples` learner-style takes of batches `0..samples`; (p50, p99) in
/// microseconds.
pub async fn sample(actor: &ActorRef<BufferMsg>, samples: usize) -> anyhow::Result<(f64, f64)> {
    let mut rtts = Vec::with_capacity(samples);
    for b in 0..samples as u64 {
        let started = Instant::now();
        let batch = ractor::call_t!(
            actor,
            BufferMsg::TakeBatch,
            CALL_TIMEOUT.as_millis() as u64,
            b,
            b
        )
        .map_err(|e| anyhow!("take batch {b}: {e}"))?
        .with_context(|| format!("batch {b} was not complete"))?;
        rtts.push(started.elapsed().as_secs_f64() * 1e6);
        ensure!(batch.taken == BATCH as u64, "batch {b}: {}", batch.taken);
    }
    rtts.sort_by(f64::total_cmp);
    Ok((quantile(&rtts, 0.5), quantile(&rtts, 0.99)))
}

/// The same inserts into a [`DurableBuffer`] called directly (no actor, no messages):
/// what the core and its log cost; trajectories per second, synced.
pub fn durable_baseline(
    messages: Vec<Vec<troupe_core::ScoredTrajectory>>,
    log: &LogConfig,
) -> anyhow::Result<f64> {
    let total = messages.iter().map(Vec::len).sum::<usize>();
    let (mut buffer, _) = DurableBuffer::open(buffer_config(total), log, Recovery::Fresh)?;
    let started = Instant::now();
    for msg in messages {
        let inserted = buffer.insert_batch(msg, Instant::now())?;
        ensure!(inserted.refused.is_empty(), "{:?}", inserted.refused);
        buffer.sync_if_due(Instant::now())?;
    }
    buffer.sync()?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
