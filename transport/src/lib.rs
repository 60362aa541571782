//! troupe's network transport: QUIC (quinn) with mutual TLS under a per-cluster CA.
//!
//! - [`certs`]: generate a cluster CA and node certificates, write them out, load a
//!   [`NodeIdentity`].
//! - [`tls`]: quinn server/client configurations that require a peer certificate from the
//!   cluster CA, with flow-control windows sized for bulk transfers.
//! - [`endpoint`]: a [`Node`] — one UDP socket that accepts and dials — and [`peer_name`], the
//!   verified name of whoever is on the other end.
//! - [`stream`]: [`QuicBidi`], a QUIC bidirectional stream that carries a ractor_cluster
//!   session (actor messages).
//! - [`bulk`]: blobs (weights) on their own unidirectional streams: chunked, checksummed,
//!   pipelined, size-limited, with a pure decoder that never panics.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), troupe_transport::TransportError> {
//! use troupe_transport::{Node, bulk, certs, peer_name};
//!
//! let certs = certs::generate_cluster(&["learner".into(), "sampler-0".into()])?;
//! let learner = Node::bind("127.0.0.1:0".parse().unwrap(), &certs.identity("learner")?)?;
//! let sampler = Node::bind("127.0.0.1:0".parse().unwrap(), &certs.identity("sampler-0")?)?;
//!
//! let addr = sampler.local_addr()?;
//! let (to_sampler, from_learner) = tokio::join!(learner.connect(addr, "sampler-0"), sampler.accept());
//! let (to_sampler, from_learner) = (to_sampler?, from_learner.expect("endpoint open")?);
//! assert_eq!(peer_name(&from_learner).as_deref(), Some("learner"));
//!
//! let weights = vec![7u8; 100_000];
//! let (sent, received) = tokio::join!(
//!     bulk::send_blob(&to_sampler, 42, &weights, bulk::DEFAULT_CHUNK),
//!     async { bulk::recv_blob(from_learner.accept_uni().await?, 1 << 30).await },
//! );
//! sent?;
//! assert_eq!(received?, (42, weights));
//! # Ok(())
//! # }
//! ```

pub mod bulk;
pub mod certs;
pub mod endpoint;
mod error;
pub mod stream;
pub mod tls;

pub use certs::{ClusterCerts, NodeCert, NodeIdentity, generate_cluster, write_cluster};
pub use endpoint::{Node, peer_name};
pub use error::TransportError;
pub use stream::QuicBidi;
