//! Reject (RFC 7143 §11.17): the data segment carries the rejected PDU's header.

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::{OutPdu, RESERVED_TAG};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: u8,
    pub seq: TargetSeq,
    /// DataSN/R2TSN for a rejected SNACK (§11.17.3), else 0.
    pub data_sn: u32,
    /// The complete header of the rejected PDU (§11.17.4).
    pub header: Bytes,
}

impl Reject {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(Reject { reason: b.byte(2), seq: seq_of(&b), data_sn: b.u32_at(36), header: pdu.data() })
    }

    pub fn encode(&self) -> OutPdu {
        // §11.17: ITT is reserved (0xffffffff) in a Reject.
        let bhs = BhsBuf::new(Opcode::REJECT).flags(0x80).byte(2, self.reason).itt(RESERVED_TAG);
        OutPdu::new(with_seq(bhs, self.seq).u32(36, self.data_sn), self.header.clone())
    }
}
