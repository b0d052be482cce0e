//! The few SCSI commands the load generator sends (SBC-3, SPC-4) and sense decoding.

/// GOOD status (SAM-5 §5.3.1).
pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;
/// Sense key UNIT ATTENTION (SPC-4 §4.5.6): reported once after login/reset, then cleared.
pub const UNIT_ATTENTION: u8 = 0x06;

/// TEST UNIT READY (SPC-4 §6.37).
pub fn test_unit_ready() -> [u8; 16] {
    [0; 16]
}

/// READ CAPACITY (16) (SBC-3 §5.16): SERVICE ACTION IN (16) with service action 10h.
pub fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// READ CAPACITY (10) (SBC-3 §5.15), for targets without the 16-byte form.
pub fn read_capacity10() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x25;
    c
}

/// READ (16) (SBC-3 §5.11) / WRITE (16) (SBC-3 §5.40): 64-bit LBA, 32-bit block count; `fua`
/// sets FUA (byte 1 bit 3), so the data is on the medium before the command completes.
pub fn rw16(write: bool, fua: bool, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = if write { 0x8a } else { 0x88 };
    if fua {
        c[1] = 0x08;
    }
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.15) with a `param_len`-byte parameter list.
pub fn pr_out(service_action: u8, scope_type: u8, param_len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x5f;
    c[1] = service_action & 0x1f;
    c[2] = scope_type;
    c[5..9].copy_from_slice(&param_len.to_be_bytes());
    c
}

/// The basic 24-byte PERSISTENT RESERVE OUT parameter list (SPC-4 §6.15.3); `flags` is byte
/// 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h).
pub fn pr_out_param(key: u64, service_action_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&service_action_key.to_be_bytes());
    p[20] = flags;
    p
}

/// PERSISTENT RESERVE IN (SPC-4 §6.14) with a 16-bit allocation length.
pub fn pr_in(service_action: u8, allocation_length: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x5e;
    c[1] = service_action & 0x1f;
    c[7..9].copy_from_slice(&allocation_length.to_be_bytes());
    c
}

/// Capacity of a LUN: logical block length and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub block_len: u32,
    pub blocks: u64,
}

/// READ CAPACITY (16) parameter data: RETURNED LOGICAL BLOCK ADDRESS is the last LBA.
pub fn parse_capacity16(data: &[u8]) -> Option<Capacity> {
    if data.len() < 12 {
        return None;
    }
    let last = u64::from_be_bytes(data[0..8].try_into().ok()?);
    let block_len = u32::from_be_bytes(data[8..12].try_into().ok()?);
    Some(Capacity { block_len, blocks: last.checked_add(1)? })
}

pub fn parse_capacity10(data: &[u8]) -> Option<Capacity> {
    if data.len() < 8 {
        return None;
    }
    let last = u32::from_be_bytes(data[0..4].try_into().ok()?);
    let block_len = u32::from_be_bytes(data[4..8].try_into().ok()?);
    Some(Capacity { block_len, blocks: last as u64 + 1 })
}

/// Sense key, ASC and ASCQ of fixed (70h/71h) or descriptor (72h/73h) sense data (SPC-4 §4.5).
pub fn sense_key(sense: &[u8]) -> Option<(u8, u8, u8)> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 if sense.len() >= 14 => Some((sense[2] & 0x0f, sense[12], sense[13])),
        0x72 | 0x73 if sense.len() >= 4 => Some((sense[1] & 0x0f, sense[2], sense[3])),
        _ => None,
    }
}

/// "CHECK CONDITION 05/24/00" style text for reports.
pub fn describe_status(status: u8, sense: Option<&[u8]>) -> String {
    match (status, sense.and_then(sense_key)) {
        (CHECK_CONDITION, Some((k, asc, ascq))) => {
            format!("CHECK CONDITION sense {k:02x}/{asc:02x}/{ascq:02x}")
        }
        (s, _) => format!("status {s:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read16_encodes_lba_and_length() {
        let c = rw16(false, false, 0x0102_0304_0506_0708, 8);
        assert_eq!(c[0], 0x88);
        assert_eq!(&c[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&c[10..14], &[0, 0, 0, 8]);
        assert_eq!(rw16(true, false, 0, 1)[0], 0x8a);
        assert_eq!(rw16(true, true, 0, 1)[1], 0x08, "FUA");
    }

    #[test]
    fn capacity_parsing() {
        let mut d = [0u8; 32];
        d[7] = 0xff; // last LBA 255
        d[10] = 0x02; // 512
        assert_eq!(parse_capacity16(&d), Some(Capacity { block_len: 512, blocks: 256 }));
        assert_eq!(parse_capacity16(&d[..8]), None);
        let d10 = [0, 0, 0x0f, 0xff, 0, 0, 0x10, 0];
        assert_eq!(parse_capacity10(&d10), Some(Capacity { block_len: 4096, blocks: 4096 }));
    }

    #[test]
    fn sense_formats() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x06;
        fixed[12] = 0x29;
        assert_eq!(sense_key(&fixed), Some((6, 0x29, 0)));
        assert_eq!(sense_key(&[0x72, 0x05, 0x24, 0x00]), Some((5, 0x24, 0)));
        assert_eq!(sense_key(&[0x70, 0]), None);
        assert_eq!(describe_status(2, Some(&fixed)), "CHECK CONDITION sense 06/29/00");
    }
}
