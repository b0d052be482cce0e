//! The value of `PREFIX/pr/<target>/<lun>` (docs/cluster.md "One reservation state per LUN"):
//! the LU's whole reservation state, as the APTPL record encodes it (pr::record, version 3 with
//! relative target port ids), and the PERSISTENT RESERVE OUT that produced it. Every gateway
//! that held the state the change was made on derives the change's exact effects (unit
//! attentions, tasks to abort) by applying the same request to the same state; one that did not
//! (it missed revisions) fences conservatively instead (reservations.rs).
//!
//! `MAGIC, JSON length u32, the last operation as JSON, the state record`.

use std::io;

use serde::{Deserialize, Serialize};

use crate::nexus::{InitiatorPort, TargetPort};
use crate::pr::{self, State};
use crate::scsi::{ItNexus, PrOutCall};

const MAGIC: &[u8; 8] = b"PALPRCL1";

/// The PERSISTENT RESERVE OUT a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOp {
    /// The gateway that committed it.
    pub origin: u16,
    /// Random: tells the committer its own write from another's when etcd's answer was lost.
    pub op_id: u64,
    /// The mod revision of the state it was applied to (0: none yet).
    pub base: i64,
    pub initiator: String,
    /// ISID, 12 hex digits.
    pub isid: String,
    pub target: String,
    pub tpgt: u16,
    pub relative_port: u16,
    /// SERVICE ACTION, and SCOPE/TYPE of the CDB (SPC-4 §6.16.1).
    pub action: u8,
    pub scope_type: u8,
    /// The parameter list, hex.
    pub param: String,
}

impl LastOp {
    pub fn new(origin: u16, base: i64, call: &PrOutCall) -> LastOp {
        let nexus = call.nexus;
        LastOp {
            origin,
            op_id: rand::random(),
            base,
            initiator: nexus.initiator.name.as_str().to_string(),
            isid: hex(&nexus.initiator.isid),
            target: nexus.target.name.clone(),
            tpgt: nexus.target.tpgt,
            relative_port: nexus.target.relative_port,
            action: call.action,
            scope_type: call.scope_type,
            param: hex(call.param),
        }
    }

    pub fn nexus(&self) -> Option<ItNexus> {
        let isid: [u8; 6] = unhex(&self.isid)?.try_into().ok()?;
        let target = TargetPort { name: self.target.clone(), tpgt: self.tpgt, relative_port: self.relative_port };
        Some(ItNexus { initiator: InitiatorPort::new(&self.initiator, isid), target })
    }

    /// The request, decoded from the same bytes as on the originating gateway.
    pub fn request(&self) -> Option<pr::Request> {
        pr::request::decode(self.action, self.scope_type, &unhex(&self.param)?).ok()
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    pub state: State,
    pub op: Option<LastOp>,
}

pub fn encode(state: &State, op: Option<&LastOp>) -> Vec<u8> {
    let op = serde_json::to_vec(&op).expect("an operation record serialises");
    let record = pr::record::encode(state);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + op.len() + record.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(op.len() as u32).to_be_bytes());
    out.extend_from_slice(&op);
    out.extend_from_slice(&record);
    out
}

pub fn decode(bytes: &[u8]) -> io::Result<SharedRecord> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("cluster reservation record: {what}"));
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| invalid("bad magic"))?;
    let len = pdu::be::u32_at(rest, 0).ok_or_else(|| invalid("truncated"))? as usize;
    let op_bytes = rest.get(4..4 + len).ok_or_else(|| invalid("truncated operation"))?;
    let op = serde_json::from_slice(op_bytes).map_err(|e| invalid(&e.to_string()))?;
    // The state record carries its own checksum.
    let state = pr::record::decode(&rest[4 + len..])?;
    Ok(SharedRecord { state, op })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::request::build as param;

    #[test]
    fn a_record_round_trips_with_the_request_that_made_it() {
        let mut nexus = ItNexus::new("iqn.1994-05.com.redhat:a", [0x80, 0, 0, 0, 0, 1], "iqn.t", 1);
        nexus.target.relative_port = 0x0201;
        let bytes = param::basic(0, 7, 0);
        let request = pr::request::decode(0, 0, &bytes).unwrap();
        let call = PrOutCall { nexus: &nexus, action: 0, scope_type: 0, param: &bytes, request: &request };
        let op = LastOp::new(2, 41, &call);
        let state = State::default().apply(&nexus, &request).unwrap().next;
        let back = decode(&encode(&state, Some(&op))).unwrap();
        assert_eq!(back, SharedRecord { state, op: Some(op.clone()) });
        assert_eq!(op.nexus().unwrap(), nexus);
        assert_eq!(op.request().unwrap(), request);
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = encode(&State::default(), None);
        assert!(decode(&good).is_ok());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(&flipped).is_err());
    }
}
