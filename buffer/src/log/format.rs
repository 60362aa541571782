//! The bytes of the replay log: file headers, checksummed record frames, and the
//! record payloads.
//!
//! ```text
//! file   := header frame*
//! header := magic [8] | format u16 | generation u64 | group_size u32
//!           | groups_per_batch u32 | crc32 u32            (30 bytes, LE)
//! frame  := len u32 | crc32 u32 | payload [len]            (crc over len ‖ payload)
//! ```
//! Payloads are bincode with fixed-width little-endian integers (`troupe_core::wire`):
//! a [`Record`] in a segment, a [`SnapshotPart`] in a snapshot. A frame is at most
//! [`MAX_RECORD`] bytes, checked before anything is allocated.

use std::io::Read;

use bincode::{Decode, Encode};
use troupe_core::ScoredTrajectory;
use troupe_core::wire::{decode_body, encode_body_into};

use crate::types::{Counts, GroupKey, Take};
use crate::{BufferConfig, LogError};

/// Format version written in every header; a file with another version is refused.
/// 2: counts of groups dropped for a judge error (`DropReason::JudgeError`).
pub const FORMAT_VERSION: u16 = 2;
/// Largest record payload, in bytes (an insert message is at most 64 MiB on the wire).
pub const MAX_RECORD: u32 = 256 << 20;
/// Bytes of a file header.
pub const HEADER_LEN: usize = 30;
/// Bytes of a frame header (`len` and `crc`).
pub const FRAME_HEADER: usize = 8;

/// What kind of file a header opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An append-only segment of [`Record`]s.
    Segment,
    /// A snapshot: [`SnapshotPart`]s, written whole and renamed into place.
    Snapshot,
}

impl FileKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Segment => b"TRPLOG\0\0",
            FileKind::Snapshot => b"TRPSNAP\0",
        }
    }
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Segment or snapshot.
    pub kind: FileKind,
    /// Compaction generation the file belongs to.
    pub generation: u64,
    /// Group size of the buffer that wrote it.
    pub group_size: u32,
    /// Groups per batch of the buffer that wrote it.
    pub groups_per_batch: u32,
}

impl Header {
    /// The header of a file of `kind` for a buffer configured as `cfg`.
    pub fn new(kind: FileKind, generation: u64, cfg: &BufferConfig) -> Self {
        Self {
            kind,
            generation,
            group_size: cfg.group_size,
            groups_per_batch: cfg.groups_per_batch,
        }
    }

    /// The 30 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(self.kind.magic());
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10..18].copy_from_slice(&self.generation.to_le_bytes());
        out[18..22].copy_from_slice(&self.group_size.to_le_bytes());
        out[22..26].copy_from_slice(&self.groups_per_batch.to_le_bytes());
        let crc = crc32fast::hash(&out[..26]);
        out[26..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a header of `kind`; `Err` names what is wrong.
    pub fn decode(kind: FileKind, bytes: &[u8; HEADER_LEN]) -> Result<Self, String> {
        if &bytes[..8] != kind.magic() {
            return Err(format!("not a replay log {kind:?} file (bad magic)"));
        }
        let crc = u32::from_le_bytes(bytes[26..].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&bytes[..26]) {
            return Err("header checksum mismatch".into());
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Ok(Self {
            kind,
            generation: u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes")),
            group_size: u32_at(18),
            groups_per_batch: u32_at(22),
        })
    }
}

/// One entry of a segment: a fact about the buffer, applied in order on recovery.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Record {
    /// One insert message: the trajectories accepted, in the order they were accepted,
    /// and how many were ignored as duplicates (refused ones change nothing and are
    /// not logged).
    Insert {
        /// Inserts ignored as duplicates.
        duplicates: u64,
        /// Trajectories accepted.
        trajectories: Vec<ScoredTrajectory>,
    },
    /// Groups consumed by a take, each with its fate: served, or dropped with a reason.
    Take(Take),
}

/// Bincode variant index of [`Record::Insert`] (fixed-width: `u32`).
const INSERT_TAG: u32 = 0;
/// Bincode variant index of [`SnapshotPart::Groups`].
const GROUPS_TAG: u32 = 4;

