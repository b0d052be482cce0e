//! Malformed and out-of-order iSCSI PDUs sent to the real binary by a raw initiator: each gets
//! the answer RFC 7143 prescribes (a Reject with the right reason, a CHECK CONDITION, silence, or
//! a dropped connection), and whatever the connection survives keeps working afterwards.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};
use pdu::bhs::BhsBuf;
use pdu::error::reject_reason;
use pdu::msg::{DataOut, LoginRequest, NopOut, Snack, Stage, TargetPdu};
use pdu::{Opcode, RESERVED_TAG};

const INITIATOR: &str = "iqn.2026-11.test.palisade:bad-input";
const ABORTED_COMMAND: u8 = 0x0b;

fn start(session_toml: &str) -> TargetProcess {
    TargetProcess::start_with_config(&memory_target_toml(session_toml), DEFAULT_IQN)
}

/// Logs in and consumes the power-on unit attention of LUN 0, so later commands see only
/// what the test provokes.
fn login(t: &TargetProcess, opts: LoginOptions) -> RawInitiator {
    let mut ini = RawInitiator::login_ok(&t.portal(), &opts);
    ini.clear_unit_attention(0);
    ini
}

fn plain() -> LoginOptions {
    LoginOptions::normal(INITIATOR, DEFAULT_IQN)
}

/// A NOP-Out ping at the current CmdSN, without consuming it.
fn nop_at_current(ini: &mut RawInitiator, data: &[u8]) -> NopOut {
    let nop = ini.nop_out(data);
    ini.cmd_sn = nop.cmd_sn;
    nop
}

/// The Reject must carry the complete header of the rejected PDU (RFC 7143 §11.17: the data
/// segment holds the BHS of the rejected PDU).
/// Sends `wire`, expects a Reject with `reason` that returns the sent header (RFC 7143 §11.17).
fn send_expecting_reject(ini: &mut RawInitiator, wire: &[u8], reason: u8) -> pdu::msg::Reject {
    ini.send_bytes(wire);
    let reject = ini.expect_reject();
    assert_eq!(reject.reason, reason, "Reject reason (RFC 7143 §11.17.1)");
    assert_eq!(&reject.header[..], &wire[..48], "Reject returns the rejected header");
    reject
}

#[test]
fn reserved_opcode_is_rejected_as_command_not_supported() {
    let mut t = start("");
    let mut ini = login(&t, plain());
    // Opcode 0x1c is not defined for initiators (RFC 7143 §11.2.1.2): Reject reason 0x05
    // "Command not supported" (§11.17.1). A rejected PDU consumes no CmdSN.
    let bhs = BhsBuf::new(Opcode(0x1c)).flags(0x80).itt(0x77).u32(24, ini.cmd_sn).u32(28, ini.exp_stat_sn);
    let wire = ini.wire(&pdu::OutPdu::new(bhs, Bytes::new()));
    let reject = send_expecting_reject(&mut ini, &wire, reject_reason::COMMAND_NOT_SUPPORTED);
    assert_eq!(reject.seq.exp_cmd_sn, ini.cmd_sn, "the rejected PDU's CmdSN is not received (§11.17.1)");
    ini.ping(b"still here");
    assert_healthy(&mut t);
}

#[test]
fn data_out_for_an_unknown_task_is_discarded_silently() {
    let mut t = start("");
    let mut ini = login(&t, plain());
    // Data for a task the target does not know cannot belong to anything at ERL 0 (RFC 7143
    // §11.7): it is discarded without an answer. The next PDU we get is our ping's echo.
    let stray = DataOut {
        final_bit: true,
        lun: 0,
        itt: 0xdead,
        ttt: 0x1234,
        exp_stat_sn: ini.exp_stat_sn,
        data_sn: 0,
        buffer_offset: 0,
        data: Bytes::from(vec![0x5a; 512]),
    };
    ini.send(&stray.encode());
    ini.ping(b"after stray data");
    // And the stray data went nowhere.
    assert_eq!(ini.read10(0, 0, 1), vec![0u8; 512]);
    assert_healthy(&mut t);
}

