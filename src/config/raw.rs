//! The configuration file exactly as written: serde structs that reject unknown keys.
//! Numbers are kept wide (i64) so the validation pass can report ranges with the field path.

use super::size::SizeValue;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub portals: Vec<RawPortal>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub discovery: RawDiscovery,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
    pub gateway_id: i64,
    pub lease_ttl_secs: Option<i64>,
    pub self_fence_margin_ms: Option<i64>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    pub name: Option<String>,
    pub listen: String,
    pub tpgt: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: String,
    pub alias: Option<String>,
    pub portals: Option<Vec<String>>,
    #[serde(default)]
    pub luns: Vec<RawLun>,
    pub acl: Option<Vec<RawAclEntry>>,
    pub chap: Option<RawChap>,
    pub mutual_chap: Option<RawChap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLun {
    pub id: i64,
    /// "file", "memory" or "block".
    pub backend: String,
    pub path: Option<PathBuf>,
    pub size: Option<SizeValue>,
    pub direct_io: Option<bool>,
    pub block_size: Option<i64>,
    pub physical_block_size: Option<i64>,
    pub read_only: Option<bool>,
    pub serial: Option<String>,
    pub naa: Option<RawNaa>,
    pub product: Option<String>,
    pub write_cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAclEntry {
    pub initiator: String,
    pub luns: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChap {
    pub user: String,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub chap: Option<RawChap>,
    pub mutual_chap: Option<RawChap>,
    pub acl_filter: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub nop_interval_secs: Option<i64>,
    pub nop_timeout_secs: Option<i64>,
    pub max_recv_data_segment_length: Option<SizeValue>,
    pub max_burst_length: Option<SizeValue>,
    pub first_burst_length: Option<SizeValue>,
    pub max_outstanding_r2t: Option<i64>,
    pub immediate_data: Option<bool>,
    pub initial_r2t: Option<bool>,
    pub max_cmdsn_window: Option<i64>,
    pub login_timeout_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub socket: Option<PathBuf>,
    pub socket_enabled: Option<bool>,
    pub metrics_listen: Option<String>,
    pub metrics_allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_sessions: Option<i64>,
    pub max_sessions_per_target: Option<i64>,
    pub max_connections_per_address: Option<i64>,
    pub login_idle_timeout_secs: Option<i64>,
    pub max_session_data_bytes: Option<SizeValue>,
    pub max_send_queue_bytes: Option<SizeValue>,
    pub send_timeout_secs: Option<i64>,
    pub max_registrants_per_lun: Option<i64>,
}

/// An NAA identifier override: a TOML integer (0x5001405… hex literal) or a hex string
/// with an optional "0x" or "naa." prefix. Range checks happen in validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawNaa {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawNaa {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NaaVisitor;
        impl Visitor<'_> for NaaVisitor {
            type Value = RawNaa;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an NAA identifier as an integer or a hex string")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawNaa, E> {
                Ok(RawNaa::Number(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawNaa, E> {
                Ok(RawNaa::Text(value.to_string()))
            }
        }
        deserializer.deserialize_any(NaaVisitor)
    }
}
