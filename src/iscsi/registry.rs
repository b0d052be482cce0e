//! The served targets and live sessions, as the transport sees them: what login consults
//! (target lookup, ACL, CHAP) and what SendTargets reports.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::limits::{ConnectionsByAddress, ResourceLimits};
use super::login::{ChapCredentials, LoginPolicy, TargetAccess, TargetLimits};
use super::session::SessionTable;
use crate::scsi::ScsiTarget;

/// A portal address with its target portal group tag (RFC 7143 §4.2.8 / §13.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalAddr {
    pub addr: SocketAddr,
    pub tpgt: u16,
}

/// One served iSCSI target.
pub struct TargetEntry {
    pub name: String,
    pub alias: Option<String>,
    pub scsi: Arc<ScsiTarget>,
    pub portals: Vec<PortalAddr>,
    /// Initiator names allowed to log in; None = any initiator.
    pub allowed_initiators: Option<HashSet<String>>,
    pub chap: Option<ChapCredentials>,
    pub mutual_chap: Option<ChapCredentials>,
}

impl TargetEntry {
    pub fn allows(&self, initiator: &str) -> bool {
        // RFC 7143 §4.2.7.1: iSCSI names compare case-insensitively (normalised lowercase).
        self.allowed_initiators
            .as_ref()
            .is_none_or(|set| set.contains(&initiator.to_ascii_lowercase()))
    }
}

/// Session-wide knobs that are not negotiated keys.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub limits: TargetLimits,
    /// Interval of target-initiated NOP-In pings on an idle connection; None disables them.
    pub nop_interval: Option<Duration>,
    /// How long to wait for the NOP-Out answering a ping before dropping the connection.
    pub nop_timeout: Duration,
    /// Commands a session may have outstanding: the CmdSN window (RFC 7143 §4.2.2.1).
    pub cmd_window: u32,
    /// Time allowed for a whole login phase.
    pub login_timeout: Duration,
    /// What hosts, targets and sessions may hold.
    pub resources: ResourceLimits,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            limits: TargetLimits::default(),
            nop_interval: Some(Duration::from_secs(15)),
            nop_timeout: Duration::from_secs(30),
            cmd_window: 128,
            login_timeout: Duration::from_secs(30),
            resources: ResourceLimits::default(),
        }
    }
}

pub struct Registry {
    targets: HashMap<String, Arc<TargetEntry>>,
    pub sessions: SessionTable,
    /// Open connections per initiator address (`max_connections_per_address`).
    pub connections: ConnectionsByAddress,
    pub settings: SessionSettings,
    pub discovery_chap: Option<ChapCredentials>,
    /// SendTargets lists a target only to initiators its ACL admits.
    pub discovery_acl_filter: bool,
    /// Metrics (src/metrics): logins by status, Rejects by reason.
    pub counters: crate::metrics::ServerCounters,
}

impl Registry {
    pub fn new(
        targets: Vec<TargetEntry>,
        settings: SessionSettings,
        discovery_chap: Option<ChapCredentials>,
        discovery_acl_filter: bool,
    ) -> Registry {
        let targets = targets.into_iter().map(|t| (t.name.to_ascii_lowercase(), Arc::new(t))).collect();
        Registry {
            targets,
            sessions: SessionTable::default(),
            connections: ConnectionsByAddress::default(),
            settings,
            discovery_chap,
            discovery_acl_filter,
            counters: Default::default(),
        }
    }

    pub fn target(&self, name: &str) -> Option<&Arc<TargetEntry>> {
        self.targets.get(&name.to_ascii_lowercase())
    }

    pub fn targets(&self) -> impl Iterator<Item = &Arc<TargetEntry>> {
        self.targets.values()
    }

    /// SendTargets material (RFC 7143 Appendix C): each visible target with its portals as
    /// "address:port,tpgt".
    pub fn send_targets_view(&self, initiator: &str) -> Vec<(String, Vec<String>)> {
        let mut view: Vec<(String, Vec<String>)> = self
            .targets
            .values()
            .filter(|t| !self.discovery_acl_filter || t.allows(initiator))
            .map(|t| {
                let addrs = t.portals.iter().map(|p| format_portal(&p.addr, p.tpgt)).collect();
                (t.name.clone(), addrs)
            })
            .collect();
        view.sort();
        view
    }
}

/// "ip:port,tpgt" with IPv6 addresses in brackets (RFC 7143 §13.8).
pub fn format_portal(addr: &SocketAddr, tpgt: u16) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{},{}", a.ip(), a.port(), tpgt),
        SocketAddr::V6(a) => format!("[{}]:{},{}", a.ip(), a.port(), tpgt),
    }
}

/// Login decisions over the registry, for the connection that arrived on one portal.
pub struct PortalPolicy {
    pub registry: Arc<Registry>,
    pub tpgt: u16,
}

impl LoginPolicy for PortalPolicy {
    fn target(&self, target_name: &str, initiator_name: &str) -> Option<TargetAccess> {
        let t = self.registry.target(target_name)?;
        // A target not offered on this portal group is not found here (RFC 7143 §4.2.8).
        if !t.portals.iter().any(|p| p.tpgt == self.tpgt) {
            return None;
        }
        Some(TargetAccess {
            initiator_allowed: t.allows(initiator_name),
            chap: t.chap.clone(),
            mutual_chap: t.mutual_chap.clone(),
            alias: t.alias.clone(),
        })
    }

    fn discovery_auth(&self) -> Option<ChapCredentials> {
        self.registry.discovery_chap.clone()
    }
}
