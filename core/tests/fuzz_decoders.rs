//! Bounded fuzzing of the wire decoders that runs in `cargo test` (STYLE.md §4: every
//! decoder is fuzzed; a malformed frame is an error, never a panic). The unbounded
//! libFuzzer targets live in `fuzz/`.

use bincode::Decode;
use bincode::error::DecodeError;
use proptest::collection::vec;
use proptest::prelude::*;
use troupe_core::protocol::{BufferFill, EvalUnit, StepReport, TrainUnit, Work};
use troupe_core::wire::{DEFAULT_FRAME_LIMIT, PROTOCOL_VERSION, decode_frame, encode_frame};
use troupe_core::{
    Author, CoreError, PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory,
};

const HEADER_LEN: usize = 10;
const SMALL_LIMIT: u64 = 1 << 20;

// ---------------------------------------------------------------- strategies

fn text() -> impl Strategy<Value = String> {
    // Any unicode scalar values, multi-byte ones included.
    vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect())
}

fn task() -> impl Strategy<Value = TaskSpec> {
    (any::<u64>(), text(), text(), any::<u32>()).prop_map(|(id, prompt, answer, difficulty)| {
        TaskSpec {
            id,
            prompt,
            answer,
            difficulty,
        }
    })
}

fn purpose() -> impl Strategy<Value = Purpose> {
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(batch, group)| Purpose::Train { batch, group }),
        any::<u32>().prop_map(|round| Purpose::Eval { round }),
    ]
}

fn trajectory() -> impl Strategy<Value = Trajectory> {
    (
        any::<u64>(),
        task(),
        purpose(),
        vec(
            (any::<bool>(), any::<u32>(), any::<f32>(), any::<u64>()),
            0..24,
        ),
        text(),
    )
        .prop_map(|(id, task, purpose, steps, response)| {
            let mut t = Trajectory::new(id, task, purpose);
            for (policy, token, logprob, version) in steps {
                if policy {
                    t.push_policy(token, logprob, PolicyVersion(version));
                } else {
                    t.push_context(&[token]);
                }
            }
            t.response = response;
            if let Some(first) = t.tokens.first().copied() {
                t.begin_turn(Author::Policy, &format!("{first}"));
            }
            t
        })
}

fn reward() -> impl Strategy<Value = Reward> {
    (any::<f32>(), vec((text(), any::<f32>()), 0..6))
        .prop_map(|(total, breakdown)| Reward { total, breakdown })
}

fn scored() -> impl Strategy<Value = ScoredTrajectory> {
    (trajectory(), reward())
        .prop_map(|(trajectory, reward)| ScoredTrajectory { trajectory, reward })
}

fn work() -> impl Strategy<Value = Work> {
    prop_oneof![
        (
            any::<u64>(),
            vec((any::<u32>(), task()), 0..6),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(
                |(batch, groups, group_size, publication)| Work::Train(TrainUnit {
                    unit: batch ^ 7,
                    batch,
                    groups,
                    group_size,
                    publication,
                    sampling_seed: publication ^ batch,
                })
            ),
        (any::<u32>(), vec(task(), 0..6), any::<u64>()).prop_map(|(round, tasks, publication)| {
            Work::Eval(EvalUnit {
                unit: publication >> 1,
                round,
                tasks,
                publication,
            })
        }),
        Just(Work::Wait),
        Just(Work::Stop),
    ]
}

fn step_report() -> impl Strategy<Value = StepReport> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<f32>(),
            any::<f32>(),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        vec(any::<u64>(), 0..10),
        (
            any::<f64>(),
            any::<f64>(),
            any::<f32>(),
            any::<f32>(),
            any::<f32>(),
        ),
        (
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
            proptest::option::of(scored()),
        ),
    )
        .prop_map(
            |(
                (rl_step, version, publication, loss, mean_reward),
                (trained, trained_tokens, dropped_stale, filtered_zero_signal),
                staleness_histogram,
                (wait_seconds, train_seconds, grad_norm, clip_fraction, approx_kl),
                ((pending, groups, capacity_groups, capacity), best_trajectory),
            )| StepReport {
                rl_step,
                version,
                publication,
                loss,
                mean_reward,
                trained,
                trained_tokens,
                dropped_stale,
                filtered_zero_signal,
                dropped_judge_error: dropped_stale / 2,
                staleness_histogram,
                wait_seconds,
                train_seconds,
                grad_norm,
                clip_fraction,
                approx_kl,
                logprob_gap: loss.abs(),
                tis_truncated: 0.0,
                reward_parts: vec![("solved".into(), f64::from(mean_reward))],
                buffer: BufferFill {
                    pending,
                    groups,
                    capacity_groups,
                    capacity,
                },
                publish_seconds: wait_seconds,
                best_trajectory,
            },
        )
}

