//! What can be wrong with a received PDU, and the Reject reason each maps to (RFC 7143 §11.17.1).

use std::fmt;

/// Reject reason codes (RFC 7143 §11.17.1).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    pub const NEGOTIATION_RESET: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The opcode is not one the receiving side accepts.
    UnknownOpcode(u8),
    /// A field holds a value the RFC forbids.
    InvalidField(&'static str),
    /// DataSegmentLength exceeds the receiver's MaxRecvDataSegmentLength (RFC 7143 §13.12).
    DataSegmentTooLong { len: u32, max: u32 },
    /// The computed header digest does not match (RFC 7143 §7.8: the connection is dropped at ERL 0).
    HeaderDigest,
    /// A text data segment is not a valid key=value list (RFC 7143 §6.1).
    BadText(&'static str),
}

impl DecodeError {
    /// Reject reason that answers this error (RFC 7143 §11.17.1).
    pub fn reject_reason(&self) -> u8 {
        match self {
            DecodeError::UnknownOpcode(_) => reject_reason::COMMAND_NOT_SUPPORTED,
            DecodeError::InvalidField(_) | DecodeError::BadText(_) => reject_reason::INVALID_PDU_FIELD,
            DecodeError::DataSegmentTooLong { .. } | DecodeError::HeaderDigest => reject_reason::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode 0x{op:02x}"),
            DecodeError::InvalidField(what) => write!(f, "invalid PDU field: {what}"),
            DecodeError::DataSegmentTooLong { len, max } => {
                write!(f, "data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")
            }
            DecodeError::HeaderDigest => write!(f, "header digest mismatch"),
            DecodeError::BadText(what) => write!(f, "malformed text segment: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}
