//! Zero-copy codec for iSCSI PDUs (RFC 7143 §11), usable by a target and by an initiator.
//!
//! Map of the crate to the RFC:
//! - [`bhs`]: the 48-byte Basic Header Segment (§11.2.1) as a read-only view.
//! - [`framing`]: splitting a byte stream into PDUs (§11.2), header/data digests (§11.2.3-4),
//!   padding (§11.2.5), with every length bounded before anything is buffered.
//! - [`msg`]: one module per PDU family, decode and encode (§11.3-§11.18).
//! - [`text`]: key=value data segments (§6.1) with C-bit continuation (§11.10.2).
//! - [`encode`]: outgoing PDUs as header bytes plus a `Bytes` data segment, gathered for a
//!   vectored write.
//! - [`be`]: big-endian fields at offsets, bounds-checked (PDUs, CDBs, parameter data).
//! - [`chap`]: CHAP's MD5 response (RFC 1994 §4.1) and hex binary values (§6.1), for both ends.
//! - [`serial`]: serial number arithmetic for CmdSN/StatSN/DataSN (RFC 1982, RFC 7143 §4.2.2.1).
//!
//! Received data segments are `Bytes` slices of the receive buffer: never copied.

pub mod be;
pub mod bhs;
pub mod chap;
pub mod digest;
pub mod encode;
pub mod error;
pub mod framing;
pub mod msg;
pub mod opcode;
pub mod serial;
pub mod text;

pub use bhs::Bhs;
pub use encode::{OutPdu, WireWriter};
pub use error::DecodeError;
pub use framing::{Digests, Framer, Pdu};
pub use opcode::Opcode;

/// Length of the Basic Header Segment (RFC 7143 §11.2.1).
pub const BHS_LEN: usize = 48;
/// Length of a CRC32C digest (RFC 7143 §11.2.3).
pub const DIGEST_LEN: usize = 4;
/// Largest DataSegmentLength the 3-byte field can carry (RFC 7143 §11.2.1).
pub const MAX_DATA_SEGMENT_LEN: u32 = (1 << 24) - 1;
/// The Initiator/Target Task Tag value reserved for "no task" (RFC 7143 §11.2.1.8).
pub const RESERVED_TAG: u32 = 0xffff_ffff;
