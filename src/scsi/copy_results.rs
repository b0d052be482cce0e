//! RECEIVE COPY RESULTS (SPC-4 §6.25, §6.22, LID1 service actions COPY STATUS and OPERATING
//! PARAMETERS) and the per-LUN record of EXTENDED COPY commands it reports on.

use super::sense::{Sense, SenseReason};
use super::xcopy;
use crate::nexus::InitiatorPort;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Held copy statuses per LUN; beyond this the oldest finished ones are discarded
/// (SPC-4 §6.18.3 allows discarding held data when resources are needed).
const MAX_HELD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug)]
struct Record {
    port: InitiatorPort,
    list_id: u8,
    hold: bool,
    state: State,
    segments: u16,
    bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct CopyResults {
    records: Mutex<VecDeque<Record>>,
}

impl CopyResults {
    fn records(&self) -> MutexGuard<'_, VecDeque<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a starting copy. SPC-4 §6.4.3.2: a list identifier still in use by a running
    /// command from the same I_T nexus → OPERATION IN PROGRESS. `tracked` is false for LIST ID
    /// USAGE 11b (no list identifier): such copies are not recorded at all.
    pub(crate) fn begin(&self, port: &InitiatorPort, list_id: u8, hold: bool, tracked: bool) -> Result<(), Sense> {
        if !tracked {
            return Ok(());
        }
        let mut records = self.records();
        if records.iter().any(|r| r.port == *port && r.list_id == list_id && r.state == State::InProgress) {
            return Err(SenseReason::OperationInProgress.into());
        }
        // A new command with the same list identifier replaces what was held for the old one.
        records.retain(|r| !(r.port == *port && r.list_id == list_id));
        if records.len() >= MAX_HELD {
            if let Some(i) = records.iter().position(|r| r.state != State::InProgress) {
                records.remove(i);
            }
        }
        records.push_back(Record {
            port: port.clone(),
            list_id,
            hold,
            state: State::InProgress,
            segments: 0,
            bytes: 0,
        });
        Ok(())
    }

    /// Progress of a running copy, for COPY STATUS while it runs.
    pub(crate) fn progress(&self, port: &InitiatorPort, list_id: u8, segments: u16, bytes: u64) {
        if let Some(r) = self.records().iter_mut().find(|r| r.port == *port && r.list_id == list_id) {
            r.segments = segments;
            r.bytes = bytes;
        }
    }

    /// Records the outcome; without HOLD (LIST ID USAGE 10b) the record is dropped.
    pub(crate) fn finish(&self, port: &InitiatorPort, list_id: u8, ok: bool) {
        let mut records = self.records();
        if let Some(i) = records.iter().position(|r| r.port == *port && r.list_id == list_id) {
            if records[i].hold {
                records[i].state = if ok { State::Completed } else { State::Failed };
            } else {
                records.remove(i);
            }
        }
    }

    /// Everything held for one initiator port (I_T nexus loss) or, with None, for all (reset).
    pub(crate) fn discard(&self, port: Option<&InitiatorPort>) {
        self.records().retain(|r| r.state == State::InProgress || port.is_some_and(|p| r.port != *p));
    }

