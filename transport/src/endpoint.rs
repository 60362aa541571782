//! A cluster node's QUIC endpoint: one UDP socket that both accepts and dials.

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;

use crate::TransportError;
use crate::certs::NodeIdentity;
use crate::tls;

/// A node's QUIC endpoint, configured for mutual TLS with its cluster CA.
///
/// Every connection it accepts or opens is authenticated both ways: the peer's certificate
/// chains to the cluster CA, and the peer verified ours. [`peer_name`] says who the peer is.
#[derive(Debug, Clone)]
pub struct Node {
    endpoint: quinn::Endpoint,
    name: String,
}

impl Node {
    /// Binds a UDP socket at `addr` (port 0 picks a free port) acting as server and client.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, id: &NodeIdentity) -> Result<Self, TransportError> {
        let server = tls::server_config(id)?;
        let client = tls::client_config(id)?;
        let mut endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        Ok(Self {
            endpoint,
            name: id.name().to_owned(),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the socket is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })
    }

    /// The underlying quinn endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Connects to the node `peer_name` at `addr`; its certificate must name `peer_name` and
    /// chain to the cluster CA.
    ///
    /// With TLS 1.3 the client finishes its handshake before the server has checked the client
    /// certificate, so a server that refuses *this* node shows up as the returned connection
    /// closing at once (with a TLS alert as the reason), not as an `Err` here.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        peer_name: &str,
    ) -> Result<quinn::Connection, TransportError> {
        let connecting = self.endpoint.connect(addr, peer_name)?;
        let conn = connecting.await?;
        tracing::debug!(node = %self.name, peer = peer_name, %addr, "connected");
        Ok(conn)
    }

    /// Waits for the next incoming connection and completes its handshake.
    ///
    /// `None` once the endpoint is closed; `Some(Err(_))` for a handshake that failed, for
    /// example a client without a certificate from the cluster CA.
    pub async fn accept(&self) -> Option<Result<quinn::Connection, TransportError>> {
        let incoming = self.endpoint.accept().await?;
        let remote = incoming.remote_address();
        Some(match incoming.await {
            Ok(conn) => {
                tracing::debug!(node = %self.name, peer = ?peer_name(&conn), %remote, "accepted");
                Ok(conn)
            }
            Err(e) => {
                tracing::warn!(node = %self.name, %remote, error = %e, "handshake refused");
                Err(e.into())
            }
        })
    }

    /// Closes every connection at once and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node closing");
    }

    /// Waits until every connection is cleanly shut down (call after [`Node::close`]).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// The name of the peer on `conn`: the first DNS subject-alternative name of its verified
/// certificate. `None` if the peer presented no certificate (impossible with this crate's
/// configurations) or the certificate carries no DNS name.
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    first_dns_name(chain.first()?)
}

/// The first DNS subject-alternative name of a DER certificate.
pub fn first_dns_name(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    cert.valid_dns_names().next().map(str::to_owned)
}
