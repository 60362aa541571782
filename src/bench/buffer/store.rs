//! In-process figures of the replay buffer core: how fast it fills, and how long taking
//! one RL batch (256 trajectories: 32 groups of 8) takes with N trajectories stored. The
//! store is kept at N by inserting one new batch (untimed) after each timed take.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use troupe_buffer::{BufferConfig, ReplayBuffer};
use troupe_core::PolicyVersion;

use super::data::{self, BATCH, GROUP_SIZE, GROUPS_PER_BATCH};

/// Figures at one store size.
#[derive(Debug, Clone, Copy)]
pub struct CoreFigures {
    /// Trajectories stored while sampling.
    pub stored: usize,
    /// Trajectories inserted per second while filling (insert calls only, timed).
    pub insert_per_s: f64,
    /// Median take of one batch, microseconds.
    pub sample_p50_us: f64,
    /// 99th percentile, microseconds.
    pub sample_p99_us: f64,
    /// Slowest take, microseconds.
    pub sample_max_us: f64,
    /// Growth of this process's resident memory while filling, bytes.
    pub rss_growth: u64,
}

/// `q` quantile (0..=1) of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Fills a buffer with `stored` trajectories (a whole number of batches), then times
/// `samples` takes of the oldest batch, refilling after each.
pub fn measure(stored: usize, samples: usize) -> anyhow::Result<CoreFigures> {
    let batches = (stored / BATCH).max(1) as u64;
    let stored = batches as usize * BATCH;
    let cfg = BufferConfig {
        group_size: GROUP_SIZE,
        groups_per_batch: GROUPS_PER_BATCH,
        max_staleness: 2,
        capacity_groups: (batches as usize + 1) * GROUPS_PER_BATCH as usize,
    };
    let (rss_before, _) = data::rss();
    let mut buffer = ReplayBuffer::new(cfg)?;
    let mut inserting = Duration::ZERO;
    for b in 0..batches {
        let batch = data::trajectories(b * BATCH as u64, BATCH);
        let started = Instant::now();
        for t in batch {
            buffer.insert(t).context("fill")?;
        }
        inserting += started.elapsed();
    }
    let (rss_after, _) = data::rss();
    ensure!(buffer.counts().pending == stored as u64, "fill incomplete");
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let started = Instant::now();
        let batch = buffer.take_batch(i, PolicyVersion(i));
        let elapsed = started.elapsed();
        let batch = batch.with_context(|| format!("batch {i} was not complete"))?;
        ensure!(
            batch.taken == BATCH as u64 && batch.groups.len() == GROUPS_PER_BATCH as usize,
            "batch {i}: {} taken, {} groups kept",
            batch.taken,
            batch.groups.len()
        );
        took.push(elapsed.as_secs_f64() * 1e6);
        drop(batch);
        for t in data::trajectories((batches + i) * BATCH as u64, BATCH) {
            buffer.insert(t).context("refill")?;
        }
    }
    took.sort_by(f64::total_cmp);
    Ok(CoreFigures {
        stored,
        insert_per_s: stored as f64 / inserting.as_secs_f64(),
        sample_p50_us: quantile(&took, 0.5),
        sample_p99_us: quantile(&took, 0.99),
        sample_max_us: took.last().copied().unwrap_or(f64::NAN),
        rss_growth: rss_after.saturating_sub(rss_before),
    })
}
