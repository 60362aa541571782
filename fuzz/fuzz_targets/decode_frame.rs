//! Arbitrary bytes into `decode_frame` for every payload type, twice: as a whole frame
//! (header included), and as a body behind a valid header so the body decoders are
//! reached on every run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_fuzz::{check_all, framed};

fuzz_target!(|data: &[u8]| {
    check_all(data);
    check_all(&framed(data));
});
