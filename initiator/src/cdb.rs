//! CDBs the bench and the tests build (SBC-3, SPC-4), the status codes (SAM-5 §5.3) and the
//! LUN field (SAM-5 §4.7).

use pdu::be;

/// GOOD status (SAM-5 §5.3.1).
pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;
pub const RESERVATION_CONFLICT: u8 = 0x18;
/// Sense key UNIT ATTENTION (SPC-4 §4.5.6): reported once after login/reset, then cleared.
pub use crate::sense::UNIT_ATTENTION;

/// The 8-byte LUN field of a PDU (SAM-5 §4.7): peripheral device addressing below 256, flat
/// space addressing up to 16383; larger numbers are not single-level LUNs (`None`).
pub fn lun_field(lun: u64) -> Option<u64> {
    match lun {
        0..=255 => Some(lun << 48),
        256..=0x3fff => Some((0x4000 | lun) << 48),
        _ => None,
    }
}

/// TEST UNIT READY (SPC-4 §6.47).
pub fn test_unit_ready() -> [u8; 16] {
    [0; 16]
}

/// READ CAPACITY (16) (SBC-3 §5.16): SERVICE ACTION IN (16) with service action 10h.
pub fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    be::put_u32(&mut c, 10, alloc);
    c
}

/// READ CAPACITY (10) (SBC-3 §5.15), for targets without the 16-byte form.
pub fn read_capacity10() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x25;
    c
}

/// READ (16) (SBC-3 §5.13) / WRITE (16) (SBC-3 §5.40): 64-bit LBA, 32-bit block count; `fua`
/// sets FUA (byte 1 bit 3), so the data is on the medium before the command completes.
pub fn rw16(write: bool, fua: bool, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = if write { 0x8a } else { 0x88 };
    if fua {
        c[1] = 0x08;
    }
    be::put_u64(&mut c, 2, lba);
    be::put_u32(&mut c, 10, blocks);
    c
}

/// READ (10) (SBC-3 §5.11) / WRITE (10) (SBC-3 §5.38): 32-bit LBA, 16-bit block count.
pub fn rw10(write: bool, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = if write { 0x2a } else { 0x28 };
    be::put_u32(&mut c, 2, lba);
    be::put_u16(&mut c, 7, blocks);
    c
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16) with a `param_len`-byte parameter list.
pub fn pr_out(service_action: u8, scope_type: u8, param_len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x5f;
    c[1] = service_action & 0x1f;
    c[2] = scope_type;
    be::put_u32(&mut c, 5, param_len);
    c
}

/// The basic 24-byte PERSISTENT RESERVE OUT parameter list (SPC-4 §6.16.3); `flags` is byte
/// 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h).
pub fn pr_out_param(key: u64, service_action_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    be::put_u64(&mut p, 0, key);
    be::put_u64(&mut p, 8, service_action_key);
    p[20] = flags;
    p
}

/// PERSISTENT RESERVE IN (SPC-4 §6.15) with a 16-bit allocation length.
pub fn pr_in(service_action: u8, allocation_length: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x5e;
    c[1] = service_action & 0x1f;
    be::put_u16(&mut c, 7, allocation_length);
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
    let last = be::u64_at(data, 0)?;
    Some(Capacity { block_len: be::u32_at(data, 8)?, blocks: last.checked_add(1)? })
}

pub fn parse_capacity10(data: &[u8]) -> Option<Capacity> {
    let last = be::u32_at(data, 0)?;
    Some(Capacity { block_len: be::u32_at(data, 4)?, blocks: last as u64 + 1 })
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
}
