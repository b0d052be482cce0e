//! One connection's write data and data budget (RFC 7143 §4.2.5, §11.7, §11.8): the open
//! transfers by ITT with the R2Ts they solicit, the Target Transfer Tags, and the admission of
//! commands to the session's data budget (budget.rs). Owned by the connection's reader.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pdu::msg::{DataOut as DataOutPdu, R2t, TargetSeq};
use pdu::RESERVED_TAG;
use tokio::sync::{oneshot, AcquireError, OwnedSemaphorePermit};

use super::budget::{Admission, DataBudget, Ticket};
use super::session::SeqState;
use super::transfer::{Limits, Transfer, TransferResult};
use super::writer::{StatSn, WriterHandle};

/// Target Transfer Tags for R2Ts, pings and text continuations.
#[derive(Default)]
pub struct TagAllocator {
    last: u32,
}

impl TagAllocator {
    /// A fresh tag, never the reserved value 0xffffffff (§11.8.2).
    pub fn next(&mut self) -> u32 {
        self.last = self.last.wrapping_add(1);
        if self.last == RESERVED_TAG {
            self.last = 1;
        }
        self.last
    }
}

/// What a command's write data looks like when it arrives.
pub struct WriteCommand {
    pub itt: u32,
    pub lun: u64,
    pub edtl: u32,
    /// Bytes the CDB needs (the rest is received and dropped).
    pub needed: u32,
    pub immediate: Bytes,
    pub final_bit: bool,
}

pub struct DataTransfers {
    writer: WriterHandle,
    limits: Limits,
    open: HashMap<u32, Transfer>,
    ttts: TagAllocator,
    /// Command data this session may hold, and the commands waiting for it.
    pub budget: Arc<DataBudget>,
    pub admission: Admission,
}

impl DataTransfers {
    pub fn new(writer: WriterHandle, limits: Limits, budget: Arc<DataBudget>) -> DataTransfers {
        DataTransfers {
            writer,
            limits,
            open: HashMap::new(),
            ttts: TagAllocator::default(),
            budget,
            admission: Admission::default(),
        }
    }

    /// A fresh Target Transfer Tag (R2Ts, NOP-In pings, text continuations share them).
    pub fn next_ttt(&mut self) -> u32 {
        self.ttts.next()
    }

    /// Whether a transfer for `itt` is still open (§11.17.1: the ITT is in use).
    pub fn is_open(&self, itt: u32) -> bool {
        self.open.contains_key(&itt)
    }

    /// Whether an open transfer still wants data for `itt` (its task is alive).
    pub fn wants(&self, itt: u32) -> bool {
        self.open.get(&itt).is_some_and(|t| !t.abandoned())
    }

    /// Starts collecting a command's write data; R2Ts go out at once when its budget is
    /// granted. The receiver yields the data (or why it cannot be trusted).
    pub async fn start(&mut self, cmd: WriteCommand, ticket: &Ticket) -> oneshot::Receiver<TransferResult> {
        let (tx, rx) = oneshot::channel();
        let mut transfer =
            Transfer::start(cmd.lun, cmd.edtl, cmd.needed, cmd.immediate, cmd.final_bit, &self.limits, tx);
        transfer.granted = !matches!(ticket, Ticket::Wait(_));
        if !self.advance(cmd.itt, &mut transfer).await {
            self.open.insert(cmd.itt, transfer);
        }
        rx
    }

    /// Takes a Data-Out PDU; false when no transfer wants it (the task ended or was aborted:
    /// at ERL 0 nothing can be recovered for it, §11.7).
    pub async fn data_out(&mut self, d: &DataOutPdu, digest_ok: bool) -> bool {
        let Some(mut transfer) = self.open.remove(&d.itt) else { return false };
        if transfer.abandoned() {
            return false;
        }
        transfer.data_out(d, digest_ok);
        if !self.advance(d.itt, &mut transfer).await {
            self.open.insert(d.itt, transfer);
        }
        true
    }

    /// Sends the R2Ts the transfer wants now; returns true once it is complete.
    async fn advance(&mut self, itt: u32, transfer: &mut Transfer) -> bool {
        let ttts = &mut self.ttts;
        for r in transfer.solicit(&self.limits, &mut || ttts.next()) {
            let r2t = R2t {
                lun: transfer.lun,
                itt,
                ttt: r.ttt,
                seq: TargetSeq::default(),
                r2t_sn: r.r2t_sn,
                buffer_offset: r.offset,
                desired_data_transfer_length: r.len,
            };
            self.writer.send(r2t.encode(), StatSn::Current).await;
        }
        transfer.finish_if_complete()
    }

    /// Stops soliciting data for `itt` (its task was aborted).
    pub fn forget(&mut self, itt: u32) {
        self.open.remove(&itt);
    }

    /// Stops soliciting data for every command addressed to `lun` (LOGICAL UNIT RESET).
    pub fn forget_lun(&mut self, lun: u64) {
        self.open.retain(|_, t| t.lun != lun);
    }

    /// Stops soliciting data for every command (the connection is ending, target reset).
    pub fn forget_all(&mut self) {
        self.open.clear();
    }

    /// Budget for a command that will hold `bytes` of data; its R2Ts, if any, wait for it.
    pub fn admit(&mut self, itt: u32, bytes: u64, seq: &SeqState) -> Ticket {
        self.admission.admit(&self.budget, itt, bytes, seq)
    }

    /// The head of the budget queue got its permit: hand it over (a write's solicitation
    /// starts then), then serve whoever else fits.
    pub async fn on_granted(&mut self, permit: Result<OwnedSemaphorePermit, AcquireError>, seq: &SeqState) {
        let granted = self.admission.on_granted(&self.budget, permit, seq);
        for itt in granted {
            if let Some(mut transfer) = self.open.remove(&itt) {
                transfer.granted = true;
                if !self.advance(itt, &mut transfer).await {
                    self.open.insert(itt, transfer);
                }
            }
        }
    }
}
