//! Write data collection for one command (RFC 7143 §4.2.5, §11.7, §11.8): immediate data,
//! the unsolicited Data-Out sequence up to FirstBurstLength, then R2Ts for the rest, each at
//! most MaxBurstLength with at most MaxOutstandingR2T open. Only the bytes the command needs
//! are kept, as `Bytes` slices of the received PDUs.
//!
//! A broken sequence (wrong DataSN, offset, TTT or amount) does not write anything: the task
//! ends with CHECK CONDITION, ABORTED COMMAND (RFC 7143 §11.4.7.2's 0Ch/0Ch and 0Ch/0Dh for
//! unexpected or mis-sized unsolicited data, SPC-4's 4Bh/xx for DataSN, offset and TTT errors,
//! 47h/05h for a data digest) once its sequences have ended, and the connection stays up (the
//! PDU framing itself was intact).

use bytes::Bytes;
use pdu::msg::DataOut as DataOutPdu;
use pdu::RESERVED_TAG;
use tokio::sync::oneshot;

use crate::scsi::{DataOut, SenseReason};

/// What the command task receives once its data is in.
pub enum TransferResult {
    Complete {
        data: DataOut,
        r2t_count: u32,
    },
    /// The data cannot be trusted: a digest failed (RFC 7143 §7.8 b) or a sequence rule broke.
    Failed {
        reason: SenseReason,
        r2t_count: u32,
    },
}

/// An R2T the initiator still owes data for.
struct OpenR2t {
    ttt: u32,
    offset: u32,
    len: u32,
    got: u32,
    next_data_sn: u32,
}

/// An R2T to send, produced by [`Transfer::solicit`].
pub struct R2tRequest {
    pub ttt: u32,
    pub r2t_sn: u32,
    pub offset: u32,
    pub len: u32,
}

pub struct Limits {
    pub first_burst: u32,
    pub max_burst: u32,
    pub max_outstanding_r2t: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
}

pub struct Transfer {
    pub lun: u64,
    /// The session's data budget covers this command; until then no R2T is sent (budget.rs).
    pub granted: bool,
    /// Expected Data Transfer Length of the command.
    edtl: u32,
    /// Bytes handed to the SCSI layer: min(EDTL, what the CDB needs).
    keep: u32,
    data: DataOut,
    /// Bytes received as immediate data and unsolicited Data-Out.
    unsolicited_received: u32,
    unsolicited_end: u32,
    unsolicited_open: bool,
    unsolicited_data_sn: u32,
    next_solicit: u32,
    open_r2ts: Vec<OpenR2t>,
    r2t_sn: u32,
    failure: Option<SenseReason>,
    done: Option<oneshot::Sender<TransferResult>>,
}

