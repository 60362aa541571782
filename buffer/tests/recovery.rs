//! The replay log against crashes: random operation sequences recover to the state of
//! every acknowledged operation; torn and damaged tails are cut at every byte; compacted
//! logs reopen; rewinding to a checkpoint serves the same batches again.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use troupe_buffer::log::{CutReason, LogConfig, Recovery, SyncPolicy};
use troupe_buffer::{Batch, BufferConfig, DurableBuffer, LogError, ReplayBuffer};
use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};

fn scored(id: u64, batch: u64, group: u32, version: u64, reward: u8) -> ScoredTrajectory {
    let task = TaskSpec {
        id,
        prompt: format!("task {id}"),
        answer: String::new(),
        difficulty: 0,
    };
    let mut t = Trajectory::new(id, task, Purpose::Train { batch, group });
    t.push_context(&[1, 2, 3]);
    t.push_policy(2, -1.0, PolicyVersion(version + 1));
    t.push_policy(3, -0.5, PolicyVersion(version));
    t.response = "r".repeat(id as usize % 7);
    ScoredTrajectory {
        trajectory: t,
        // 2: the judge failed; the group is dropped for a judge error when taken.
        reward: if reward == 2 {
            Reward::judge_error("llm")
        } else {
            Reward {
                total: f32::from(reward),
                breakdown: vec![("correct".into(), f32::from(reward))],
            }
        },
    }
}

fn log_cfg(dir: &Path, sync: SyncPolicy) -> LogConfig {
    LogConfig {
        dir: dir.to_path_buf(),
        sync,
        compact_bytes: 4096,
    }
}

fn open(cfg: BufferConfig, log: &LogConfig, recovery: Recovery) -> DurableBuffer {
    DurableBuffer::open(cfg, log, recovery)
        .unwrap_or_else(|e| panic!("recovery failed: {e}"))
        .0
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<(u64, u64, u32, u64, u8)>),
    TakeBatch {
        batch: u64,
        current: u64,
    },
    TakeReady {
        max_groups: usize,
        current: u64,
    },
    Tick(u64),
    Sync,
    Compact,
    /// The process dies: everything written survives (page cache), nothing else.
    Crash,
    /// The machine loses power: only synced bytes survive.
    PowerLoss,
}

fn op() -> impl Strategy<Value = Op> {
    let traj = (
        0u64..48,
        0u64..5,
        0u32..3,
        0u64..8,
        (0u8..9).prop_map(|r| r / 4),
    );
    prop_oneof![
        10 => prop::collection::vec(traj, 1..5).prop_map(Op::Insert),
        2 => (0u64..5, 0u64..10).prop_map(|(batch, current)| Op::TakeBatch { batch, current }),
        1 => (0usize..4, 0u64..10).prop_map(|(max_groups, current)| Op::TakeReady { max_groups, current }),
        2 => (0u64..8).prop_map(Op::Tick),
        1 => Just(Op::Sync),
        1 => Just(Op::Compact),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerLoss),
    ]
}

fn sync_policy() -> impl Strategy<Value = SyncPolicy> {
    prop_oneof![
        Just(SyncPolicy::Every),
        (1u32..6, 1u64..6).prop_map(|(n, ms)| SyncPolicy::Group {
            max_records: n,
            max_delay: Duration::from_millis(ms),
        }),
    ]
}

fn buffer_cfg() -> impl Strategy<Value = BufferConfig> {
    (2u32..=3, 1u32..=3, 0u64..=3, 0usize..=3).prop_map(|(gs, gpb, stale, extra)| BufferConfig {
        group_size: gs,
        groups_per_batch: gpb,
        max_staleness: stale,
        capacity_groups: gpb as usize + extra,
    })
}

