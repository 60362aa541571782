//! Bulk blobs (weights above all) on dedicated QUIC unidirectional streams.
//!
//! Wire format, all integers big-endian:
//! ```text
//! header: [magic "TRPB" u32][version u16][blob id u64][total len u64][chunk size u32][crc32 of blob u32]
//! chunk:  [len u32][crc32 of chunk u32][len bytes]      repeated until `total len` bytes arrived
//! ```
//! The sender writes every chunk without waiting for acknowledgements and then finishes the
//! stream; QUIC flow control paces it. The receiver validates as bytes arrive with
//! [`BlobDecoder`], a pure state machine with no I/O, so it can be fuzzed on byte slices.

use crc32fast::Hasher;

use crate::TransportError;

/// The four bytes every blob stream starts with.
pub const MAGIC: u32 = u32::from_be_bytes(*b"TRPB");
/// The blob protocol version this build writes and accepts.
pub const VERSION: u16 = 1;
/// Length of the blob header in bytes.
pub const HEADER_LEN: usize = 4 + 2 + 8 + 8 + 4 + 4;
/// Length of a chunk header in bytes.
pub const CHUNK_HEADER_LEN: usize = 4 + 4;
/// A reasonable chunk size for weights: 1 MiB.
pub const DEFAULT_CHUNK: usize = 1 << 20;
/// Application error code a receiver sends (STOP_SENDING) when it rejects a blob.
pub const REJECT_CODE: u32 = 1;

/// A decoded blob header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The sender's id for this blob (for example the policy version of the weights).
    pub id: u64,
    /// Total payload length in bytes.
    pub total: u64,
    /// Maximum payload bytes per chunk.
    pub chunk_size: u32,
    /// CRC-32 (IEEE) of the whole payload.
    pub crc: u32,
}

impl BlobHeader {
    /// The header announcing `bytes` as blob `id`, sent in chunks of `chunk` bytes.
    pub fn for_blob(id: u64, bytes: &[u8], chunk: usize) -> Result<Self, TransportError> {
        Ok(Self {
            id,
            total: bytes.len() as u64,
            chunk_size: checked_chunk(chunk)?,
            crc: crc32fast::hash(bytes),
        })
    }

    /// The header's wire encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&VERSION.to_be_bytes());
        out[6..14].copy_from_slice(&self.id.to_be_bytes());
        out[14..22].copy_from_slice(&self.total.to_be_bytes());
        out[22..26].copy_from_slice(&self.chunk_size.to_be_bytes());
        out[26..30].copy_from_slice(&self.crc.to_be_bytes());
        out
    }
}

/// Encodes a chunk header for `chunk`.
pub fn encode_chunk_header(chunk: &[u8]) -> [u8; CHUNK_HEADER_LEN] {
    let len = u32::try_from(chunk.len()).expect("chunks are at most u32::MAX bytes");
    let mut out = [0u8; CHUNK_HEADER_LEN];
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out[4..8].copy_from_slice(&crc32fast::hash(chunk).to_be_bytes());
    out
}

/// Encodes a whole blob frame into one buffer (what [`send_blob`] writes, in one piece).
pub fn encode(id: u64, bytes: &[u8], chunk: usize) -> Result<Vec<u8>, TransportError> {
    let header = BlobHeader::for_blob(id, bytes, chunk)?;
    let chunks = bytes.len().div_ceil(chunk);
    let mut out = Vec::with_capacity(HEADER_LEN + chunks * CHUNK_HEADER_LEN + bytes.len());
    out.extend_from_slice(&header.encode());
    for c in bytes.chunks(chunk) {
        out.extend_from_slice(&encode_chunk_header(c));
        out.extend_from_slice(c);
    }
    Ok(out)
}

fn checked_chunk(chunk: usize) -> Result<u32, TransportError> {
    match u32::try_from(chunk) {
        Ok(c) if c > 0 => Ok(c),
        _ => Err(TransportError::InvalidChunkSize(chunk)),
    }
}

#[derive(Debug)]
enum State {
    /// Collecting the blob header.
    Header,
    /// Collecting a chunk header.
    ChunkHeader,
    /// Copying `left` more bytes of the current chunk, whose header says `crc`.
    ChunkBody { left: u32, crc: u32 },
    /// The whole blob arrived and checked out; any further byte is an error.
    Done,
    /// An earlier error ended decoding; every later call fails.
    Failed,
}

