//! The transport-facing task types: what a transport hands the SCSI layer and what it gets back.

use bytes::Bytes;
use std::sync::Arc;

pub use crate::nexus::ItNexus;

/// SAM-5 §8.6 task attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// One SCSI command as received by the transport.
#[derive(Debug, Clone)]
pub struct ScsiTask {
    pub nexus: Arc<ItNexus>,
    /// The 8-byte SAM LUN field as a big-endian u64, exactly as on the wire.
    pub lun: u64,
    pub cdb: [u8; 16],
    pub cdb_len: usize,
    pub attr: TaskAttr,
    pub expected_data_in_len: u32,
    pub expected_data_out_len: u32,
}

/// Data-out received for a command: segments in buffer-offset order, never coalesced.
#[derive(Debug, Clone, Default)]
pub struct DataOut {
    segments: Vec<Bytes>,
    len: usize,
}

impl DataOut {
    pub fn new() -> Self {
        DataOut::default()
    }

    pub fn push(&mut self, seg: Bytes) {
        self.len += seg.len();
        if !seg.is_empty() {
            self.segments.push(seg);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// Keeps only the first `max` bytes (slicing segments, no copy).
    pub fn truncate(&mut self, max: usize) {
        let mut kept = 0;
        self.segments.retain_mut(|seg| {
            let room = max - kept;
            if room == 0 {
                return false;
            }
            if seg.len() > room {
                *seg = seg.slice(..room);
            }
            kept += seg.len();
            true
        });
        self.len = kept;
    }

    /// Copies the first `max` bytes into one buffer (parameter lists, which are small).
    pub fn to_vec(&self, max: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len.min(max));
        for seg in &self.segments {
            let room = max - out.len();
            if room == 0 {
                break;
            }
            out.extend_from_slice(&seg[..seg.len().min(room)]);
        }
        out
    }
}

impl From<Bytes> for DataOut {
    fn from(seg: Bytes) -> Self {
        let mut data = DataOut::new();
        data.push(seg);
        data
    }
}

/// SAM-5 §5.3.1 status codes used here.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    /// Ended by another I_T nexus' action while TAS is set (SAM-5 §5.6).
    pub const TASK_ABORTED: u8 = 0x40;
}

/// The outcome of a command. The transport computes residuals from `data_in` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub status: u8,
    /// Sense data (SPC-4 §4.5), without the iSCSI SenseLength prefix.
    pub sense: Option<Bytes>,
    pub data_in: Option<Bytes>,
}

impl Completion {
    pub fn good() -> Self {
        Completion { status: status::GOOD, sense: None, data_in: None }
    }

    pub fn good_with_data(data: Bytes) -> Self {
        Completion { status: status::GOOD, sense: None, data_in: Some(data) }
    }

    /// SAM-5 §5.3.1 RESERVATION CONFLICT carries no sense data.
    pub fn reservation_conflict() -> Self {
        Completion { status: status::RESERVATION_CONFLICT, sense: None, data_in: None }
    }

    pub fn check_condition(sense: Bytes) -> Self {
        Completion { status: status::CHECK_CONDITION, sense: Some(sense), data_in: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_out_keeps_segments_and_caps_copies() {
        let mut data = DataOut::new();
        data.push(Bytes::from_static(b"abc"));
        data.push(Bytes::new());
        data.push(Bytes::from_static(b"defg"));
        assert_eq!(data.len(), 7);
        assert_eq!(data.segments().len(), 2);
        assert_eq!(data.to_vec(5), b"abcde");
        assert_eq!(data.to_vec(100), b"abcdefg");
        data.truncate(4);
        assert_eq!((data.len(), data.segments().len()), (4, 2));
        assert_eq!(data.to_vec(100), b"abcd");
        data.truncate(2);
        assert_eq!((data.len(), data.segments().len(), data.to_vec(9)), (2, 1, b"ab".to_vec()));
    }
}