/// Runs `ops`, crashing and recovering where they say, and checks after each recovery
/// that the state is that of the last acknowledged operation (or later: a process crash
/// keeps unsynced writes).
fn check(cfg: BufferConfig, sync: SyncPolicy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let log = log_cfg(dir.path(), sync);
    let mut live = open(cfg, &log, Recovery::Fresh);
    // The shadow buffer: the same operations without a log, as the reference state.
    let mut shadow = ReplayBuffer::new(cfg).unwrap();
    // The state after each record of the current segment, by segment length: a power
    // failure must recover exactly the state at the synced length.
    let mut by_len = vec![(live.log().unwrap().len(), shadow.clone())];
    let mut now = Instant::now();
    for op in ops.into_iter().chain([Op::Crash]) {
        match op {
            Op::Insert(ts) => {
                let ts: Vec<_> = ts
                    .into_iter()
                    .map(|(id, b, g, v, r)| scored(id, b, g, v, r))
                    .collect();
                for t in ts.clone() {
                    let _ = shadow.insert(t);
                }
                live.insert_batch(ts, now).unwrap();
            }
            Op::TakeBatch { batch, current } => {
                let got = live.take_batch(batch, PolicyVersion(current), now).unwrap();
                prop_assert_eq!(got, shadow.take_batch(batch, PolicyVersion(current)));
            }
            Op::TakeReady {
                max_groups,
                current,
            } => {
                let got = live
                    .take_ready(max_groups, PolicyVersion(current), now)
                    .unwrap();
                prop_assert_eq!(got, shadow.take_ready(max_groups, PolicyVersion(current)));
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(ms);
                live.sync_if_due(now).unwrap();
            }
            Op::Sync => live.sync().unwrap(),
            Op::Compact => {
                let buffer = live.buffer().clone();
                live.log_mut().unwrap().compact(&buffer).unwrap();
                by_len.clear();
            }
            Op::Crash => {
                drop(live);
                live = open(cfg, &log, Recovery::Exact);
                prop_assert_eq!(live.buffer(), &shadow);
                by_len.clear();
            }
            Op::PowerLoss => {
                let l = live.log().unwrap();
                let (path, synced) = (l.segment_path(), l.synced_len());
                drop(live);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(synced)
                    .unwrap();
                let acked = by_len
                    .iter()
                    .find(|(len, _)| *len == synced)
                    .map(|(_, state)| state.clone())
                    .expect("syncs happen at record boundaries");
                live = open(cfg, &log, Recovery::Exact);
                prop_assert_eq!(live.buffer(), &acked);
                shadow = acked;
                by_len.clear();
            }
        }
        prop_assert_eq!(live.buffer(), &shadow);
        let len = live.log().unwrap().len();
        if by_len.last().is_none_or(|(l, _)| *l != len) {
            by_len.push((len, shadow.clone()));
        }
        // Acknowledged means synced: nothing acknowledged is past the synced length.
        if !live.log().unwrap().has_unsynced() {
            prop_assert_eq!(live.log().unwrap().synced_len(), len);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn recovery_restores_every_acknowledged_operation(
        cfg in buffer_cfg(),
        sync in sync_policy(),
        ops in prop::collection::vec(op(), 0..60),
    ) {
        check(cfg, sync, ops)?;
    }
}

/// A small log: three insert records, a duplicate count and a take, synced after each.
/// Returns the states after each record (index 0: empty) and each record's start offset.
fn small_log(dir: &Path) -> (BufferConfig, LogConfig, Vec<ReplayBuffer>, Vec<u64>) {
    let cfg = BufferConfig {
        group_size: 2,
        groups_per_batch: 1,
        max_staleness: 4,
        capacity_groups: 4,
    };
    let log = log_cfg(dir, SyncPolicy::Every);
    let mut b = open(cfg, &log, Recovery::Fresh);
    let mut states = vec![b.buffer().clone()];
    let mut offsets = vec![b.log().unwrap().len()];
    let now = Instant::now();
    let mut step = |b: &mut DurableBuffer, states: &mut Vec<ReplayBuffer>| {
        states.push(b.buffer().clone());
        offsets.push(b.log().unwrap().len());
    };
    b.insert_batch([scored(1, 0, 0, 1, 1), scored(2, 0, 0, 1, 0)], now)
        .unwrap();
    step(&mut b, &mut states);
    b.insert_batch([scored(3, 1, 0, 1, 1)], now).unwrap();
    step(&mut b, &mut states);
    b.insert_batch([scored(1, 0, 0, 1, 1)], now).unwrap(); // duplicate only
    step(&mut b, &mut states);
    assert!(b.take_batch(0, PolicyVersion(2), now).unwrap().is_some());
    step(&mut b, &mut states);
    b.insert_batch([scored(4, 1, 0, 1, 0)], now).unwrap();
    step(&mut b, &mut states);
    (cfg, log, states, offsets)
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log, states, offsets) = small_log(dir.path());
    let path = dir.path().join("segment-0000000000.log");
    let full = std::fs::read(&path).unwrap();
    let n = states.len();
    let (last_start, end) = (offsets[n - 2], offsets[n - 1]);
    assert_eq!(end, full.len() as u64);
    for cut in last_start..end {
        std::fs::write(&path, &full[..cut as usize]).unwrap();
        let (b, report) = DurableBuffer::open(cfg, &log, Recovery::Exact).unwrap();
        assert_eq!(b.buffer(), &states[n - 2], "cut at {cut}");
        let torn = report.torn_tail;
        if cut == last_start {
            assert_eq!(torn, None);
        } else {
            let torn = torn.unwrap_or_else(|| panic!("cut at {cut} not reported"));
            assert_eq!((torn.offset, torn.bytes), (last_start, cut - last_start));
            assert_eq!(torn.frames, 1);
            let expected = if cut - last_start < 8 {
                CutReason::ShortHeader
            } else {
                CutReason::ShortRecord
            };
            assert_eq!(torn.reason, expected, "cut at {cut}");
        }
        drop(b);
        // The cut is permanent and appending continues after it.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last_start);
    }
}

#[test]
fn flipped_bytes_lose_only_the_damaged_record_and_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log, states, offsets) = small_log(dir.path());
    let path = dir.path().join("segment-0000000000.log");
    let full = std::fs::read(&path).unwrap();
    for at in 0..full.len() {
        let mut bad = full.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let opened = DurableBuffer::open(cfg, &log, Recovery::Exact);
        if (at as u64) < offsets[0] {
            // A damaged header is refused, never guessed at.
            assert!(matches!(opened, Err(LogError::BadFile { .. })), "byte {at}");
            continue;
        }
        let (b, report) = opened.unwrap_or_else(|e| panic!("byte {at}: {e}"));
        // The damaged record is the last one starting at or before `at`.
        let k = offsets.iter().rposition(|&o| o <= at as u64).unwrap();
        assert_eq!(b.buffer(), &states[k], "byte {at}");
        let torn = report.torn_tail.expect("damage reported");
        assert_eq!(torn.offset, offsets[k]);
        assert_eq!(torn.bytes, full.len() as u64 - offsets[k]);
        // Frames after a damaged one are still counted (damage in the middle).
        let after = (offsets.len() - 2 - k) as u64;
        if torn.reason == CutReason::BadChecksum && at as u64 >= offsets[k] + 4 {
            assert_eq!((torn.frames, torn.intact_frames), (1 + after, after));
        }
    }
}