/// Incremental, pure decoder of one blob frame: feed it bytes as they arrive, then [`finish`].
///
/// Every check happens as early as the bytes allow: the header (magic, version, length limit,
/// chunk size) before any payload allocation, each chunk's length against the chunk size and
/// the remaining total before its bytes are accepted, each chunk's CRC when it completes, the
/// blob CRC when the last chunk completes. Errors are values; no input makes it panic. After an
/// error the decoder is spent: later calls return [`TransportError::DecoderFailed`].
///
/// [`finish`]: BlobDecoder::finish
#[derive(Debug)]
pub struct BlobDecoder {
    limit: u64,
    state: State,
    /// Partial header bytes (blob or chunk header).
    scratch: Vec<u8>,
    header: Option<BlobHeader>,
    out: Vec<u8>,
    chunk_index: u64,
    chunk_hasher: Hasher,
    blob_hasher: Hasher,
    /// Frame bytes consumed so far (for error messages).
    received: u64,
}

impl BlobDecoder {
    /// A decoder that refuses blobs declaring more than `limit` payload bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            state: State::Header,
            scratch: Vec::with_capacity(HEADER_LEN),
            header: None,
            out: Vec::new(),
            chunk_index: 0,
            chunk_hasher: Hasher::new(),
            blob_hasher: Hasher::new(),
            received: 0,
        }
    }

    /// The header, once it has been received and validated.
    pub fn header(&self) -> Option<&BlobHeader> {
        self.header.as_ref()
    }

    /// Whether the whole blob has arrived and passed every check.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Consumes `data`, the next bytes of the stream.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let result = self.push_inner(data);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn push_inner(&mut self, mut data: &[u8]) -> Result<(), TransportError> {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    if !self.fill_scratch(&mut data, HEADER_LEN) {
                        return Ok(());
                    }
                    self.parse_header()?;
                }
                State::ChunkHeader => {
                    if !self.fill_scratch(&mut data, CHUNK_HEADER_LEN) {
                        return Ok(());
                    }
                    self.parse_chunk_header()?;
                }
                State::ChunkBody { left, crc } => {
                    let take = data.len().min(left as usize);
                    let (body, rest) = data.split_at(take);
                    self.out.extend_from_slice(body);
                    self.chunk_hasher.update(body);
                    self.blob_hasher.update(body);
                    self.received += take as u64;
                    data = rest;
                    let left = left - take as u32;
                    if left > 0 {
                        self.state = State::ChunkBody { left, crc };
                    } else {
                        self.end_chunk(crc)?;
                    }
                }
                State::Done => {
                    return Err(TransportError::TrailingBytes { extra: data.len() });
                }
                State::Failed => return Err(TransportError::DecoderFailed),
            }
        }
        Ok(())
    }

    /// Ends the input: the blob id and payload if it arrived whole.
    pub fn finish(self) -> Result<(u64, Vec<u8>), TransportError> {
        let stage = match self.state {
            State::Done => {
                let id = self.header.map_or(0, |h| h.id);
                return Ok((id, self.out));
            }
            State::Header => "blob header",
            State::ChunkHeader => "chunk header",
            State::ChunkBody { .. } => "chunk body",
            State::Failed => return Err(TransportError::DecoderFailed),
        };
        Err(TransportError::Truncated {
            received: self.received,
            stage,
        })
    }

    /// Moves bytes from `data` into `scratch` until it holds `want`; true when it does.
    fn fill_scratch(&mut self, data: &mut &[u8], want: usize) -> bool {
        let take = (want - self.scratch.len()).min(data.len());
        self.scratch.extend_from_slice(&data[..take]);
        *data = &data[take..];
        self.received += take as u64;
        self.scratch.len() == want
    }

    fn parse_header(&mut self) -> Result<(), TransportError> {
        let h = &self.scratch;
        let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if magic != MAGIC {
            return Err(TransportError::BadMagic { found: magic });
        }
        let version = u16::from_be_bytes([h[4], h[5]]);
        if version != VERSION {
            return Err(TransportError::UnsupportedVersion {
                found: version,
                expected: VERSION,
            });
        }
        let header = BlobHeader {
            id: u64::from_be_bytes(h[6..14].try_into().expect("8 bytes")),
            total: u64::from_be_bytes(h[14..22].try_into().expect("8 bytes")),
            chunk_size: u32::from_be_bytes(h[22..26].try_into().expect("4 bytes")),
            crc: u32::from_be_bytes(h[26..30].try_into().expect("4 bytes")),
        };
        self.scratch.clear();
        if header.total > self.limit {
            return Err(TransportError::BlobTooLarge {
                total: header.total,
                limit: self.limit,
            });
        }
        if header.chunk_size == 0 && header.total > 0 {
            return Err(TransportError::ZeroChunkSize {
                total: header.total,
            });
        }
        let capacity = usize::try_from(header.total).map_err(|_| TransportError::BlobTooLarge {
            total: header.total,
            limit: usize::MAX as u64,
        })?;
        // Safe to allocate now: `total <= limit`, and the caller chose the limit.
        self.out = Vec::with_capacity(capacity);
        self.header = Some(header);
        self.after_chunk()
    }

    fn parse_chunk_header(&mut self) -> Result<(), TransportError> {
        let h = &self.scratch;
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        self.scratch.clear();
        let header = self.header.expect("chunk headers follow the blob header");
        let index = self.chunk_index;
        if len == 0 {
            return Err(TransportError::EmptyChunk { index });
        }
        if len > header.chunk_size {
            return Err(TransportError::ChunkTooLong {
                index,
                len,
                chunk_size: header.chunk_size,
            });
        }
        let remaining = header.total.saturating_sub(self.out.len() as u64);
        if u64::from(len) > remaining {
            return Err(TransportError::ChunkOverrun {
                index,
                len,
                remaining,
            });
        }
        self.chunk_hasher = Hasher::new();
        self.state = State::ChunkBody { left: len, crc };
        Ok(())
    }

    fn end_chunk(&mut self, expected: u32) -> Result<(), TransportError> {
        let actual = std::mem::take(&mut self.chunk_hasher).finalize();
        if actual != expected {
            return Err(TransportError::ChunkCrcMismatch {
                index: self.chunk_index,
                expected,
                actual,
            });
        }
        self.chunk_index += 1;
        self.after_chunk()
    }

    /// After the header or a chunk: expect another chunk, or check the blob and finish.
    fn after_chunk(&mut self) -> Result<(), TransportError> {
        let header = self.header.expect("set before any chunk");
        if (self.out.len() as u64) < header.total {
            self.state = State::ChunkHeader;
            return Ok(());
        }
        let actual = std::mem::take(&mut self.blob_hasher).finalize();
        if actual != header.crc {
            return Err(TransportError::BlobCrcMismatch {
                expected: header.crc,
                actual,
            });
        }
        self.state = State::Done;
        Ok(())
    }
}