#[test]
fn nop_out_without_final_bit_is_rejected_as_invalid_pdu_field() {
    let mut t = start("");
    let mut ini = login(&t, plain());
    // RFC 7143 §11.18: the F bit of a NOP-Out is always 1; a reserved-value violation is
    // "Invalid PDU field" (§11.17.1 reason 0x09).
    let nop = nop_at_current(&mut ini, b"");
    let mut wire = ini.wire(&nop.encode());
    wire[1] &= 0x7f;
    send_expecting_reject(&mut ini, &wire, reject_reason::INVALID_PDU_FIELD);
    ini.ping(b"");
    assert_healthy(&mut t);
}

#[test]
fn login_request_in_full_feature_phase_is_rejected_as_protocol_error() {
    let mut t = start("");
    let mut ini = login(&t, plain());
    // Login Requests belong to the login phase only (RFC 7143 §6.3, §11.12); in Full Feature
    // Phase one is a protocol error (§11.17.1 reason 0x04).
    let req = LoginRequest {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0, 0x12, 0x34],
        tsih: ini.tsih,
        itt: 0x4242,
        cid: 1,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: ini.exp_stat_sn,
        data: pdu::text::encode(&[("HeaderDigest", "None")]),
    };
    let wire = ini.wire(&req.encode());
    send_expecting_reject(&mut ini, &wire, reject_reason::PROTOCOL_ERROR);
    ini.ping(b"");
    assert_healthy(&mut t);
}

#[test]
fn snack_at_error_recovery_level_0_is_rejected_as_protocol_error() {
    let mut t = start("");
    let mut ini = login(&t, plain());
    // SNACK needs ErrorRecoveryLevel > 0 (RFC 7143 §11.16, §13.20); at ERL 0 it is a protocol
    // error (§11.17.1 reason 0x04).
    let snack = Snack {
        kind: 1,
        lun: 0,
        itt: RESERVED_TAG,
        ttt: RESERVED_TAG,
        exp_stat_sn: ini.exp_stat_sn,
        beg_run: 0,
        run_length: 0,
    };
    let wire = ini.wire(&snack.encode());
    send_expecting_reject(&mut ini, &wire, reject_reason::PROTOCOL_ERROR);
    ini.ping(b"");
    assert_healthy(&mut t);
}

#[test]
fn header_digest_error_drops_the_connection() {
    let mut t = start("");
    let mut ini = login(&t, plain().digests(true, true));
    assert!(ini.digests.header && ini.digests.data, "CRC32C digests negotiated");
    ini.ping(b"digests work");
    // RFC 7143 §7.8: a header digest error leaves nothing trustworthy to answer; at ERL 0 the
    // target closes the connection, sending nothing about the bad PDU.
    let nop = ini.nop_out(b"bad header");
    let wire = corrupt_header_digest(ini.wire(&nop.encode()), 0);
    ini.send_bytes(&wire);
    ini.expect_closed(ANSWER_TIMEOUT, |_| false);
    // The target itself is fine: a new connection logs in and works.
    let mut again = login(&t, plain().digests(true, true));
    again.ping(b"");
    assert_healthy(&mut t);
}

#[test]
fn data_digest_error_on_nop_out_is_rejected_and_connection_survives() {
    let mut t = start("");
    let mut ini = login(&t, plain().digests(true, true));
    // RFC 7143 §7.8: a payload digest error on a non-data PDU is answered with Reject reason
    // 0x02 and the PDU is discarded; its CmdSN is not received (§11.17.1).
    let nop = nop_at_current(&mut ini, b"ping data with a bad digest");
    let wire = corrupt_data_digest(ini.wire(&nop.encode()));
    let reject = send_expecting_reject(&mut ini, &wire, reject_reason::DATA_DIGEST_ERROR);
    assert_eq!(reject.seq.exp_cmd_sn, nop.cmd_sn, "discarded NOP-Out's CmdSN not received");
    // The initiator plugs the gap by sending again with the same CmdSN.
    ini.ping(b"ping data with a good digest");
    assert_healthy(&mut t);
}

