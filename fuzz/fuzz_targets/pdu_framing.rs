//! Arbitrary bytes as a received stream, fed to `pdu::Framer` in arbitrary chunks with each of
//! the four digest settings; every framed PDU goes through both decoders and back.
//!
//! Invariants:
//! - framing does not depend on how the stream is chunked (same PDUs, same error, same offset);
//! - each PDU is exactly the bytes of the stream at its offset (BHS, data segment), its length
//!   matches the layout of its BHS, and the receive buffer never grows past one bounded PDU;
//! - errors are the right ones: DataSegmentTooLong only above the limit, HeaderDigest only
//!   with header digests on, and no data-digest failure without data digests;
//! - a decoded PDU re-encodes to bytes that frame with the same digests into one PDU whose
//!   digests check, that decodes again, and re-encodes to the very same bytes (fixpoint).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pdu::msg::{InitiatorPdu, TargetPdu};
use pdu::{DecodeError, Digests, Framer, OutPdu, Pdu, BHS_LEN};

/// Small enough to let the fuzzer cross it, large enough for real data segments.
const MAX_DATA_SEGMENT: u32 = 4096;
/// Largest PDU the framer may buffer: BHS + 255 AHS words + digests + segment + padding.
const MAX_PDU: usize = BHS_LEN + 255 * 4 + 4 + MAX_DATA_SEGMENT as usize + 3 + 4;

const ALL_DIGESTS: [Digests; 4] = [
    Digests { header: false, data: false },
    Digests { header: true, data: false },
    Digests { header: false, data: true },
    Digests { header: true, data: true },
];

struct Framed {
    pdus: Vec<(usize, Pdu)>,
    error: Option<(usize, DecodeError)>,
}

/// Frames `stream` fed in chunks whose sizes come from `chunk_seed` (0 = all at once).
fn frame(framer: &Framer, stream: &[u8], chunk_seed: u16) -> Framed {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut out = Framed { pdus: Vec::new(), error: None };
    let mut rng = chunk_seed as u32;
    while fed < stream.len() {
        let step = if chunk_seed == 0 {
            stream.len()
        } else {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (rng >> 16) as usize % 97
        };
        let end = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(pdu)) => {
                    let at = consumed;
                    consumed = fed - buf.len();
                    out.pdus.push((at, pdu));
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some((consumed, e));
                    return out;
                }
            }
            // No unbounded buffering: room is reserved for at most one bounded PDU (BytesMut
            // may double), never for what an oversized DataSegmentLength claims.
            assert!(buf.capacity() <= 4 * (MAX_PDU + 97) + 2 * stream.len(), "buffer grew to {}", buf.capacity());
        }
    }
    out
}

fn check_pdu(framer: &Framer, stream: &[u8], at: usize, pdu: &Pdu) {
    let bhs = pdu.bhs();
    let layout = framer.layout(&bhs).expect("a framed PDU has a valid layout");
    assert_eq!(&pdu.header_bytes()[..], &stream[at..at + BHS_LEN]);
    assert_eq!(pdu.ahs(), &stream[at + BHS_LEN..at + BHS_LEN + layout.ahs_len]);
    assert_eq!(pdu.data_len(), bhs.data_segment_len() as usize);
    assert!(pdu.data_len() <= MAX_DATA_SEGMENT as usize);
    let data_at = at + BHS_LEN + layout.ahs_len + if framer.digests.header { 4 } else { 0 };
    assert_eq!(&pdu.data()[..], &stream[data_at..data_at + pdu.data_len()]);
    if !framer.digests.data {
        assert!(pdu.data_digest_ok());
    }
    if let Ok(m) = InitiatorPdu::decode(pdu) {
        check_reencode(framer, m.encode(), |p| InitiatorPdu::decode(p).map(|m| m.encode()));
    }
    if let Ok(m) = TargetPdu::decode(pdu) {
        check_reencode(framer, m.encode(), |p| TargetPdu::decode(p).map(|m| m.encode()));
    }
}

fn check_reencode(framer: &Framer, out: OutPdu, redecode: impl Fn(&Pdu) -> Result<OutPdu, DecodeError>) {
    let wire = out.to_bytes(framer.digests);
    assert_eq!(wire.len(), out.wire_len(framer.digests));
    let big = Framer { digests: framer.digests, max_data_segment: pdu::MAX_DATA_SEGMENT_LEN };
    let mut buf = BytesMut::from(&wire[..]);
    let again = big.decode(&mut buf).expect("re-encoded PDU frames").expect("whole PDU");
    assert!(buf.is_empty(), "re-encoded PDU has trailing bytes");
    assert!(again.data_digest_ok());
    let second = redecode(&again).expect("a re-encoded PDU decodes again");
    assert_eq!(second.to_bytes(framer.digests), wire, "encode(decode(x)) is not a fixpoint");
}

fuzz_target!(|stream: &[u8]| {
    // The chunking seed comes from the input's last bytes (left in the stream): the fuzzer
    // steers it, and a raw captured PDU is still a meaningful input.
    let seed = match stream {
        [.., a, b] => u16::from_le_bytes([*a, *b]) | 1,
        _ => 1,
    };
    for digests in ALL_DIGESTS {
        let framer = Framer { digests, max_data_segment: MAX_DATA_SEGMENT };
        let whole = frame(&framer, stream, 0);
        let chunked = frame(&framer, stream, seed);
        assert_eq!(whole.pdus.len(), chunked.pdus.len(), "chunking changed the PDU count");
        assert_eq!(whole.error, chunked.error, "chunking changed the error");
        for ((at, p), (at2, q)) in whole.pdus.iter().zip(&chunked.pdus) {
            assert_eq!(at, at2);
            assert_eq!(p.header_bytes(), q.header_bytes());
            assert_eq!(p.data(), q.data());
            assert_eq!(p.data_digest_ok(), q.data_digest_ok());
            check_pdu(&framer, stream, *at, p);
        }
        if let Some((at, e)) = &whole.error {
            let bhs = pdu::Bhs::from_slice(&stream[*at..]).expect("errors come after a whole BHS");
            match e {
                DecodeError::DataSegmentTooLong { len, max } => {
                    assert_eq!((*len, *max), (bhs.data_segment_len(), MAX_DATA_SEGMENT));
                    assert!(*len > *max);
                }
                DecodeError::HeaderDigest => assert!(digests.header),
                other => panic!("framing error {other:?} is not a framing error"),
            }
        }
    }
});
