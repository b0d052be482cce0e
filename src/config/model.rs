//! The validated, typed configuration the server consumes.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// IANA-assigned iSCSI port, assumed when an address omits one (RFC 7143 §13.8).
pub const DEFAULT_ISCSI_PORT: u16 = 3260;
/// Name of the single target served without a configuration file.
pub const DEFAULT_TARGET_NAME: &str = "iqn.2026-11.io.palisade:default";
/// Data folder used without a configuration file (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "palisade-data";
/// Size of the zero-config LUN 0 image: 1 GiB, created sparse.
pub const DEFAULT_LUN_SIZE: u64 = 1 << 30;
/// Largest memory-backed LUN: RAM disks beyond this are almost certainly a typo.
pub const MAX_MEMORY_LUN_SIZE: u64 = 64 << 30;
/// File name of the admin socket inside the data folder unless `[admin] socket` says otherwise.
pub const DEFAULT_ADMIN_SOCKET: &str = "palisade.sock";
/// SAM-5 flat LUN addressing (single level, 14 bits): LUN ids 0..=16383.
pub const MAX_LUN_ID: u64 = 16383;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub portals: Vec<Portal>,
    pub targets: Vec<TargetConfig>,
    pub discovery: DiscoveryConfig,
    pub session: SessionConfig,
    /// The admin socket and metrics endpoint (`[admin]`).
    pub admin: super::admin::AdminConfig,
    pub limits: LimitsConfig,
    /// Cluster mode (`[cluster]`); `None` = a single node that contacts no etcd.
    pub cluster: Option<super::cluster::ClusterConfig>,
    /// Folder for server state (reservation records, zero-config images).
    pub data_dir: PathBuf,
    /// Non-fatal observations made while loading (name case normalized, secrets longer than
    /// some initiators accept…). The server should log them at startup.
    pub warnings: Vec<String>,
}

/// A listening address. Portals sharing a TPGT would form one portal group; this server
/// gives every portal its own TPGT (RFC 7143 §13.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub name: String,
    pub listen: SocketAddr,
    pub tpgt: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Normalized (lowercase) iSCSI name, RFC 7143 §4.2.7.
    pub name: String,
    /// TargetAlias, RFC 7143 §13.6.
    pub alias: Option<String>,
    /// Names of the portals this target is reachable through (all portals when not configured).
    pub portals: Vec<String>,
    pub luns: Vec<LunConfig>,
    /// `None`: any initiator may log in and sees every LUN.
    pub acl: Option<Vec<AclEntry>>,
    /// Credentials the initiator must prove (CHAP_N / secret), RFC 7143 §12.1.3.
    pub chap: Option<ChapConfig>,
    /// The target's own credentials for mutual CHAP; only set together with `chap`.
    pub mutual_chap: Option<ChapConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// Normalized initiator name.
    pub initiator: String,
    /// LUN masking: the LUN ids this initiator sees; `None` = all of the target's LUNs.
    pub luns: Option<Vec<u64>>,
}

/// A CHAP user name and secret. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapConfig {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for ChapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapConfig")
            .field("user", &self.user)
            .field("secret", &format_args!("<{} bytes hidden>", self.secret.len()))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConfig {
    pub id: u64,
    pub backend: BackendConfig,
    /// Logical block length in bytes: 512 or 4096.
    pub block_size: u32,
    /// Physical block length reported in READ CAPACITY(16) (a power-of-two multiple of
    /// `block_size`, at most 4096); defaults to `block_size`.
    pub physical_block_size: u32,
    pub read_only: bool,
    /// Unit serial number (VPD page 80h) override; printable ASCII.
    pub serial: Option<String>,
    /// NAA designator (VPD page 83h) override; NAA type 2, 3 or 5.
    pub naa: Option<u64>,
    /// INQUIRY PRODUCT IDENTIFICATION override, at most 16 ASCII characters.
    pub product: Option<String>,
    /// Report a volatile write cache (WCE=1) and honour SYNCHRONIZE CACHE / FUA.
    pub write_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A regular file. `size`: grow/create the file to this many bytes; `None` = use the
    /// existing file's length (validated to exist at load).
    File { path: PathBuf, size: Option<u64>, direct_io: bool },
    /// Volatile RAM disk of `size` bytes.
    Memory { size: u64 },
    /// A block device; its size comes from the device.
    BlockDevice { path: PathBuf, direct_io: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Credentials an initiator must prove in discovery sessions.
    pub chap: Option<ChapConfig>,
    /// Target credentials for mutual CHAP in discovery sessions.
    pub mutual_chap: Option<ChapConfig>,
    /// SendTargets lists a target only to initiators its ACL admits.
    pub acl_filter: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig { chap: None, mutual_chap: None, acl_filter: true }
    }
}

