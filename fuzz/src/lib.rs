//! Shared pieces of troupe's fuzz targets: `Arbitrary` mirrors of the wire payloads, an
//! allocation tracker, and the checks every decoded frame must pass.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use arbitrary::Arbitrary;
use bincode::{Decode, Encode};
use troupe_core::protocol::{BufferFill, EvalUnit, StepReport, TrainUnit, Work};
use troupe_core::wire::{PROTOCOL_VERSION, decode_frame, encode_frame};
use troupe_core::{Author, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory, Turn};

// ------------------------------------------------------------------ allocation tracker

/// The system allocator, recording the largest single allocation since the last reset.
pub struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Frame limit used by the targets.
pub const LIMIT: u64 = 1 << 20;

/// Decodes `bytes` as `T` and asserts what every decode must satisfy:
/// - no panic (libFuzzer reports one as a crash);
/// - no single allocation larger than `wire::decode_frame` promises: 32 times the
///   declared body length, or 4 KiB for small frames — never a count read from the body;
/// - a successful decode is canonical: re-encoding gives back the declared frame bytes.
pub fn check<T: Decode<()> + Encode>(bytes: &[u8]) -> Option<T> {
    let declared = bytes
        .get(2..10)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .unwrap_or(0);
    LARGEST.store(0, Relaxed);
    let result = decode_frame::<T>(bytes, LIMIT);
    let largest = LARGEST.load(Relaxed) as u64;
    let allowed = declared.min(LIMIT).saturating_mul(32).max(4096);
    assert!(
        largest <= allowed,
        "decoding a frame declaring {declared} body bytes allocated {largest} bytes at once"
    );
    let value = result.ok()?;
    let again = encode_frame(&value).expect("a decoded value encodes");
    assert_eq!(
        again[..],
        bytes[..again.len()],
        "decoded frame is not canonical"
    );
    Some(value)
}

/// Decodes `bytes` as every payload type.
pub fn check_all(bytes: &[u8]) {
    check::<ScoredTrajectory>(bytes);
    check::<Work>(bytes);
    check::<StepReport>(bytes);
    check::<Trajectory>(bytes);
    check::<TaskSpec>(bytes);
    check::<Reward>(bytes);
    check::<TrainUnit>(bytes);
    check::<EvalUnit>(bytes);
}

/// `body` behind a valid header declaring `body.len()` bytes.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = PROTOCOL_VERSION.to_le_bytes().to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

// ------------------------------------------------------------------ Arbitrary mirrors

#[derive(Debug, Arbitrary)]
pub struct ATask {
    id: u64,
    prompt: String,
    answer: String,
    difficulty: u32,
}

