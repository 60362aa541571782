//! The bench's peer processes: this same binary started as `troupe bench transport-peer`,
//! given its certificate in a temporary directory, reporting its addresses on one stdout
//! line, and gone when its handle drops (killed, and it also exits when its stdin closes, so
//! a parent that dies without unwinding takes its peers with it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use troupe_transport::NodeIdentity;

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
        let exe = std::env::current_exe().context("cannot find the troupe binary")?;
        let mut child = Command::new(exe)
            .args([
                "bench",
                "transport-peer",
                "--role",
                role.as_str(),
                "--name",
                name,
            ])
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