#[test]
fn garbage_after_the_header_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log, states, offsets) = small_log(dir.path());
    let path = dir.path().join("segment-0000000000.log");
    let header = std::fs::read(&path).unwrap()[..offsets[0] as usize].to_vec();
    let mut seed = 7u64;
    for len in 0..300usize {
        let mut bytes = header.clone();
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bytes.push((seed >> 56) as u8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (b, _) = DurableBuffer::open(cfg, &log, Recovery::Exact).unwrap();
        assert_eq!(b.buffer(), &states[0]);
    }
}

#[test]
fn a_compacted_log_reopens_and_keeps_appending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        group_size: 2,
        groups_per_batch: 2,
        max_staleness: 4,
        capacity_groups: 64,
    };
    let log = LogConfig {
        compact_bytes: 1,
        ..log_cfg(dir.path(), SyncPolicy::Every)
    };
    let now = Instant::now();
    let mut b = open(cfg, &log, Recovery::Fresh);
    for batch in 0..6u64 {
        let ts = (0..4).map(|i| scored(batch * 4 + i, batch, (i / 2) as u32, batch, (i % 2) as u8));
        b.insert_batch(ts, now).unwrap();
    }
    b.take_batch(0, PolicyVersion(1), now).unwrap().unwrap();
    assert!(b.checkpointed().unwrap());
    assert_eq!(b.log().unwrap().generation(), 1);
    b.take_batch(1, PolicyVersion(2), now).unwrap().unwrap();
    b.insert_batch([scored(0, 0, 0, 0, 0), scored(100, 6, 0, 6, 1)], now)
        .unwrap();
    let before = b.buffer().clone();
    drop(b);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK")
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        ["segment-0000000001.log", "snapshot-0000000001.snap"]
    );
    let (b, report) = DurableBuffer::open(cfg, &log, Recovery::Exact).unwrap();
    assert_eq!(b.buffer(), &before);
    assert_eq!((report.generation, report.records), (1, 2));
    assert_eq!(report.snapshot_pending, 20);
    // Compacting again after the reopen, and once more, still recovers the same state.
    let mut b = b;
    assert!(b.checkpointed().unwrap());
    drop(b);
    let b = open(cfg, &log, Recovery::Exact);
    assert_eq!(b.buffer(), &before);
    assert_eq!(b.log().unwrap().generation(), 2);
}

