//! The served targets and live sessions, as the transport sees them: what login consults
//! (target lookup, ACL, CHAP) and what SendTargets reports.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

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
    /// Becomes true when a configuration reload removed this target: its sessions are asked
    /// to log out as at shutdown (RFC 7143 §11.9.1 AsyncEvent 1).
    pub retired: watch::Sender<bool>,
}

impl TargetEntry {
    /// Marks the target as removed; its sessions see it through [`shutdown_or_retired`].
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }

    pub fn allows(&self, initiator: &str) -> bool {
        // RFC 7143 §4.2.7.1: iSCSI names compare case-insensitively (normalised lowercase).
        self.allowed_initiators.as_ref().is_none_or(|set| set.contains(&initiator.to_ascii_lowercase()))
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

/// The served targets by lowercase name. Replaced whole on a configuration reload; readers
/// clone the `Arc` and never hold the lock across I/O (sessions keep their own `TargetEntry`).
pub type Targets = HashMap<String, Arc<TargetEntry>>;

pub struct Registry {
    targets: RwLock<Arc<Targets>>,
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
            targets: RwLock::new(Arc::new(targets)),
            sessions: SessionTable::default(),
            connections: ConnectionsByAddress::default(),
            settings,
            discovery_chap,
            discovery_acl_filter,
            counters: Default::default(),
        }
    }

    /// The current target map (a snapshot: a reload swaps in a new one).
    pub fn snapshot(&self) -> Arc<Targets> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn target(&self, name: &str) -> Option<Arc<TargetEntry>> {
        self.snapshot().get(&name.to_ascii_lowercase()).cloned()
    }

    pub fn targets(&self) -> std::vec::IntoIter<Arc<TargetEntry>> {
        self.snapshot().values().cloned().collect::<Vec<_>>().into_iter()
    }

    /// Installs a new target map (configuration reload); returns the one it replaced. New
    /// logins see the new map at once; existing sessions keep the entry they logged in to.
    pub fn replace_targets(&self, targets: Targets) -> Arc<Targets> {
        let mut current = self.targets.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, Arc::new(targets))
    }

    /// SendTargets material (RFC 7143 Appendix C): each visible target with its portals as
    /// "address:port,tpgt".
    pub fn send_targets_view(&self, initiator: &str) -> Vec<(String, Vec<String>)> {
        let mut view: Vec<(String, Vec<String>)> = self
            .snapshot()
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

/// What a session's Full Feature Phase treats as "log out now": the server shutting down, or
/// its target removed by a reload. Both end the same way (Async logout request, drain, close).
pub fn shutdown_or_retired(
    shutdown: watch::Receiver<bool>,
    target: Option<&Arc<TargetEntry>>,
) -> watch::Receiver<bool> {
    let Some(target) = target else { return shutdown };
    let mut retired = target.retired.subscribe();
    let mut server = shutdown;
    let (tx, rx) = watch::channel(*server.borrow() || *retired.borrow());
    tokio::spawn(async move {
        // Ends when either becomes true, or when the connection dropped its receiver.
        tokio::select! {
            Ok(_) = server.wait_for(|s| *s) => {}
            Ok(_) = retired.wait_for(|r| *r) => {}
            _ = tx.closed() => return,
        }
        tx.send_replace(true);
    });
    rx
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::LunMasking;

    fn entry(name: &str) -> TargetEntry {
        TargetEntry {
            name: name.into(),
            alias: None,
            scsi: Arc::new(ScsiTarget::new(name.into(), Vec::new(), LunMasking::allow_all())),
            portals: Vec::new(),
            allowed_initiators: None,
            chap: None,
            mutual_chap: None,
            retired: watch::Sender::new(false),
        }
    }

    #[test]
    fn replacing_targets_changes_lookups_but_not_entries_already_held() {
        let registry = Registry::new(vec![entry("iqn.a"), entry("iqn.b")], SessionSettings::default(), None, false);
        let held = registry.target("IQN.A").expect("case-insensitive lookup");
        let old = registry.replace_targets(Targets::from([("iqn.c".to_string(), Arc::new(entry("iqn.c")))]));
        assert_eq!(old.len(), 2);
        assert!(registry.target("iqn.a").is_none());
        assert!(registry.target("iqn.c").is_some());
        assert_eq!(held.name, "iqn.a", "a session's entry outlives the swap");
        assert_eq!(registry.send_targets_view("iqn.x").len(), 1);
    }

    #[tokio::test]
    async fn a_session_is_told_to_log_out_on_shutdown_or_when_its_target_is_retired() {
        let (server_tx, server_rx) = watch::channel(false);
        let target = Arc::new(entry("iqn.a"));
        let mut rx = shutdown_or_retired(server_rx.clone(), Some(&target));
        assert!(!*rx.borrow());
        target.retire();
        tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|v| *v)).await.expect("retire seen").unwrap();

        let other = Arc::new(entry("iqn.b"));
        let mut rx = shutdown_or_retired(server_rx, Some(&other));
        server_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|v| *v)).await.expect("shutdown seen").unwrap();
    }
}
