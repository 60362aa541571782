//! Parts (b) and (c): bulk goodput of troupe's QUIC blob streams against rustls over TCP, and
//! a weight broadcast to several receiver processes.
//!
//! Both transports send the same payload from this process to the same kind of peer process
//! (a sink), and both clocks stop when the sink reports that every byte arrived, so the ratio
//! compares transports, not arrangements.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::ensure;
use tokio::io::AsyncReadExt;
use troupe_transport::{Node, bulk};

use super::peer::{MODE_BARE, MODE_BLOB, Role};
use super::proc::{CertDir, Peer};
use super::{LOCAL_NODE, median, tls_tcp};

/// Part (b): MiB/s of each way to move `bytes` to another process (median of `rounds`).
#[derive(Debug, Clone, Copy)]
pub struct Goodput {
    /// `send_blob` / `recv_blob`: chunked, checksummed, what weights travel on.
    pub quic_blob: f64,
    /// The same bytes on a bare QUIC unidirectional stream (no framing, no checksums).
    pub quic_bare: f64,
    /// The same bytes over rustls on TCP (the baseline).
    pub tls_tcp: f64,
}

/// Part (c): one blob to several receivers at once.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast {
    /// Median seconds until every receiver had the whole blob.
    pub seconds: f64,
    /// Bytes delivered per second over all receivers, MiB/s.
    pub aggregate_mib_s: f64,
}

/// A payload that no layer could compress or shortcut.
pub fn payload(bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(bytes + 8);
    while out.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(bytes);
    out
}

fn mib_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

/// Opens the control stream of one transfer and announces its mode.
async fn announce(conn: &quinn::Connection, mode: u8) -> anyhow::Result<quinn::RecvStream> {
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&[mode]).await?;
    send.finish()?;
    Ok(recv)
}

/// Waits for a sink's acknowledgement on a control stream and checks its length.
async fn acknowledged(mut answer: quinn::RecvStream, expected: usize) -> anyhow::Result<()> {
    let got = answer.read_u64().await?;
    ensure!(
        got == expected as u64,
        "sink acknowledged {got} of {expected} bytes"
    );
    Ok(())
}

/// One QUIC transfer of `data` in `mode`; the time until the sink acknowledged it.
async fn quic_transfer(
    conn: &quinn::Connection,
    mode: u8,
    data: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = announce(conn, mode).await?;
    let send = async {
        if mode == MODE_BLOB {
            bulk::send_blob(conn, 0, data, bulk::DEFAULT_CHUNK).await?;
        } else {
            let mut stream = conn.open_uni().await?;
            stream.write_all(data).await?;
            stream.finish()?;
        }
        anyhow::Ok(())
    };
    let (sent, acked) = tokio::join!(send, acknowledged(answer, data.len()));
    sent?;
    acked?;
    Ok(started.elapsed())
}

async fn connect(me: &Node, peer: &Peer) -> anyhow::Result<quinn::Connection> {
    Ok(me.connect(peer.addrs.quic, &peer.name).await?)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Part (b): `rounds` transfers of `bytes` each way, interleaved, to one sink process.
pub async fn goodput(certs: &CertDir, bytes: usize, rounds: usize) -> anyhow::Result<Goodput> {
    let sink = Peer::spawn(Role::Sink, certs, "sink-0", "").await?;
    let id = certs.identity(LOCAL_NODE)?;
    let me = Node::bind(loopback(), &id)?;
    let conn = connect(&me, &sink).await?;
    let tcp = sink.addrs.tcp.expect("a sink listens on TCP");
    let mut tls = tls_tcp::connect(&id, tcp, &sink.name).await?;

    let data = payload(bytes);
    // Warm up each path (handshakes done, windows open, buffers allocated).
    let warm = &data[..data.len().min(8 << 20)];
    quic_transfer(&conn, MODE_BLOB, warm).await?;
    quic_transfer(&conn, MODE_BARE, warm).await?;
    tls_tcp::transfer(&mut tls, warm).await?;

    let (mut blob, mut bare, mut tcp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        blob.push(mib_s(bytes, quic_transfer(&conn, MODE_BLOB, &data).await?));
        bare.push(mib_s(bytes, quic_transfer(&conn, MODE_BARE, &data).await?));
        tcp.push(mib_s(bytes, tls_tcp::transfer(&mut tls, &data).await?));
    }
    tracing::debug!(?blob, ?bare, ?tcp, "bulk rounds, MiB/s");
    conn.close(0u32.into(), b"done");
    drop(tls);
    sink.stop().await;
    Ok(Goodput {
        quic_blob: median(&mut blob),
        quic_bare: median(&mut bare),
        tls_tcp: median(&mut tcp),
    })
}

/// Part (c): `broadcast_blob` of `bytes` to `receivers` sink processes, `rounds` times.
pub async fn broadcast(
    certs: &CertDir,
    bytes: usize,
    receivers: usize,
    rounds: usize,
) -> anyhow::Result<Broadcast> {
    let mut sinks = Vec::new();
    for i in 0..receivers {
        sinks.push(Peer::spawn(Role::Sink, certs, &format!("sink-{i}"), "").await?);
    }
    let me = Node::bind(loopback(), &certs.identity(LOCAL_NODE)?)?;
    let mut conns = Vec::new();
    for sink in &sinks {
        conns.push(connect(&me, sink).await?);
    }
    let data = payload(bytes);
    broadcast_once(&conns, &data[..data.len().min(4 << 20)]).await?;
    let mut secs = Vec::new();
    for _ in 0..rounds {
        secs.push(broadcast_once(&conns, &data).await?.as_secs_f64());
    }
    tracing::debug!(?secs, "broadcast rounds, seconds");
    for conn in &conns {
        conn.close(0u32.into(), b"done");
    }
    for sink in sinks {
        sink.stop().await;
    }
    let seconds = median(&mut secs);
    Ok(Broadcast {
        seconds,
        aggregate_mib_s: (receivers * bytes) as f64 / (1 << 20) as f64 / seconds,
    })
}

/// One `broadcast_blob` of `data`; the time until every receiver acknowledged it.
async fn broadcast_once(conns: &[quinn::Connection], data: &[u8]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut answers = Vec::new();
    for conn in conns {
        answers.push(announce(conn, MODE_BLOB).await?);
    }
    let acks = async {
        // Awaited in turn while the broadcast runs; the clock stops at the last one.
        for answer in answers {
            acknowledged(answer, data.len()).await?;
        }
        anyhow::Ok(())
    };
    let (sent, acked) = tokio::join!(
        bulk::broadcast_blob(conns, 0, data, bulk::DEFAULT_CHUNK),
        acks
    );
    for r in sent {
        r?;
    }
    acked?;
    Ok(started.elapsed())
}
