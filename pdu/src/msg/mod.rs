//! One module per PDU family (RFC 7143 §11.3-§11.18), request and response side by side.
//! Each message decodes from a received [`Pdu`](crate::Pdu) and encodes to an
//! [`OutPdu`](crate::OutPdu); data segments stay `Bytes` slices.

pub mod async_msg;
pub mod data;
pub mod login;
pub mod logout;
pub mod nop;
pub mod r2t;
pub mod reject;
pub mod scsi;
pub mod snack;
pub mod task_mgmt;
pub mod text;

pub use async_msg::AsyncMessage;
pub use data::{DataIn, DataOut};
pub use login::{LoginRequest, LoginResponse, Stage};
pub use logout::{LogoutRequest, LogoutResponse};
pub use nop::{NopIn, NopOut};
pub use r2t::R2t;
pub use reject::Reject;
pub use scsi::{Residual, ScsiCommand, ScsiResponse};
pub use snack::Snack;
pub use task_mgmt::{TaskMgmtRequest, TaskMgmtResponse};
pub use text::{TextRequest, TextResponse};

use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;

/// Sequence numbers every target-to-initiator PDU carries at bytes 24-35 (RFC 7143 §11.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSeq {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// Any PDU an initiator sends, decoded (what a target receives).
#[derive(Debug, Clone)]
pub enum InitiatorPdu {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    Snack(Snack),
}

impl InitiatorPdu {
    pub fn decode(pdu: &Pdu) -> Result<InitiatorPdu, DecodeError> {
        Ok(match pdu.bhs().opcode() {
            Opcode::NOP_OUT => InitiatorPdu::NopOut(NopOut::decode(pdu)?),
            Opcode::SCSI_COMMAND => InitiatorPdu::ScsiCommand(ScsiCommand::decode(pdu)?),
            Opcode::TASK_MGMT_REQUEST => InitiatorPdu::TaskMgmt(TaskMgmtRequest::decode(pdu)?),
            Opcode::LOGIN_REQUEST => InitiatorPdu::Login(LoginRequest::decode(pdu)?),
            Opcode::TEXT_REQUEST => InitiatorPdu::Text(TextRequest::decode(pdu)?),
            Opcode::SCSI_DATA_OUT => InitiatorPdu::DataOut(DataOut::decode(pdu)?),
            Opcode::LOGOUT_REQUEST => InitiatorPdu::Logout(LogoutRequest::decode(pdu)?),
            Opcode::SNACK_REQUEST => InitiatorPdu::Snack(Snack::decode(pdu)?),
            other => return Err(DecodeError::UnknownOpcode(other.0)),
        })
    }

    /// Encodes the PDU back (used by an initiator, and by round-trip tests and fuzzing).
    pub fn encode(&self) -> crate::OutPdu {
        match self {
            InitiatorPdu::NopOut(m) => m.encode(),
            InitiatorPdu::ScsiCommand(m) => m.encode(),
            InitiatorPdu::TaskMgmt(m) => m.encode(),
            InitiatorPdu::Login(m) => m.encode(),
            InitiatorPdu::Text(m) => m.encode(),
            InitiatorPdu::DataOut(m) => m.encode(),
            InitiatorPdu::Logout(m) => m.encode(),
            InitiatorPdu::Snack(m) => m.encode(),
        }
    }
}

/// Any PDU a target sends, decoded (what an initiator receives).
#[derive(Debug, Clone)]
pub enum TargetPdu {
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmt(TaskMgmtResponse),
    Login(LoginResponse),
    Text(TextResponse),
    DataIn(DataIn),
    Logout(LogoutResponse),
    R2t(R2t),
    Async(AsyncMessage),
    Reject(Reject),
}

impl TargetPdu {
    pub fn decode(pdu: &Pdu) -> Result<TargetPdu, DecodeError> {
        Ok(match pdu.bhs().opcode() {
            Opcode::NOP_IN => TargetPdu::NopIn(NopIn::decode(pdu)?),
            Opcode::SCSI_RESPONSE => TargetPdu::ScsiResponse(ScsiResponse::decode(pdu)?),
            Opcode::TASK_MGMT_RESPONSE => TargetPdu::TaskMgmt(TaskMgmtResponse::decode(pdu)?),
            Opcode::LOGIN_RESPONSE => TargetPdu::Login(LoginResponse::decode(pdu)?),
            Opcode::TEXT_RESPONSE => TargetPdu::Text(TextResponse::decode(pdu)?),
            Opcode::SCSI_DATA_IN => TargetPdu::DataIn(DataIn::decode(pdu)?),
            Opcode::LOGOUT_RESPONSE => TargetPdu::Logout(LogoutResponse::decode(pdu)?),
            Opcode::R2T => TargetPdu::R2t(R2t::decode(pdu)?),
            Opcode::ASYNC_MESSAGE => TargetPdu::Async(AsyncMessage::decode(pdu)?),
            Opcode::REJECT => TargetPdu::Reject(Reject::decode(pdu)?),
            other => return Err(DecodeError::UnknownOpcode(other.0)),
        })
    }

    /// Encodes the PDU back (what a target sends; also for round-trip tests and fuzzing).
    pub fn encode(&self) -> crate::OutPdu {
        match self {
            TargetPdu::NopIn(m) => m.encode(),
            TargetPdu::ScsiResponse(m) => m.encode(),
            TargetPdu::TaskMgmt(m) => m.encode(),
            TargetPdu::Login(m) => m.encode(),
            TargetPdu::Text(m) => m.encode(),
            TargetPdu::DataIn(m) => m.encode(),
            TargetPdu::Logout(m) => m.encode(),
            TargetPdu::R2t(m) => m.encode(),
            TargetPdu::Async(m) => m.encode(),
            TargetPdu::Reject(m) => m.encode(),
        }
    }
}

pub(crate) fn seq_of(b: &crate::Bhs<'_>) -> TargetSeq {
    TargetSeq { stat_sn: b.u32_at(24), exp_cmd_sn: b.u32_at(28), max_cmd_sn: b.u32_at(32) }
}

pub(crate) fn with_seq(b: crate::bhs::BhsBuf, s: TargetSeq) -> crate::bhs::BhsBuf {
    b.u32(24, s.stat_sn).u32(28, s.exp_cmd_sn).u32(32, s.max_cmd_sn)
}

#[cfg(test)]
pub(crate) fn roundtrip(out: &crate::OutPdu) -> Pdu {
    let raw = out.to_bytes(crate::Digests::default());
    Pdu::from_parts(raw).unwrap()
}
