//! The bulk baseline: rustls over TCP with the cluster's certificates, mutual TLS 1.3 and
//! the *ring* provider, the same choices troupe's QUIC endpoint makes.
//!
//! Framing: the sender writes `[len u64 big-endian][len bytes]`; the receiver reads them all
//! and answers `[len u64 big-endian]`. The transfer time runs until that answer arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use troupe_transport::NodeIdentity;

/// Largest transfer a receiver accepts.
pub const LIMIT: u64 = 4 << 30;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(id: &NodeIdentity) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(id.ca().clone())?;
    Ok(Arc::new(roots))
}

/// A TLS acceptor that requires a client certificate from the cluster CA.
pub fn acceptor(id: &NodeIdentity) -> anyhow::Result<TlsAcceptor> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(id)?, provider()).build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain().to_vec(), id.key().clone_key())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TLS client stream to the node `peer` at `addr`, authenticated both ways.
pub async fn connect(
    id: &NodeIdentity,
    addr: SocketAddr,
    peer: &str,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(id)?)
        .with_client_auth_cert(id.chain().to_vec(), id.key().clone_key())?;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(peer.to_owned())?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

/// Sends `payload` and waits for the receiver's acknowledgement; the time it took.
pub async fn transfer(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    payload: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    tls.write_all(&(payload.len() as u64).to_be_bytes()).await?;
    tls.write_all(payload).await?;
    tls.flush().await?;
    let mut ack = [0u8; 8];
    tls.read_exact(&mut ack).await?;
    let elapsed = started.elapsed();
    ensure!(
        u64::from_be_bytes(ack) == payload.len() as u64,
        "TLS receiver acknowledged {} of {} bytes",
        u64::from_be_bytes(ack),
        payload.len()
    );
    Ok(elapsed)
}

/// Accepts TLS connections on `listener` and serves each with [`serve`].
pub async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor) {
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let served = async { serve(acceptor.accept(tcp).await?).await };
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "TLS bench connection failed");
            }
        });
    }
}

/// Receives transfers until the peer closes: reads each in full (discarding it) and
/// acknowledges its length.
async fn serve(mut tls: tokio_rustls::server::TlsStream<TcpStream>) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut len = [0u8; 8];
        match tls.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let total = u64::from_be_bytes(len);
        ensure!(total <= LIMIT, "transfer of {total} bytes is over {LIMIT}");
        let mut left = total;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = tls.read(&mut buf[..want]).await?;
            if n == 0 {
                bail!("TLS sender closed with {left} bytes to go");
            }
            left -= n as u64;
        }
        tls.write_all(&total.to_be_bytes()).await?;
        tls.flush().await?;
    }
}
