//! Part (a): small actor messages. The same [`Counter`] actor is measured twice, through the
//! same `ActorRef` calls: REMOTE lives in a peer process and is reached through a
//! ractor_cluster session over QUIC (found in a process group, as troupe's roles are), LOCAL
//! lives in this process.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use ractor::{Actor, ActorRef};

use super::counter::{self, Counter, CounterMsg};
use super::peer::Role;
use super::proc::{CertDir, Peer, Session, remote_member};
use super::{LOCAL_NODE, median};

/// Bytes of payload in each one-way message.
pub const PAYLOAD: usize = 64;
/// How long a single flush or ping may take before the bench gives up.
const CALL_TIMEOUT_MS: u64 = 60_000;
/// One-way messages in the pilot run (and the smallest batch).
const PILOT_MSGS: u64 = 20_000;

/// Sizes of part (a).
#[derive(Debug, Clone, Copy)]
pub struct SmallSizes {
    /// Seconds the one-way measurement should take; the message count is calibrated to it.
    pub target_secs: f64,
    /// Most one-way messages per batch (bounds the queued memory).
    pub max_batch: u64,
    /// Sequential calls for the round-trip median.
    pub calls: usize,
}

/// One actor's figures.
#[derive(Debug, Clone, Copy)]
pub struct SmallFigures {
    /// One-way casts received per second.
    pub msgs_per_s: f64,
    /// Casts sent in the measured batches.
    pub msgs: u64,
    /// Median round trip of a call, microseconds.
    pub rtt_us: f64,
    /// 99th percentile round trip, microseconds.
    pub rtt_p99_us: f64,
}

/// Part (a): REMOTE and LOCAL figures.
pub async fn run(
    certs: &CertDir,
    sizes: SmallSizes,
) -> anyhow::Result<(SmallFigures, SmallFigures)> {
    let cookie = format!("troupe-bench-{}", std::process::id());
    let peer = Peer::spawn(Role::Actor, certs, "actor-0", &cookie).await?;
    let session = Session::open(certs, LOCAL_NODE, &peer, &cookie).await?;
    let remote = remote_member::<CounterMsg>(counter::GROUP, Duration::from_secs(10)).await?;
    let (local, local_handle) = Actor::spawn(None, Counter, ()).await?;

    let result = async {
        let remote_figures = measure(&remote, sizes).await.context("remote counter")?;
        let local_figures = measure(&local, sizes).await.context("local counter")?;
        anyhow::Ok((remote_figures, local_figures))
    }
    .await;

    local.stop(None);
    let _ = local_handle.await;
    session.close();
    peer.stop().await;
    result
}

async fn flush(actor: &ActorRef<CounterMsg>) -> anyhow::Result<u64> {
    ractor::call_t!(actor, CounterMsg::Flush, CALL_TIMEOUT_MS).map_err(|e| anyhow!("flush: {e}"))
}

/// Casts `n` ticks and asks for the count; the time until the count came back.
async fn one_way(actor: &ActorRef<CounterMsg>, n: u64) -> anyhow::Result<Duration> {
    flush(actor).await?;
    let payload = vec![0xA5u8; PAYLOAD];
    let started = Instant::now();
    for _ in 0..n {
        actor
            .cast(CounterMsg::Tick(payload.clone()))
            .map_err(|e| anyhow!("cast: {e}"))?;
    }
    let counted = flush(actor).await?;
    let took = started.elapsed();
    ensure!(
        counted == n,
        "sent {n} messages, the counter received {counted}"
    );
    Ok(took)
}

async fn measure(actor: &ActorRef<CounterMsg>, sizes: SmallSizes) -> anyhow::Result<SmallFigures> {
    // A short pilot run warms the path and sizes the batches: about four per target time,
    // each bounded so the queued messages stay small. Batches repeat until the target time.
    let pilot = PILOT_MSGS as f64 / one_way(actor, PILOT_MSGS).await?.as_secs_f64();
    let batch = ((pilot * sizes.target_secs / 4.0) as u64).clamp(PILOT_MSGS, sizes.max_batch);
    let (mut msgs, mut secs) = (0u64, 0.0f64);
    while secs < sizes.target_secs {
        secs += one_way(actor, batch).await?.as_secs_f64();
        msgs += batch;
    }
    let msgs_per_s = msgs as f64 / secs;

    let mut rtts = Vec::with_capacity(sizes.calls);
    for i in 0..sizes.calls as u64 {
        let started = Instant::now();
        let back = ractor::call_t!(actor, CounterMsg::Ping, CALL_TIMEOUT_MS, i)
            .map_err(|e| anyhow!("ping: {e}"))?;
        rtts.push(started.elapsed().as_secs_f64() * 1e6);
        ensure!(back == i, "ping {i} came back as {back}");
    }
    let rtt_us = median(&mut rtts);
    let p99 = rtts[((rtts.len() * 99) / 100).min(rtts.len() - 1)];
    Ok(SmallFigures {
        msgs_per_s,
        msgs,
        rtt_us,
        rtt_p99_us: p99,
    })
}