impl Transfer {
    /// Starts collecting for a command with immediate data `immediate` and F bit `final_bit`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        lun: u64,
        edtl: u32,
        needed: u32,
        immediate: Bytes,
        final_bit: bool,
        limits: &Limits,
        done: oneshot::Sender<TransferResult>,
    ) -> Transfer {
        let imm = immediate.len() as u32;
        let mut t = Transfer {
            lun,
            granted: true,
            edtl,
            keep: needed.min(edtl),
            data: DataOut::new(),
            unsolicited_received: 0,
            unsolicited_end: edtl.min(limits.first_burst),
            unsolicited_open: !final_bit,
            unsolicited_data_sn: 0,
            next_solicit: 0,
            open_r2ts: Vec::new(),
            r2t_sn: 0,
            failure: None,
            done: Some(done),
        };
        if imm > 0 && !limits.immediate_data {
            // §13.11: immediate data is not allowed with ImmediateData=No.
            t.fail(SenseReason::UnexpectedUnsolicitedData);
        } else if imm > t.unsolicited_end {
            // §13.14: immediate data is bounded by FirstBurstLength and EDTL.
            t.fail(SenseReason::IncorrectAmountOfData);
        }
        if t.unsolicited_open && limits.initial_r2t {
            // §13.10: InitialR2T=Yes forbids unsolicited Data-Out; the initiator still sends
            // the sequence it announced, which is absorbed and the task failed.
            t.fail(SenseReason::UnexpectedUnsolicitedData);
        }
        t.keep_data(0, &immediate);
        t.unsolicited_received = imm;
        t
    }

    /// True when the command task is gone (aborted): further data is discarded.
    pub fn abandoned(&self) -> bool {
        self.done.as_ref().is_none_or(|d| d.is_closed())
    }

    fn fail(&mut self, reason: SenseReason) {
        // The first failure is the one reported.
        self.failure.get_or_insert(reason);
    }

    fn keep_data(&mut self, offset: u32, data: &Bytes) {
        if self.failure.is_some() || offset >= self.keep {
            return;
        }
        let upto = ((self.keep - offset) as usize).min(data.len());
        self.data.push(data.slice(..upto));
    }

    /// Handles one Data-Out PDU for this task.
    pub fn data_out(&mut self, pdu: &DataOutPdu, digest_ok: bool) {
        let len = pdu.data.len() as u32;
        if !digest_ok {
            self.fail(SenseReason::ProtocolServiceCrcError);
        }
        if pdu.buffer_offset.checked_add(len).is_none_or(|end| end > self.edtl) {
            self.fail(SenseReason::IncorrectAmountOfData);
        }
        if pdu.ttt == RESERVED_TAG {
            self.unsolicited(pdu, len);
        } else {
            self.solicited(pdu, len);
        }
    }

    /// Unsolicited data (§11.7.4): DataSN counts from 0 within the unsolicited sequence.
    fn unsolicited(&mut self, pdu: &DataOutPdu, len: u32) {
        if !self.unsolicited_open {
            // §11.4.7.2: unsolicited data after the command's F bit or its sequence's end.
            self.fail(SenseReason::UnexpectedUnsolicitedData);
            return;
        }
        if pdu.data_sn != self.unsolicited_data_sn {
            self.fail(SenseReason::DataPhaseError);
        }
        // §13.18-19: DataPDUInOrder=Yes, DataSequenceInOrder=Yes.
        if pdu.buffer_offset != self.unsolicited_received {
            self.fail(SenseReason::DataOffsetError);
        }
        if self.unsolicited_received + len > self.unsolicited_end {
            self.fail(SenseReason::IncorrectAmountOfData);
        }
        self.keep_data(pdu.buffer_offset, &pdu.data);
        self.unsolicited_received = self.unsolicited_received.saturating_add(len);
        self.unsolicited_data_sn = self.unsolicited_data_sn.wrapping_add(1);
        if pdu.final_bit {
            self.unsolicited_open = false;
            // §11.4.7.2: when the transfer exceeds FirstBurstLength, the unsolicited part must
            // be exactly FirstBurstLength.
            if self.edtl > self.unsolicited_end && self.unsolicited_received != self.unsolicited_end {
                self.fail(SenseReason::IncorrectAmountOfData);
            }
        }
    }

    /// Solicited data answering one of our R2Ts (§11.7.4); DataSN restarts at 0 per R2T.
    fn solicited(&mut self, pdu: &DataOutPdu, len: u32) {
        let Some(idx) = self.open_r2ts.iter().position(|r| r.ttt == pdu.ttt) else {
            self.fail(SenseReason::InvalidTargetPortTransferTag);
            return;
        };
        let r2t = &mut self.open_r2ts[idx];
        let mut problem = None;
        if pdu.data_sn != r2t.next_data_sn {
            problem = Some(SenseReason::DataPhaseError);
        } else if pdu.buffer_offset != r2t.offset + r2t.got {
            problem = Some(SenseReason::DataOffsetError);
        } else if r2t.got + len > r2t.len {
            problem = Some(SenseReason::IncorrectAmountOfData);
        }
        r2t.got = r2t.got.saturating_add(len);
        r2t.next_data_sn = r2t.next_data_sn.wrapping_add(1);
        // The F bit closes the R2T's sequence; closing it short is itself an error.
        let closes = pdu.final_bit;
        if closes && r2t.got < r2t.len && problem.is_none() {
            problem = Some(SenseReason::DataPhaseError);
        }
        if closes {
            self.open_r2ts.remove(idx);
        }
        if let Some(p) = problem {
            self.fail(p);
        }
        self.keep_data(pdu.buffer_offset, &pdu.data);
    }

    /// R2Ts to send now. Solicitation starts once the unsolicited part has ended, never asks
    /// for more than the command needs, and stops once the task has failed.
    pub fn solicit(&mut self, limits: &Limits, next_ttt: &mut impl FnMut() -> u32) -> Vec<R2tRequest> {
        let mut out = Vec::new();
        if self.unsolicited_open || self.failure.is_some() || !self.granted {
            return out;
        }
        self.next_solicit = self.next_solicit.max(self.unsolicited_received);
        while (self.open_r2ts.len() as u32) < limits.max_outstanding_r2t.max(1) && self.next_solicit < self.keep {
            let len = (self.keep - self.next_solicit).min(limits.max_burst);
            let req = R2tRequest { ttt: next_ttt(), r2t_sn: self.r2t_sn, offset: self.next_solicit, len };
            self.open_r2ts.push(OpenR2t { ttt: req.ttt, offset: req.offset, len, got: 0, next_data_sn: 0 });
            self.r2t_sn = self.r2t_sn.wrapping_add(1);
            self.next_solicit += len;
            out.push(req);
        }
        out
    }

    /// Whether every sequence has ended and nothing more is wanted; then hands the result over.
    pub fn finish_if_complete(&mut self) -> bool {
        let all_asked = self.failure.is_some() || self.next_solicit.max(self.unsolicited_received) >= self.keep;
        if self.unsolicited_open || !self.open_r2ts.is_empty() || !all_asked {
            return false;
        }
        if let Some(done) = self.done.take() {
            let r2t_count = self.r2t_sn;
            let result = match self.failure {
                Some(reason) => TransferResult::Failed { reason, r2t_count },
                None => TransferResult::Complete { data: std::mem::take(&mut self.data), r2t_count },
            };
            let _ = done.send(result);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(initial_r2t: bool) -> Limits {
        Limits { first_burst: 8192, max_burst: 4096, max_outstanding_r2t: 2, immediate_data: true, initial_r2t }
    }

    fn dout(ttt: u32, sn: u32, off: u32, len: usize, f: bool) -> DataOutPdu {
        DataOutPdu {
            final_bit: f,
            lun: 0,
            itt: 1,
            ttt,
            exp_stat_sn: 0,
            data_sn: sn,
            buffer_offset: off,
            data: Bytes::from(vec![off as u8; len]),
        }
    }

    fn counter() -> impl FnMut() -> u32 {
        let mut ttt = 100;
        move || {
            ttt += 1;
            ttt
        }
    }

    #[test]
    fn immediate_unsolicited_then_r2t() {
        let l = limits(false);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 20000, 20000, Bytes::from(vec![0; 1024]), false, &l, tx);
        let mut next = counter();
        assert!(t.solicit(&l, &mut next).is_empty(), "no R2T before the unsolicited sequence ends");
        t.data_out(&dout(RESERVED_TAG, 0, 1024, 4096, false), true);
        t.data_out(&dout(RESERVED_TAG, 1, 5120, 3072, true), true);
        let r2ts = t.solicit(&l, &mut next);
        assert_eq!(r2ts.len(), 2);
        assert_eq!((r2ts[0].offset, r2ts[0].len, r2ts[0].r2t_sn), (8192, 4096, 0));
        assert_eq!((r2ts[1].offset, r2ts[1].len), (12288, 4096));
        t.data_out(&dout(r2ts[0].ttt, 0, 8192, 4096, true), true);
        t.data_out(&dout(r2ts[1].ttt, 0, 12288, 2048, false), true);
        t.data_out(&dout(r2ts[1].ttt, 1, 14336, 2048, true), true);
        let more = t.solicit(&l, &mut next);
        assert_eq!((more[0].offset, more[0].len), (16384, 3616));
        assert!(!t.finish_if_complete());
        t.data_out(&dout(more[0].ttt, 0, 16384, 3616, true), true);
        assert!(t.finish_if_complete());
        match rx.try_recv().unwrap() {
            TransferResult::Complete { data, r2t_count } => {
                assert_eq!(data.len(), 20000);
                assert_eq!(r2t_count, 3);
            }
            _ => panic!("expected data"),
        }
    }

    fn failed_with(rx: &mut oneshot::Receiver<TransferResult>) -> SenseReason {
        match rx.try_recv().unwrap() {
            TransferResult::Failed { reason, .. } => reason,
            TransferResult::Complete { .. } => panic!("a broken sequence must not complete"),
        }
    }

    #[test]
    fn repeated_data_sn_fails_the_task_after_the_sequence() {
        // libiscsi iSCSIDataSnInvalid step 1: two Data-Out both with DataSN 0.
        let l = limits(true);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 1024, 1024, Bytes::new(), true, &l, tx);
        let r = t.solicit(&l, &mut counter());
        t.data_out(&dout(r[0].ttt, 0, 0, 512, false), true);
        assert!(!t.finish_if_complete());
        t.data_out(&dout(r[0].ttt, 0, 512, 512, true), true);
        assert!(t.finish_if_complete());
        assert_eq!(failed_with(&mut rx), SenseReason::DataPhaseError);
    }

    #[test]
    fn wrong_offset_and_unknown_ttt_fail() {
        let l = limits(false);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 1024, 1024, Bytes::new(), false, &l, tx);
        t.data_out(&dout(RESERVED_TAG, 0, 512, 512, false), true);
        t.data_out(&dout(RESERVED_TAG, 1, 0, 512, true), true);
        assert!(t.finish_if_complete());
        assert_eq!(failed_with(&mut rx), SenseReason::DataOffsetError);

        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 512, 512, Bytes::new(), true, &l, tx);
        let _ = t.solicit(&l, &mut counter());
        t.data_out(&dout(0x999, 0, 0, 512, true), true);
        // The real R2T is still open: the task waits for it, already failed.
        assert!(!t.finish_if_complete());
        assert!(t.solicit(&l, &mut counter()).is_empty());
        t.data_out(&dout(101, 0, 0, 512, true), true);
        assert!(t.finish_if_complete());
        assert_eq!(failed_with(&mut rx), SenseReason::InvalidTargetPortTransferTag);
    }

    #[test]
    fn keeps_only_what_the_command_needs() {
        // EDTL 10000 but the CDB needs 512: never solicit beyond 512, keep 512 bytes.
        let l = limits(true);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 10000, 512, Bytes::new(), true, &l, tx);
        let r2ts = t.solicit(&l, &mut || 7);
        assert_eq!(r2ts.len(), 1);
        assert_eq!(r2ts[0].len, 512);
        t.data_out(&dout(7, 0, 0, 512, true), true);
        assert!(t.finish_if_complete());
        let TransferResult::Complete { data, .. } = rx.try_recv().unwrap() else { panic!() };
        assert_eq!(data.len(), 512);
    }

    #[test]
    fn digest_error_fails_with_crc_sense() {
        let l = limits(false);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 1024, 1024, Bytes::from(vec![1; 512]), false, &l, tx);
        t.data_out(&dout(RESERVED_TAG, 0, 512, 512, true), false);
        assert!(t.finish_if_complete());
        assert_eq!(failed_with(&mut rx), SenseReason::ProtocolServiceCrcError);
    }
}
