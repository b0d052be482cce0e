//! Big-endian fields at byte offsets, as iSCSI headers (network byte order) and SCSI CDBs,
//! parameter lists and sense data all lay them out. Reads out of range give
//! `None`, never a panic: the bytes come from the peer.

/// The `N` bytes at `at`, if the buffer has them.
fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

pub fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    bytes_at(buf, at).map(u16::from_be_bytes)
}

pub fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    bytes_at(buf, at).map(u32::from_be_bytes)
}

pub fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    bytes_at(buf, at).map(u64::from_be_bytes)
}

/// Writes `value` big-endian into `buf[at..at + 2]`.
pub fn put_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian into `buf[at..at + 4]`.
pub fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian into `buf[at..at + 8]`.
pub fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

/// The 2-byte big-endian field that starts `field`: a CDB or parameter-list field whose bounds
/// the caller has already checked (the slice it passes is that check). Widened to u64, the unit
/// of SCSI LBAs, block counts and lengths.
pub fn be16(field: &[u8]) -> u64 {
    u16::from_be_bytes([field[0], field[1]]).into()
}

/// The 4-byte big-endian field that starts `field` (bounds checked by the caller, as `be16`).
pub fn be32(field: &[u8]) -> u64 {
    u32::from_be_bytes([field[0], field[1], field[2], field[3]]).into()
}

/// The 8-byte big-endian field that starts `field` (bounds checked by the caller, as `be16`).
pub fn be64(field: &[u8]) -> u64 {
    u64::from_be_bytes([field[0], field[1], field[2], field[3], field[4], field[5], field[6], field[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_outside() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u16_at(&b, 0), Some(0x0102));
        assert_eq!(u32_at(&b, 5), Some(0x0607_0809));
        assert_eq!(u64_at(&b, 1), Some(0x0203_0405_0607_0809));
        assert_eq!(u32_at(&b, 6), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
        let mut w = [0u8; 8];
        put_u32(&mut w, 2, 0xdead_beef);
        assert_eq!(w, [0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0]);
    }

    #[test]
    fn checked_fields_widen_to_u64() {
        let cdb = [0x88, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0x10, 0, 0, 0];
        assert_eq!(be64(&cdb[2..10]), 0x1_0000_0002);
        assert_eq!(be32(&cdb[10..14]), 0x1000);
        assert_eq!(be16(&cdb[12..14]), 0x1000);
    }
}