/// One encoded frame of any payload type, tagged with which type it is.
fn any_frame() -> impl Strategy<Value = (Kind, Vec<u8>)> {
    prop_oneof![
        scored().prop_map(|v| (Kind::Scored, encode_frame(&v).unwrap())),
        work().prop_map(|v| (Kind::Work, encode_frame(&v).unwrap())),
        step_report().prop_map(|v| (Kind::Step, encode_frame(&v).unwrap())),
        task().prop_map(|v| (Kind::Task, encode_frame(&v).unwrap())),
        trajectory().prop_map(|v| (Kind::Trajectory, encode_frame(&v).unwrap())),
        reward().prop_map(|v| (Kind::Reward, encode_frame(&v).unwrap())),
    ]
}

// ---------------------------------------------------------------- helpers

#[derive(Debug, Clone, Copy)]
enum Kind {
    Scored,
    Work,
    Step,
    Task,
    Trajectory,
    Reward,
}

/// Decodes `bytes` as `T`; when it succeeds, the frame must be canonical: re-encoding the
/// value gives back exactly the bytes the header declared.
fn check<T: Decode<()> + bincode::Encode>(bytes: &[u8], limit: u64) -> Result<(), CoreError> {
    let value = decode_frame::<T>(bytes, limit)?;
    let again = encode_frame(&value).unwrap();
    assert_eq!(
        again,
        bytes[..again.len()],
        "decoded frame is not canonical"
    );
    Ok(())
}

fn check_kind(kind: Kind, bytes: &[u8], limit: u64) -> Result<(), CoreError> {
    match kind {
        Kind::Scored => check::<ScoredTrajectory>(bytes, limit),
        Kind::Work => check::<Work>(bytes, limit),
        Kind::Step => check::<StepReport>(bytes, limit),
        Kind::Task => check::<TaskSpec>(bytes, limit),
        Kind::Trajectory => check::<Trajectory>(bytes, limit),
        Kind::Reward => check::<Reward>(bytes, limit),
    }
}

/// Decodes `bytes` as every payload type. None may panic; every success is canonical.
fn check_all(bytes: &[u8], limit: u64) {
    for kind in [
        Kind::Scored,
        Kind::Work,
        Kind::Step,
        Kind::Task,
        Kind::Trajectory,
        Kind::Reward,
    ] {
        let _ = check_kind(kind, bytes, limit);
    }
    let _ = check::<TrainUnit>(bytes, limit);
    let _ = check::<EvalUnit>(bytes, limit);
}

