//! Value formats of login text keys (RFC 7143 §6.1).

/// RFC 7143 §6.1: key names are at most 63 bytes.
pub const MAX_KEY_LEN: usize = 63;
/// RFC 7143 §6.1: a value is at most 255 bytes unless the key's definition says otherwise.
pub const MAX_VALUE_LEN: usize = 255;
/// RFC 7143 §6.1: large-binary-values (CHAP_C, CHAP_R) may be encoded in up to 8192 bytes.
pub const MAX_LARGE_VALUE_LEN: usize = 8192;

/// Keys whose values are large-binary-values (RFC 7143 §12.1.3).
fn is_large_binary_key(key: &str) -> bool {
    matches!(key, "CHAP_C" | "CHAP_R")
}

/// RFC 7143 §6.1: key-name characters are letters, digits, '.', '-', '+', '@', '_'
/// (and '#' in the private X# format, RFC 7143 §13.22).
fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// Syntax and size check of one pair; false means the request is malformed.
pub fn pair_is_well_formed(key: &str, value: &str) -> bool {
    let value_limit = if is_large_binary_key(key) { MAX_LARGE_VALUE_LEN } else { MAX_VALUE_LEN };
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(is_key_char)
        && value.len() <= value_limit
        && !value.contains('\0')
}

/// numerical-value: decimal or 0x-hex constant, below 2^64 (RFC 7143 §6.1).
pub fn parse_number(value: &str) -> Option<u64> {
    if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// boolean-value: exactly "Yes" or "No" (RFC 7143 §6.1).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

pub fn bool_text(value: bool) -> &'static str {
    if value {
        "Yes"
    } else {
        "No"
    }
}

/// Values of a list-valued key, in the proposer's order (RFC 7143 §6.2.1).
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',')
}

/// Decode a large-binary-value: "0x"/"0X" hex or "0b"/"0B" base64 (RFC 7143 §6.1).
/// Returns None when malformed, empty, or longer than `max_decoded` bytes.
pub fn decode_binary(value: &str, max_decoded: usize) -> Option<Vec<u8>> {
    let bytes = if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        decode_hex(hex, max_decoded)?
    } else if let Some(b64) = value.strip_prefix("0b").or_else(|| value.strip_prefix("0B")) {
        decode_base64(b64, max_decoded)?
    } else {
        return None;
    };
    if bytes.is_empty() {
        None
    } else {
        Some(bytes)
    }
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An odd digit count is read as if a leading zero nibble were present.
fn decode_hex(digits: &str, max_decoded: usize) -> Option<Vec<u8>> {
    let digits = digits.as_bytes();
    if digits.len().div_ceil(2) > max_decoded {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let (head, rest) = digits.split_at(digits.len() % 2);
    if let Some(&c) = head.first() {
        out.push(hex_nibble(c)?);
    }
    for pair in rest.chunks_exact(2) {
        out.push(hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?);
    }
    Some(out)
}

fn base64_sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Base64 per RFC 4648 §4 with mandatory '=' padding (RFC 7143 §6.1 refers to it).
fn decode_base64(text: &str, max_decoded: usize) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) || text.len() / 4 * 3 > max_decoded + 2 {
        return None;
    }
    let padding = text.iter().rev().take_while(|&&c| c == b'=').count();
    if padding > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let body = &text[..text.len() - padding];
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        acc = acc << 6 | u32::from(base64_sextet(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, otherwise the text is not canonical base64.
    if acc != 0 || out.len() > max_decoded {
        return None;
    }
    Some(out)
}

/// Encode as a "0x" hex constant, the form every initiator parses (RFC 7143 §6.1).
pub use pdu::chap::encode_hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_decimal_and_hex() {
        assert_eq!(parse_number("262144"), Some(262_144));
        assert_eq!(parse_number("0x40000"), Some(262_144));
        assert_eq!(parse_number("0X10"), Some(16));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("99999999999999999999999"), None);
    }

    #[test]
    fn booleans_are_case_sensitive() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn hex_binary_round_trip() {
        let bytes = [0x00, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(encode_hex(&bytes), "0x00deadbeef");
        assert_eq!(decode_binary("0x00deadbeef", 1024), Some(bytes.to_vec()));
        assert_eq!(decode_binary("0XABC", 1024), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0xzz", 1024), None);
        assert_eq!(decode_binary("0x", 1024), None);
        assert_eq!(decode_binary("deadbeef", 1024), None);
        assert_eq!(decode_binary("0x0102", 1), None);
    }

    #[test]
    fn base64_binary() {
        assert_eq!(decode_binary("0bAQID", 1024), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0bAQI=", 1024), Some(vec![1, 2]));
        assert_eq!(decode_binary("0bAQ==", 1024), Some(vec![1]));
        assert_eq!(decode_binary("0BAQ==", 1024), Some(vec![1]));
        assert_eq!(decode_binary("0bAR==", 1024), None, "non-zero pad bits");
        assert_eq!(decode_binary("0bAQ=", 1024), None, "length not a multiple of 4");
        assert_eq!(decode_binary("0bA===", 1024), None);
        assert_eq!(decode_binary("0bAQID", 2), None, "over the decoded bound");
    }

    #[test]
    fn pair_bounds() {
        assert!(pair_is_well_formed("MaxBurstLength", "262144"));
        assert!(!pair_is_well_formed(&"K".repeat(64), "1"));
        assert!(pair_is_well_formed(&"K".repeat(63), "1"));
        assert!(!pair_is_well_formed("TargetAlias", &"a".repeat(256)));
        assert!(pair_is_well_formed("CHAP_C", &"a".repeat(8192)));
        assert!(!pair_is_well_formed("CHAP_C", &"a".repeat(8193)));
        assert!(!pair_is_well_formed("", "x"));
        assert!(!pair_is_well_formed("Bad Key", "x"));
        assert!(pair_is_well_formed("X#com.example", "x"));
    }
}