    /// SPC-4 §6.25 COPY STATUS parameter data; a finished status is discarded once reported.
    pub(crate) fn copy_status(&self, port: &InitiatorPort, list_id: u8) -> Result<Vec<u8>, Sense> {
        let mut records = self.records();
        let Some(i) = records.iter().position(|r| r.port == *port && r.list_id == list_id) else {
            // No command with this list identifier from this I_T nexus.
            return Err(Sense::invalid_cdb_field(2, None));
        };
        let r = &records[i];
        let status = match r.state {
            State::InProgress => 0x00,
            State::Completed => 0x01,
            State::Failed => 0x02,
        };
        // TRANSFER COUNT UNITS: bytes while they fit 32 bits, else kibibytes or mebibytes.
        let (units, count) = match r.bytes {
            b if b <= u32::MAX as u64 => (0u8, b),
            b if b >> 10 <= u32::MAX as u64 => (1, b >> 10),
            b => (2, (b >> 20).min(u32::MAX as u64)),
        };
        let mut out = vec![0, 0, 0, 8, status];
        out.extend_from_slice(&r.segments.to_be_bytes());
        out.push(units);
        out.extend_from_slice(&(count as u32).to_be_bytes());
        if r.state != State::InProgress {
            records.remove(i);
        }
        Ok(out)
    }
}

/// SPC-4 §6.22 OPERATING PARAMETERS parameter data.
pub(crate) fn operating_parameters(block_size: u32) -> Vec<u8> {
    let mut out = vec![0u8; 44];
    out[4] = 0x01; // SNLID: LIST ID USAGE 11b (no list identifier) is supported
    out[8..10].copy_from_slice(&xcopy::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    out[10..12].copy_from_slice(&xcopy::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    out[12..16].copy_from_slice(&xcopy::MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    out[16..20].copy_from_slice(&xcopy::max_segment_bytes(block_size).to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0 —
    // no inline data, no held data beyond status, no stream devices.
    out[34..36].copy_from_slice(&(MAX_HELD as u16).to_be_bytes()); // TOTAL CONCURRENT COPIES
    out[36] = MAX_HELD as u8; // MAXIMUM CONCURRENT COPIES
    out[37] = block_size.trailing_zeros() as u8; // DATA SEGMENT GRANULARITY (log2 bytes)
    out[43] = xcopy::SUPPORTED_DESCRIPTORS.len() as u8;
    out.extend_from_slice(&xcopy::SUPPORTED_DESCRIPTORS);
    let available = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&available.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lifecycle_hold_and_duplicates() {
        let results = CopyResults::default();
        let (a, b) = (InitiatorPort::new("iqn.a", [0; 6]), InitiatorPort::new("iqn.b", [0; 6]));
        assert_eq!(results.copy_status(&a, 1).unwrap_err(), Sense::invalid_cdb_field(2, None));
        results.begin(&a, 1, true, true).unwrap();
        assert_eq!(results.begin(&a, 1, true, true).unwrap_err().reason, SenseReason::OperationInProgress);
        results.begin(&b, 1, true, true).unwrap(); // another nexus, same id: fine
        results.progress(&a, 1, 1, 4096);
        assert_eq!(results.copy_status(&a, 1).unwrap(), vec![0, 0, 0, 8, 0x00, 0, 1, 0, 0, 0, 0x10, 0]);
        results.finish(&a, 1, true);
        assert_eq!(results.copy_status(&a, 1).unwrap()[4], 0x01);
        // Reported once, then discarded.
        assert!(results.copy_status(&a, 1).is_err());
        // Without HOLD nothing is kept; without a list identifier nothing is recorded.
        results.begin(&a, 2, false, true).unwrap();
        results.finish(&a, 2, false);
        assert!(results.copy_status(&a, 2).is_err());
        results.begin(&a, 0, false, false).unwrap();
        results.begin(&a, 0, false, false).unwrap();
        // ItNexus loss discards that port's finished records only.
        results.finish(&b, 1, false);
        results.discard(Some(&a));
        assert_eq!(results.copy_status(&b, 1).unwrap()[4], 0x02);
    }

    #[test]
    fn operating_parameters_layout() {
        let op = operating_parameters(512);
        assert_eq!(u32::from_be_bytes(op[0..4].try_into().unwrap()) as usize, op.len() - 4);
        assert_eq!(u16::from_be_bytes([op[8], op[9]]), xcopy::MAX_CSCD_DESCRIPTORS);
        assert_eq!(op[37], 9);
        assert_eq!(&op[44..], &xcopy::SUPPORTED_DESCRIPTORS);
    }
}
