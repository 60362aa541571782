//! Unit tests of the log's byte formats; recovery is tested in `tests/recovery.rs`.

use troupe_core::wire::encode_body;
use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};

use super::format::*;
use crate::{BufferConfig, Closes, DropReason, Fate, Take, TakenGroup};

fn scored(id: u64, batch: u64, group: u32) -> ScoredTrajectory {
    let task = TaskSpec {
        id,
        prompt: "p".into(),
        answer: "a".into(),
        difficulty: 0,
    };
    let mut t = Trajectory::new(id, task, Purpose::Train { batch, group });
    t.push_context(&[1, 2]);
    t.push_policy(3, -0.5, PolicyVersion(4));
    ScoredTrajectory {
        trajectory: t,
        reward: Reward {
            total: id as f32,
            breakdown: vec![("correct".into(), 1.0)],
        },
    }
}

fn payload(frame: &[u8]) -> &[u8] {
    &frame[FRAME_HEADER..]
}

#[test]
fn streamed_insert_record_encodes_like_the_enum() {
    let ts: Vec<_> = (1..=3).map(|i| scored(i, 0, 0)).collect();
    let mut rec = InsertRecord::default();
    rec.clear();
    rec.push(&ts[0]).unwrap();
    let m = rec.push(&scored(99, 0, 0)).unwrap();
    rec.undo(m);
    rec.push(&ts[1]).unwrap();
    rec.push(&ts[2]).unwrap();
    assert_eq!(rec.len(), 3);
    let frame = rec.finish(5).unwrap().to_vec();
    let want = Record::Insert {
        duplicates: 5,
        trajectories: ts,
    };
    assert_eq!(payload(&frame), encode_body(&want).unwrap().as_slice());
    assert_eq!(decode_record(payload(&frame)).unwrap(), want);
}

#[test]
fn borrowed_groups_chunk_encodes_like_the_enum() {
    let a: Vec<_> = (1..=2).map(|i| scored(i, 0, 0)).collect();
    let b: Vec<_> = (3..=4).map(|i| scored(i, 0, 1)).collect();
    let borrowed = [((0u64, 0u32), a.as_slice()), ((0, 1), b.as_slice())];
    let mut frame = FrameBuf::default();
    let mut it = borrowed.iter().copied().peekable();
    let bytes = groups_frame_into(&mut frame, &mut it, usize::MAX)
        .unwrap()
        .to_vec();
    assert!(it.peek().is_none());
    let want = SnapshotPart::Groups(vec![((0, 0), a.clone()), ((0, 1), b.clone())]);
    assert_eq!(decode_part(payload(&bytes)).unwrap(), want);
    // A small chunk limit still makes progress: one group per frame.
    let mut it = borrowed.iter().copied().peekable();
    let one = groups_frame_into(&mut frame, &mut it, 1).unwrap().to_vec();
    assert_eq!(
        decode_part(payload(&one)).unwrap(),
        SnapshotPart::Groups(vec![((0, 0), a)])
    );
}

#[test]
fn headers_round_trip_and_reject_damage() {
    let cfg = BufferConfig {
        group_size: 8,
        groups_per_batch: 32,
        max_staleness: 2,
        capacity_groups: 128,
    };
    let h = Header::new(FileKind::Segment, 7, &cfg);
    let bytes = h.encode();
    assert_eq!(Header::decode(FileKind::Segment, &bytes).unwrap(), h);
    assert!(Header::decode(FileKind::Snapshot, &bytes).is_err());
    for i in 0..HEADER_LEN {
        let mut bad = bytes;
        bad[i] ^= 0x10;
        assert!(Header::decode(FileKind::Segment, &bad).is_err(), "byte {i}");
    }
}

#[test]
fn frames_detect_every_kind_of_damage() {
    let take = Record::Take(Take {
        batch: 3,
        closes: Closes::Batch,
        groups: vec![
            TakenGroup {
                batch: 3,
                group: 0,
                fate: Fate::Served,
            },
            TakenGroup {
                batch: 3,
                group: 1,
                fate: Fate::Dropped(DropReason::ZeroSignal),
            },
        ],
    });
    let mut fb = FrameBuf::default();
    let mut file = fb.one(&take).unwrap().to_vec();
    let dups = Record::Insert {
        duplicates: 2,
        trajectories: vec![],
    };
    file.extend_from_slice(fb.one(&dups).unwrap());
    let read = |bytes: &[u8]| {
        let mut r = FrameReader::new(bytes, bytes.len() as u64);
        let mut out = Vec::new();
        loop {
            match r.next_frame().unwrap() {
                Frame::Good(p) => out.push(Ok(decode_record(p).unwrap())),
                Frame::End => return out,
                Frame::Bad(reason) => {
                    out.push(Err(reason));
                    return out;
                }
            }
        }
    };
    assert_eq!(read(&file), vec![Ok(take.clone()), Ok(dups)]);
    assert_eq!(
        read(&file[..file.len() - 1]).last(),
        Some(&Err(CutReason::ShortRecord))
    );
    assert_eq!(read(&file[..3]), vec![Err(CutReason::ShortHeader)]);
    let mut flipped = file.clone();
    flipped[FRAME_HEADER + 2] ^= 1;
    assert_eq!(read(&flipped), vec![Err(CutReason::BadChecksum)]);
    let mut zero = file.clone();
    zero[..4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(read(&zero), vec![Err(CutReason::BadLength)]);
    let mut huge = file;
    huge[..4].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
    assert_eq!(read(&huge), vec![Err(CutReason::BadLength)]);
}

#[test]
fn oversized_records_are_refused_before_writing() {
    let mut fb = FrameBuf::default();
    fb.start();
    fb.push(&vec![0u8; MAX_RECORD as usize]).unwrap();
    assert!(matches!(fb.finish(), Err(crate::LogError::TooLarge { .. })));
}

proptest::proptest! {
    /// Payloads with a good checksum but arbitrary content (what a future format, or
    /// deliberate tampering, would produce) are decode errors, never panics or huge
    /// allocations.
    #[test]
    fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = decode_record(&bytes);
        let _ = decode_part(&bytes);
        let mut r = FrameReader::new(bytes.as_slice(), bytes.len() as u64);
        while let Ok(Frame::Good(p)) = r.next_frame() {
            let _ = decode_record(p);
        }
    }
}
