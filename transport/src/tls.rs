//! Mutual-TLS QUIC configurations for cluster nodes.
//!
//! Both sides trust only the cluster CA: a server demands a client certificate signed by it, a
//! client checks the server's certificate against it and presents its own. Both use the *ring*
//! crypto provider explicitly, so the aws-lc-rs provider that ractor_cluster pulls in never
//! makes rustls ambiguous.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use crate::TransportError;
use crate::certs::NodeIdentity;

/// The ALPN protocol id every troupe connection negotiates.
pub const ALPN: &[u8] = b"troupe/1";

/// Per-stream receive window: how much one stream may have in flight. Costs up to this much
/// memory per open stream on the receiver; bulk weight streams need it large to fill the pipe.
pub const STREAM_RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;
/// Connection-wide receive window (all streams together): receiver memory bound per peer.
pub const RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// Connection-wide send window: sender-side buffered bytes per peer.
pub const SEND_WINDOW: u64 = 64 * 1024 * 1024;
/// Keep-alive ping interval, well under [`IDLE_TIMEOUT`] so a quiet but healthy peer stays up.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A peer silent this long (no packets, not even keep-alives) is considered gone: how
/// long a node that died without a word (SIGKILL, power loss) holds on to its work.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs rustls's *ring* provider as the process default, if no default is installed yet.
///
/// The configurations here name *ring* explicitly and do not need this; it is for code (such as
/// ractor_cluster's own TLS) that asks rustls for the process default while both *ring* and
/// aws-lc-rs are compiled in. Safe to call any number of times.
pub fn install_crypto_provider() {
    // Err means some provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_roots(id: &NodeIdentity) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(id.ca().clone())?;
    Ok(Arc::new(roots))
}

/// QUIC transport settings shared by both directions: large flow-control windows for bulk
/// throughput, keep-alives and an idle timeout.
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s fits a QUIC varint"),
        ));
    t
}

/// Server side: requires a client certificate signed by the cluster CA, presents this node's
/// certificate, negotiates [`ALPN`].
pub fn server_config(id: &NodeIdentity) -> Result<quinn::ServerConfig, TransportError> {
    install_crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(ca_roots(id)?, provider()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain().to_vec(), id.key().clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Client side: verifies the server against the cluster CA only, presents this node's
/// certificate, negotiates [`ALPN`].
pub fn client_config(id: &NodeIdentity) -> Result<quinn::ClientConfig, TransportError> {
    install_crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(ca_roots(id)?)
        .with_client_auth_cert(id.chain().to_vec(), id.key().clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}
