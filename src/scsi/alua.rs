//! Asymmetric logical unit access (SPC-4 §5.16.2): the target port groups this server presents and
//! the access state of its own group. One `Alua` per server, shared by every target and LUN.
//!
//! Single-node: one group, always Active/Optimized. Cluster: the cluster layer (src/cluster) sets
//! every gateway's group from the membership and moves the local group to Transitioning or
//! Unavailable when this gateway cannot serve safely (self-fencing), so that commands get NOT READY
//! and a host's multipath retries another path (SPC-4 §5.16.2.4).
//!
//! Conventions shared with the cluster layer: target port group id = gateway id (1 single-node);
//! relative target port identifier of a portal group = TPGT single-node, gateway id × 256 + TPGT
//! in a cluster (so TPGTs stay below 256 there).

use super::lun::Lun;
use super::sense::SenseReason;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Target port asymmetric access state (SPC-4 §6.37, REPORT TARGET PORT GROUPS, table 307 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessState {
    ActiveOptimized = 0x0,
    ActiveNonOptimized = 0x1,
    Standby = 0x2,
    Unavailable = 0x3,
    Transitioning = 0xF,
}

impl AccessState {
    pub fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> AccessState {
        match code {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            _ => AccessState::Transitioning,
        }
    }

    /// The NOT READY answer of a command this state does not process (SPC-4 §5.16.2.4.4-5, §5.16.2.5);
    /// None in the active states, which process every command (§5.16.2.4.2-3).
    pub(crate) fn refusal(self) -> Option<SenseReason> {
        match self {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => None,
            AccessState::Standby => Some(SenseReason::TargetPortInStandbyState),
            AccessState::Unavailable => Some(SenseReason::TargetPortInUnavailableState),
            AccessState::Transitioning => Some(SenseReason::AsymmetricAccessStateTransition),
        }
    }
}

/// One target port group: its identifier, access state and the relative target port identifiers
/// of its ports (SPC-4 §6.37 target port group descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    pub id: u16,
    pub state: AccessState,
    pub relative_ports: Vec<u16>,
}

/// SPC-4 §6.37 table 357 STATUS CODE of a target port group descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GroupStatus {
    /// No status available (the state has not changed since power on).
    NoStatus = 0x00,
    /// The state was altered by implicit asymmetric logical unit access behaviour (02h).
    AlteredImplicitly = 0x02,
}

/// A group as REPORT TARGET PORT GROUPS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    pub group: PortGroup,
    pub status: GroupStatus,
}

#[derive(Debug, Default)]
struct Groups {
    reports: Vec<GroupReport>,
    /// Logical units told ASYMMETRIC ACCESS STATE CHANGED when a state changes.
    luns: Vec<Weak<Lun>>,
}

/// The port groups of this server and its peers, and the state of its own group.
#[derive(Debug)]
pub struct Alua {
    local_group: u16,
    /// Cluster gateways number their relative ports gateway id × 256 + TPGT; a single node
    /// uses the TPGT itself.
    clustered: bool,
    /// Read on every command: an atomic, not behind the groups' lock.
    local_state: AtomicU8,
    /// SPC-4 §6.37 IMPLICIT TRANSITION TIME in seconds (0: no recommendation).
    implicit_transition_secs: AtomicU8,
    groups: Mutex<Groups>,
}

impl Alua {
    /// A single server: one group `group_id`, Active/Optimized, with these relative port ids.
    pub fn single_node(group_id: u16, relative_ports: Vec<u16>) -> Arc<Alua> {
        Alua::build(group_id, false, relative_ports)
    }

    /// Gateway `gateway_id` of a cluster serving portal groups `tpgts` (each below 256): its own
    /// group `gateway_id`, Active/Optimized, with relative ports `gateway_id × 256 + TPGT`.
    /// The cluster layer adds its peers' groups with `set_groups`.
    pub fn gateway(gateway_id: u16, tpgts: &[u16]) -> Arc<Alua> {
        let ports = tpgts.iter().map(|&t| relative_port_in_cluster(gateway_id, t)).collect();
        Alua::build(gateway_id, true, ports)
    }

