//! The durable replay log: an append-only, checksummed record of every change to a
//! [`ReplayBuffer`], written before the change is acknowledged, from which the buffer
//! is rebuilt after a crash.
//!
//! - A log directory holds one generation `g` at a time: `snapshot-g.snap` (the whole
//!   state when the generation began; none for generation 0) and `segment-g.log` (the
//!   records since). Formats are in [`format`]; [`commit`] decides when to sync.
//! - [`ReplayLog::open`] recovers: it loads the snapshot, replays the segment's valid
//!   records, cuts a torn or damaged tail off (reporting the bytes and frames cut) and
//!   reopens the segment for appending.
//! - [`ReplayLog::compact`] writes a snapshot of the live state as generation `g + 1`
//!   (temporary file, `sync`, rename, directory `sync`), starts an empty segment and
//!   deletes generation `g`, so recovery reads at most one snapshot plus the records
//!   since the last compaction.
//! - [`Recovery::Rewind`] rebuilds the state as of a learner checkpoint: takes of batches
//!   the checkpoint had not trained on are undone, so the resumed learner is served
//!   them again. Compact only at a learner checkpoint (as the buffer actor does), or
//!   rewinding to it may find the takes after it already folded into a snapshot.
//!
//! I/O is synchronous and the clock is passed in; the actor decides when to call what.

pub mod commit;
pub mod format;
mod snapshot;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use commit::{Commit, GroupCommit, SyncPolicy};
pub use format::{CutReason, FORMAT_VERSION, InsertRecord, MAX_RECORD, Mark, Record};

use crate::types::{Closes, Take};
use crate::{BufferConfig, LogError, ReplayBuffer};
use format::{FileKind, Frame, FrameBuf, FrameReader, HEADER_LEN, Header, decode_record};

/// Where the log lives and how it syncs and compacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The log directory (created if missing; one buffer at a time, enforced by a lock).
    pub dir: PathBuf,
    /// When appended records are made durable.
    pub sync: SyncPolicy,
    /// [`ReplayLog::wants_compaction`] once the segment is at least this many bytes.
    pub compact_bytes: u64,
}

/// How [`ReplayLog::open`] treats what the directory already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A new run: the directory must hold no records ([`LogError::NotEmpty`] otherwise).
    Fresh,
    /// Rebuild exactly the state after the last durable record.
    Exact,
    /// Rebuild the state as of learner step `step` (the learner resumes from its
    /// checkpoint after `step` RL steps): pipelined takes of batches `>= step` are undone
    /// and the log is compacted to that state at once. Free-running takes are kept.
    Rewind(u64),
}

/// A torn or damaged tail cut off the segment during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset of the first bad frame: the segment's new length.
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
    /// What was wrong with the first bad frame.
    pub reason: CutReason,
    /// Frames in the cut bytes, as far as their length fields can be followed
    /// (the bad one included).
    pub frames: u64,
    /// Of those, frames with a good checksum: more than zero means damage in the
    /// middle of the log rather than a write torn by a crash.
    pub intact_frames: u64,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Generation recovered.
    pub generation: u64,
    /// Trajectories held by the snapshot loaded (0 without one).
    pub snapshot_pending: u64,
    /// Records replayed from the segment.
    pub records: u64,
    /// Pipelined takes undone by [`Recovery::Rewind`].
    pub takes_undone: u64,
    /// The tail cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Valid segment bytes after recovery (before any compaction).
    pub segment_bytes: u64,
    /// Whether recovery compacted the log (it does after undoing takes).
    pub compacted: bool,
}

