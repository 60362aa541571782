//! ractor_cluster sessions over QUIC bidirectional streams.
//!
//! [`QuicBidi`] implements [`ractor_cluster::ClusterBidiStream`], so a ractor_cluster node
//! session runs inside a mutually authenticated, encrypted QUIC stream:
//! - dialling side: `ractor_cluster::client_connect_external(&node_server, Box::new(QuicBidi::open(&conn).await?))`;
//! - accepting side: cast `NodeServerMessage::ConnectionOpenedExternal { stream: Box::new(QuicBidi::accept(&conn).await?), is_server: true }`.
//!
//! A QUIC stream becomes visible to the peer only once its opener sends on it; ractor_cluster's
//! client speaks first in its handshake, so the dialling side opens the stream.

use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream};

use crate::TransportError;
use crate::endpoint::peer_name;

/// Both halves of a QUIC bidirectional stream, for a ractor_cluster session.
#[derive(Debug)]
pub struct QuicBidi {
    /// The sending half.
    pub send: quinn::SendStream,
    /// The receiving half.
    pub recv: quinn::RecvStream,
    peer: Option<String>,
    local: Option<String>,
}

impl QuicBidi {
    /// Wraps the two halves of a bidirectional stream.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            peer: None,
            local: None,
        }
    }

    /// Sets the labels ractor_cluster shows in its diagnostics.
    pub fn with_labels(mut self, local: Option<String>, peer: Option<String>) -> Self {
        self.local = local;
        self.peer = peer;
        self
    }

    /// Opens a new bidirectional stream on `conn`, labelled with the peer's certificate name.
    pub async fn open(conn: &quinn::Connection) -> Result<Self, TransportError> {
        let (send, recv) = conn.open_bi().await?;
        Ok(Self::new(send, recv).with_labels(None, peer_label(conn)))
    }

    /// Accepts the next bidirectional stream the peer opens on `conn`.
    pub async fn accept(conn: &quinn::Connection) -> Result<Self, TransportError> {
        let (send, recv) = conn.accept_bi().await?;
        Ok(Self::new(send, recv).with_labels(None, peer_label(conn)))
    }
}

fn peer_label(conn: &quinn::Connection) -> Option<String> {
    let addr = conn.remote_address();
    Some(match peer_name(conn) {
        Some(name) => format!("{name}@{addr}"),
        None => addr.to_string(),
    })
}

impl ClusterBidiStream for QuicBidi {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let Self { send, recv, .. } = *self;
        (Box::new(recv), Box::new(send))
    }

    fn peer_label(&self) -> Option<String> {
        self.peer.clone()
    }

    fn local_label(&self) -> Option<String> {
        self.local.clone()
    }
}
