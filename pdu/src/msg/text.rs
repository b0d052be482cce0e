//! Text Request (RFC 7143 §11.10) and Text Response (§11.11).

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_bit: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    /// 0xffffffff to start a new exchange, else the TTT of the response being continued (§11.10.4).
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data: Bytes,
}

impl TextRequest {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        if flags & 0xc0 == 0xc0 {
            // §11.10.2: F and C must not both be set.
            return Err(DecodeError::InvalidField("text F and C both set"));
        }
        Ok(TextRequest {
            immediate: b.immediate(),
            final_bit: flags & 0x80 != 0,
            cont: flags & 0x40 != 0,
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let flags = if self.final_bit { 0x80 } else { 0 } | if self.cont { 0x40 } else { 0 };
        let bhs = BhsBuf::new(Opcode::TEXT_REQUEST)
            .immediate(self.immediate)
            .flags(flags)
            .lun(self.lun)
            .itt(self.itt)
            .u32(20, self.ttt)
            .u32(24, self.cmd_sn)
            .u32(28, self.exp_stat_sn);
        OutPdu::new(bhs, self.data.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponse {
    pub final_bit: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    /// 0xffffffff on the final response; otherwise a tag the initiator returns to continue.
    pub ttt: u32,
    pub seq: TargetSeq,
    pub data: Bytes,
}

impl TextResponse {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        Ok(TextResponse {
            final_bit: flags & 0x80 != 0,
            cont: flags & 0x40 != 0,
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            seq: seq_of(&b),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let flags = if self.final_bit { 0x80 } else { 0 } | if self.cont { 0x40 } else { 0 };
        let bhs = BhsBuf::new(Opcode::TEXT_RESPONSE).flags(flags).lun(self.lun).itt(self.itt).u32(20, self.ttt);
        OutPdu::new(with_seq(bhs, self.seq), self.data.clone())
    }
}
