//! What RECEIVE ROD TOKEN INFORMATION (SPC-4 §6.28, 84h/07h) reports and COPY OPERATION ABORT
//! (SPC-4 §6.3, 83h/1Ch) acts on: per logical unit, the POPULATE TOKEN and WRITE USING TOKEN
//! operations of each I_T nexus by their 4-byte list identifier.

use super::rod_token::{TokenEntry, TOKEN_LEN};
use super::sense::{Sense, SenseReason};
use crate::nexus::InitiatorPort;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Operations held per logical unit; beyond this the oldest finished one is dropped (SPC-4
/// §6.28: held information may be discarded when resources are needed).
pub(crate) const MAX_HELD: usize = 64;
/// SPC-4 §6.28 TRANSFER COUNT UNITS F1h: logical blocks (of the LU the command addressed).
const UNITS_LOGICAL_BLOCKS: u8 = 0xF1;
/// How long an initiator polling a running copy should wait, in milliseconds.
const POLL_DELAY_MS: u32 = 100;

/// COPY OPERATION STATUS values used here (SPC-4 §6.25.2, shared by RECEIVE ROD TOKEN
/// INFORMATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpStatus {
    /// 11h: in progress, in the foreground (the command that started it is still running).
    InProgress,
    /// 01h: completed without errors.
    Completed,
    /// 04h: completed without errors but with residual data (the ROD held fewer bytes than the
    /// destination ranges).
    Residual,
    /// 02h: completed with errors (the sense is reported).
    Failed(Sense),
    /// 60h: terminated by COPY OPERATION ABORT or task management.
    Terminated,
}

impl OpStatus {
    fn code(self) -> u8 {
        match self {
            OpStatus::InProgress => 0x11,
            OpStatus::Completed => 0x01,
            OpStatus::Residual => 0x04,
            OpStatus::Failed(_) => 0x02,
            OpStatus::Terminated => 0x60,
        }
    }
}

#[derive(Debug)]
struct Record {
    port: InitiatorPort,
    list_id: u32,
    /// 10h POPULATE TOKEN or 11h WRITE USING TOKEN.
    service_action: u8,
    status: OpStatus,
    /// Logical blocks processed so far (POPULATE TOKEN: represented by the token).
    blocks: u64,
    token: Option<Arc<TokenEntry>>,
    abort: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
pub(crate) struct RodOperations {
    records: Mutex<VecDeque<Record>>,
}

/// A running operation's handle: progress goes through it, and dropping it before `finish`
/// (the command was aborted by task management) records it as terminated.
pub(crate) struct OpHandle<'a> {
    ops: &'a RodOperations,
    port: InitiatorPort,
    list_id: u32,
    abort: Arc<AtomicBool>,
    finished: bool,
}

