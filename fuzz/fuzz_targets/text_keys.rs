//! `pdu::text::parse` and `TextAccumulator` on arbitrary data segments (RFC 7143 §6.1,
//! §11.10.2, §11.12.2).
//!
//! Invariants:
//! - every accepted pair obeys §6.1: key 1..=63 bytes of the key alphabet, value at most
//!   8192 bytes without NUL; an input yields at most one pair per two bytes;
//! - `parse(encode(pairs)) == pairs` (the encoder and the parser agree);
//! - the accumulator, fed the same bytes in arbitrary pieces, gives exactly `parse`'s answer
//!   and is idle afterwards; `split_for_pdus` pieces of the encoding come back whole.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pdu::text::{self, TextAccumulator, MAX_KEY_LEN, MAX_VALUE_LEN};
use pdu::DecodeError;

fn is_key_char(c: u8) -> bool {
    // RFC 7143 §6.1, plus '#' of public extension keys (X#name, §13.5.4).
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// Feeds `data` in pieces sized by a generator seeded with `seed`.
fn accumulate(data: &[u8], seed: u8) -> Result<Vec<(String, String)>, DecodeError> {
    let mut acc = TextAccumulator::default();
    let mut at = 0;
    let mut rng = seed as u32 | 1;
    loop {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let end = (at + (rng >> 16) as usize % 300).min(data.len());
        let last = end == data.len();
        let got = acc.push(&data[at..end], !last);
        if last {
            assert!(!acc.is_pending(), "accumulator still holds text after the last piece");
            return got.map(|all| all.expect("the last piece yields the pairs"));
        }
        assert_eq!(got, Ok(None), "a continued piece must only be buffered");
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = text::parse(data);
    if let Ok(pairs) = &parsed {
        assert!(pairs.len() <= data.len() / 2);
        for (key, value) in pairs {
            assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN, "key length {}", key.len());
            assert!(key.bytes().all(is_key_char), "bad key {key:?}");
            assert!(value.len() <= MAX_VALUE_LEN && !value.contains('\0'));
        }
        let encoded = text::encode(pairs);
        assert_eq!(text::parse(&encoded).as_ref(), Ok(pairs), "parse(encode(x)) != x");
        let max = 1 + data.first().copied().unwrap_or(0) as usize;
        let pieces = text::split_for_pdus(&encoded, max);
        assert!(pieces.iter().all(|p| p.len() <= max));
        let mut acc = TextAccumulator::default();
        let mut result = None;
        for (i, piece) in pieces.iter().enumerate() {
            result = acc.push(piece, i + 1 < pieces.len()).expect("encoded text is valid");
        }
        assert_eq!(result.as_ref(), Some(pairs));
    } else if let Err(e) = &parsed {
        assert!(matches!(e, DecodeError::BadText(_)), "parse error {e:?}");
    }
    let seed = data.last().copied().unwrap_or(0);
    assert_eq!(accumulate(data, seed), parsed, "piecewise accumulation differs from parse");
});
