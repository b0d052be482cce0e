//! Asynchronous Message (RFC 7143 §11.9).

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::{OutPdu, RESERVED_TAG};

/// AsyncEvent codes (§11.9.1).
pub mod event {
    pub const SCSI_ASYNC_EVENT: u8 = 0;
    /// The target asks the initiator to log out; Parameter3 is the time to do so (§11.9.1).
    pub const LOGOUT_REQUESTED: u8 = 1;
    pub const DROPPING_CONNECTION: u8 = 2;
    pub const DROPPING_ALL_CONNECTIONS: u8 = 3;
    pub const RENEGOTIATE: u8 = 4;
    pub const VENDOR: u8 = 255;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncMessage {
    pub lun: u64,
    pub seq: TargetSeq,
    pub event: u8,
    pub vcode: u8,
    pub parameter1: u16,
    pub parameter2: u16,
    pub parameter3: u16,
    /// Sense data for SCSI async events, or vendor data.
    pub data: Bytes,
}

impl AsyncMessage {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(AsyncMessage {
            lun: b.lun(),
            seq: seq_of(&b),
            event: b.byte(36),
            vcode: b.byte(37),
            parameter1: b.u16_at(38),
            parameter2: b.u16_at(40),
            parameter3: b.u16_at(42),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::ASYNC_MESSAGE).flags(0x80).lun(self.lun).itt(RESERVED_TAG);
        let bhs = with_seq(bhs, self.seq)
            .byte(36, self.event)
            .byte(37, self.vcode)
            .u16(38, self.parameter1)
            .u16(40, self.parameter2)
            .u16(42, self.parameter3);
        OutPdu::new(bhs, self.data.clone())
    }
}
