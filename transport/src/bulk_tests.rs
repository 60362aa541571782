//! Pure tests of the blob frame codec: no sockets.

use proptest::prelude::*;

use super::*;

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A frame with a hand-written header and raw chunk records `(len, crc, bytes)`.
fn frame(header: BlobHeader, chunks: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let mut out = header.encode().to_vec();
    for (len, crc, bytes) in chunks {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

#[test]
fn round_trips_whole_and_byte_by_byte() {
    for (n, chunk) in [
        (0, 1),
        (1, 1),
        (10, 3),
        (4096, 4096),
        (4097, 4096),
        (1000, 7),
    ] {
        let data = payload(n);
        let enc = encode(9, &data, chunk).unwrap();
        assert_eq!(decode(&enc, n as u64).unwrap(), (9, data.clone()));

        let mut dec = BlobDecoder::new(n as u64);
        for b in &enc {
            assert!(!dec.is_done());
            dec.push(std::slice::from_ref(b)).unwrap();
        }
        assert!(dec.is_done());
        assert_eq!(dec.header().unwrap().total, n as u64);
        assert_eq!(dec.finish().unwrap(), (9, data));
    }
}

#[test]
fn rejects_bad_magic() {
    let mut enc = encode(1, b"hello", 2).unwrap();
    enc[0] = b'X';
    let err = decode(&enc, 100).unwrap_err();
    assert!(matches!(err, TransportError::BadMagic { .. }), "{err}");
}

#[test]
fn rejects_wrong_version() {
    let mut enc = encode(1, b"hello", 2).unwrap();
    enc[5] = 2;
    let err = decode(&enc, 100).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::UnsupportedVersion {
                found: 2,
                expected: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_total_over_limit_before_allocating() {
    // u64::MAX bytes could never be allocated: reaching `Vec::with_capacity` would abort.
    let header = BlobHeader {
        id: 1,
        total: u64::MAX,
        chunk_size: 1 << 20,
        crc: 0,
    };
    let err = decode(&header.encode(), 1 << 30).unwrap_err();
    assert!(
        matches!(err, TransportError::BlobTooLarge { total: u64::MAX, limit } if limit == 1 << 30),
        "{err}"
    );
    // And a blob one byte over a small limit.
    let err = decode(&encode(1, &payload(11), 4).unwrap(), 10).unwrap_err();
    assert!(
        matches!(err, TransportError::BlobTooLarge { total: 11, .. }),
        "{err}"
    );
}

#[test]
fn rejects_corrupted_chunk() {
    let data = payload(100);
    let mut enc = encode(1, &data, 30).unwrap();
    // Byte 5 of chunk 1: header, chunk 0 (8 + 30 bytes), chunk 1's header (8), then 5 in.
    let at = HEADER_LEN + CHUNK_HEADER_LEN + 30 + CHUNK_HEADER_LEN + 5;
    enc[at] ^= 0x01;
    let err = decode(&enc, 100).unwrap_err();
    assert!(
        matches!(err, TransportError::ChunkCrcMismatch { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn rejects_blob_crc_mismatch() {
    let mut enc = encode(1, &payload(50), 16).unwrap();
    enc[26] ^= 0xff; // the blob crc field of the header
    let err = decode(&enc, 100).unwrap_err();
    assert!(
        matches!(err, TransportError::BlobCrcMismatch { .. }),
        "{err}"
    );
}

#[test]
fn rejects_every_truncation() {
    let enc = encode(3, &payload(40), 16).unwrap();
    for cut in 0..enc.len() {
        let err = decode(&enc[..cut], 100).unwrap_err();
        assert!(
            matches!(err, TransportError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    let err = decode(&enc[..HEADER_LEN + 3], 100).unwrap_err();
    assert!(err.to_string().contains("chunk header"), "{err}");
}

#[test]
fn rejects_chunk_longer_than_chunk_size() {
    let data = payload(8);
    let header = BlobHeader {
        id: 1,
        total: 8,
        chunk_size: 4,
        crc: crc32fast::hash(&data),
    };
    let enc = frame(header, &[(8, crc32fast::hash(&data), &data)]);
    let err = decode(&enc, 100).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::ChunkTooLong {
                index: 0,
                len: 8,
                chunk_size: 4
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_chunk_past_total_empty_chunk_zero_chunk_size_and_trailing_bytes() {
    let data = payload(8);
    let crc = crc32fast::hash(&data);
    let header = BlobHeader {
        id: 1,
        total: 5,
        chunk_size: 8,
        crc,
    };
    let err = decode(&frame(header, &[(8, crc, &data)]), 100).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::ChunkOverrun {
                len: 8,
                remaining: 5,
                ..
            }
        ),
        "{err}"
    );

    let header = BlobHeader { total: 8, ..header };
    let err = decode(&frame(header, &[(0, 0, &[])]), 100).unwrap_err();
    assert!(
        matches!(err, TransportError::EmptyChunk { index: 0 }),
        "{err}"
    );

    let zero = BlobHeader {
        chunk_size: 0,
        ..header
    };
    let err = decode(&zero.encode(), 100).unwrap_err();
    assert!(
        matches!(err, TransportError::ZeroChunkSize { total: 8 }),
        "{err}"
    );

    let mut enc = encode(1, &data, 8).unwrap();
    enc.extend_from_slice(b"xx");
    let err = decode(&enc, 100).unwrap_err();
    assert!(
        matches!(err, TransportError::TrailingBytes { extra: 2 }),
        "{err}"
    );
}

#[test]
fn encode_rejects_bad_chunk_sizes() {
    assert!(matches!(
        encode(1, b"x", 0),
        Err(TransportError::InvalidChunkSize(0))
    ));
    #[cfg(target_pointer_width = "64")]
    assert!(matches!(
        encode(1, b"x", u32::MAX as usize + 1),
        Err(TransportError::InvalidChunkSize(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   limit in 0u64..1_000_000) {
        let _ = decode(&bytes, limit);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        total in 0u64..2048, chunk_size in 0u32..64, crc: u32,
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut enc = BlobHeader { id: 5, total, chunk_size, crc }.encode().to_vec();
        enc.extend_from_slice(&rest);
        let _ = decode(&enc, 4096);
    }

    #[test]
    fn a_failed_decoder_stays_failed(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                     more in proptest::collection::vec(any::<u8>(), 1..256)) {
        let mut dec = BlobDecoder::new(1 << 16);
        if dec.push(&bytes).is_err() {
            prop_assert!(matches!(dec.push(&more), Err(TransportError::DecoderFailed)));
            prop_assert!(matches!(dec.finish(), Err(TransportError::DecoderFailed)));
        }
    }

    #[test]
    fn round_trips_in_any_split(data in proptest::collection::vec(any::<u8>(), 0..3000),
                                chunk in 1usize..700, id: u64,
                                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let enc = encode(id, &data, chunk).unwrap();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(enc.len() + 1)).collect();
        points.sort_unstable();
        let mut dec = BlobDecoder::new(data.len() as u64);
        let mut from = 0;
        for p in points.into_iter().chain([enc.len()]) {
            dec.push(&enc[from..p]).unwrap();
            from = p;
        }
        prop_assert_eq!(dec.finish().unwrap(), (id, data));
    }

    #[test]
    fn a_flipped_byte_never_yields_other_data(data in proptest::collection::vec(any::<u8>(), 1..600),
                                              chunk in 1usize..100, at: prop::sample::Index, bit in 0u8..8) {
        let mut enc = encode(1, &data, chunk).unwrap();
        let i = at.index(enc.len());
        enc[i] ^= 1 << bit;
        if let Ok((_, got)) = decode(&enc, 1 << 20) {
            prop_assert_eq!(got, data);
        }
    }
}