#[test]
fn data_digest_error_on_immediate_data_rejects_the_command_until_it_is_retried() {
    let mut t = start("[session]\nimmediate_data = true\n");
    let mut ini = login(&t, plain().digests(true, true).key("ImmediateData", "Yes"));
    let block = vec![0xabu8; 512];
    let cmd = ini.command(0, &write10_cdb(100, 1), 0, 512, &block);
    let wire = corrupt_data_digest(ini.wire(&cmd.encode()));
    // RFC 7143 §7.8: for immediate data in a command PDU the non-data PDU rule applies: Reject
    // reason 0x02 and the whole command is discarded, its CmdSN not received (§11.17.1).
    let reject = send_expecting_reject(&mut ini, &wire, reject_reason::DATA_DIGEST_ERROR);
    assert_eq!(reject.seq.exp_cmd_sn, cmd.cmd_sn, "the discarded command's CmdSN is a gap");
    // Nothing was written: an immediate READ (delivered at once, §3.2.2.1) sees zeros.
    let mut read = ini.command(0, &read10_cdb(100, 1), 512, 0, &[]);
    ini.cmd_sn = read.cmd_sn;
    read.immediate = true;
    ini.send(&read.encode());
    let out = ini.complete(read.itt, 0, &[]);
    assert_eq!((out.status, out.data), (GOOD, vec![0u8; 512]), "nothing written");
    // Retrying the same command (same ITT and CmdSN) plugs the gap (§7.2.1) and it succeeds.
    ini.send(&cmd.encode());
    let out = ini.complete(cmd.itt, 0, &block);
    assert_eq!(out.status, GOOD, "retried write: {:?}", out.sense_triple());
    ini.cmd_sn = cmd.cmd_sn.wrapping_add(1);
    assert_eq!(ini.read10(0, 100, 1), block);
    assert_healthy(&mut t);
}

/// A session that takes unsolicited data (InitialR2T=No, ImmediateData=Yes) with digests.
fn unsolicited_session() -> (TargetProcess, RawInitiator) {
    let t = start("[session]\ninitial_r2t = false\nimmediate_data = true\n");
    let ini = login(&t, plain().digests(true, true).key("InitialR2T", "No").key("ImmediateData", "Yes"));
    (t, ini)
}

/// WRITE(10) of two blocks at `lba`: 512 bytes immediate, 512 in an unsolicited Data-Out whose
/// data digest is wrong. RFC 7143 §7.8: the data PDU is rejected (reason 0x02) and, option b),
/// the task ends with CHECK CONDITION, ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR (47h/05h,
/// §11.4.7.2), writing nothing.
fn write_with_a_corrupt_unsolicited_data_out(ini: &mut RawInitiator, lba: u32) -> ScsiOutcome {
    let data = vec![0xcdu8; 1024];
    let mut cmd = ini.command(0, &write10_cdb(lba, 2), 0, 1024, &data[..512]);
    cmd.final_bit = false; // an unsolicited Data-Out sequence follows (§11.3.1)
    ini.send(&cmd.encode());
    let dout = DataOut {
        final_bit: true,
        lun: 0,
        itt: cmd.itt,
        ttt: RESERVED_TAG,
        exp_stat_sn: ini.exp_stat_sn,
        data_sn: 0,
        buffer_offset: 512,
        data: Bytes::copy_from_slice(&data[512..]),
    };
    let wire = corrupt_data_digest(ini.wire(&dout.encode()));
    send_expecting_reject(ini, &wire, reject_reason::DATA_DIGEST_ERROR);
    let out = ini.complete(cmd.itt, 0, &[]);
    assert_sense(&out, ABORTED_COMMAND, 0x47, 0x05);
    assert_eq!(ini.read10(0, lba, 2), vec![0u8; 1024], "nothing of the failed write landed");
    out
}