/// One entry of a snapshot file; a complete snapshot is `Begin`, the parts it
/// announces, then `End`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum SnapshotPart {
    /// Counts, and how many items of each kind follow.
    Begin {
        /// The buffer's counts.
        counts: Counts,
        /// Ids seen.
        seen: u64,
        /// Closed batches.
        closed_batches: u64,
        /// Closed groups.
        closed_groups: u64,
        /// Held groups.
        groups: u64,
    },
    /// A chunk of seen ids.
    Seen(Vec<u64>),
    /// A chunk of closed batches.
    ClosedBatches(Vec<u64>),
    /// A chunk of closed groups.
    ClosedGroups(Vec<GroupKey>),
    /// A chunk of held groups with their members.
    Groups(Vec<(GroupKey, Vec<ScoredTrajectory>)>),
    /// The snapshot is complete.
    End,
}

fn encode_err(e: troupe_core::CoreError) -> LogError {
    LogError::Encode(e.to_string())
}

/// A frame being built in place: frame header room, then the payload.
#[derive(Debug, Default)]
pub struct FrameBuf {
    bytes: Vec<u8>,
}

impl FrameBuf {
    /// Starts a new frame, reusing the allocation.
    pub fn start(&mut self) {
        self.bytes.clear();
        self.bytes.extend_from_slice(&[0u8; FRAME_HEADER]);
    }

    /// Appends `value`'s encoding to the payload.
    pub fn push<T: Encode + ?Sized>(&mut self, value: &T) -> Result<(), LogError> {
        encode_body_into(&value, &mut self.bytes).map_err(encode_err)
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.bytes.len() - FRAME_HEADER
    }

    /// Overwrites `value` at payload offset `at` (a count written as a placeholder).
    fn patch_u64(&mut self, at: usize, value: u64) {
        let at = FRAME_HEADER + at;
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Cuts the payload back to `len` bytes.
    fn truncate_payload(&mut self, len: usize) {
        self.bytes.truncate(FRAME_HEADER + len);
    }

    /// Fills in length and checksum; the complete frame.
    pub fn finish(&mut self) -> Result<&[u8], LogError> {
        let len = self.payload_len();
        if len > MAX_RECORD as usize {
            return Err(LogError::TooLarge { len: len as u64 });
        }
        let len = (len as u32).to_le_bytes();
        self.bytes[..4].copy_from_slice(&len);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len);
        crc.update(&self.bytes[FRAME_HEADER..]);
        self.bytes[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        Ok(&self.bytes)
    }

    /// Encodes `value` as one complete frame.
    pub fn one<T: Encode>(&mut self, value: &T) -> Result<&[u8], LogError> {
        self.start();
        self.push(value)?;
        self.finish()
    }
}

/// A [`Record::Insert`] encoded as its trajectories arrive, so the buffer can take
/// ownership of each one right after it is encoded; one that turns out to be a
/// duplicate or refused is cut back out with [`InsertRecord::undo`].
#[derive(Debug, Default)]
pub struct InsertRecord {
    frame: FrameBuf,
    count: u64,
}

/// Where an [`InsertRecord`] stood before a trajectory was pushed.
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize);

impl InsertRecord {
    /// Empties the record for reuse.
    pub fn clear(&mut self) {
        self.frame.start();
        self.count = 0;
        // Variant index, then the duplicates and the count patched in by `finish`.
        self.frame
            .bytes
            .extend_from_slice(&INSERT_TAG.to_le_bytes());
        self.frame.bytes.extend_from_slice(&[0u8; 16]);
    }

    /// Encodes `t`; the mark to undo it with.
    pub fn push(&mut self, t: &ScoredTrajectory) -> Result<Mark, LogError> {
        if self.frame.bytes.is_empty() {
            self.clear();
        }
        let mark = Mark(self.frame.payload_len());
        self.frame.push(t)?;
        self.count += 1;
        Ok(mark)
    }

    /// Removes the trajectory pushed at `mark` (the last one pushed).
    pub fn undo(&mut self, mark: Mark) {
        self.frame.truncate_payload(mark.0);
        self.count -= 1;
    }