fn frame(declared_len: u64, body: &[u8]) -> Vec<u8> {
    let mut out = PROTOCOL_VERSION.to_le_bytes().to_vec();
    out.extend_from_slice(&declared_len.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Bit-exact equality (NaN payloads included) via the encoding, plus `==` when the
/// value has no NaN.
fn round_trips<T>(value: &T)
where
    T: bincode::Encode + Decode<()> + PartialEq + std::fmt::Debug,
{
    let bytes = encode_frame(value).unwrap();
    let back: T = decode_frame(&bytes, DEFAULT_FRAME_LIMIT).unwrap();
    assert_eq!(encode_frame(&back).unwrap(), bytes);
    #[allow(clippy::eq_op)]
    if value == value {
        assert_eq!(&back, value);
    }
}

fn sample_scored() -> ScoredTrajectory {
    let task = TaskSpec {
        id: 3,
        prompt: "12+30 ✓".into(),
        answer: "42".into(),
        difficulty: 2,
    };
    let mut t = Trajectory::new(9, task, Purpose::Train { batch: 4, group: 1 });
    t.push_context(&[1, 2, 3]);
    t.push_policy(7, -0.25, PolicyVersion(5));
    t.response = "42".into();
    ScoredTrajectory {
        trajectory: t,
        reward: Reward {
            total: 1.0,
            breakdown: vec![("correct".into(), 1.0), ("format".into(), 0.0)],
        },
    }
}

fn sample_work() -> Work {
    let task = |id| TaskSpec {
        id,
        prompt: format!("task {id}"),
        answer: "x".into(),
        difficulty: 1,
    };
    Work::Train(TrainUnit {
        unit: 6,
        batch: 2,
        groups: vec![(0, task(1)), (1, task(2))],
        group_size: 4,
        publication: 3,
        sampling_seed: 5,
    })
}

fn sample_step() -> StepReport {
    StepReport {
        rl_step: 1,
        version: 1,
        publication: 1,
        loss: 0.5,
        mean_reward: 0.25,
        trained: 8,
        trained_tokens: 100,
        dropped_stale: 0,
        filtered_zero_signal: 4,
        dropped_judge_error: 0,
        staleness_histogram: vec![8, 0, 0],
        wait_seconds: 0.1,
        train_seconds: 0.2,
        grad_norm: 1.5,
        clip_fraction: 0.0,
        approx_kl: 0.01,
        logprob_gap: 0.02,
        tis_truncated: 0.0,
        reward_parts: vec![("no_tests".into(), 1.0)],
        buffer: BufferFill::default(),
        publish_seconds: 0.01,
        best_trajectory: None,
    }
}

fn limit_exceeded(r: Result<(), CoreError>) -> bool {
    matches!(r, Err(CoreError::Decode(DecodeError::LimitExceeded)))
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Raw bytes, mostly rejected at the header.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        check_all(&bytes, SMALL_LIMIT);
    }

    /// Arbitrary bodies behind a valid header, so the body decoders are reached.
    #[test]
    fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..256), slack in 0usize..3) {
        let declared = body.len().saturating_sub(slack) as u64;
        check_all(&frame(declared, &body), SMALL_LIMIT);
    }

    /// Bodies whose words are drawn from values that hit edge cases: huge counts, bad
    /// enum tags, invalid UTF-8 lead bytes.
    #[test]
    fn adversarial_words_never_panic(
        words in vec(prop_oneof![
            Just(u64::MAX), Just(1u64 << 40), Just(1u64 << 20), Just(0), Just(1), Just(2),
            Just(4), Just(0xFFFF_FFFF), Just(0xC0C0_C0C0_C0C0_C0C0), any::<u64>(),
        ], 0..16)
    ) {
        let body: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        check_all(&frame(body.len() as u64, &body), SMALL_LIMIT);
    }

    #[test]
    fn scored_trajectories_round_trip(v in scored()) { round_trips(&v); }

    #[test]
    fn work_round_trips(v in work()) { round_trips(&v); }

    #[test]
    fn step_reports_round_trip(v in step_report()) { round_trips(&v); }

    #[test]
    fn trajectories_and_parts_round_trip(t in trajectory(), r in reward(), k in task()) {
        round_trips(&t);
        round_trips(&r);
        round_trips(&k);
    }

    /// Flipped bits anywhere (header included) never panic, and whatever still decodes is
    /// canonical.
    #[test]
    fn bit_flipped_frames_never_panic(
        (kind, bytes) in any_frame(),
        flips in vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let mut bytes = bytes;
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        let _ = check_kind(kind, &bytes, SMALL_LIMIT);
        check_all(&bytes, SMALL_LIMIT);
    }

    /// Overwriting a whole u64 (a length, a count, a tag) with an extreme value.
    #[test]
    fn overwritten_words_never_panic(
        (kind, bytes) in any_frame(),
        at in any::<prop::sample::Index>(),
        word in prop_oneof![Just(u64::MAX), Just(1u64 << 40), Just(1u64 << 24), any::<u64>()],
    ) {
        let mut bytes = bytes;
        // Every frame is at least 14 bytes (header and a 4-byte enum tag).
        let i = at.index(bytes.len() - 7);
        bytes[i..i + 8].copy_from_slice(&word.to_le_bytes());
        let _ = check_kind(kind, &bytes, SMALL_LIMIT);
    }

    /// Every strict prefix of a valid frame is an error.
    #[test]
    fn truncated_frames_are_errors((kind, bytes) in any_frame(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(bytes.len());
        prop_assert!(check_kind(kind, &bytes[..cut], SMALL_LIMIT).is_err());
    }

    /// A frame whose header claims a body that is shorter than the message (the body is
    /// cut short inside) or longer (junk after the message) is an error.
    #[test]
    fn wrong_declared_lengths_are_errors(
        (kind, bytes) in any_frame(),
        delta in 1u64..16,
        shorter in any::<bool>(),
    ) {
        let body = &bytes[HEADER_LEN..];
        let len = body.len() as u64;
        let mut padded = body.to_vec();
        padded.extend(std::iter::repeat_n(0u8, delta as usize));
        let framed = if shorter {
            prop_assume!(len >= delta);
            frame(len - delta, body)
        } else {
            frame(len + delta, &padded)
        };
        prop_assert!(check_kind(kind, &framed, SMALL_LIMIT).is_err());
    }

    /// The declared length is checked against the limit before anything else is read.
    #[test]
    fn oversized_declared_length_is_rejected_up_front(
        len in prop_oneof![Just(u64::MAX), Just(1u64 << 40), (SMALL_LIMIT + 1)..u64::MAX],
        tail in vec(any::<u8>(), 0..32),
    ) {
        let bytes = frame(len, &tail);
        let r = decode_frame::<ScoredTrajectory>(&bytes, SMALL_LIMIT);
        let rejected = matches!(r, Err(CoreError::FrameTooLarge { len: l, limit: SMALL_LIMIT }) if l == len);
        prop_assert!(rejected);
    }
}

