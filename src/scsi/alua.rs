//! Asymmetric logical unit access (SPC-4 §5.16.2): the target port groups this server presents and
//! the access state of its own group. One `Alua` per server, shared by every target and LUN.
//!
//! Single-node: one group, always Active/Optimized. Cluster: the cluster layer (src/cluster) sets
//! every gateway's group from the membership and moves the local group to Transitioning or
//! Unavailable when this gateway cannot serve safely (self-fencing), so that commands get NOT READY
//! and a host's multipath retries another path (SPC-4 §5.16.2.4).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

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
}

/// One target port group: its identifier, access state and the relative target port identifiers
/// of its ports (SPC-4 §6.37 target port group descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    pub id: u16,
    pub state: AccessState,
    pub relative_ports: Vec<u16>,
}

/// The port groups of this server and its peers, and the state of its own group.
#[derive(Debug)]
pub struct Alua {
    local_group: u16,
    /// Read on every command: an atomic, not behind the groups' lock.
    local_state: AtomicU8,
    groups: Mutex<Vec<PortGroup>>,
}

impl Alua {
    /// A single server: one group `group_id`, Active/Optimized, with these relative port ids.
    pub fn single_node(group_id: u16, relative_ports: Vec<u16>) -> Arc<Alua> {
        let group = PortGroup { id: group_id, state: AccessState::ActiveOptimized, relative_ports };
        Arc::new(Alua {
            local_group: group_id,
            local_state: AtomicU8::new(AccessState::ActiveOptimized.code()),
            groups: Mutex::new(vec![group]),
        })
    }

    pub fn local_group(&self) -> u16 {
        self.local_group
    }

    pub fn local_state(&self) -> AccessState {
        AccessState::from_code(self.local_state.load(Ordering::Acquire))
    }

    /// Moves this server's own group to `state` (also in the group list reported to initiators).
    pub fn set_local_state(&self, state: AccessState) {
        self.local_state.store(state.code(), Ordering::Release);
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(own) = groups.iter_mut().find(|g| g.id == self.local_group) {
            own.state = state;
        }
    }

    /// Replaces the whole group list (the cluster's view of every gateway). The local group's
    /// entry always carries the local state, whatever the caller passed for it.
    pub fn set_groups(&self, mut groups: Vec<PortGroup>) {
        let local = self.local_state();
        if let Some(own) = groups.iter_mut().find(|g| g.id == self.local_group) {
            own.state = local;
        }
        groups.sort_by_key(|g| g.id);
        *self.groups.lock().unwrap_or_else(|e| e.into_inner()) = groups;
    }

    /// Every group, ordered by id (REPORT TARGET PORT GROUPS).
    pub fn groups(&self) -> Vec<PortGroup> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
}
