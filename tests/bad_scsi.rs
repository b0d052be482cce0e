//! Bad SCSI commands sent by the raw initiator to the real binary: each ends with CHECK
//! CONDITION and the sense data SPC-4 prescribes, and the session carries on.

mod common;

use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};

const INITIATOR: &str = "iqn.2026-11.test.palisade:bad-scsi";
const ILLEGAL_REQUEST: u8 = 0x05;
/// 16 MiB memory LUN of 512-byte blocks.
const BLOCKS: u32 = 32768;

fn session() -> (TargetProcess, RawInitiator) {
    let t = TargetProcess::start_with_config(&memory_target_toml(""), DEFAULT_IQN);
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(INITIATOR, DEFAULT_IQN));
    ini.clear_unit_attention(0);
    (t, ini)
}

#[test]
fn unknown_opcode_is_invalid_command_operation_code() {
    let (mut t, mut ini) = session();
    // SPC-4 §4.5.6 / Annex: ILLEGAL REQUEST, 20h/00h INVALID COMMAND OPERATION CODE. 0x02 and
    // 0xd5 are assigned to no command of a direct-access device.
    for opcode in [0x02u8, 0xd5] {
        let out = ini.exec(0, &[opcode, 0, 0, 0, 0, 0], 0, &[]);
        assert_sense(&out, ILLEGAL_REQUEST, 0x20, 0x00);
    }
    ini.exec_good(0, &[0x00; 6], 0, &[]);
    assert_healthy(&mut t);
}

#[test]
fn inquiry_page_code_without_evpd_is_invalid_field_in_cdb_with_a_field_pointer() {
    let (mut t, mut ini) = session();
    // SPC-4 §6.6.1: with EVPD=0 the PAGE CODE must be zero, else ILLEGAL REQUEST, 24h/00h
    // INVALID FIELD IN CDB; the sense-key specific field points at it (SPC-4 §4.5.2.4.2):
    // SKSV=1, C/D=1 (in the CDB), FIELD POINTER = byte 2.
    let out = ini.exec(0, &[0x12, 0x00, 0x80, 0x00, 0xff, 0x00], 255, &[]);
    assert_sense(&out, ILLEGAL_REQUEST, 0x24, 0x00);
    let sense = out.sense.expect("sense data");
    assert_eq!(sense[0] & 0x7f, 0x70, "fixed format sense (D_SENSE=0)");
    assert!(sense.len() >= 18 && sense[7] >= 10, "sense-key specific bytes present");
    let sks = &sense[15..18];
    assert_eq!(sks[0] & 0xc0, 0xc0, "SKSV and C/D set: {sks:02x?}");
    assert_eq!(u16::from_be_bytes([sks[1], sks[2]]), 2, "FIELD POINTER names CDB byte 2");
    if sks[0] & 0x08 != 0 {
        assert_eq!(sks[0] & 0x07, 7, "BIT POINTER names the most significant bit of PAGE CODE");
    }
    assert!(out.data.is_empty(), "no INQUIRY data with the error");
    assert_healthy(&mut t);
}

#[test]
fn lba_out_of_range_is_reported() {
    let (mut t, mut ini) = session();
    // SBC-3 §5.11 (READ(10)): LBA + TRANSFER LENGTH beyond the capacity is ILLEGAL REQUEST,
    // 21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE, and no data moves.
    for (lba, blocks) in [(BLOCKS, 1u16), (BLOCKS - 1, 2), (u32::MAX, 1)] {
        let out = ini.exec(0, &read10_cdb(lba, blocks), blocks as u32 * 512, &[]);
        assert_sense(&out, ILLEGAL_REQUEST, 0x21, 0x00);
        assert!(out.data.is_empty(), "no data for a rejected read at {lba}");
    }
    // A write past the end is refused before any data is asked for (no R2T).
    let cmd = ini.command(0, &write10_cdb(BLOCKS, 1), 0, 512, &[]);
    ini.send(&cmd.encode());
    let out = ini.complete(cmd.itt, 0, &[]);
    assert_sense(&out, ILLEGAL_REQUEST, 0x21, 0x00);
    // The last block itself is fine.
    assert_eq!(ini.read10(0, BLOCKS - 1, 1).len(), 512);
    assert_healthy(&mut t);
}

#[test]
fn absent_lun_is_logical_unit_not_supported() {
    let (mut t, mut ini) = session();
    // SPC-4 §4.5.2 / SAM-5 §5.9.2: a command to a LUN that does not exist ends with ILLEGAL
    // REQUEST, 25h/00h LOGICAL UNIT NOT SUPPORTED ...
    for cdb in [vec![0x00; 6], read10_cdb(0, 1).to_vec()] {
        let read_len = if cdb[0] == 0x28 { 512 } else { 0 };
        let out = ini.exec(5, &cdb, read_len, &[]);
        assert_sense(&out, ILLEGAL_REQUEST, 0x25, 0x00);
    }
    // ... except INQUIRY, which answers with PERIPHERAL QUALIFIER 011b, device type 1Fh
    // (SPC-4 §6.6.2: not capable of supporting a device at this LUN).
    let data = ini.exec_good(5, &[0x12, 0, 0, 0, 36, 0], 36, &[]);
    assert_eq!(data[0], 0x7f, "peripheral qualifier 3, type 1Fh");
    assert_healthy(&mut t);
}
