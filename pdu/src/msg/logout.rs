//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

/// Logout reason codes (§11.14.1).
pub mod reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_CONNECTION_FOR_RECOVERY: u8 = 2;
}

/// Logout response codes (§11.15.1).
pub mod response {
    pub const CLOSED: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
    pub const CLEANUP_FAILED: u8 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl LogoutRequest {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        if !b.final_bit() {
            return Err(DecodeError::InvalidField("logout without F bit"));
        }
        Ok(LogoutRequest {
            immediate: b.immediate(),
            reason: b.flags() & 0x7f,
            itt: b.itt(),
            cid: b.u16_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::LOGOUT_REQUEST)
            .immediate(self.immediate)
            .flags(0x80 | (self.reason & 0x7f))
            .itt(self.itt)
            .u16(20, self.cid)
            .u32(24, self.cmd_sn)
            .u32(28, self.exp_stat_sn);
        OutPdu::new(bhs, Bytes::new())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub response: u8,
    pub itt: u32,
    pub seq: TargetSeq,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl LogoutResponse {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(LogoutResponse {
            response: b.byte(2),
            itt: b.itt(),
            seq: seq_of(&b),
            time2wait: b.u16_at(40),
            time2retain: b.u16_at(42),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::LOGOUT_RESPONSE).flags(0x80).byte(2, self.response).itt(self.itt);
        let bhs = with_seq(bhs, self.seq).u16(40, self.time2wait).u16(42, self.time2retain);
        OutPdu::new(bhs, Bytes::new())
    }
}