    /// Trajectories in the record.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no trajectory is in the record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The complete frame, recording `duplicates` ignored inserts as well.
    pub fn finish(&mut self, duplicates: u64) -> Result<&[u8], LogError> {
        if self.frame.bytes.is_empty() {
            self.clear();
        }
        self.frame.patch_u64(4, duplicates);
        self.frame.patch_u64(12, self.count);
        self.frame.finish()
    }
}

/// Encodes a [`SnapshotPart::Groups`] chunk from borrowed members as one frame: groups
/// from `groups` until the payload passes `chunk_bytes` (at least one group).
pub fn groups_frame_into<'a, 'b, I>(
    frame: &'a mut FrameBuf,
    groups: &mut std::iter::Peekable<I>,
    chunk_bytes: usize,
) -> Result<&'a [u8], LogError>
where
    I: Iterator<Item = (GroupKey, &'b [ScoredTrajectory])>,
{
    frame.start();
    frame.push(&GROUPS_TAG)?;
    frame.push(&0u64)?;
    let mut count = 0u64;
    while (count == 0 || frame.payload_len() < chunk_bytes)
        && let Some((key, members)) = groups.next()
    {
        frame.push(&key)?;
        frame.push(members)?;
        count += 1;
    }
    frame.patch_u64(4, count);
    frame.finish()
}

/// Why reading frames stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// Fewer bytes than a frame header remain.
    ShortHeader,
    /// The length field is zero or above [`MAX_RECORD`].
    BadLength,
    /// The frame runs past the end of the file.
    ShortRecord,
    /// The checksum does not match.
    BadChecksum,
}

/// The outcome of reading one frame.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A frame with a good checksum.
    Good(&'a [u8]),
    /// The end of the file, exactly at a frame boundary.
    End,
    /// A torn or damaged frame.
    Bad(CutReason),
}

/// Reads frames from a file whose remaining length is known.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    remaining: u64,
    payload: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `inner`, which has `remaining` bytes left.
    pub fn new(inner: R, remaining: u64) -> Self {
        Self {
            inner,
            remaining,
            payload: Vec::new(),
        }
    }

    /// Bytes left unread.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next frame. A bad frame leaves the reader at an unknown position.
    pub fn next_frame(&mut self) -> std::io::Result<Frame<'_>> {
        if self.remaining == 0 {
            return Ok(Frame::End);
        }
        if self.remaining < FRAME_HEADER as u64 {
            return Ok(Frame::Bad(CutReason::ShortHeader));
        }
        let mut head = [0u8; FRAME_HEADER];
        self.inner.read_exact(&mut head)?;
        self.remaining -= FRAME_HEADER as u64;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD {
            return Ok(Frame::Bad(CutReason::BadLength));
        }
        if u64::from(len) > self.remaining {
            return Ok(Frame::Bad(CutReason::ShortRecord));
        }
        self.payload.resize(len as usize, 0);
        self.inner.read_exact(&mut self.payload)?;
        self.remaining -= u64::from(len);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[..4]);
        hasher.update(&self.payload);
        if hasher.finalize() != crc {
            return Ok(Frame::Bad(CutReason::BadChecksum));
        }
        Ok(Frame::Good(&self.payload))
    }

    /// After a bad frame: how many frames the rest of the file seems to hold (walking
    /// the length fields) and how many of those have a good checksum. Good frames after
    /// a bad one mean damage in the middle of the log, not a torn final write.
    pub fn survey_rest(&mut self) -> std::io::Result<(u64, u64)> {
        let (mut frames, mut intact) = (0, 0);
        loop {
            match self.next_frame()? {
                Frame::End | Frame::Bad(CutReason::ShortHeader | CutReason::BadLength) => {
                    return Ok((frames, intact));
                }
                Frame::Bad(CutReason::ShortRecord) => return Ok((frames + 1, intact)),
                Frame::Bad(CutReason::BadChecksum) => frames += 1,
                Frame::Good(_) => {
                    frames += 1;
                    intact += 1;
                }
            }
        }
    }
}

/// Decodes a segment record payload.
pub fn decode_record(payload: &[u8]) -> Result<Record, String> {
    decode_body(payload).map_err(|e| e.to_string())
}

/// Decodes a snapshot part payload.
pub fn decode_part(payload: &[u8]) -> Result<SnapshotPart, String> {
    decode_body(payload).map_err(|e| e.to_string())
}