// ---------------------------------------------------------------- exhaustive small cases

/// Every single-bit flip and every truncation of one frame of each payload type.
#[test]
fn every_bit_flip_and_truncation_of_samples() {
    let frames = [
        (Kind::Scored, encode_frame(&sample_scored()).unwrap()),
        (Kind::Work, encode_frame(&sample_work()).unwrap()),
        (Kind::Step, encode_frame(&sample_step()).unwrap()),
        (Kind::Work, encode_frame(&Work::Stop).unwrap()),
    ];
    for (kind, bytes) in frames {
        check_kind(kind, &bytes, SMALL_LIMIT).unwrap();
        for cut in 0..bytes.len() {
            assert!(check_kind(kind, &bytes[..cut], SMALL_LIMIT).is_err());
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = check_kind(kind, &b, SMALL_LIMIT);
            }
        }
    }
}

#[test]
fn tiny_buffer_claiming_huge_length_is_rejected_before_allocation() {
    for len in [u64::MAX, 1 << 40, DEFAULT_FRAME_LIMIT + 1] {
        let bytes = frame(len, &[0; 4]);
        assert!(matches!(
            decode_frame::<ScoredTrajectory>(&bytes, DEFAULT_FRAME_LIMIT),
            Err(CoreError::FrameTooLarge { len: l, .. }) if l == len
        ));
        assert!(matches!(
            decode_frame::<Work>(&bytes, SMALL_LIMIT),
            Err(CoreError::FrameTooLarge { .. })
        ));
        // With no limit at all the length is still only compared, never allocated.
        assert!(matches!(
            decode_frame::<StepReport>(&bytes, u64::MAX),
            Err(CoreError::Truncated { needed, had: 4 }) if needed == len
        ));
    }
}

