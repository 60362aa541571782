//! The train / held-out split: a stable hash of the problem text, never of the run seed.

/// Salt mixed into the split hash, so the split is independent of other FNV uses.
const SPLIT_SALT: &[u8] = b"troupe-split-v1\0";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Which side of the train / held-out split a problem falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The policy may train on this problem.
    Train,
    /// Reserved for evaluation; training must never see it.
    Heldout,
}

/// FNV-1a, 64-bit, continuing from `state`.
fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// The split of `prompt`: held out iff `FNV-1a-64(salt ‖ prompt) % 1000 < heldout_per_mille`.
///
/// Depends on the prompt text only, so every run, seed and machine agrees on it.
pub fn split_of(prompt: &str, heldout_per_mille: u32) -> Split {
    let h = fnv1a(fnv1a(FNV_OFFSET, SPLIT_SALT), prompt.as_bytes());
    if h % 1000 < u64::from(heldout_per_mille) {
        Split::Heldout
    } else {
        Split::Train
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn extremes() {
        assert_eq!(split_of("sort 123", 0), Split::Train);
        assert_eq!(split_of("sort 123", 1000), Split::Heldout);
    }

    #[test]
    fn split_is_a_pure_function_of_the_text() {
        for p in ["sort 3914", "347+589", ""] {
            assert_eq!(split_of(p, 100), split_of(p, 100));
        }
    }
}
