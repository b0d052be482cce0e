//! The third-party copy VPD page's descriptors for offloaded data transfer (inquiry.rs puts
//! them on page 8Fh): every limit here is one odx.rs and rod_token.rs enforce.

use super::odx::{self, MAX_RANGE_DESCRIPTORS, MAX_TOKEN_BYTES, OPTIMAL_TRANSFER_BYTES};
use super::rod_status;
use super::rod_token::{self, DEFAULT_INACTIVITY_SECS, MAX_INACTIVITY_SECS, MAX_LIFETIME_SECS};

/// SBC-3 §6.6.6.2 Block Device ROD Token Limits (descriptor 0000h), body after the 4-byte
/// header: MAXIMUM RANGE DESCRIPTORS, MAXIMUM and DEFAULT INACTIVITY TIMEOUT (seconds),
/// MAXIMUM TOKEN TRANSFER SIZE and OPTIMAL TRANSFER COUNT (logical blocks).
pub(crate) fn block_device_rod_token_limits(block_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[6..8].copy_from_slice(&MAX_RANGE_DESCRIPTORS.to_be_bytes());
    b[8..12].copy_from_slice(&MAX_INACTIVITY_SECS.to_be_bytes());
    b[12..16].copy_from_slice(&DEFAULT_INACTIVITY_SECS.to_be_bytes());
    b[16..24].copy_from_slice(&odx::max_token_blocks(block_size).to_be_bytes());
    b[24..32].copy_from_slice(&(OPTIMAL_TRANSFER_BYTES / block_size as u64).to_be_bytes());
    b
}

/// SPC-4 §7.8.17.8 ROD Token Features (0106h): no remote tokens (REMOTE TOKENS 0: a token is
/// honoured only by this target), the token lifetimes, and the block ROD device type specific
/// features descriptor.
pub(crate) fn rod_token_features() -> Vec<u8> {
    let mut b = vec![0u8; 44];
    b[12..16].copy_from_slice(&1u32.to_be_bytes()); // MINIMUM TOKEN LIFETIME: 1 s inactivity
    b[16..20].copy_from_slice(&MAX_LIFETIME_SECS.to_be_bytes());
    b[20..24].copy_from_slice(&MAX_INACTIVITY_SECS.to_be_bytes());
    // Block ROD device type specific features descriptor: peripheral device type 00h, length
    // 2Ch; granularity one block; at most MAX_TOKEN_BYTES per ROD; optimal transfer sizes.
    let mut block = vec![0u8; 48];
    block[3] = 0x2C;
    block[6..8].copy_from_slice(&1u16.to_be_bytes());
    block[8..16].copy_from_slice(&MAX_TOKEN_BYTES.to_be_bytes());
    for at in [16, 24, 32] {
        block[at..at + 8].copy_from_slice(&OPTIMAL_TRANSFER_BYTES.min(MAX_TOKEN_BYTES).to_be_bytes());
    }
    b[42..44].copy_from_slice(&(block.len() as u16).to_be_bytes());
    b.extend(block);
    b
}

/// SPC-4 §7.8.17.9 Supported ROD Token and ROD Types (0108h), ascending by type: access upon
/// reference and point in time (change vulnerable), made and accepted here (TOKEN_OUT,
/// TOKEN_IN); block device zero, accepted only. Point in time is preferred (the default).
pub(crate) fn supported_rod_types(point_in_time: bool) -> Vec<u8> {
    let all = [
        (rod_token::ROD_ACCESS_UPON_REFERENCE, 0x03u8, 1u16),
        (rod_token::ROD_PIT_CHANGE_VULNERABLE, 0x03, 2),
        (rod_token::ROD_BLOCK_DEVICE_ZERO, 0x02, 0),
    ];
    // A cluster gateway cannot see writes made through the other gateways, so it offers no
    // point-in-time type there (see odx::populate_token).
    let types = all.iter().filter(|t| point_in_time || t.0 != rod_token::ROD_PIT_CHANGE_VULNERABLE).copied();
    let types: Vec<_> = types.collect();
    let mut b = vec![0u8; 4];
    b[2..4].copy_from_slice(&((types.len() * 64) as u16).to_be_bytes());
    for &(rod_type, in_out, preference) in &types {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&rod_type.to_be_bytes());
        d[4] = in_out;
        d[6..8].copy_from_slice(&preference.to_be_bytes());
        b.extend_from_slice(&d);
    }
    b
}

/// SPC-4 §7.8.17.10 General Copy Operations (8001h): concurrent copies (the per-LU operation
/// records), the longest segment, and data segment granularity of one block.
pub(crate) fn general_copy_operations(block_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0..4].copy_from_slice(&(rod_status::MAX_HELD as u32).to_be_bytes());
    b[4..8].copy_from_slice(&(rod_status::MAX_HELD as u32).to_be_bytes());
    b[8..12].copy_from_slice(&(MAX_TOKEN_BYTES.min(u32::MAX as u64) as u32).to_be_bytes());
    b[12] = block_size.trailing_zeros() as u8;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields_as_ddpt_reads_them() {
        // ddpt reads the limits at descriptor offsets 10, 12, 16, 20, 28 (header included).
        let mut d = vec![0, 0, 0, 0x20];
        d.extend(block_device_rod_token_limits(512));
        assert_eq!(u16::from_be_bytes([d[10], d[11]]), 64);
        assert_eq!(u32::from_be_bytes(d[12..16].try_into().unwrap()), 600);
        assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 60);
        assert_eq!(u64::from_be_bytes(d[20..28].try_into().unwrap()), (1 << 30) / 512);
        assert_eq!(u64::from_be_bytes(d[28..36].try_into().unwrap()), (256 << 20) / 512);
        let types = supported_rod_types(true);
        assert_eq!(u16::from_be_bytes([types[2], types[3]]) as usize, types.len() - 4);
        assert_eq!(&types[4 + 128..4 + 133], &[0xFF, 0xFF, 0, 1, 0x02]);
        // A cluster gateway: access upon reference and the zero token, no point in time.
        let clustered = supported_rod_types(false);
        assert_eq!(clustered.len(), 4 + 2 * 64);
        assert_eq!(&clustered[4..8], &[0, 1, 0, 0]);
        assert_eq!(&clustered[4 + 64..4 + 68], &[0xFF, 0xFF, 0, 1]);
        let features = rod_token_features();
        assert_eq!(u16::from_be_bytes([features[42], features[43]]) as usize, features.len() - 44);
        assert_eq!(general_copy_operations(4096)[12], 12);
    }
}