#[test]
fn an_interrupted_compaction_recovers_from_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        group_size: 2,
        groups_per_batch: 1,
        max_staleness: 4,
        capacity_groups: 8,
    };
    let log = log_cfg(dir.path(), SyncPolicy::Every);
    let now = Instant::now();
    let mut b = open(cfg, &log, Recovery::Fresh);
    b.insert_batch([scored(1, 0, 0, 0, 1), scored(2, 0, 0, 0, 0)], now)
        .unwrap();
    let state = b.buffer().clone();
    let buffer = b.buffer().clone();
    b.log_mut().unwrap().compact(&buffer).unwrap();
    drop(b);
    // As if the crash came after the snapshot's rename, before the new segment existed
    // and before the old generation was deleted.
    let seg1 = dir.path().join("segment-0000000001.log");
    std::fs::remove_file(&seg1).unwrap();
    std::fs::write(dir.path().join("segment-0000000000.log"), b"stale").unwrap();
    std::fs::write(dir.path().join("snapshot-0000000002.tmp"), b"half").unwrap();
    let b = open(cfg, &log, Recovery::Exact);
    assert_eq!(b.buffer(), &state);
    assert!(seg1.exists());
    assert!(!dir.path().join("segment-0000000000.log").exists());
    assert!(!dir.path().join("snapshot-0000000002.tmp").exists());
}

#[test]
fn a_fresh_run_refuses_a_used_log_and_a_second_opener_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log, _, _) = small_log(dir.path());
    assert!(matches!(
        DurableBuffer::open(cfg, &log, Recovery::Fresh),
        Err(LogError::NotEmpty { .. })
    ));
    let first = open(cfg, &log, Recovery::Exact);
    assert!(matches!(
        DurableBuffer::open(cfg, &log, Recovery::Exact),
        Err(LogError::Locked { .. })
    ));
    drop(first);
    let other = BufferConfig {
        group_size: 3,
        ..cfg
    };
    assert!(matches!(
        DurableBuffer::open(other, &log, Recovery::Exact),
        Err(LogError::ConfigChanged { .. })
    ));
}

