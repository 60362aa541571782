//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in troupe's transport: certificates, TLS, QUIC and blob frames.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// rcgen could not generate a key pair or sign a certificate.
    #[error("certificate generation failed: {0}")]
    CertGen(#[from] rcgen::Error),

    /// A node name is not usable as a DNS name / file name (or is a duplicate or reserved).
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The offending name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Reading or writing a certificate or key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A PEM file (or in-memory PEM text) held no usable certificate or key.
    #[error("{what}: {reason}")]
    Pem {
        /// The file path, or a description of the in-memory source.
        what: String,
        /// What was wrong with it.
        reason: String,
    },

    /// rustls rejected a certificate, key or configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// The client-certificate verifier could not be built (for example an empty CA store).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// The rustls configuration offers no cipher suite usable for QUIC's initial packets.
    #[error("QUIC crypto: {0}")]
    QuicCrypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),

    /// Binding the UDP socket (or finding the tokio runtime) failed.
    #[error("binding QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A connection attempt could not even start (bad server name, endpoint stopping, ...).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),

    /// A QUIC connection failed or was closed, including a TLS handshake the peer refused.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),

    /// Writing to a QUIC stream failed.
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),

    /// Reading from a QUIC stream failed.
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),

    /// The stream was already finished or reset when it was used.
    #[error("stream closed: {0}")]
    ClosedStream(#[from] quinn::ClosedStream),

    /// Waiting for the peer to acknowledge a finished stream failed.
    #[error("stream stopped: {0}")]
    Stopped(#[from] quinn::StoppedError),

    /// The receiver stopped a blob stream before reading it all (it rejected the blob).
    #[error("peer stopped the blob stream with code {0}")]
    PeerStopped(u64),

    /// `send_blob` was called with a chunk size of zero or above `u32::MAX`.
    #[error("chunk size {0} must be between 1 and u32::MAX")]
    InvalidChunkSize(usize),

    /// A blob frame did not start with the `TRPB` magic.
    #[error("blob frame: bad magic {found:#010x}")]
    BadMagic {
        /// The four bytes found, as a big-endian u32.
        found: u32,
    },

    /// A blob frame carries a protocol version this build does not speak.
    #[error("blob frame: unsupported protocol version {found} (expected {expected})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The version this build speaks.
        expected: u16,
    },

    /// A blob header declares more bytes than the receiver accepts (checked before allocating).
    #[error("blob frame: declared length {total} exceeds limit {limit}")]
    BlobTooLarge {
        /// The declared total length.
        total: u64,
        /// The receiver's limit.
        limit: u64,
    },

    /// A blob header declares a chunk size of zero for a non-empty blob.
    #[error("blob frame: chunk size 0 for a {total}-byte blob")]
    ZeroChunkSize {
        /// The declared total length.
        total: u64,
    },

    /// A chunk header declares zero bytes.
    #[error("blob frame: empty chunk {index}")]
    EmptyChunk {
        /// Zero-based chunk index.
        index: u64,
    },

    /// A chunk is longer than the chunk size declared in the header.
    #[error("blob frame: chunk {index} has {len} bytes, over the chunk size {chunk_size}")]
    ChunkTooLong {
        /// Zero-based chunk index.
        index: u64,
        /// The chunk's declared length.
        len: u32,
        /// The header's chunk size.
        chunk_size: u32,
    },

    /// A chunk would carry the blob past its declared total length.
    #[error("blob frame: chunk {index} has {len} bytes but only {remaining} remain")]
    ChunkOverrun {
        /// Zero-based chunk index.
        index: u64,
        /// The chunk's declared length.
        len: u32,
        /// Bytes still expected.
        remaining: u64,
    },

    /// A chunk's CRC-32 does not match its bytes.
    #[error(
        "blob frame: chunk {index} crc mismatch (header {expected:#010x}, data {actual:#010x})"
    )]
    ChunkCrcMismatch {
        /// Zero-based chunk index.
        index: u64,
        /// The CRC in the chunk header.
        expected: u32,
        /// The CRC of the bytes received.
        actual: u32,
    },

    /// The reassembled blob's CRC-32 does not match the header.
    #[error("blob frame: blob crc mismatch (header {expected:#010x}, data {actual:#010x})")]
    BlobCrcMismatch {
        /// The CRC in the blob header.
        expected: u32,
        /// The CRC of the reassembled bytes.
        actual: u32,
    },

    /// The stream ended before the whole blob arrived.
    #[error("blob frame: truncated after {received} bytes of frame data ({stage})")]
    Truncated {
        /// Frame bytes (headers included) received before the end.
        received: u64,
        /// What was being read when the input ended.
        stage: &'static str,
    },

    /// A blob decoder was used again after it had already reported an error.
    #[error("blob frame: decoder already failed")]
    DecoderFailed,

    /// Bytes followed a complete blob on its stream.
    #[error("blob frame: {extra} unexpected bytes after the complete blob")]
    TrailingBytes {
        /// How many extra bytes arrived in the offending read.
        extra: usize,
    },
}

impl TransportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