impl From<ATask> for TaskSpec {
    fn from(a: ATask) -> Self {
        TaskSpec {
            id: a.id,
            prompt: a.prompt,
            answer: a.answer,
            difficulty: a.difficulty,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum APurpose {
    Train { batch: u64, group: u32 },
    Eval { round: u32 },
}

/// Field lengths need not agree: the wire does not care, so neither does the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct ATrajectory {
    id: u64,
    task: ATask,
    purpose: APurpose,
    tokens: Vec<u32>,
    policy: Vec<u8>,
    logprobs: Vec<f32>,
    versions: Vec<u64>,
    response: String,
    turns: Vec<ATurn>,
}

#[derive(Debug, Arbitrary)]
pub struct ATurn {
    author: u8,
    start: u32,
    text: String,
}

impl From<ATurn> for Turn {
    fn from(a: ATurn) -> Self {
        Turn {
            author: match a.author % 3 {
                0 => Author::User,
                1 => Author::Tool,
                _ => Author::Policy,
            },
            start: a.start,
            text: a.text,
        }
    }
}

impl From<ATrajectory> for Trajectory {
    fn from(a: ATrajectory) -> Self {
        Trajectory {
            id: a.id,
            task: a.task.into(),
            purpose: match a.purpose {
                APurpose::Train { batch, group } => Purpose::Train { batch, group },
                APurpose::Eval { round } => Purpose::Eval { round },
            },
            tokens: a.tokens,
            policy: a.policy,
            logprobs: a.logprobs,
            versions: a.versions,
            response: a.response,
            turns: a.turns.into_iter().map(Turn::from).collect(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct AScored {
    trajectory: ATrajectory,
    total: f32,
    breakdown: Vec<(String, f32)>,
}

impl From<AScored> for ScoredTrajectory {
    fn from(a: AScored) -> Self {
        ScoredTrajectory {
            trajectory: a.trajectory.into(),
            reward: Reward {
                total: a.total,
                breakdown: a.breakdown,
            },
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum AWork {
    Train {
        batch: u64,
        groups: Vec<(u32, ATask)>,
        group_size: u32,
        publication: u64,
    },
    Eval {
        round: u32,
        tasks: Vec<ATask>,
        publication: u64,
    },
    Wait,
    Stop,
}

impl From<AWork> for Work {
    fn from(a: AWork) -> Self {
        match a {
            AWork::Train {
                batch,
                groups,
                group_size,
                publication,
            } => Work::Train(TrainUnit {
                unit: batch.rotate_left(3),
                batch,
                groups: groups.into_iter().map(|(g, t)| (g, t.into())).collect(),
                group_size,
                publication,
                sampling_seed: publication.rotate_left(17) ^ batch,
            }),
            AWork::Eval {
                round,
                tasks,
                publication,
            } => Work::Eval(EvalUnit {
                unit: publication ^ 1,
                round,
                tasks: tasks.into_iter().map(Into::into).collect(),
                publication,
            }),
            AWork::Wait => Work::Wait,
            AWork::Stop => Work::Stop,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct AStep {
    u: [u64; 8],
    f: [f32; 7],
    staleness_histogram: Vec<u64>,
    wait_seconds: f64,
    train_seconds: f64,
    reward_parts: Vec<(String, f64)>,
    buffer: [u64; 4],
    publish_seconds: f64,
    best_trajectory: Option<AScored>,
}

impl From<AStep> for StepReport {
    fn from(a: AStep) -> Self {
        StepReport {
            rl_step: a.u[0],
            version: a.u[1],
            publication: a.u[2],
            loss: a.f[0],
            mean_reward: a.f[1],
            trained: a.u[3],
            trained_tokens: a.u[4],
            dropped_stale: a.u[5],
            filtered_zero_signal: a.u[6],
            dropped_judge_error: a.u[7],
            staleness_histogram: a.staleness_histogram,
            wait_seconds: a.wait_seconds,
            train_seconds: a.train_seconds,
            grad_norm: a.f[2],
            clip_fraction: a.f[3],
            approx_kl: a.f[4],
            logprob_gap: a.f[5],
            tis_truncated: a.f[6],
            reward_parts: a.reward_parts,
            buffer: BufferFill {
                pending: a.buffer[0],
                groups: a.buffer[1],
                capacity_groups: a.buffer[2],
                capacity: a.buffer[3],
            },
            publish_seconds: a.publish_seconds,
            best_trajectory: a.best_trajectory.map(Into::into),
        }
    }
}

/// One edit to an encoded frame.
#[derive(Debug, Arbitrary)]
pub enum Mutation {
    FlipBit {
        at: u16,
        bit: u8,
    },
    SetByte {
        at: u16,
        byte: u8,
    },
    /// Overwrites 8 bytes: lengths, element counts and enum tags all live in such words.
    SetWord {
        at: u16,
        word: Word,
    },
    Truncate {
        at: u16,
    },
    Insert {
        at: u16,
        byte: u8,
    },
    Remove {
        at: u16,
    },
    /// Rewrites the header's declared body length.
    SetLen {
        len: Word,
    },
}

/// A u64, biased towards the values that break length handling.
#[derive(Debug, Arbitrary)]
pub enum Word {
    Max,
    Huge,
    JustOverLimit,
    Small(u8),
    Any(u64),
}

impl Word {
    fn get(&self) -> u64 {
        match *self {
            Word::Max => u64::MAX,
            Word::Huge => 1 << 40,
            Word::JustOverLimit => LIMIT + 1,
            Word::Small(n) => u64::from(n),
            Word::Any(n) => n,
        }
    }
}

impl Mutation {
    /// Applies the edit (positions wrap around the frame's length).
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let pos = |at: u16| usize::from(at) % bytes.len();
        match self {
            Mutation::FlipBit { at, bit } => {
                let i = pos(*at);
                bytes[i] ^= 1 << (bit % 8);
            }
            Mutation::SetByte { at, byte } => {
                let i = pos(*at);
                bytes[i] = *byte;
            }
            Mutation::SetWord { at, word } => {
                let i = pos(*at);
                let w = word.get().to_le_bytes();
                let n = (bytes.len() - i).min(8);
                bytes[i..i + n].copy_from_slice(&w[..n]);
            }
            Mutation::Truncate { at } => {
                let i = pos(*at);
                bytes.truncate(i);
            }
            Mutation::Insert { at, byte } => {
                let i = pos(*at);
                bytes.insert(i, *byte);
            }
            Mutation::Remove { at } => {
                let i = pos(*at);
                bytes.remove(i);
            }
            Mutation::SetLen { len } => {
                if bytes.len() >= 10 {
                    bytes[2..10].copy_from_slice(&len.get().to_le_bytes());
                }
            }
        }
    }
}