#[test]
fn data_digest_error_on_unsolicited_data_out_aborts_the_command_and_writes_nothing() {
    let (mut t, mut ini) = unsolicited_session();
    let out = write_with_a_corrupt_unsolicited_data_out(&mut ini, 200);
    assert_eq!(out.sense.as_ref().expect("sense")[0] & 0x7f, 0x70, "fixed format (D_SENSE=0)");
    assert_healthy(&mut t);
}

#[test]
fn a_failed_data_out_is_reported_in_the_luns_sense_format() {
    let (mut t, mut ini) = unsolicited_session();
    // D_SENSE=1 in the control mode page (SPC-4 §7.5.8, byte 2 bit 2): MODE SENSE(6) with DBD,
    // set the bit, MODE SELECT(6) with PF and the mode data length zeroed.
    let sensed = ini.exec_good(0, &[0x1a, 0x08, 0x0a, 0, 255, 0], 255, &[]);
    let page_at = 4 + sensed[3] as usize;
    let mut param = sensed[..page_at + 12].to_vec();
    param[0] = 0;
    param[page_at + 2] |= 0x04;
    ini.exec_good(0, &[0x15, 0x10, 0, 0, param.len() as u8, 0], 0, &param);
    // Now in descriptor format (SPC-4 §4.5.2): the SCSI layer encodes every sense, with the
    // LUN's setting.
    let out = write_with_a_corrupt_unsolicited_data_out(&mut ini, 300);
    assert_eq!(out.sense.as_ref().expect("sense")[0] & 0x7f, 0x72, "descriptor format: {:02x?}", out.sense);
    assert_healthy(&mut t);
}

#[test]
fn data_segment_over_max_recv_data_segment_length_is_rejected_and_the_connection_closed() {
    let mut t = start("[session]\nmax_recv_data_segment_length = 4096\n");
    let mut ini = login(&t, plain());
    assert_eq!(ini.target_max_recv, 4096, "the target declared its MaxRecvDataSegmentLength");
    // RFC 7143 §13.12: a PDU's data segment must not exceed the receiver's declared
    // MaxRecvDataSegmentLength. The target cannot take it: Reject reason 0x04 "Protocol error"
    // (§11.17.1), then it closes the connection, as the PDU cannot be buffered.
    let nop = ini.nop_out(&vec![0x11; 8192]);
    let wire = ini.wire(&nop.encode());
    ini.send_bytes(&wire);
    let seen = ini.expect_closed(ANSWER_TIMEOUT, |m| matches!(m, TargetPdu::Reject(_)));
    match seen.as_slice() {
        [TargetPdu::Reject(r)] => {
            assert_eq!(r.reason, reject_reason::PROTOCOL_ERROR, "Reject reason (RFC 7143 §11.17.1)");
            assert_eq!(&r.header[..], &wire[..48], "Reject returns the rejected header");
        }
        other => panic!("expected exactly one Reject before the close, got {other:?}"),
    }
    let mut again = login(&t, plain());
    again.ping(&[0x22; 4096]);
    assert_healthy(&mut t);
}