/// An open log: the current segment, appended to, plus what compaction needs.
#[derive(Debug)]
pub struct ReplayLog {
    cfg: LogConfig,
    buffer_cfg: BufferConfig,
    generation: u64,
    segment: File,
    /// Bytes in the segment (header included).
    len: u64,
    /// Bytes of the segment known durable.
    synced_len: u64,
    commit: GroupCommit,
    frame: FrameBuf,
    insert: InsertRecord,
    /// Set when a write failed part-way: the segment's tail is unknown until reopened.
    poisoned: bool,
    _lock: File,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn bad_file(path: &Path, reason: String) -> LogError {
    LogError::BadFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// Syncs the directory holding `path`, so a rename or creation in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), LogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads a header of `kind`; `None` when the file is shorter than a header.
pub(crate) fn read_header(
    input: &mut impl Read,
    len: u64,
    kind: FileKind,
    path: &Path,
) -> Result<Option<Header>, LogError> {
    if len < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut bytes = [0u8; HEADER_LEN];
    input.read_exact(&mut bytes).map_err(io_err(path))?;
    Header::decode(kind, &bytes)
        .map(Some)
        .map_err(|reason| bad_file(path, reason))
}

/// Checks that a header belongs to `generation` and to a buffer shaped like `cfg`.
pub(crate) fn check_header(
    header: &Header,
    generation: u64,
    cfg: &BufferConfig,
    path: &Path,
) -> Result<(), LogError> {
    if header.generation != generation {
        return Err(bad_file(
            path,
            format!(
                "header says generation {}, the name {generation}",
                header.generation
            ),
        ));
    }
    if (header.group_size, header.groups_per_batch) != (cfg.group_size, cfg.groups_per_batch) {
        return Err(LogError::ConfigChanged {
            path: path.to_path_buf(),
            found: (header.group_size, header.groups_per_batch),
            expected: (cfg.group_size, cfg.groups_per_batch),
        });
    }
    Ok(())
}

fn segment_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("segment-{generation:010}.log"))
}

fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:010}.snap"))
}

/// The generations of the snapshots and segments in `dir`; removes leftover
/// temporary files of an interrupted compaction.
fn scan_dir(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), LogError> {
    let (mut snapshots, mut segments) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let parse = |prefix: &str, suffix: &str| {
            name.strip_prefix(prefix)
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(g) = parse("snapshot-", ".snap") {
            snapshots.push(g);
        } else if let Some(g) = parse("segment-", ".log") {
            segments.push(g);
        } else if name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    snapshots.sort_unstable();
    segments.sort_unstable();
    Ok((snapshots, segments))
}

/// Creates the empty segment of `generation` (via a temporary file and a rename).
fn create_segment(dir: &Path, generation: u64, cfg: &BufferConfig) -> Result<File, LogError> {
    let path = segment_path(dir, generation);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&Header::new(FileKind::Segment, generation, cfg).encode())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(&path)?;
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
    Ok(file)
}

