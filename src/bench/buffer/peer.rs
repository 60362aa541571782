//! `troupe bench buffer-peer`: the remote end of the buffer bench. A ractor_cluster node
//! on QUIC serving troupe's real buffer actor, with its durable log, in the process group
//! `troupe/buffer` — as the head node serves it to judges and the learner. Prints one
//! ready line and runs until its stdin closes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use ractor::Actor;
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use troupe_actors::roles::buffer::{Buffer, BufferArgs};
use troupe_buffer::Recovery;
use troupe_transport::{Node, QuicBidi};

use super::super::proc::{PeerAddrs, load_identity};
use super::actor::buffer_config;

/// Arguments of `troupe bench buffer-peer`.
#[derive(Debug, clap::Args)]
pub struct BufferPeerArgs {
    /// Trajectories the buffer must hold (sizes its capacity).
    #[arg(long)]
    total: usize,
    /// The buffer's log directory (must be empty).
    #[arg(long)]
    log_dir: PathBuf,
    /// This node's name (its certificate).
    #[arg(long)]
    name: String,
    /// Directory with ca.pem and NAME.pem / NAME.key.
    #[arg(long)]
    certs: PathBuf,
    /// The ractor_cluster cookie.
    #[arg(long)]
    cookie: String,
}

/// Runs the peer until its stdin closes.
pub fn main(args: BufferPeerArgs) -> anyhow::Result<()> {
    // The parent holds our stdin; when it closes (the parent stopped us or died) we exit.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: BufferPeerArgs) -> anyhow::Result<()> {
    troupe_transport::tls::install_crypto_provider();
    let id = load_identity(&args.certs, &args.name)?;
    let quic = Node::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &id)?;
    let server = NodeServer::new(
        0,
        args.cookie.clone(),
        args.name.clone(),
        "127.0.0.1".into(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::from([127, 0, 0, 1]));
    let (node_server, _) = Actor::spawn(None, server, ()).await?;
    let buffer_args = BufferArgs {
        config: buffer_config(args.total),
        log: Some(super::log_config(args.log_dir.clone())),
        recovery: Recovery::Fresh,
    };
    let (_buffer, _) = Actor::spawn(None, Buffer, buffer_args).await?;
    {
        let mut out = std::io::stdout().lock();
        let addrs = PeerAddrs {
            quic: quic.local_addr()?,
            tcp: None,
        };
        writeln!(out, "{}", addrs.ready_line())?;
        out.flush()?;
    }
    let mut connections = Vec::new();
    while let Some(incoming) = quic.accept().await {
        let Ok(conn) = incoming else { continue };
        let stream = QuicBidi::accept(&conn).await?;
        node_server.cast(NodeServerMessage::ConnectionOpenedExternal {
            stream: Box::new(stream),
            is_server: true,
        })?;
        connections.push(conn);
    }
    Ok(())
}
