//! Snapshot files: the buffer's whole state, written to a temporary file, synced and
//! renamed into place, so a snapshot on disk is always complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use crate::log::format::{
    FileKind, Frame, FrameBuf, HEADER_LEN, Header, SnapshotPart, decode_part, groups_frame_into,
};
use crate::log::{io_err, sync_dir};
use crate::{BufferConfig, LogError, ReplayBuffer, RestoredState};

/// Ids or closed keys per chunk (8 MiB of ids).
const CHUNK_ITEMS: usize = 1 << 20;
/// A groups chunk is closed once its payload passes this many bytes.
const CHUNK_BYTES: usize = 8 << 20;

/// Writes `buffer`'s state as the snapshot of `generation` at `path` (via `path.tmp`).
pub fn write(
    path: &Path,
    generation: u64,
    buffer: &ReplayBuffer,
    frame: &mut FrameBuf,
) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut put = |bytes: &[u8]| out.write_all(bytes).map_err(io_err(&tmp));
    put(&Header::new(FileKind::Snapshot, generation, buffer.config()).encode())?;
    let counts = buffer.counts();
    put(frame.one(&SnapshotPart::Begin {
        counts,
        seen: buffer.seen_ids().len() as u64,
        closed_batches: buffer.closed_batches().len() as u64,
        closed_groups: buffer.closed_groups().len() as u64,
        groups: buffer.held().len() as u64,
    })?)?;
    let mut ids = buffer.seen_ids().peekable();
    while ids.peek().is_some() {
        let chunk: Vec<u64> = ids.by_ref().take(CHUNK_ITEMS).collect();
        put(frame.one(&SnapshotPart::Seen(chunk))?)?;
    }
    let mut batches = buffer.closed_batches().peekable();
    while batches.peek().is_some() {
        let chunk: Vec<u64> = batches.by_ref().take(CHUNK_ITEMS).collect();
        put(frame.one(&SnapshotPart::ClosedBatches(chunk))?)?;
    }
    let mut groups = buffer.closed_groups().peekable();
    while groups.peek().is_some() {
        let chunk: Vec<_> = groups.by_ref().take(CHUNK_ITEMS).collect();
        put(frame.one(&SnapshotPart::ClosedGroups(chunk))?)?;
    }
    let mut held = buffer.held().peekable();
    while held.peek().is_some() {
        put(groups_frame_into(frame, &mut held, CHUNK_BYTES)?)?;
    }
    put(frame.one(&SnapshotPart::End)?)?;
    let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path)
}

/// Reads the snapshot at `path` (of `generation`, for a buffer configured as `cfg`).
/// Any damage is an error: snapshots are complete before they are renamed into place.
pub fn read(path: &Path, generation: u64, cfg: &BufferConfig) -> Result<RestoredState, LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let header = super::read_header(&mut input, len, FileKind::Snapshot, path)?
        .ok_or_else(|| super::bad_file(path, "shorter than its header".into()))?;
    super::check_header(&header, generation, cfg, path)?;
    let mut frames = super::format::FrameReader::new(input, len - HEADER_LEN as u64);
    let mut state = RestoredState::default();
    let mut expected = None;
    loop {
        let offset = len - frames.remaining();
        let part = match frames.next_frame().map_err(io_err(path))? {
            Frame::Good(payload) => decode_part(payload).map_err(|reason| LogError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason,
            })?,
            Frame::End => return Err(super::bad_file(path, "snapshot ends without End".into())),
            Frame::Bad(reason) => {
                return Err(super::bad_file(
                    path,
                    format!("damaged snapshot frame at byte {offset}: {reason:?}"),
                ));
            }
        };
        let out_of_order = || super::bad_file(path, "snapshot parts out of order".into());
        match (part, expected) {
            (
                SnapshotPart::Begin {
                    counts,
                    seen,
                    closed_batches,
                    closed_groups,
                    groups,
                },
                None,
            ) => {
                state.counts = counts;
                expected = Some([seen, closed_batches, closed_groups, groups]);
            }
            (_, None) | (SnapshotPart::Begin { .. }, Some(_)) => return Err(out_of_order()),
            (SnapshotPart::Seen(ids), Some(_)) => state.seen.extend(ids),
            (SnapshotPart::ClosedBatches(b), Some(_)) => state.closed_batches.extend(b),
            (SnapshotPart::ClosedGroups(g), Some(_)) => state.closed_groups.extend(g),
            (SnapshotPart::Groups(g), Some(_)) => state.groups.extend(g),
            (SnapshotPart::End, Some(want)) => {
                let have = [
                    state.seen.len(),
                    state.closed_batches.len(),
                    state.closed_groups.len(),
                    state.groups.len(),
                ]
                .map(|n| n as u64);
                if have != want || frames.remaining() != 0 {
                    return Err(super::bad_file(
                        path,
                        format!("snapshot announced {want:?} items, holds {have:?}"),
                    ));
                }
                return Ok(state);
            }
        }
    }
}