/// Bodies that declare a huge element count for a `Vec`/`String` in every payload type.
/// bincode claims `count * size_of::<T>()` against its limit *before* allocating, so the
/// error must be `LimitExceeded` (rejected before allocation) rather than `UnexpectedEnd`
/// (which would mean it allocated, then ran out of input).
#[test]
fn huge_element_counts_are_rejected_before_allocation() {
    let u32b = |v: u32| v.to_le_bytes().to_vec();
    let u64b = |v: u64| v.to_le_bytes().to_vec();
    let empty_task = [u64b(1), u64b(0), u64b(0), u32b(0)].concat();
    let traj_prefix = [u64b(1), empty_task.clone(), u32b(1), u32b(0)].concat(); // Purpose::Eval
    // Counts that overflow `count * size_of`, that are absurd, and one that is merely far
    // more than this body could hold (a 64 MB claim from a ~100 byte frame: accepted by
    // the old fixed 64 MiB bincode limit, which allocated it, rejected now).
    for count in [u64::MAX, 1 << 40, 8_000_000] {
        let c = u64b(count);
        let cases = [
            (
                "ScoredTrajectory.task.prompt",
                Kind::Scored,
                [u64b(1), u64b(2), c.clone()].concat(),
            ),
            (
                "Trajectory.tokens",
                Kind::Trajectory,
                [traj_prefix.clone(), c.clone()].concat(),
            ),
            (
                "Trajectory.policy",
                Kind::Trajectory,
                [traj_prefix.clone(), u64b(0), c.clone()].concat(),
            ),
            (
                "Trajectory.versions",
                Kind::Trajectory,
                [traj_prefix.clone(), u64b(0), u64b(0), u64b(0), c.clone()].concat(),
            ),
            (
                "Reward.breakdown",
                Kind::Reward,
                [u32b(0), c.clone()].concat(),
            ),
            (
                "Work::Train.groups",
                Kind::Work,
                // variant, unit, batch, then the groups' count.
                [u32b(0), u64b(1), u64b(1), c.clone()].concat(),
            ),
            (
                "Work::Eval.tasks",
                Kind::Work,
                // variant, unit, round, then the tasks' count.
                [u32b(1), u64b(1), u32b(0), c.clone()].concat(),
            ),
            (
                "StepReport.staleness_histogram",
                Kind::Step,
                // rl_step .. dropped_judge_error: 3 + 5 u64 and 2 f32 fields before it.
                [vec![0u8; 72], c.clone()].concat(),
            ),
        ];
        for (field, kind, mut body) in cases {
            body.extend_from_slice(&[0; 16]); // a few real bytes after the count
            let r = check_kind(kind, &frame(body.len() as u64, &body), SMALL_LIMIT);
            assert!(
                limit_exceeded(r),
                "{field} with count {count}: not rejected by the claim limit"
            );
        }
    }
}

/// The claim budget scales with the body: payloads whose decoded form is much larger than
/// their encoding (many empty strings / tasks) still decode at every size.
#[test]
fn memory_heavy_valid_payloads_decode() {
    let empty = TaskSpec {
        id: 0,
        prompt: String::new(),
        answer: String::new(),
        difficulty: 0,
    };
    for n in [0usize, 1, 10, 100, 1_000, 10_000, 200_000] {
        round_trips(&Work::Eval(EvalUnit {
            unit: n as u64,
            round: 1,
            tasks: vec![empty.clone(); n],
            publication: 2,
        }));
        round_trips(&Work::Train(TrainUnit {
            unit: u64::MAX,
            batch: 1,
            groups: vec![(0, empty.clone()); n],
            group_size: 1,
            publication: 2,
            sampling_seed: u64::MAX,
        }));
        let mut s = sample_scored();
        s.reward.breakdown = vec![(String::new(), 0.0); n];
        s.trajectory.push_context(&vec![1; n]);
        round_trips(&s);
    }
    // A large, dense frame still fits the default limit.
    let mut s = sample_scored();
    s.trajectory.push_context(&vec![7; 2_000_000]);
    round_trips(&s);
}

#[test]
fn junk_after_the_message_inside_the_body_is_rejected() {
    let bytes = encode_frame(&sample_step()).unwrap();
    let body = &bytes[HEADER_LEN..];
    let mut padded = body.to_vec();
    padded.push(0);
    assert!(matches!(
        decode_frame::<StepReport>(&frame(padded.len() as u64, &padded), SMALL_LIMIT),
        Err(CoreError::Decode(DecodeError::Other(_)))
    ));
    // Bytes after the declared frame are not part of it and are left alone.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"next frame");
    assert_eq!(
        decode_frame::<StepReport>(&trailing, SMALL_LIMIT).unwrap(),
        sample_step()
    );
}