    fn build(group_id: u16, clustered: bool, mut relative_ports: Vec<u16>) -> Arc<Alua> {
        relative_ports.sort_unstable();
        relative_ports.dedup();
        let group = PortGroup { id: group_id, state: AccessState::ActiveOptimized, relative_ports };
        Arc::new(Alua {
            local_group: group_id,
            clustered,
            local_state: AtomicU8::new(AccessState::ActiveOptimized.code()),
            implicit_transition_secs: AtomicU8::new(0),
            groups: Mutex::new(Groups {
                reports: vec![GroupReport { group, status: GroupStatus::NoStatus }],
                luns: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn local_group(&self) -> u16 {
        self.local_group
    }

    pub fn local_state(&self) -> AccessState {
        AccessState::from_code(self.local_state.load(Ordering::Acquire))
    }

    /// The RELATIVE TARGET PORT IDENTIFIER (SPC-4 §7.8.6.7) of this server's portal group
    /// `tpgt`: the TPGT single-node, gateway id × 256 + TPGT in a cluster.
    pub fn relative_port(&self, tpgt: u16) -> u16 {
        if self.clustered {
            relative_port_in_cluster(self.local_group, tpgt)
        } else {
            tpgt
        }
    }

    /// The TPGT of a relative port identifier (inverse of `relative_port`, for any gateway).
    pub fn tpgt_of(&self, relative_port: u16) -> u16 {
        if self.clustered {
            relative_port & 0xFF
        } else {
            relative_port
        }
    }

    /// Sets the IMPLICIT TRANSITION TIME reported by REPORT TARGET PORT GROUPS (SPC-4 §6.37):
    /// how long a host should expect a Transitioning state to last (e.g. the membership TTL).
    pub fn set_implicit_transition_secs(&self, secs: u8) {
        self.implicit_transition_secs.store(secs, Ordering::Relaxed);
    }

    pub fn implicit_transition_secs(&self) -> u8 {
        self.implicit_transition_secs.load(Ordering::Relaxed)
    }

    /// Logical units that are told about state changes (SPC-4 §5.16.2.5) and that re-check the
    /// state when a data command executes; dropped LUNs are forgotten on the next change.
    pub fn attach(self: &Arc<Self>, lun: &Arc<Lun>) {
        lun.use_alua(self);
        let mut groups = self.lock();
        if !groups.luns.iter().any(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(lun))) {
            groups.luns.push(Arc::downgrade(lun));
        }
    }

    /// Moves this server's own group to `state` (also in the group list reported to initiators).
    pub fn set_local_state(&self, state: AccessState) {
        let mut groups = self.lock();
        let before = AccessState::from_code(self.local_state.swap(state.code(), Ordering::AcqRel));
        if let Some(own) = groups.reports.iter_mut().find(|g| g.group.id == self.local_group) {
            own.group.state = state;
        }
        if before != state {
            mark_implicit(&mut groups.reports, self.local_group);
            announce_change(&mut groups);
        }
    }

    /// Replaces the whole group list (the cluster's view of every gateway). The local group's
    /// entry always carries the local state, whatever the caller passed for it.
    pub fn set_groups(&self, mut new: Vec<PortGroup>) {
        let local = self.local_state();
        if let Some(own) = new.iter_mut().find(|g| g.id == self.local_group) {
            own.state = local;
        }
        new.sort_by_key(|g| g.id);
        let mut groups = self.lock();
        let before = groups.reports.iter().map(|r| (r.group.id, r.group.state));
        let changed = !before.eq(new.iter().map(|g| (g.id, g.state)));
        let reports = new
            .into_iter()
            .map(|group| {
                // SPC-4 §6.37 table 357: a group whose state moved, or that appeared, was altered
                // implicitly; one that kept its state keeps its status.
                let status = match groups.reports.iter().find(|r| r.group.id == group.id) {
                    Some(old) if old.group.state == group.state => old.status,
                    _ => GroupStatus::AlteredImplicitly,
                };
                GroupReport { group, status }
            })
            .collect();
        groups.reports = reports;
        if changed {
            announce_change(&mut groups);
        }
    }

    /// Every group, ordered by id (REPORT TARGET PORT GROUPS).
    pub fn groups(&self) -> Vec<PortGroup> {
        self.lock().reports.iter().map(|r| r.group.clone()).collect()
    }

    /// Every group with its status code, ordered by id.
    pub fn reports(&self) -> Vec<GroupReport> {
        self.lock().reports.clone()
    }
}

fn relative_port_in_cluster(gateway_id: u16, tpgt: u16) -> u16 {
    gateway_id.wrapping_mul(256).wrapping_add(tpgt & 0xFF)
}

fn mark_implicit(reports: &mut [GroupReport], id: u16) {
    if let Some(r) = reports.iter_mut().find(|r| r.group.id == id) {
        r.status = GroupStatus::AlteredImplicitly;
    }
}

/// SPC-4 §5.16.2.5: after an implicit change of a target port group's state, every I_T nexus
/// of every logical unit gets ASYMMETRIC ACCESS STATE CHANGED (06/2A/06).
fn announce_change(groups: &mut Groups) {
    groups.luns.retain(|weak| match weak.upgrade() {
        Some(lun) => {
            lun.establish_unit_attention(SenseReason::AsymmetricAccessStateChanged, None);
            true
        }
        None => false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_state_follows_set_local_state_and_survives_set_groups() {
        let alua = Alua::single_node(1, vec![1]);
        assert_eq!(alua.local_state(), AccessState::ActiveOptimized);
        alua.set_local_state(AccessState::Transitioning);
        let peer = PortGroup { id: 2, state: AccessState::ActiveOptimized, relative_ports: vec![0x201] };
        let own = PortGroup { id: 1, state: AccessState::ActiveOptimized, relative_ports: vec![0x101] };
        alua.set_groups(vec![peer.clone(), own]);
        let groups = alua.groups();
        assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(groups[0].state, AccessState::Transitioning);
        assert_eq!(groups[1], peer);
        assert_eq!(alua.local_state(), AccessState::Transitioning);
    }

    #[test]
    fn relative_ports_single_node_are_tpgts_and_in_a_cluster_carry_the_gateway() {
        let single = Alua::single_node(1, vec![2, 1, 2]);
        assert_eq!(single.groups()[0].relative_ports, vec![1, 2]);
        assert_eq!((single.relative_port(7), single.tpgt_of(7)), (7, 7));
        let gw3 = Alua::gateway(3, &[1, 2]);
        assert_eq!(gw3.local_group(), 3);
        assert_eq!(gw3.groups()[0].relative_ports, vec![0x301, 0x302]);
        assert_eq!(gw3.relative_port(2), 0x302);
        assert_eq!(gw3.tpgt_of(0x502), 2);
    }

    #[test]
    fn status_codes_record_implicit_changes() {
        let alua = Alua::gateway(1, &[1]);
        assert_eq!(alua.reports()[0].status, GroupStatus::NoStatus);
        alua.set_local_state(AccessState::ActiveOptimized);
        assert_eq!(alua.reports()[0].status, GroupStatus::NoStatus, "no change, no status");
        let peer = |state| PortGroup { id: 2, state, relative_ports: vec![0x201] };
        alua.set_groups(vec![alua.groups()[0].clone(), peer(AccessState::ActiveOptimized)]);
        assert_eq!(alua.reports()[1].status, GroupStatus::AlteredImplicitly, "a group that appeared");
        assert_eq!(alua.reports()[0].status, GroupStatus::NoStatus);
        alua.set_local_state(AccessState::Unavailable);
        assert_eq!(alua.reports()[0].status, GroupStatus::AlteredImplicitly);
        assert_eq!(alua.reports()[0].group.state, AccessState::Unavailable);
    }
}
