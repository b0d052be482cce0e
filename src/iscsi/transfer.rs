//! Write data collection for one command (RFC 7143 §4.2.5, §11.7, §11.8): immediate data,
//! the unsolicited Data-Out sequence up to FirstBurstLength, then R2Ts for the rest, each at
//! most MaxBurstLength with at most MaxOutstandingR2T open. Only the bytes the command needs
//! are kept, as `Bytes` slices of the received PDUs.

use bytes::Bytes;
use pdu::msg::DataOut as DataOutPdu;
use pdu::RESERVED_TAG;
use tokio::sync::oneshot;

use crate::scsi::DataOut;

/// What the command task receives once its data is in.
pub enum TransferResult {
    Complete { data: DataOut, r2t_count: u32 },
    /// A data digest failed (RFC 7143 §7.8 option b: end the task with CHECK CONDITION).
    DigestError { r2t_count: u32 },
}

/// A broken data sequence: at ErrorRecoveryLevel 0 only session recovery can repair it, so the
/// connection is dropped (RFC 7143 §7.1.1, §6.1.5).
#[derive(Debug)]
pub struct SequenceError(pub String);

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
    /// Expected Data Transfer Length of the command.
    edtl: u32,
    /// Bytes handed to the SCSI layer: min(EDTL, what the CDB needs).
    keep: u32,
    data: DataOut,
    /// Offset of the next byte expected (DataPDUInOrder=Yes, DataSequenceInOrder=Yes).
    received: u32,
    unsolicited_end: u32,
    unsolicited_open: bool,
    unsolicited_data_sn: u32,
    next_solicit: u32,
    open_r2ts: Vec<OpenR2t>,
    r2t_sn: u32,
    digest_error: bool,
    done: Option<oneshot::Sender<TransferResult>>,
}

impl Transfer {
    /// Starts collecting for a command with immediate data `immediate` and F bit `final_bit`.
    pub fn start(
        lun: u64,
        edtl: u32,
        needed: u32,
        immediate: Bytes,
        immediate_digest_ok: bool,
        final_bit: bool,
        limits: &Limits,
        done: oneshot::Sender<TransferResult>,
    ) -> Result<Transfer, SequenceError> {
        let imm = immediate.len() as u32;
        if imm > 0 && !limits.immediate_data {
            return Err(SequenceError("immediate data while ImmediateData=No (§13.11)".into()));
        }
        if imm > edtl || imm > limits.first_burst {
            return Err(SequenceError(format!("immediate data {imm} beyond EDTL/FirstBurstLength")));
        }
        let unsolicited_open = !final_bit;
        if unsolicited_open && limits.initial_r2t {
            // §13.10: with InitialR2T=Yes no unsolicited Data-Out may follow the command.
            return Err(SequenceError("unsolicited data while InitialR2T=Yes".into()));
        }
        let mut t = Transfer {
            lun,
            edtl,
            keep: needed.min(edtl),
            data: DataOut::new(),
            received: 0,
            unsolicited_end: edtl.min(limits.first_burst),
            unsolicited_open,
            unsolicited_data_sn: 0,
            next_solicit: 0,
            open_r2ts: Vec::new(),
            r2t_sn: 0,
            digest_error: false,
            done: Some(done),
        };
        t.accept(0, immediate, immediate_digest_ok);
        Ok(t)
    }

    /// True when the command task is gone (aborted): further data is discarded.
    pub fn abandoned(&self) -> bool {
        self.done.as_ref().is_none_or(|d| d.is_closed())
    }

    fn accept(&mut self, offset: u32, data: Bytes, digest_ok: bool) {
        let len = data.len() as u32;
        if !digest_ok {
            self.digest_error = true;
        } else if offset < self.keep {
            let upto = (self.keep - offset).min(len) as usize;
            self.data.push(data.slice(..upto));
        }
        self.received = offset + len;
    }

    /// Handles one Data-Out PDU for this task.
    pub fn data_out(&mut self, pdu: &DataOutPdu, digest_ok: bool) -> Result<(), SequenceError> {
        let len = pdu.data.len() as u32;
        let end = pdu.buffer_offset.checked_add(len).ok_or_else(|| SequenceError("offset overflow".into()))?;
        if end > self.edtl {
            return Err(SequenceError(format!("data to offset {end} beyond EDTL {}", self.edtl)));
        }
        if pdu.buffer_offset != self.received {
            // §13.18/§13.19: DataPDUInOrder=Yes and DataSequenceInOrder=Yes were negotiated.
            return Err(SequenceError(format!(
                "Data-Out at offset {} but {} expected",
                pdu.buffer_offset, self.received
            )));
        }
        if pdu.ttt == RESERVED_TAG {
            // Unsolicited data (§11.7.4): DataSN counts from 0 within the unsolicited sequence.
            if !self.unsolicited_open || end > self.unsolicited_end {
                return Err(SequenceError("unsolicited Data-Out not allowed here".into()));
            }
            if pdu.data_sn != self.unsolicited_data_sn {
                return Err(SequenceError(format!(
                    "DataSN {} but {} expected (§11.7.5)",
                    pdu.data_sn, self.unsolicited_data_sn
                )));
            }
            self.unsolicited_data_sn = self.unsolicited_data_sn.wrapping_add(1);
            if pdu.final_bit {
                self.unsolicited_open = false;
            }
        } else {
            let r2t = self
                .open_r2ts
                .iter_mut()
                .find(|r| r.ttt == pdu.ttt)
                .ok_or_else(|| SequenceError(format!("Data-Out for unknown TTT 0x{:08x}", pdu.ttt)))?;
            if pdu.buffer_offset != r2t.offset + r2t.got || r2t.got + len > r2t.len {
                return Err(SequenceError("Data-Out outside its R2T".into()));
            }
            if pdu.data_sn != r2t.next_data_sn {
                // §11.7.5: DataSN restarts at 0 for each R2T's sequence.
                return Err(SequenceError(format!("DataSN {} but {} expected", pdu.data_sn, r2t.next_data_sn)));
            }
            r2t.got += len;
            r2t.next_data_sn = r2t.next_data_sn.wrapping_add(1);
            match (pdu.final_bit, r2t.got == r2t.len) {
                (true, true) => {
                    let ttt = r2t.ttt;
                    self.open_r2ts.retain(|r| r.ttt != ttt);
                }
                (false, false) => {}
                _ => return Err(SequenceError("F bit does not match the end of the R2T".into())),
            }
        }
        self.accept(pdu.buffer_offset, pdu.data.clone(), digest_ok);
        Ok(())
    }

