//! The bench's peer processes: this same binary started as `troupe bench transport-peer`,
//! given its certificate in a temporary directory, reporting its addresses on one stdout
//! line, and gone when its handle drops (killed, and it also exits when its stdin closes, so
//! a parent that dies without unwinding takes its peers with it).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use troupe_transport::{Node, NodeIdentity, QuicBidi};

use super::peer::Role;

/// How long a peer may take to start and report its addresses.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The line prefix a peer prints once it listens.
pub const READY: &str = "READY";

/// A cluster CA and node certificates written to a temporary directory, removed on drop.
#[derive(Debug)]
pub struct CertDir {
    path: PathBuf,
}

impl CertDir {
    /// Generates certificates for `names` and writes them to a fresh temporary directory.
    pub fn create(names: &[String]) -> anyhow::Result<Self> {
        let certs = troupe_transport::generate_cluster(names)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("troupe-bench-{}-{nanos:09}", std::process::id()));
        troupe_transport::write_cluster(&path, &certs)?;
        Ok(Self { path })
    }

    /// The directory holding `ca.pem` and `NAME.pem` / `NAME.key`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity of node `name`.
    pub fn identity(&self, name: &str) -> anyhow::Result<NodeIdentity> {
        load_identity(&self.path, name)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Loads node `name`'s identity from a directory written by [`CertDir::create`].
pub fn load_identity(dir: &Path, name: &str) -> anyhow::Result<NodeIdentity> {
    Ok(NodeIdentity::load(
        dir.join("ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        name,
    )?)
}

/// Where a peer listens.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddrs {
    /// Its QUIC endpoint.
    pub quic: SocketAddr,
    /// Its TLS-over-TCP listener, for roles that have one.
    pub tcp: Option<SocketAddr>,
}

impl PeerAddrs {
    /// Formats the ready line a peer prints.
    pub fn ready_line(&self) -> String {
        match self.tcp {
            Some(tcp) => format!("{READY} quic={} tcp={tcp}", self.quic),
            None => format!("{READY} quic={}", self.quic),
        }
    }

    /// Parses a ready line.
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let mut words = line.split_whitespace();
        if words.next() != Some(READY) {
            bail!("peer said {line:?} instead of {READY}");
        }
        let (mut quic, mut tcp) = (None, None);
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| anyhow!("bad ready line {line:?}"))?;
            let addr: SocketAddr = value
                .parse()
                .with_context(|| format!("bad address in {line:?}"))?;
            match key {
                "quic" => quic = Some(addr),
                "tcp" => tcp = Some(addr),
                _ => bail!("unknown key {key:?} in {line:?}"),
            }
        }
        Ok(Self {
            quic: quic.ok_or_else(|| anyhow!("no quic address in {line:?}"))?,
            tcp,
        })
    }
}

/// A running peer process; killed when dropped.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    /// Its node name (the name on its certificate).
    pub name: String,
    /// Where it listens.
    pub addrs: PeerAddrs,
}

impl Peer {
    /// Starts a peer with `role` as node `name` and waits until it listens.
    pub async fn spawn(
        role: Role,
        certs: &CertDir,
        name: &str,
        cookie: &str,
    ) -> anyhow::Result<Self> {
        let args: Vec<OsString> = ["transport-peer", "--role", role.as_str()]
            .into_iter()
            .map(OsString::from)
            .collect();
        Self::start(name, certs, cookie, args).await
    }

    /// Starts `troupe bench SUBCOMMAND...` (in `args`) as node `name` with `--name`,
    /// `--certs` and `--cookie` added, and waits until it prints its ready line.
    pub async fn start(
        name: &str,
        certs: &CertDir,
        cookie: &str,
        args: Vec<OsString>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the troupe binary")?;
        let mut child = Command::new(exe)
            .arg("bench")
            .args(args)
            .args(["--name", name])
            .arg("--certs")
            .arg(certs.path())
            .args(["--cookie", cookie])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a bench peer")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let started = Instant::now();
        let line = tokio::time::timeout(READY_TIMEOUT, BufReader::new(stdout).lines().next_line())
            .await
            .map_err(|_| anyhow!("peer {name} not ready after {READY_TIMEOUT:?}"))??
            .ok_or_else(|| anyhow!("peer {name} exited before it was ready"))?;
        let addrs = PeerAddrs::parse(&line)?;
        tracing::debug!(
            peer = name,
            ?addrs,
            ms = started.elapsed().as_millis(),
            "peer ready"
        );
        Ok(Self {
            child,
            name: name.to_owned(),
            addrs,
        })
    }

    /// The peer's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks the peer to exit (closes its stdin), and kills it if it has not within a second.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(1), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A ractor_cluster node in this process with a session to a peer over QUIC, as troupe's
/// nodes meet: actors of the peer appear in this process's process groups.
#[derive(Debug)]
pub struct Session {
    node_server: ActorRef<NodeServerMessage>,
    conn: quinn::Connection,
    _quic: Node,
}

impl Session {
    /// Starts node `local` and opens a cluster session to `peer` with `cookie`.
    pub async fn open(
        certs: &CertDir,
        local: &str,
        peer: &Peer,
        cookie: &str,
    ) -> anyhow::Result<Self> {
        let quic = Node::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &certs.identity(local)?,
        )?;
        let server = NodeServer::new(
            0,
            cookie.to_owned(),
            local.to_owned(),
            "127.0.0.1".into(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(IpAddr::from([127, 0, 0, 1]));
        let (node_server, _) = Actor::spawn(None, server, ()).await?;
        let conn = quic.connect(peer.addrs.quic, &peer.name).await?;
        ractor_cluster::client_connect_external(
            &node_server,
            Box::new(QuicBidi::open(&conn).await?),
        )
        .await
        .map_err(|e| anyhow!("cluster session to {}: {e}", peer.name))?;
        Ok(Self {
            node_server,
            conn,
            _quic: quic,
        })
    }

    /// Closes the session and stops the node.
    pub fn close(self) {
        self.node_server.stop(None);
        self.conn.close(0u32.into(), b"done");
    }
}

/// Waits (polling, with a deadline) until a member of process group `group` that lives in
/// another process appears.
pub async fn remote_member<M: ractor::Message>(
    group: &str,
    deadline: Duration,
) -> anyhow::Result<ActorRef<M>> {
    let started = Instant::now();
    loop {
        let remote = ractor::pg::get_members(&group.to_owned())
            .into_iter()
            .find(|cell| !cell.get_id().is_local());
        if let Some(cell) = remote {
            tracing::debug!(
                ms = started.elapsed().as_millis(),
                group,
                "remote member found"
            );
            return Ok(ActorRef::from(cell));
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "no remote member of {group} appeared within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_round_trip() {
        let addrs = PeerAddrs {
            quic: "127.0.0.1:4000".parse().unwrap(),
            tcp: Some("127.0.0.1:4001".parse().unwrap()),
        };
        let back = PeerAddrs::parse(&addrs.ready_line()).unwrap();
        assert_eq!((back.quic, back.tcp), (addrs.quic, addrs.tcp));
        let quic_only = PeerAddrs::parse("READY quic=127.0.0.1:5").unwrap();
        assert!(quic_only.tcp.is_none());
        assert!(PeerAddrs::parse("hello").is_err());
        assert!(PeerAddrs::parse("READY quic=nowhere").is_err());
    }
}