impl RodOperations {
    fn records(&self) -> MutexGuard<'_, VecDeque<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a starting operation. SPC-4 §5.16.4.3: a list identifier still in use by a
    /// running operation of the same I_T nexus → OPERATION IN PROGRESS.
    pub(crate) fn begin(&self, port: &InitiatorPort, list_id: u32, service_action: u8) -> Result<OpHandle<'_>, Sense> {
        let mut records = self.records();
        let same = |r: &Record| r.port == *port && r.list_id == list_id;
        if records.iter().any(|r| same(r) && r.status == OpStatus::InProgress) {
            return Err(SenseReason::OperationInProgress.into());
        }
        records.retain(|r| !same(r));
        if records.len() >= MAX_HELD {
            match records.iter().position(|r| r.status != OpStatus::InProgress) {
                Some(i) => {
                    records.remove(i);
                }
                // Every slot is a running copy of someone: refuse rather than grow.
                None => return Err(SenseReason::OperationInProgress.into()),
            }
        }
        let abort = Arc::new(AtomicBool::new(false));
        records.push_back(Record {
            port: port.clone(),
            list_id,
            service_action,
            status: OpStatus::InProgress,
            blocks: 0,
            token: None,
            abort: abort.clone(),
        });
        Ok(OpHandle { ops: self, port: port.clone(), list_id, abort, finished: false })
    }

    fn update(&self, port: &InitiatorPort, list_id: u32, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.records().iter_mut().find(|r| r.port == *port && r.list_id == list_id) {
            f(r);
        }
    }

    /// SPC-4 §6.3 COPY OPERATION ABORT: asks the running operation to stop at its next chunk.
    /// No running operation with that list identifier from this nexus → INVALID FIELD IN CDB.
    pub(crate) fn abort(&self, port: &InitiatorPort, list_id: u32) -> Result<(), Sense> {
        let records = self.records();
        match records.iter().find(|r| r.port == *port && r.list_id == list_id && r.status == OpStatus::InProgress) {
            Some(r) => {
                r.abort.store(true, Ordering::Release);
                Ok(())
            }
            None => Err(Sense::invalid_cdb_field(2, None)),
        }
    }

    /// SAM-5 §6.3.4 I_T nexus loss / §6.4 LU reset: held information of `port` (all with None)
    /// is discarded; running operations are ended by their tasks' abort.
    pub(crate) fn discard(&self, port: Option<&InitiatorPort>) {
        self.records().retain(|r| r.status == OpStatus::InProgress || port.is_some_and(|p| r.port != *p));
    }

    /// SPC-4 §6.28.2 RECEIVE ROD TOKEN INFORMATION parameter data. A finished operation is
    /// reported once and then discarded; handing out a POPULATE TOKEN's token marks it
    /// delivered (it then outlives the I_T nexus, until it expires).
    pub(crate) fn report(&self, port: &InitiatorPort, list_id: u32, d_sense: bool) -> Result<Vec<u8>, Sense> {
        let mut records = self.records();
        let Some(i) = records.iter().position(|r| r.port == *port && r.list_id == list_id) else {
            return Err(Sense::invalid_cdb_field(2, None));
        };
        let r = &records[i];
        let mut out = vec![0u8; 32];
        out[4] = r.service_action;
        out[5] = r.status.code();
        if r.status == OpStatus::InProgress {
            out[8..12].copy_from_slice(&POLL_DELAY_MS.to_be_bytes());
        }
        // EXTENDED COPY COMPLETION STATUS: the SCSI status the command ended with.
        let sense = match r.status {
            OpStatus::Failed(sense) => {
                out[12] = 0x02;
                Some(sense.encode(d_sense))
            }
            _ => None,
        };
        out[15] = UNITS_LOGICAL_BLOCKS;
        out[16..24].copy_from_slice(&r.blocks.to_be_bytes());
        if let Some(sense) = sense {
            out[13] = sense.len() as u8; // LENGTH OF THE SENSE DATA FIELD
            out[14] = sense.len() as u8; // SENSE DATA LENGTH
            out.extend_from_slice(&sense);
        }
        match (&r.token, r.status) {
            (Some(token), OpStatus::Completed) => {
                // ROD TOKEN DESCRIPTORS LENGTH, two reserved bytes, the token.
                out.extend_from_slice(&(TOKEN_LEN as u32 + 2).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(token.bytes());
                token.mark_delivered();
            }
            _ => out.extend_from_slice(&[0; 4]),
        }
        let available = (out.len() - 4) as u32;
        out[0..4].copy_from_slice(&available.to_be_bytes());
        if r.status != OpStatus::InProgress {
            records.remove(i);
        }
        Ok(out)
    }
}

impl OpHandle<'_> {
    /// True once COPY OPERATION ABORT asked this operation to stop.
    pub(crate) fn abort_requested(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    pub(crate) fn progress(&self, blocks: u64) {
        self.ops.update(&self.port, self.list_id, |r| r.blocks = blocks);
    }

    pub(crate) fn finish(mut self, status: OpStatus, blocks: u64, token: Option<Arc<TokenEntry>>) {
        self.finished = true;
        self.ops.update(&self.port, self.list_id, |r| {
            r.status = status;
            r.blocks = blocks;
            r.token = token;
        });
    }
}

impl Drop for OpHandle<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.ops.update(&self.port, self.list_id, |r| r.status = OpStatus::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_progress_abort_and_termination() {
        let ops = RodOperations::default();
        let (a, b) = (InitiatorPort::new("iqn.a", [0; 6]), InitiatorPort::new("iqn.b", [0; 6]));
        assert_eq!(ops.report(&a, 5, false).unwrap_err(), Sense::invalid_cdb_field(2, None));
        let op = ops.begin(&a, 5, 0x11).unwrap();
        assert_eq!(ops.begin(&a, 5, 0x11).err().unwrap().reason, SenseReason::OperationInProgress);
        let other = ops.begin(&b, 5, 0x11).unwrap();
        op.progress(64);
        let running = ops.report(&a, 5, false).unwrap();
        assert_eq!((running[4], running[5], running[15]), (0x11, 0x11, 0xF1));
        assert_eq!(u64::from_be_bytes(running[16..24].try_into().unwrap()), 64);
        assert_eq!(&running[32..36], &[0, 0, 0, 0]);
        assert!(ops.abort(&b, 6).is_err());
        ops.abort(&a, 5).unwrap();
        assert!(op.abort_requested() && !other.abort_requested());
        drop(op); // ended without finishing: terminated
        assert_eq!(ops.report(&a, 5, false).unwrap()[5], 0x60);
        assert!(ops.report(&a, 5, false).is_err(), "reported once");
        other.finish(OpStatus::Failed(SenseReason::InvalidTokenRevoked.into()), 8, None);
        let failed = ops.report(&b, 5, false).unwrap();
        assert_eq!((failed[5], failed[12], failed[13]), (0x02, 0x02, 18));
        assert_eq!((failed[32 + 12], failed[32 + 13]), (0x23, 0x06));
        assert_eq!(u32::from_be_bytes(failed[0..4].try_into().unwrap()) as usize, failed.len() - 4);
    }
}
