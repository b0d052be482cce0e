//! Full Feature Phase helpers of the raw initiator: pings, SCSI commands with their Data-In,
//! R2T and response, task management, text and logout.

use bytes::Bytes;
use pdu::msg::scsi::attr;
use pdu::msg::{
    DataOut, LogoutRequest, NopIn, NopOut, ScsiCommand, TargetPdu, TaskMgmtRequest, TaskMgmtResponse, TextRequest,
    TextResponse,
};
use pdu::RESERVED_TAG;

use super::{RawInitiator, ANSWER_TIMEOUT};

/// What a SCSI command ended with.
#[derive(Debug, Clone)]
pub struct ScsiOutcome {
    pub status: u8,
    /// iSCSI service response (RFC 7143 §11.4.3).
    pub response: u8,
    pub sense: Option<Bytes>,
    pub data: Vec<u8>,
}

impl ScsiOutcome {
    /// (sense key, ASC, ASCQ) of fixed (0x70/0x71) or descriptor (0x72/0x73) sense data.
    pub fn sense_triple(&self) -> Option<(u8, u8, u8)> {
        let s = self.sense.as_ref()?;
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            0x72 | 0x73 if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

impl RawInitiator {
    /// A NOP-Out ping (RFC 7143 §11.18) that takes the next CmdSN; returns its ITT.
    pub fn nop_out(&mut self, data: &[u8]) -> NopOut {
        let nop = NopOut {
            immediate: false,
            lun: 0,
            itt: self.new_itt(),
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::copy_from_slice(data),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        nop
    }

    /// Pings and asserts the echo comes back as the very next PDU.
    pub fn ping(&mut self, data: &[u8]) {
        let nop = self.nop_out(data);
        self.send(&nop.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::NopIn(NopIn { itt, ttt, data: echoed, .. }) => {
                assert_eq!(itt, nop.itt, "NOP-In answers our ITT");
                assert_eq!(ttt, RESERVED_TAG, "NOP-In answering a ping carries TTT 0xffffffff (§11.19.1)");
                assert_eq!(&echoed[..], data, "NOP-In echoes the ping data (§11.19)");
            }
            other => panic!("expected the NOP-In answering our ping, got {other:?}"),
        }
    }

    /// A SCSI Command PDU taking the next CmdSN (not sent).
    pub fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        read_len: u32,
        write_len: u32,
        immediate_data: &[u8],
    ) -> ScsiCommand {
        let mut full = [0u8; 16];
        full[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: read_len > 0,
            write: write_len > 0,
            attr: attr::SIMPLE,
            lun: lun_field(lun),
            itt: self.new_itt(),
            expected_data_transfer_length: read_len.max(write_len),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: full,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: Bytes::copy_from_slice(immediate_data),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        cmd
    }

    /// Collects the Data-In and SCSI Response of command `itt`, answering R2Ts from `write`
    /// and the target's NOP-In pings (a long command leaves the connection idle).
    pub fn complete(&mut self, itt: u32, lun: u64, write: &[u8]) -> ScsiOutcome {
        let mut data = Vec::new();
        loop {
            match self.recv_msg(self.answer_timeout) {
                TargetPdu::DataIn(d) => {
                    assert_eq!(d.itt, itt, "Data-In for another task");
                    assert_eq!(d.buffer_offset as usize, data.len(), "Data-In offsets in order");
                    data.extend_from_slice(&d.data);
                    if let Some(status) = d.status {
                        return ScsiOutcome { status, response: 0, sense: None, data };
                    }
                }
                TargetPdu::R2t(r) => {
                    assert_eq!(r.itt, itt, "R2T for another task");
                    self.answer_r2t(&r, lun, write);
                }
                TargetPdu::ScsiResponse(rsp) => {
                    assert_eq!(rsp.itt, itt, "SCSI Response for another task");
                    return ScsiOutcome { status: rsp.status, response: rsp.response, sense: rsp.sense(), data };
                }
                TargetPdu::NopIn(ping) if ping.ttt != RESERVED_TAG => {
                    // RFC 7143 §11.18.3: answer the target's ping with its TTT, as an immediate PDU.
                    let answer = NopOut {
                        immediate: true,
                        lun: ping.lun,
                        itt: RESERVED_TAG,
                        ttt: ping.ttt,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: self.exp_stat_sn,
                        data: Bytes::new(),
                    };
                    self.send(&answer.encode());
                }
                other => panic!("unexpected PDU while waiting for task 0x{itt:x}: {other:?}"),
            }
        }
    }

    /// Sends the solicited Data-Out answering `r2t`, in PDUs the target can take.
    pub fn answer_r2t(&mut self, r2t: &pdu::msg::R2t, lun: u64, write: &[u8]) {
        let end = (r2t.buffer_offset + r2t.desired_data_transfer_length) as usize;
        let mut offset = r2t.buffer_offset as usize;
        let mut data_sn = 0;
        while offset < end {
            let len = (end - offset).min(self.target_max_recv as usize);
            let d = DataOut {
                final_bit: offset + len == end,
                lun: lun_field(lun),
                itt: r2t.itt,
                ttt: r2t.ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: offset as u32,
                data: Bytes::copy_from_slice(&write[offset..offset + len]),
            };
            self.send(&d.encode());
            offset += len;
            data_sn += 1;
        }
    }

    /// Runs a command to completion (write data via immediate data up to the target's limit,
    /// then R2Ts).
    pub fn exec(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> ScsiOutcome {
        let cmd = self.command(lun, cdb, read_len, write.len() as u32, &[]);
        self.send(&cmd.encode());
        self.complete(cmd.itt, lun, write)
    }

    /// Runs a command that must end GOOD; returns its data.
    pub fn exec_good(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> Vec<u8> {
        let out = self.exec(lun, cdb, read_len, write);
        assert_eq!(out.status, GOOD, "command {cdb:02x?} failed: {:?}", out.sense_triple());
        out.data
    }

    /// TEST UNIT READY until it returns GOOD, consuming the POWER ON / RESET unit attention a
    /// new I_T nexus starts with (SAM-5 §5.14). Panics after a few tries.
    pub fn clear_unit_attention(&mut self, lun: u64) {
        for _ in 0..4 {
            let out = self.exec(lun, &[0x00; 6], 0, &[]);
            if out.status == GOOD {
                return;
            }
            assert_eq!(out.sense_triple().map(|s| s.0), Some(0x06), "only UNIT ATTENTION may precede GOOD");
        }
        panic!("TEST UNIT READY never returned GOOD");
    }

    /// READ(10) of `blocks` 512-byte blocks at `lba`.
    pub fn read10(&mut self, lun: u64, lba: u32, blocks: u16) -> Vec<u8> {
        let cdb = read10_cdb(lba, blocks);
        self.exec_good(lun, &cdb, blocks as u32 * 512, &[])
    }

    /// WRITE(10) of `data` (whole 512-byte blocks) at `lba`.
    pub fn write10(&mut self, lun: u64, lba: u32, data: &[u8]) {
        let cdb = write10_cdb(lba, (data.len() / 512) as u16);
        self.exec_good(lun, &cdb, 0, data);
    }

    /// Task management request (RFC 7143 §11.5), immediate; returns the response code.
    pub fn task_mgmt(&mut self, function: u8, lun: u64, referenced_itt: u32, ref_cmd_sn: u32) -> TaskMgmtResponse {
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: lun_field(lun),
            itt: self.new_itt(),
            referenced_task_tag: referenced_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        };
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::TaskMgmt(rsp) => {
                assert_eq!(rsp.itt, req.itt, "TMF response ITT");
                rsp
            }
            other => panic!("expected a Task Management Response, got {other:?}"),
        }
    }

    /// One-PDU Text Request (RFC 7143 §11.10); returns the keys of the (single) answer.
    pub fn text(&mut self, keys: &[(&str, &str)]) -> Vec<(String, String)> {
        let req = TextRequest {
            immediate: false,
            final_bit: true,
            cont: false,
            lun: 0,
            itt: self.new_itt(),
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: pdu::text::encode(keys),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Text(TextResponse { itt, final_bit, data, .. }) => {
                assert_eq!(itt, req.itt);
                assert!(final_bit, "a short answer fits one Text Response");
                pdu::text::parse(&data).expect("Text Response keys")
            }
            other => panic!("expected a Text Response, got {other:?}"),
        }
    }

    /// Logout (close the session) and expect response 0 then the connection to close.
    pub fn logout(&mut self) {
        let req = LogoutRequest {
            immediate: true,
            reason: pdu::msg::logout::reason::CLOSE_SESSION,
            itt: self.new_itt(),
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Logout(rsp) => assert_eq!(rsp.response, 0, "logout response: closed successfully"),
            other => panic!("expected a Logout Response, got {other:?}"),
        }
        self.expect_closed(ANSWER_TIMEOUT, |_| false);
    }
}

/// Single-level LUN addressing (SAM-5 §4.7.1): the peripheral method below 256, flat above.
pub fn lun_field(lun: u64) -> u64 {
    assert!(lun < 0x4000, "single-level LUNs stop at 16383");
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | lun) << 48
    }
}

pub fn read10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x28;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

pub fn write10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// Asserts CHECK CONDITION with this sense key / ASC / ASCQ.
pub fn assert_sense(out: &ScsiOutcome, key: u8, asc: u8, ascq: u8) {
    assert_eq!(out.status, CHECK_CONDITION, "expected CHECK CONDITION, got status 0x{:02x}", out.status);
    assert_eq!(out.sense_triple(), Some((key, asc, ascq)), "sense data {:02x?}", out.sense);
}
