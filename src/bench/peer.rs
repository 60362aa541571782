//! `troupe bench transport-peer`: the other end of the transport bench, in its own process.
//!
//! - [`Role::Actor`]: a ractor_cluster node serving a [`Counter`] in the process group
//!   [`counter::GROUP`]; it accepts QUIC connections and runs a cluster session on the first
//!   bidirectional stream of each.
//! - [`Role::Sink`]: receives bulk transfers, over QUIC (see [`serve_quic`]) and over
//!   TLS-on-TCP ([`tls_tcp`]), and acknowledges each once it has arrived in full.
//!
//! Either prints one ready line with its addresses and runs until its stdin closes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use ractor::Actor;
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use tokio::io::AsyncReadExt;
use troupe_transport::{Node, QuicBidi, bulk};

use super::counter::{self, Counter};
use super::proc::{PeerAddrs, load_identity};
use super::tls_tcp;

/// Largest blob a sink accepts.
pub const BLOB_LIMIT: u64 = 4 << 30;
/// Control byte: the transfer that follows is a blob ([`bulk::send_blob`]).
pub const MODE_BLOB: u8 = 1;
/// Control byte: the transfer that follows is bare bytes on a unidirectional stream.
pub const MODE_BARE: u8 = 2;

/// What a peer process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Serve a counter actor over a ractor_cluster session.
    Actor,
    /// Receive bulk transfers over QUIC and TLS-over-TCP.
    Sink,
}

impl Role {
    /// The role's command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Actor => "actor",
            Role::Sink => "sink",
        }
    }
}

/// Arguments of `troupe bench transport-peer`.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// What this peer does.
    #[arg(long, value_enum)]
    role: Role,
    /// This node's name (its certificate).
    #[arg(long)]
    name: String,
    /// Directory with ca.pem and NAME.pem / NAME.key.
    #[arg(long)]
    certs: PathBuf,
    /// The ractor_cluster cookie (actor role).
    #[arg(long, default_value = "troupe-bench")]
    cookie: String,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs the peer until its stdin closes.
pub fn main(args: PeerArgs) -> anyhow::Result<()> {
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
    runtime.block_on(async {
        troupe_transport::tls::install_crypto_provider();
        let id = load_identity(&args.certs, &args.name)?;
        let quic = Node::bind(loopback(), &id)?;
        match args.role {
            Role::Actor => actor(quic, &args).await,
            Role::Sink => sink(quic, &id).await,
        }
    })
}

fn ready(addrs: PeerAddrs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", addrs.ready_line())?;
    out.flush()?;
    Ok(())
}

async fn actor(quic: Node, args: &PeerArgs) -> anyhow::Result<()> {
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
    let (counter, _) = Actor::spawn(None, Counter, ()).await?;
    ractor::pg::join(counter::GROUP.to_owned(), vec![counter.get_cell()]);
    ready(PeerAddrs {
        quic: quic.local_addr()?,
        tcp: None,
    })?;
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

async fn sink(quic: Node, id: &troupe_transport::NodeIdentity) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(loopback()).await?;
    let tcp = listener.local_addr()?;
    tokio::spawn(tls_tcp::accept_loop(listener, tls_tcp::acceptor(id)?));
    ready(PeerAddrs {
        quic: quic.local_addr()?,
        tcp: Some(tcp),
    })?;
    while let Some(incoming) = quic.accept().await {
        let Ok(conn) = incoming else { continue };
        tokio::spawn(async move {
            if let Err(e) = serve_quic(&conn).await {
                tracing::debug!(error = %e, "bench QUIC connection ended");
            }
        });
    }
    Ok(())
}

/// Serves transfers on `conn` until it closes. Each begins with a control bidirectional
/// stream carrying one mode byte; the data follows on the next unidirectional stream; the
/// answer on the control stream is the payload length (`u64` big-endian) once it arrived.
async fn serve_quic(conn: &quinn::Connection) -> anyhow::Result<()> {
    loop {
        let (mut answer, mut control) = conn.accept_bi().await?;
        let mode = control.read_u8().await?;
        let recv = conn.accept_uni().await?;
        let received = match mode {
            MODE_BLOB => bulk::recv_blob(recv, BLOB_LIMIT).await?.1.len() as u64,
            MODE_BARE => drain(recv).await?,
            other => bail!("unknown transfer mode {other}"),
        };
        answer.write_all(&received.to_be_bytes()).await?;
        answer.finish()?;
    }
}

/// Reads a stream to its end, discarding the bytes; how many there were.
async fn drain(mut recv: quinn::RecvStream) -> anyhow::Result<u64> {
    let mut total = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        total += chunk.bytes.len() as u64;
    }
    Ok(total)
}
