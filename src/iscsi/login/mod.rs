//! The iSCSI login phase (RFC 7143 §6.3, §11.12, §11.13) as a pure state machine.
//!
//! The transport decodes Login Request PDUs into [`LoginRequest`] values, calls
//! [`LoginMachine::step`], and encodes the returned [`LoginReply`]. Nothing here touches
//! sockets or PDU bytes. What stays with the transport:
//! - C bit: either join continued text itself (then send the empty responses RFC 7143 §11.12.2
//!   asks for) and pass `cont: false`, or pass each C=1 request with its complete pairs as
//!   `cont: true`; the machine then buffers them and answers with an empty reply.
//! - TSIH: a non-zero `tsih_requested` names an existing session; unknown → 02/0A, and a
//!   connection beyond MaxConnections → 02/08 or 02/06 (RFC 7143 §11.13.5).
//! - Version-max/Version-active are 0x00; StatSN, ExpCmdSN, MaxCmdSN and the TSIH of the final
//!   response are session bookkeeping, not negotiation.

mod chap;
mod discovery;
mod identity;
mod machine;
mod negotiate;
mod text;

#[cfg(test)]
mod tests;

use std::fmt;

pub use discovery::send_targets_response;
pub use machine::{LoginMachine, RandomSource};
pub use negotiate::Negotiated;

/// Login stages as carried in the CSG/NSG fields (RFC 7143 §11.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    /// Value 2 is reserved; a request carrying it is answered with an initiator error.
    Reserved = 2,
    FullFeature = 3,
}

impl Stage {
    /// Decode the two-bit stage field; total, so the machine can reject the reserved value.
    pub fn from_bits(bits: u8) -> Stage {
        match bits & 0b11 {
            0 => Stage::Security,
            1 => Stage::Operational,
            2 => Stage::Reserved,
            _ => Stage::FullFeature,
        }
    }

    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// One decoded Login Request (RFC 7143 §11.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// key=value pairs in the order received.
    pub keys: Vec<(String, String)>,
}

/// What the transport does after sending the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginProgress {
    /// Wait for the next Login Request.
    Continue,
    /// Send the reply, then close the connection (RFC 7143 §11.13.5: any non-zero class ends login).
    Failed,
    /// Login succeeded; the connection enters Full Feature Phase.
    Complete(LoginResult),
}

/// One Login Response to send (RFC 7143 §11.13). Version-max/active are always 0x00.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginReply {
    pub transit: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub status_class: u8,
    pub status_detail: u8,
    pub keys: Vec<(String, String)>,
    pub outcome: LoginProgress,
}

impl LoginReply {
    pub fn status(&self) -> LoginStatus {
        LoginStatus { class: self.status_class, detail: self.status_detail }
    }
}

/// Status-Class / Status-Detail pairs of a Login Response (RFC 7143 §11.13.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginStatus {
    pub class: u8,
    pub detail: u8,
}

impl LoginStatus {
    pub const SUCCESS: LoginStatus = LoginStatus { class: 0, detail: 0 };
    pub const INITIATOR_ERROR: LoginStatus = LoginStatus { class: 2, detail: 0x00 };
    pub const AUTHENTICATION_FAILURE: LoginStatus = LoginStatus { class: 2, detail: 0x01 };
    pub const AUTHORIZATION_FAILURE: LoginStatus = LoginStatus { class: 2, detail: 0x02 };
    pub const NOT_FOUND: LoginStatus = LoginStatus { class: 2, detail: 0x03 };
    pub const TARGET_REMOVED: LoginStatus = LoginStatus { class: 2, detail: 0x04 };
    pub const UNSUPPORTED_VERSION: LoginStatus = LoginStatus { class: 2, detail: 0x05 };
    pub const TOO_MANY_CONNECTIONS: LoginStatus = LoginStatus { class: 2, detail: 0x06 };
    pub const MISSING_PARAMETER: LoginStatus = LoginStatus { class: 2, detail: 0x07 };
    pub const CANT_INCLUDE_IN_SESSION: LoginStatus = LoginStatus { class: 2, detail: 0x08 };
    pub const SESSION_TYPE_NOT_SUPPORTED: LoginStatus = LoginStatus { class: 2, detail: 0x09 };
    pub const SESSION_DOES_NOT_EXIST: LoginStatus = LoginStatus { class: 2, detail: 0x0a };
    pub const INVALID_DURING_LOGIN: LoginStatus = LoginStatus { class: 2, detail: 0x0b };
    pub const TARGET_ERROR: LoginStatus = LoginStatus { class: 3, detail: 0x00 };
    pub const SERVICE_UNAVAILABLE: LoginStatus = LoginStatus { class: 3, detail: 0x01 };
    pub const OUT_OF_RESOURCES: LoginStatus = LoginStatus { class: 3, detail: 0x02 };
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}/{:02x}", self.class, self.detail)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

/// Everything the session layer needs once login completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginResult {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// None for discovery sessions that named no target.
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    /// TSIH of the first request: 0 for a leading login; otherwise the transport must find
    /// that session or answer 02/0A (RFC 7143 §6.3.1).
    pub tsih_requested: u16,
    pub cid: u16,
    pub params: Negotiated,
}

/// CHAP credentials. For the initiator: the user/secret we verify. For mutual CHAP: the
/// target's own user/secret we answer the initiator's challenge with.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for ChapCredentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// The policy's answer about one target for one initiator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetAccess {
    /// The ACL verdict for this initiator name, computed by the policy.
    pub initiator_allowed: bool,
    /// Some → CHAP is required and verified against these credentials.
    pub chap: Option<ChapCredentials>,
    /// Some → the target can answer an initiator's mutual CHAP challenge.
    pub mutual_chap: Option<ChapCredentials>,
    /// Sent as TargetAlias in the first response when present (RFC 7143 §13.6).
    pub alias: Option<String>,
}

/// Access decisions over the live configuration, implemented by the lead.
pub trait LoginPolicy {
    /// None → 02/03 Not found.
    fn target(&self, target_name: &str, initiator_name: &str) -> Option<TargetAccess>;
    /// Some → CHAP is required on discovery sessions.
    fn discovery_auth(&self) -> Option<ChapCredentials>;
}

/// The target's declarations and negotiation limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLimits {
    /// Declared as our MaxRecvDataSegmentLength (RFC 7143 §13.12).
    pub max_recv_data_segment_length: u32,
    /// Upper bounds for the minimum-function keys (RFC 7143 §13.13, §13.14, §13.17, §13.2).
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub max_connections: u16,
    /// Our side of the boolean keys (RFC 7143 §13.10, §13.11, §13.18, §13.19).
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    /// Highest ErrorRecoveryLevel we implement (RFC 7143 §13.20).
    pub error_recovery_level: u8,
    /// Whether CRC32C may be selected for each digest (RFC 7143 §13.1); None is always allowed.
    pub header_digest_crc32c: bool,
    pub data_digest_crc32c: bool,
    /// Our values for the time keys (RFC 7143 §13.15, §13.16).
    pub default_time2wait: u16,
    pub default_time2retain: u16,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 16,
            max_connections: 1,
            immediate_data: true,
            initial_r2t: false,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            header_digest_crc32c: true,
            data_digest_crc32c: true,
            default_time2wait: 2,
            default_time2retain: 20,
        }
    }
}