impl ReplayLog {
    /// Opens (or creates) the log in `cfg.dir` and rebuilds the buffer it describes.
    pub fn open(
        cfg: &LogConfig,
        buffer_cfg: BufferConfig,
        recovery: Recovery,
    ) -> Result<(ReplayBuffer, ReplayLog, RecoveryReport), LogError> {
        let mut buffer = ReplayBuffer::new(buffer_cfg)?;
        let dir = cfg.dir.as_path();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => LogError::Locked {
                path: dir.to_path_buf(),
            },
            std::fs::TryLockError::Error(source) => LogError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;
        let (snapshots, segments) = scan_dir(dir)?;
        let generation = snapshots.last().copied().unwrap_or(0);
        if let Some(&newer) = segments.iter().find(|&&g| g > generation) {
            return Err(bad_file(
                &segment_path(dir, newer),
                format!("segment without its snapshot (latest snapshot: generation {generation})"),
            ));
        }
        let mut report = RecoveryReport {
            generation,
            ..RecoveryReport::default()
        };
        if snapshots.contains(&generation) {
            let path = snapshot_path(dir, generation);
            if recovery == Recovery::Fresh {
                return Err(LogError::NotEmpty {
                    path: dir.to_path_buf(),
                });
            }
            let state = snapshot::read(&path, generation, &buffer_cfg)?;
            if let Recovery::Rewind(step) = recovery
                && let Some(&batch) = state.closed_batches.iter().filter(|&&b| b >= step).max()
            {
                return Err(LogError::RewindPastSnapshot { step, batch });
            }
            report.snapshot_pending = state.counts.pending;
            buffer.restore(state)?;
        }
        let path = segment_path(dir, generation);
        let (segment, len) = if segments.contains(&generation) {
            Self::replay_segment(
                &path,
                generation,
                &buffer_cfg,
                recovery,
                &mut buffer,
                &mut report,
            )?
        } else {
            let file = create_segment(dir, generation, &buffer_cfg)?;
            (file, HEADER_LEN as u64)
        };
        report.segment_bytes = len;
        let mut log = ReplayLog {
            cfg: cfg.clone(),
            buffer_cfg,
            generation,
            segment,
            len,
            synced_len: len,
            commit: GroupCommit::new(cfg.sync),
            frame: FrameBuf::default(),
            insert: InsertRecord::default(),
            poisoned: false,
            _lock: lock,
        };
        for old in snapshots
            .iter()
            .chain(&segments)
            .filter(|&&g| g < generation)
        {
            for p in [snapshot_path(dir, *old), segment_path(dir, *old)] {
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        if report.takes_undone > 0 {
            log.compact(&buffer)?;
            report.compacted = true;
        }
        Ok((buffer, log, report))
    }

    /// Replays the segment at `path` into `buffer`, cutting off a bad tail; the file,
    /// positioned for appending, and its valid length.
    fn replay_segment(
        path: &Path,
        generation: u64,
        cfg: &BufferConfig,
        recovery: Recovery,
        buffer: &mut ReplayBuffer,
        report: &mut RecoveryReport,
    ) -> Result<(File, u64), LogError> {
        let mut file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut input = BufReader::with_capacity(1 << 20, &file);
        let Some(header) = read_header(&mut input, file_len, FileKind::Segment, path)? else {
            // A header torn while the segment was created: nothing was ever appended.
            drop(input);
            let header = Header::new(FileKind::Segment, generation, cfg).encode();
            file.set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                .and_then(|()| file.write_all(&header))
                .and_then(|()| file.sync_all())
                .map_err(io_err(path))?;
            if file_len > 0 {
                report.torn_tail = Some(TornTail {
                    offset: 0,
                    bytes: file_len,
                    reason: CutReason::ShortHeader,
                    frames: 0,
                    intact_frames: 0,
                });
            }
            return Ok((file, HEADER_LEN as u64));
        };
        check_header(&header, generation, cfg, path)?;
        let mut frames = FrameReader::new(input, file_len - HEADER_LEN as u64);
        let valid_end = loop {
            let offset = file_len - frames.remaining();
            let record = match frames.next_frame().map_err(io_err(path))? {
                Frame::End => break file_len,
                Frame::Good(payload) => {
                    decode_record(payload).map_err(|reason| LogError::Corrupt {
                        path: path.to_path_buf(),
                        offset,
                        reason,
                    })?
                }
                Frame::Bad(reason) => {
                    let (after, intact) = if reason == CutReason::BadChecksum {
                        frames.survey_rest().map_err(io_err(path))?
                    } else {
                        (0, 0)
                    };
                    report.torn_tail = Some(TornTail {
                        offset,
                        bytes: file_len - offset,
                        reason,
                        frames: 1 + after,
                        intact_frames: intact,
                    });
                    break offset;
                }
            };
            if recovery == Recovery::Fresh {
                return Err(LogError::NotEmpty {
                    path: path.parent().unwrap_or(path).to_path_buf(),
                });
            }
            report.records += 1;
            match record {
                Record::Insert {
                    duplicates,
                    trajectories,
                } => {
                    for t in trajectories {
                        buffer.replay_insert(t)?;
                    }
                    buffer.replay_duplicates(duplicates);
                }
                Record::Take(take) => match recovery {
                    Recovery::Rewind(step)
                        if take.closes == Closes::Batch && take.batch >= step =>
                    {
                        report.takes_undone += 1;
                    }
                    _ => buffer.replay_take(&take)?,
                },
            }
        };
        if valid_end < file_len {
            file.set_len(valid_end)
                .and_then(|()| file.sync_all())
                .map_err(io_err(path))?;
        }
        file.seek(SeekFrom::Start(valid_end))
            .map_err(io_err(path))?;
        Ok((file, valid_end))
    }

    /// The record being built for the trajectories of one insert message: push each
    /// before handing it to the buffer, undo it if the buffer did not accept it, then
    /// [`ReplayLog::append_insert`].
    pub fn begin_insert(&mut self) -> &mut InsertRecord {
        self.insert.clear();
        &mut self.insert
    }

    /// Appends the record built since [`ReplayLog::begin_insert`], with the count of
    /// `duplicates` the message held (nothing when both are empty). Returns when the
    /// append is durable: `None` when it already is, else the deadline by which
    /// [`ReplayLog::sync_if_due`] or [`ReplayLog::sync`] must run.
    pub fn append_insert(
        &mut self,
        duplicates: u64,
        now: Instant,
    ) -> Result<Option<Instant>, LogError> {
        if self.insert.is_empty() && duplicates == 0 {
            return Ok(self.deadline());
        }
        self.check()?;
        let result = self
            .insert
            .finish(duplicates)
            .map(|f| write_frame(&mut self.segment, f));
        self.appended(result, now)
    }

    /// Appends a take; see [`ReplayLog::append_insert`].
    pub fn append_take(&mut self, take: &Take, now: Instant) -> Result<Option<Instant>, LogError> {
        self.append(&Record::Take(take.clone()), now)
    }

    fn append(&mut self, record: &Record, now: Instant) -> Result<Option<Instant>, LogError> {
        self.check()?;
        let result = self
            .frame
            .one(record)
            .map(|f| write_frame(&mut self.segment, f));
        self.appended(result, now)
    }

    fn check(&self) -> Result<(), LogError> {
        if self.poisoned {
            Err(LogError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn appended(
        &mut self,
        written: Result<std::io::Result<u64>, LogError>,
        now: Instant,
    ) -> Result<Option<Instant>, LogError> {
        match written? {
            Ok(n) => self.len += n,
            Err(source) => {
                self.poisoned = true;
                return Err(LogError::Io {
                    path: self.segment_path(),
                    source,
                });
            }
        }
        match self.commit.appended(now) {
            Commit::Now => self.sync().map(|()| None),
            Commit::By(t) => Ok(Some(t)),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.commit.deadline()
    }

    /// Makes every appended record durable (`sync_data`), if any waits.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if !self.commit.pending() {
            return Ok(());
        }
        self.check()?;
        if let Err(source) = self.segment.sync_data() {
            self.poisoned = true;
            return Err(LogError::Io {
                path: self.segment_path(),
                source,
            });
        }
        self.synced_len = self.len;
        self.commit.synced();
        Ok(())
    }

    /// Syncs if the oldest unsynced record has waited its full group-commit delay.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<(), LogError> {
        if self.commit.due(now) {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// When the records waiting for a group commit must be synced (`None`: none wait,
    /// or each record is synced as it is appended).
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.commit.deadline()
    }

    /// Whether records wait for a sync (acknowledgements must wait too).
    pub fn has_unsynced(&self) -> bool {
        self.commit.pending()
    }

    /// Whether the segment has grown past [`LogConfig::compact_bytes`].
    pub fn wants_compaction(&self) -> bool {
        self.len >= self.cfg.compact_bytes
    }

    /// Starts generation `g + 1` from a snapshot of `buffer` (which must be the state
    /// this log describes) and deletes generation `g`. Everything appended before is
    /// durable afterwards.
    pub fn compact(&mut self, buffer: &ReplayBuffer) -> Result<(), LogError> {
        self.check()?;
        let dir = self.cfg.dir.clone();
        let next = self.generation + 1;
        snapshot::write(&snapshot_path(&dir, next), next, buffer, &mut self.frame)?;
        let segment = create_segment(&dir, next, &self.buffer_cfg)?;
        let old = self.generation;
        self.segment = segment;
        self.generation = next;
        self.len = HEADER_LEN as u64;
        self.synced_len = self.len;
        self.commit.synced();
        for p in [snapshot_path(&dir, old), segment_path(&dir, old)] {
            if p.exists() {
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes in the current segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the current segment holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN as u64
    }

    /// Bytes of the current segment known durable (the rest would be lost to a power
    /// failure, though not to a crash of the process).
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// The current segment's path.
    pub fn segment_path(&self) -> PathBuf {
        segment_path(&self.cfg.dir, self.generation)
    }
}

/// Writes one frame; its length.
fn write_frame(file: &mut File, frame: &[u8]) -> std::io::Result<u64> {
    file.write_all(frame).map(|()| frame.len() as u64)
}

#[cfg(test)]
mod tests;