/// Login negotiation limits the target offers (RFC 7143 §13) and session timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Seconds of idleness before the target sends a NOP-In ping; 0 disables pings.
    pub nop_interval_secs: u64,
    /// Seconds to wait for the NOP-Out answer before dropping the connection.
    pub nop_timeout_secs: u64,
    /// RFC 7143 §13.12, 512..=16777215.
    pub max_recv_data_segment_length: u32,
    /// RFC 7143 §13.13, 512..=16777215.
    pub max_burst_length: u32,
    /// RFC 7143 §13.14, 512..=16777215 and ≤ max_burst_length.
    pub first_burst_length: u32,
    /// RFC 7143 §13.17, 1..=65535.
    pub max_outstanding_r2t: u32,
    /// RFC 7143 §13.11.
    pub immediate_data: bool,
    /// RFC 7143 §13.10.
    pub initial_r2t: bool,
    /// Commands an initiator may have queued: MaxCmdSN − ExpCmdSN + 1 (RFC 7143 §4.2.2.1).
    pub max_cmdsn_window: u32,
    /// Seconds a connection may take to complete login.
    pub login_timeout_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            nop_interval_secs: 15,
            nop_timeout_secs: 30,
            max_recv_data_segment_length: 262_144,
            // Offers chosen for throughput; the negotiation still honours what the initiator
            // asks (min/OR rules of RFC 7143 §13).
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 4,
            immediate_data: true,
            initial_r2t: false,
            max_cmdsn_window: 128,
            login_timeout_secs: 15,
        }
    }
}

/// Resource limits (`[limits]`): what one host, session or stalled peer may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sessions (normal and discovery) the server holds at once; a login beyond is refused
    /// with 03/02 Out of resources (RFC 7143 §11.13.5).
    pub max_sessions: u32,
    /// Normal sessions one target holds at once; beyond, 03/02 Out of resources.
    pub max_sessions_per_target: u32,
    /// TCP connections (logging in or logged in) from one IP address; beyond, new
    /// connections are closed at accept.
    pub max_connections_per_address: u32,
    /// Seconds a new connection may stay silent before its first Login Request is in.
    pub login_idle_timeout_secs: u64,
    /// Bytes of command data (write data received, read data produced) a session may hold;
    /// beyond, commands wait and MaxCmdSN stops advancing.
    pub max_session_data_bytes: u64,
    /// Bytes queued for the socket per connection before senders wait.
    pub max_send_queue_bytes: u64,
    /// Seconds a connection's socket may accept no bytes while the target has data to send
    /// before the connection is dropped (a peer that stopped reading).
    pub send_timeout_secs: u64,
    /// Persistent reservation registrations (I_T nexuses) one logical unit holds; beyond,
    /// INSUFFICIENT REGISTRATION RESOURCES (SPC-4 §5.13.7).
    pub max_registrants_per_lun: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 1024,
            max_sessions_per_target: 512,
            max_connections_per_address: 256,
            login_idle_timeout_secs: 5,
            max_session_data_bytes: 64 << 20,
            max_send_queue_bytes: 4 << 20,
            send_timeout_secs: 30,
            max_registrants_per_lun: crate::pr::DEFAULT_MAX_REGISTRANTS as u32,
        }
    }
}

impl LunConfig {
    /// A read-write LUN with 512-byte blocks, write cache on, no identity overrides.
    pub fn new(id: u64, backend: BackendConfig) -> LunConfig {
        LunConfig {
            id,
            backend,
            block_size: 512,
            physical_block_size: 512,
            read_only: false,
            serial: None,
            naa: None,
            product: None,
            write_cache: true,
        }
    }
}

impl TargetConfig {
    fn acl_entry(&self, initiator: &str) -> Option<&AclEntry> {
        // RFC 7143 §4.2.7: names compare case-insensitively; ours are stored lowercase.
        self.acl.as_ref()?.iter().find(|entry| entry.initiator.eq_ignore_ascii_case(initiator))
    }

    /// True when `initiator` may log in to this target (always, without an ACL).
    pub fn admits(&self, initiator: &str) -> bool {
        self.acl.is_none() || self.acl_entry(initiator).is_some()
    }

    /// True when `initiator` is admitted and LUN masking lets it see LUN `lun_id`.
    pub fn lun_visible(&self, initiator: &str, lun_id: u64) -> bool {
        if !self.luns.iter().any(|lun| lun.id == lun_id) {
            return false;
        }
        match &self.acl {
            None => true,
            Some(_) => self
                .acl_entry(initiator)
                .is_some_and(|entry| entry.luns.as_ref().is_none_or(|ids| ids.contains(&lun_id))),
        }
    }
}