#[test]
fn cmd_sn_outside_the_window_is_ignored_and_the_connection_kept() {
    let mut t = start("[session]\nmax_cmdsn_window = 16\n");
    let mut ini = login(&t, plain());
    ini.ping(b"");
    let (exp, max) = (ini.exp_cmd_sn, ini.max_cmd_sn);
    assert_eq!(max.wrapping_sub(exp), 15, "window of 16 commands");
    // RFC 7143 §4.2.2.1: non-immediate PDUs with a CmdSN outside [ExpCmdSN, MaxCmdSN] (ahead
    // of the window or already used) are silently ignored.
    for cmd_sn in [max.wrapping_add(1), max.wrapping_add(1000), exp.wrapping_sub(1)] {
        let mut nop = ini.nop_out(b"out of window");
        nop.cmd_sn = cmd_sn;
        ini.send(&nop.encode());
        let mut cmd = ini.command(0, &[0x00; 6], 0, 0, &[]); // TEST UNIT READY
        cmd.cmd_sn = cmd_sn;
        ini.send(&cmd.encode());
    }
    ini.cmd_sn = exp;
    ini.expect_silence(Duration::from_millis(300));
    // The next in-window command works, and the ignored PDUs advanced nothing.
    ini.ping(b"in window");
    assert_eq!(ini.exp_cmd_sn, exp.wrapping_add(1), "only the in-window ping was received");
    ini.exec_good(0, &[0x00; 6], 0, &[]);
    assert_healthy(&mut t);
}

/// WRITE(10) of 1024 bytes answered with Data-Out PDUs from `send_data_out` (given the R2T):
/// the outcome must be the ABORTED COMMAND `ascq` of ASC 4Bh and nothing written.
fn broken_data_sequence(send_data_out: impl Fn(&mut RawInitiator, &pdu::msg::R2t), ascq: u8) {
    let mut t = start("");
    let mut ini = login(&t, plain());
    let cmd = ini.command(0, &write10_cdb(300, 2), 0, 1024, &[]);
    ini.send(&cmd.encode());
    let r2t = match ini.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::R2t(r) => r,
        other => panic!("expected an R2T (InitialR2T=Yes, no immediate data), got {other:?}"),
    };
    assert_eq!((r2t.buffer_offset, r2t.desired_data_transfer_length), (0, 1024));
    send_data_out(&mut ini, &r2t);
    // The connection stays up; the task fails once its sequence has ended (SPC-4 ASC 4Bh).
    let out = ini.complete(cmd.itt, 0, &[]);
    assert_sense(&out, ABORTED_COMMAND, 0x4b, ascq);
    assert_eq!(ini.read10(0, 300, 2), vec![0u8; 1024], "nothing of the broken write landed");
    ini.ping(b"");
    assert_healthy(&mut t);
}

fn solicited(ini: &RawInitiator, r2t: &pdu::msg::R2t, data_sn: u32, offset: u32, final_bit: bool) -> DataOut {
    DataOut {
        final_bit,
        lun: 0,
        itt: r2t.itt,
        ttt: r2t.ttt,
        exp_stat_sn: ini.exp_stat_sn,
        data_sn,
        buffer_offset: offset,
        data: Bytes::from(vec![0xee; 512]),
    }
}

#[test]
fn repeated_data_sn_aborts_the_command_with_data_phase_error() {
    // RFC 7143 §11.7.5: DataSN counts up from 0 within each R2T's sequence. Two PDUs both with
    // DataSN 0: DATA PHASE ERROR (4Bh/00h).
    broken_data_sequence(
        |ini, r2t| {
            let a = solicited(ini, r2t, 0, 0, false);
            let b = solicited(ini, r2t, 0, 512, true);
            ini.send(&a.encode());
            ini.send(&b.encode());
        },
        0x00,
    );
}

#[test]
fn wrong_buffer_offset_aborts_the_command_with_data_offset_error() {
    // RFC 7143 §13.19 DataPDUInOrder=Yes: offsets increase without gaps. A second PDU at offset
    // 0 again: DATA OFFSET ERROR (4Bh/05h).
    broken_data_sequence(
        |ini, r2t| {
            let a = solicited(ini, r2t, 0, 0, false);
            let b = solicited(ini, r2t, 1, 0, true);
            ini.send(&a.encode());
            ini.send(&b.encode());
        },
        0x05,
    );
}
