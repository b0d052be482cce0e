//! Text key=value data segments (RFC 7143 §6.1) used by Login and Text PDUs, and their
//! continuation across PDUs with the C bit (§11.10.2, §11.12.2).

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::{take_till, take_while1};
use nom::character::complete::char;
use nom::{IResult, Parser};

use crate::error::DecodeError;

/// Longest key (RFC 7143 §6.1: "key names ... MUST NOT exceed 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest value accepted (RFC 7143 §6.1 allows 255 bytes generally and up to 8192 for a few
/// keys such as CHAP_C/CHAP_R in hex form, §12.1.3).
pub const MAX_VALUE_LEN: usize = 8192;
/// Upper bound of a text exchange spread over several PDUs. Nothing legitimate comes close;
/// the bound keeps a peer from making us buffer without limit.
pub const MAX_TEXT_TOTAL: usize = 64 * 1024;

fn is_key_char(c: u8) -> bool {
    // RFC 7143 §6.1: key-name characters are letters, digits, '.', '-', '+', '@', '_'; '#' also
    // appears in public extension keys ("X#name", §13.5.4), which are answered NotUnderstood.
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

fn pair(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (rest, key) = take_while1(is_key_char).parse(input)?;
    let (rest, _) = char('=').parse(rest)?;
    let (rest, value) = take_till(|c| c == 0).parse(rest)?;
    Ok((rest, (key, value)))
}

/// Parses a complete key=value list. Each pair ends with a NUL; a last pair without its NUL is
/// accepted (some initiators omit it). Empty pairs from extra NULs (padding) are skipped.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest[0] == 0 {
            rest = &rest[1..];
            continue;
        }
        let (after, (key, value)) = pair(rest).map_err(|_| DecodeError::BadText("expected key=value"))?;
        if key.len() > MAX_KEY_LEN {
            return Err(DecodeError::BadText("key longer than 63 bytes"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(DecodeError::BadText("value too long"));
        }
        let key = std::str::from_utf8(key).map_err(|_| DecodeError::BadText("key not UTF-8"))?;
        // RFC 7143 §6.1: values are UTF-8 text.
        let value = std::str::from_utf8(value).map_err(|_| DecodeError::BadText("value not UTF-8"))?;
        out.push((key.to_owned(), value.to_owned()));
        rest = after;
    }
    Ok(out)
}

/// Encodes pairs as `key=value\0` ...
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Bytes {
    let mut b = BytesMut::new();
    for (k, v) in pairs {
        b.put_slice(k.as_ref().as_bytes());
        b.put_u8(b'=');
        b.put_slice(v.as_ref().as_bytes());
        b.put_u8(0);
    }
    b.freeze()
}

/// Splits an encoded text into pieces of at most `max` bytes for a sequence of PDUs, the C bit
/// set on all but the last (RFC 7143 §11.10.2).
pub fn split_for_pdus(text: &Bytes, max: usize) -> Vec<Bytes> {
    if text.is_empty() {
        return vec![Bytes::new()];
    }
    (0..text.len()).step_by(max.max(1)).map(|at| text.slice(at..(at + max).min(text.len()))).collect()
}

/// Gathers the data segments of a text exchange sent with the C bit (RFC 7143 §11.10.2) until
/// the last piece arrives.
#[derive(Default)]
pub struct TextAccumulator {
    buf: BytesMut,
}

impl TextAccumulator {
    /// Adds a piece. Returns the whole parsed list when `more` is false.
    pub fn push(&mut self, piece: &[u8], more: bool) -> Result<Option<Vec<(String, String)>>, DecodeError> {
        if self.buf.len() + piece.len() > MAX_TEXT_TOTAL {
            self.buf.clear();
            return Err(DecodeError::BadText("text exchange exceeds 64 KiB"));
        }
        self.buf.extend_from_slice(piece);
        if more {
            return Ok(None);
        }
        let all = self.buf.split();
        parse(&all).map(Some)
    }

    pub fn is_pending(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_login_keys() {
        let data = b"InitiatorName=iqn.2004-10.com.ubuntu:01:abc\0SessionType=Normal\0AuthMethod=None\0\0\0";
        let kv = parse(data).unwrap();
        assert_eq!(kv.len(), 3);
        assert_eq!(kv[0], ("InitiatorName".into(), "iqn.2004-10.com.ubuntu:01:abc".into()));
        assert_eq!(kv[2].1, "None");
    }

    #[test]
    fn accepts_missing_final_nul_and_empty_value() {
        let kv = parse(b"A=1\0B=").unwrap();
        assert_eq!(kv, vec![("A".into(), "1".into()), ("B".into(), "".into())]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"NoEquals\0").is_err());
        assert!(parse(b"=value\0").is_err());
        assert!(parse(b"Bad Key=1\0").is_err());
        assert_eq!(parse(b"X#Ext=1\0").unwrap(), vec![("X#Ext".into(), "1".into())]);
        let long_key = format!("{}=1", "K".repeat(64));
        assert!(parse(long_key.as_bytes()).is_err());
        assert!(parse(b"K=\xff\xfe\0").is_err());
    }

    #[test]
    fn continuation_joins_pieces_split_mid_pair() {
        let text = encode(&[("SendTargets", "All"), ("X-long", &"v".repeat(100))]);
        let pieces = split_for_pdus(&text, 7);
        let mut acc = TextAccumulator::default();
        let n = pieces.len();
        let mut result = None;
        for (i, p) in pieces.iter().enumerate() {
            result = acc.push(p, i + 1 < n).unwrap();
            assert_eq!(result.is_some(), i + 1 == n);
        }
        let kv = result.unwrap();
        assert_eq!(kv[0], ("SendTargets".into(), "All".into()));
        assert_eq!(kv[1].1.len(), 100);
    }

    #[test]
    fn continuation_is_bounded() {
        let mut acc = TextAccumulator::default();
        let chunk = vec![b'a'; 8192];
        let mut err = false;
        for _ in 0..20 {
            if acc.push(&chunk, true).is_err() {
                err = true;
                break;
            }
        }
        assert!(err);
    }
}
