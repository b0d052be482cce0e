//! The iSCSI initiator of Palisade's tools and tests (RFC 7143), on the `pdu` codec and tokio.
//! Everything that talks to a target and is not the target uses it: `palisade bench`, the
//! criterion benchmarks and every integration test. Module map, bottom up:
//! - [`raw`]: one TCP connection that sends built or hand-crafted PDU bytes and reads the next
//!   PDU with a timeout, tracking the sequence numbers (the level hostile tests work at).
//! - [`login`]: the login phase on a raw connection: Normal and Discovery sessions, CHAP and
//!   mutual CHAP, operational negotiation, digests, connections added to a session (MC/S).
//! - [`steps`]: one exchange at a time on a raw connection: a SCSI command with its R2Ts and
//!   Data-In, task management, NOP-Out, Text (SendTargets), logout.
//! - [`connection`]: a pipelined Full Feature Phase connection (the bench's engine): CmdSN
//!   window, immediate/unsolicited data, R2T → Data-Out with test hooks (delay, hold), Data-In
//!   reassembly, NOP-In answers, logout; a session's connections share one command window.
//! - [`registrations`]: many I_T nexuses registering persistent reservation keys (scale setup).
//! - [`shared`]: a connection many tasks submit commands to at once (a driver task owns it).
//! - [`cdb`], [`sense`], [`url`]: CDBs, the one sense parser, libiscsi-style URLs. CHAP's MD5
//!   (`pdu::chap`) and the big-endian helpers (`pdu::be`) are the codec crate's, shared with
//!   the target.

pub mod cdb;
pub mod connection;
pub mod error;
pub mod login;
pub mod raw;
pub mod registrations;
pub mod sense;
pub mod shared;
pub mod steps;
pub mod url;

pub use connection::{Completion, Connection, Request};
pub use error::Error;
pub use login::{LoginOptions, SessionParams};
pub use raw::{RawConnection, RecvError};
pub use url::IscsiUrl;