/// Decodes one complete blob frame held in `frame`: its id and payload.
pub fn decode(frame: &[u8], limit: u64) -> Result<(u64, Vec<u8>), TransportError> {
    let mut decoder = BlobDecoder::new(limit);
    decoder.push(frame)?;
    decoder.finish()
}

/// Sends `bytes` as blob `id` on a new unidirectional stream of `conn`, in chunks of at most
/// `chunk` bytes, pipelined; returns once the peer has acknowledged every byte.
///
/// A receiver that rejects the blob stops the stream, which surfaces here as
/// [`TransportError::PeerStopped`] or a [`TransportError::Write`] error.
pub async fn send_blob(
    conn: &quinn::Connection,
    id: u64,
    bytes: &[u8],
    chunk: usize,
) -> Result<(), TransportError> {
    let header = BlobHeader::for_blob(id, bytes, chunk)?;
    let mut send = conn.open_uni().await?;
    send.write_all(&header.encode()).await?;
    for c in bytes.chunks(chunk) {
        send.write_all(&encode_chunk_header(c)).await?;
        send.write_all(c).await?;
    }
    send.finish()?;
    match send.stopped().await? {
        None => Ok(()),
        Some(code) => Err(TransportError::PeerStopped(code.into_inner())),
    }
}

/// Receives one blob from `recv` (a stream accepted with `accept_uni`), refusing any blob
/// declaring more than `limit` bytes. On a malformed frame it stops the stream with
/// [`REJECT_CODE`] so the sender learns of it, and returns the reason.
pub async fn recv_blob(
    mut recv: quinn::RecvStream,
    limit: u64,
) -> Result<(u64, Vec<u8>), TransportError> {
    let mut decoder = BlobDecoder::new(limit);
    loop {
        let chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = decoder.push(&chunk.bytes) {
            // The stream may already be gone; the decode error is what matters.
            let _ = recv.stop(REJECT_CODE.into());
            return Err(e);
        }
    }
    decoder.finish()
}

/// Sends blob `id` to every connection concurrently; one result per connection, same order.
pub async fn broadcast_blob(
    conns: &[quinn::Connection],
    id: u64,
    bytes: &[u8],
    chunk: usize,
) -> Vec<Result<(), TransportError>> {
    futures_util::future::join_all(conns.iter().map(|c| send_blob(c, id, bytes, chunk))).await
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
