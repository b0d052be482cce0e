//! Ready To Transfer (RFC 7143 §11.8).

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    /// StatSN here is the next StatSN, not advanced by the R2T (§11.8.3).
    pub seq: TargetSeq,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_data_transfer_length: u32,
}

impl R2t {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        if pdu.data_len() != 0 {
            return Err(DecodeError::InvalidField("R2T with data segment"));
        }
        Ok(R2t {
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            seq: seq_of(&b),
            r2t_sn: b.u32_at(36),
            buffer_offset: b.u32_at(40),
            desired_data_transfer_length: b.u32_at(44),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::R2T).flags(0x80).lun(self.lun).itt(self.itt).u32(20, self.ttt);
        let bhs = with_seq(bhs, self.seq)
            .u32(36, self.r2t_sn)
            .u32(40, self.buffer_offset)
            .u32(44, self.desired_data_transfer_length);
        OutPdu::new(bhs, Bytes::new())
    }
}
