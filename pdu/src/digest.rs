//! CRC32C header and data digests (RFC 7143 §11.2.3-4, Appendix B) and 4-byte padding
//! (§11.2.5). The `crc32c` crate uses the SSE4.2/ARMv8 instruction when the CPU has it.

use bytes::Bytes;

/// Number of pad bytes that bring `len` to a multiple of 4 (RFC 7143 §11.2.5).
pub fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// Digest of a header: the BHS plus any AHS (RFC 7143 §11.2.3).
pub fn header_digest(header: &[u8]) -> u32 {
    crc32c::crc32c(header)
}

/// Digest of a data segment including its padding (RFC 7143 §11.2.4), computed over the
/// segment's pieces without joining them.
pub fn data_digest<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, len: usize) -> u32 {
    let mut crc = 0;
    for p in pieces {
        crc = crc32c::crc32c_append(crc, p);
    }
    const ZEROS: [u8; 3] = [0; 3];
    crc32c::crc32c_append(crc, &ZEROS[..pad_len(len)])
}

/// Digest of one contiguous data segment (plus padding).
pub fn data_digest_of(data: &Bytes) -> u32 {
    data_digest([&data[..]], data.len())
}

/// Digests appear on the wire in little-endian byte order (RFC 7143 §11.2.3 and Appendix B.4:
/// the CRC is transmitted least significant byte first).
pub fn digest_bytes(crc: u32) -> [u8; 4] {
    crc.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_test_vectors() {
        // RFC 7143 Appendix B.4: 32 bytes of zeros -> CRC 0x8a9136aa; of 0xff -> 0x62a8ab43.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c::crc32c(&inc), 0x46dd_794e);
    }

    #[test]
    fn split_digest_equals_whole() {
        let whole = Bytes::from_static(b"hello, iscsi!");
        let a = &whole[..5];
        let b = &whole[5..];
        assert_eq!(data_digest([a, b], whole.len()), data_digest_of(&whole));
        assert_eq!(pad_len(13), 3);
        assert_eq!(pad_len(16), 0);
    }
}
