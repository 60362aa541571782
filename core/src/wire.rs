//! Framing for payloads that cross the network: a protocol version, a length, a body,
//! and a hard size limit checked before anything is allocated.

use bincode::config::{Configuration, Fixint, LittleEndian, NoLimit};
use bincode::{Decode, Encode};

use crate::CoreError;

/// The protocol version this build speaks.
/// 2: `StepReport::dropped_judge_error`, the judge's stats messages.
pub const PROTOCOL_VERSION: u16 = 2;

/// Default limit on a frame body (64 MiB).
pub const DEFAULT_FRAME_LIMIT: u64 = 64 << 20;

const HEADER_LEN: usize = 2 + 8;

fn config() -> Configuration<LittleEndian, Fixint, NoLimit> {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

/// Decoded-memory budget per byte of frame body.
///
/// Before bincode allocates a `Vec` of `count` elements it claims `count * size_of::<T>()`
/// bytes against the config's limit, so the limit is what stops a tiny frame that declares
/// a huge element count from allocating gigabytes. A decoded value can need more memory
/// than its encoding (a `TaskSpec` is 64 bytes in memory and at least 28 encoded; a
/// `(String, f32)` 32 and 12), so the budget is a multiple of the body length; every
/// payload in this crate stays below 3x, the round-trip tests hold it to that.
const CLAIM_FACTOR: u64 = 8;

/// Smallest claim budget, so small frames never trip over fixed overheads.
const MIN_CLAIM: u64 = 1 << 12;

/// Encodes `msg` as a bare body (no frame header): fixed-width little-endian integers,
/// as in every frame. For containers that do their own framing (the replay log).
pub fn encode_body<T: Encode>(msg: &T) -> Result<Vec<u8>, CoreError> {
    Ok(bincode::encode_to_vec(msg, config())?)
}

/// Appends `msg`, encoded as by [`encode_body`], to `out`.
pub fn encode_body_into<T: Encode>(msg: &T, out: &mut Vec<u8>) -> Result<(), CoreError> {
    bincode::encode_into_std_write(msg, out, config())?;
    Ok(())
}

/// Decodes exactly `body` as one `T`, letting bincode claim at most a small multiple of
/// `body.len()` bytes (rounded up to a power of four) before it allocates.
///
/// bincode's limit is a const generic, so the budget is picked from fixed tiers.
pub fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<T, CoreError> {
    let want = (body.len() as u64)
        .saturating_mul(CLAIM_FACTOR)
        .max(MIN_CLAIM);
    macro_rules! tiers {
        ($($budget:literal),* ; $top:literal) => {{
            $(if want <= $budget {
                return decode_with_budget::<T, $budget>(body);
            })*
            decode_with_budget::<T, $top>(body)
        }};
    }
    tiers!(
        4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456;
        1073741824
    )
}

fn decode_with_budget<T: Decode<()>, const BUDGET: usize>(body: &[u8]) -> Result<T, CoreError> {
    let (msg, used) = bincode::decode_from_slice(body, config().with_limit::<BUDGET>())?;
    if used != body.len() {
        return Err(
            bincode::error::DecodeError::Other("trailing bytes after the message body").into(),
        );
    }
    Ok(msg)
}

/// Encodes `msg` as `[version u16 LE][len u64 LE][body]`.
pub fn encode_frame<T: Encode>(msg: &T) -> Result<Vec<u8>, CoreError> {
    // Encoded in place after the header (the length is patched in), so a large payload
    // is not copied a second time.
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    encode_body_into(msg, &mut out)?;
    let len = (out.len() - HEADER_LEN) as u64;
    out[2..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Decodes a frame written by [`encode_frame`], checking version and size limit first.
///
/// The body must be exactly one message: unparsed bytes inside the declared length are an
/// error. Bytes after the frame (`bytes.len() > 10 + len`) are ignored. What bincode may
/// claim before allocating is bounded by the declared body length (at most 32 times it,
/// or 4 KiB for small frames), never by an element count read from the body.
pub fn decode_frame<T: Decode<()>>(bytes: &[u8], limit: u64) -> Result<T, CoreError> {
    if bytes.len() < HEADER_LEN {
        return Err(CoreError::Truncated {
            needed: HEADER_LEN as u64,
            had: bytes.len() as u64,
        });
    }
    let version = u16::from_le_bytes([bytes[0], bytes[1]]);
    if version != PROTOCOL_VERSION {
        return Err(CoreError::ProtocolVersion {
            found: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[2..HEADER_LEN]);
    let len = u64::from_le_bytes(len);
    if len > limit {
        return Err(CoreError::FrameTooLarge { len, limit });
    }
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < len {
        return Err(CoreError::Truncated {
            needed: len,
            had: body.len() as u64,
        });
    }
    decode_body(&body[..len as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};
    use proptest::prelude::*;

    fn sample() -> ScoredTrajectory {
        let task = TaskSpec {
            id: 3,
            prompt: "12+30".into(),
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
                breakdown: vec![("correct".into(), 1.0)],
            },
        }
    }

    #[test]
    fn scored_trajectory_round_trips() {
        let s = sample();
        let bytes = encode_frame(&s).unwrap();
        let back: ScoredTrajectory = decode_frame(&bytes, DEFAULT_FRAME_LIMIT).unwrap();
        assert_eq!(s, back);
    }

    #[test]
    fn wrong_version_and_oversize_are_rejected() {
        let mut bytes = encode_frame(&sample()).unwrap();
        assert!(matches!(
            decode_frame::<ScoredTrajectory>(&bytes, 8),
            Err(CoreError::FrameTooLarge { .. })
        ));
        bytes[0] = 99;
        assert!(matches!(
            decode_frame::<ScoredTrajectory>(&bytes, DEFAULT_FRAME_LIMIT),
            Err(CoreError::ProtocolVersion { found: 99, .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame::<ScoredTrajectory>(&bytes, 1 << 16);
        }

        #[test]
        fn truncations_are_errors(cut in 0usize..64) {
            let bytes = encode_frame(&sample()).unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode_frame::<ScoredTrajectory>(&bytes[..cut], DEFAULT_FRAME_LIMIT).is_err());
        }
    }
}
