//! Structured values from `arbitrary`: encode, decode, compare; then edit the encoded
//! bytes and decode again, which must never panic (and must be canonical if it succeeds).
#![no_main]

use arbitrary::Arbitrary;
use bincode::{Decode, Encode};
use libfuzzer_sys::fuzz_target;
use troupe_core::ScoredTrajectory;
use troupe_core::protocol::{StepReport, Work};
use troupe_core::wire::{DEFAULT_FRAME_LIMIT, decode_frame, encode_frame};
use troupe_fuzz::{AScored, AStep, AWork, Mutation, check, check_all};

#[derive(Debug, Arbitrary)]
enum Payload {
    Scored(AScored),
    Work(AWork),
    Step(AStep),
}

#[derive(Debug, Arbitrary)]
struct Input {
    payload: Payload,
    mutations: Vec<Mutation>,
}

fn round_trip<T>(value: &T) -> Vec<u8>
where
    T: Encode + Decode<()> + PartialEq + std::fmt::Debug,
{
    let bytes = encode_frame(value).expect("encodes");
    let back: T = decode_frame(&bytes, DEFAULT_FRAME_LIMIT).expect("a valid frame decodes");
    // Bit-exact, NaN payloads included.
    assert_eq!(encode_frame(&back).unwrap(), bytes);
    #[allow(clippy::eq_op)]
    if value == value {
        assert_eq!(&back, value);
    }
    bytes
}

fuzz_target!(|input: Input| {
    let (mut bytes, decode_as_own): (Vec<u8>, fn(&[u8])) = match input.payload {
        Payload::Scored(v) => (round_trip(&ScoredTrajectory::from(v)), |b| {
            check::<ScoredTrajectory>(b);
        }),
        Payload::Work(v) => (round_trip(&Work::from(v)), |b| {
            check::<Work>(b);
        }),
        Payload::Step(v) => (round_trip(&StepReport::from(v)), |b| {
            check::<StepReport>(b);
        }),
    };
    if input.mutations.is_empty() {
        return;
    }
    for m in &input.mutations {
        m.apply(&mut bytes);
    }
    decode_as_own(&bytes);
    check_all(&bytes);
});