/// Learner-like use: batches taken in order, checkpoints (with compaction) now and
/// then, a crash, and a rewind to the last checkpoint: the resumed learner is served
/// exactly the batches it was served before.
fn check_rewind(
    inserts: Vec<(u64, u32, u8)>,
    takes_at: Vec<usize>,
    checkpoints: Vec<usize>,
) -> Result<(), TestCaseError> {
    let cfg = BufferConfig {
        group_size: 2,
        groups_per_batch: 2,
        max_staleness: 1,
        capacity_groups: 64,
    };
    let dir = tempfile::tempdir().unwrap();
    let log = LogConfig {
        compact_bytes: 1,
        ..log_cfg(dir.path(), SyncPolicy::Every)
    };
    let now = Instant::now();
    let mut b = open(cfg, &log, Recovery::Fresh);
    let mut served: Vec<Batch> = Vec::new();
    let mut checkpoint = 0u64;
    for (i, &(batch, group, reward)) in inserts.iter().enumerate() {
        let id = i as u64;
        b.insert_batch(
            [scored(
                id,
                batch,
                group,
                batch.saturating_sub(id % 3),
                reward,
            )],
            now,
        )
        .unwrap();
        if takes_at.contains(&i) {
            let next = served.len() as u64;
            if let Some(batch) = b.take_batch(next, PolicyVersion(next), now).unwrap() {
                served.push(batch);
                if checkpoints.contains(&i) {
                    checkpoint = served.len() as u64;
                    b.checkpointed().unwrap();
                }
            }
        }
    }
    let held_before = b.buffer().counts().pending;
    drop(b);
    let (mut b, report) = DurableBuffer::open(cfg, &log, Recovery::Rewind(checkpoint)).unwrap();
    prop_assert_eq!(report.takes_undone, served.len() as u64 - checkpoint);
    prop_assert_eq!(report.compacted, report.takes_undone > 0);
    let undone: u64 = served[checkpoint as usize..].iter().map(|s| s.taken).sum();
    prop_assert_eq!(b.buffer().counts().pending, held_before + undone);
    // The same batches; the buffer's fill at the take differs (the inserts after the
    // checkpoint are held too).
    let content = |b: &Batch| Batch {
        fill: Default::default(),
        ..b.clone()
    };
    for (step, want) in served.iter().enumerate().skip(checkpoint as usize) {
        let step = step as u64;
        let again = b.take_batch(step, PolicyVersion(step), now).unwrap();
        prop_assert_eq!(again.as_ref().map(content), Some(content(want)));
    }
    // Rewinding again to the same checkpoint after the resumed session's own takes:
    // the snapshot written at the rewind holds the state as of the checkpoint.
    drop(b);
    let b = open(cfg, &log, Recovery::Rewind(checkpoint));
    prop_assert_eq!(b.buffer().counts().pending, held_before + undone);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rewinding_to_a_checkpoint_serves_the_same_batches(
        inserts in prop::collection::vec((0u64..6, 0u32..2, 0u8..=1), 0..40),
        takes_at in prop::collection::vec(0usize..40, 0..12),
        checkpoints in prop::collection::vec(0usize..40, 0..4),
    ) {
        check_rewind(inserts, takes_at, checkpoints)?;
    }
}

#[test]
fn rewinding_past_a_compaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        group_size: 2,
        groups_per_batch: 1,
        max_staleness: 4,
        capacity_groups: 8,
    };
    let log = LogConfig {
        compact_bytes: 1,
        ..log_cfg(dir.path(), SyncPolicy::Every)
    };
    let now = Instant::now();
    let mut b = open(cfg, &log, Recovery::Fresh);
    b.insert_batch([scored(1, 0, 0, 0, 1), scored(2, 0, 0, 0, 0)], now)
        .unwrap();
    b.take_batch(0, PolicyVersion(0), now).unwrap().unwrap();
    b.checkpointed().unwrap();
    drop(b);
    assert!(matches!(
        DurableBuffer::open(cfg, &log, Recovery::Rewind(0)),
        Err(LogError::RewindPastSnapshot { step: 0, batch: 0 })
    ));
    assert!(DurableBuffer::open(cfg, &log, Recovery::Rewind(1)).is_ok());
}
