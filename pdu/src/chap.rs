//! CHAP with MD5 (RFC 7143 §12.1.3, RFC 1994 §4.1) and the hexadecimal binary values its keys
//! carry (RFC 7143 §6.1): the one copy both ends of a login use (the target's authenticator, the
//! initiator crate, the fuzzers).

use md5::{Digest, Md5};

/// CHAP_A value for MD5 (RFC 7143 §12.1.3, IANA PPP algorithm 5).
pub const ALGORITHM_MD5: &str = "5";
/// Longest CHAP_C we accept: RFC 7143 §12.1.3 lets the target bound it; 1024 bytes is generous.
const MAX_BINARY_LEN: usize = 1024;

/// RFC 1994 §4.1: the response is MD5(identifier || secret || challenge).
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([id]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// RFC 7143 §6.1 binary value in hexadecimal form: `0x` then two digits per byte.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// RFC 7143 §6.1 hexadecimal binary value (`0x…`/`0X…`, an odd digit count has an implied
/// leading zero); `None` for anything else or a value over 1024 bytes.
pub fn decode_hex(value: &str) -> Option<Vec<u8>> {
    let digits = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X"))?;
    if digits.is_empty() || digits.len() > 2 * MAX_BINARY_LEN || !digits.is_ascii() {
        return None;
    }
    let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_string() };
    (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values() {
        assert_eq!(decode_hex("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_hex("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_hex("0xzz"), None);
        assert_eq!(decode_hex("abcd"), None);
        assert_eq!(decode_hex("0x"), None);
        assert_eq!(decode_hex(&format!("0x{}", "00".repeat(1025))), None);
        assert_eq!(encode_hex(&[0, 0xff, 0x10]), "0x00ff10");
    }

    #[test]
    fn response_is_rfc_1994_md5() {
        // MD5(0x01 || "secret" || 0x00..0x0f), computed independently with Python's hashlib.
        let challenge: Vec<u8> = (0..16).collect();
        assert_eq!(encode_hex(&response(1, b"secret", &challenge)), "0x740e86463bda3a4d7017d6e0fba0699d");
    }
}