    /// R2Ts to send now. Solicitation starts once the unsolicited part has ended and never asks
    /// for more than the command needs.
    pub fn solicit(&mut self, limits: &Limits, next_ttt: &mut impl FnMut() -> u32) -> Vec<R2tRequest> {
        let mut out = Vec::new();
        if self.unsolicited_open {
            return out;
        }
        if self.next_solicit < self.received {
            self.next_solicit = self.received;
        }
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

    /// Whether all wanted data is in and no sequence is open; then hands the data over.
    pub fn finish_if_complete(&mut self) -> bool {
        if self.unsolicited_open || !self.open_r2ts.is_empty() || self.received < self.keep {
            return false;
        }
        if let Some(done) = self.done.take() {
            let r2t_count = self.r2t_sn;
            let result = if self.digest_error {
                TransferResult::DigestError { r2t_count }
            } else {
                TransferResult::Complete { data: std::mem::take(&mut self.data), r2t_count }
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

    #[test]
    fn immediate_unsolicited_then_r2t() {
        let l = limits(false);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 20000, 20000, Bytes::from(vec![0; 1024]), true, false, &l, tx).unwrap();
        let mut ttt = 100;
        let mut next = || {
            ttt += 1;
            ttt
        };
        assert!(t.solicit(&l, &mut next).is_empty(), "no R2T before the unsolicited sequence ends");
        t.data_out(&dout(RESERVED_TAG, 0, 1024, 4096, false), true).unwrap();
        t.data_out(&dout(RESERVED_TAG, 1, 5120, 3072, true), true).unwrap();
        let r2ts = t.solicit(&l, &mut next);
        assert_eq!(r2ts.len(), 2);
        assert_eq!((r2ts[0].offset, r2ts[0].len, r2ts[0].r2t_sn), (8192, 4096, 0));
        assert_eq!((r2ts[1].offset, r2ts[1].len), (12288, 4096));
        t.data_out(&dout(r2ts[0].ttt, 0, 8192, 4096, true), true).unwrap();
        t.data_out(&dout(r2ts[1].ttt, 0, 12288, 2048, false), true).unwrap();
        t.data_out(&dout(r2ts[1].ttt, 1, 14336, 2048, true), true).unwrap();
        let more = t.solicit(&l, &mut next);
        assert_eq!((more[0].offset, more[0].len), (16384, 3616));
        assert!(!t.finish_if_complete());
        t.data_out(&dout(more[0].ttt, 0, 16384, 3616, true), true).unwrap();
        assert!(t.finish_if_complete());
        match rx.try_recv().unwrap() {
            TransferResult::Complete { data, r2t_count } => {
                assert_eq!(data.len(), 20000);
                assert_eq!(r2t_count, 3);
            }
            _ => panic!("expected data"),
        }
    }

    #[test]
    fn wrong_data_sn_is_a_sequence_error() {
        let l = limits(false);
        let (tx, _rx) = oneshot::channel();
        let mut t = Transfer::start(0, 1024, 1024, Bytes::new(), true, false, &l, tx).unwrap();
        t.data_out(&dout(RESERVED_TAG, 0, 0, 512, false), true).unwrap();
        assert!(t.data_out(&dout(RESERVED_TAG, 0, 512, 512, true), true).is_err());
    }

    #[test]
    fn keeps_only_what_the_command_needs() {
        // EDTL 10000 but the CDB needs 512: never solicit beyond 512, keep 512 bytes.
        let l = limits(true);
        let (tx, mut rx) = oneshot::channel();
        let mut t = Transfer::start(0, 10000, 512, Bytes::new(), true, true, &l, tx).unwrap();
        let r2ts = t.solicit(&l, &mut || 7);
        assert_eq!(r2ts.len(), 1);
        assert_eq!(r2ts[0].len, 512);
        t.data_out(&dout(7, 0, 0, 512, true), true).unwrap();
        assert!(t.finish_if_complete());
        let TransferResult::Complete { data, .. } = rx.try_recv().unwrap() else { panic!() };
        assert_eq!(data.len(), 512);
    }

    #[test]
    fn unsolicited_with_initial_r2t_is_refused() {
        let (tx, _rx) = oneshot::channel();
        assert!(Transfer::start(0, 4096, 4096, Bytes::new(), true, false, &limits(true), tx).is_err());
    }
}
