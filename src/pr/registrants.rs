//! The registrations of one logical unit, in the order they were made (READ KEYS and READ
//! FULL STATUS report them in it), with an index so that an I_T nexus finds its own
//! registration in O(1) whatever their number: the reservation check every command makes
//! never scans the list. The list is shared copy-on-write: `State::apply` copies the state
//! for every PERSISTENT RESERVE OUT, and only the commands that change registrations pay for
//! copying thousands of them.

use super::state::{ItNexus, Registrant, RegistrantId};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Registrants {
    shared: Arc<Indexed>,
}

#[derive(Clone, Default)]
struct Indexed {
    list: Vec<Registrant>,
    /// Fingerprint of (initiator name, ISID or none) → positions in `list`. One bucket holds
    /// the registrations of one initiator port (or device) at its target ports (a handful);
    /// fingerprints that collide share a bucket and every candidate is compared in full.
    index: HashMap<u64, Vec<usize>>,
    /// Keyed per process, so initiator names cannot be chosen to collide.
    hasher: RandomState,
}

impl Registrants {
    fn write(&mut self) -> &mut Indexed {
        Arc::make_mut(&mut self.shared)
    }

    /// The registration covering `nexus`: its port or its device, at its target port or all
    /// of them. Registrations never overlap, so there is at most one.
    pub fn find(&self, nexus: &ItNexus) -> Option<&Registrant> {
        self.shared.find(nexus)
    }

    /// Where the registration `id` is in the list.
    pub fn position(&self, id: &RegistrantId) -> Option<usize> {
        self.shared.position(id)
    }

    pub fn get(&self, id: &RegistrantId) -> Option<&Registrant> {
        self.position(id).map(|i| &self.shared.list[i])
    }

    /// A registration some I_T nexus of `id` would also match. An initiator device (a
    /// name-only TransportID, SPEC_I_PT and REGISTER AND MOVE only) overlaps every port of
    /// its name, which the index cannot enumerate: that rare case scans the list.
    pub fn overlapping(&self, id: &RegistrantId) -> Option<&Registrant> {
        self.shared.overlapping(id)
    }

    pub fn push(&mut self, registrant: Registrant) {
        self.write().push(registrant);
    }

    /// Changes the key of registration `id`; false when there is none.
    pub fn set_key(&mut self, id: &RegistrantId, key: u64) -> bool {
        match self.position(id) {
            Some(i) => {
                self.write().list[i].key = key;
                true
            }
            None => false,
        }
    }

    /// Keeps the registrations `keep` picks, in their order.
    pub fn retain(&mut self, keep: impl FnMut(&Registrant) -> bool) {
        self.write().retain(keep);
    }

    pub fn clear(&mut self) {
        let hasher = self.shared.hasher.clone();
        self.shared = Arc::new(Indexed { hasher, ..Indexed::default() });
    }
}

impl Indexed {
    fn fingerprint(&self, name: &str, isid: Option<[u8; 6]>) -> u64 {
        let mut h = self.hasher.build_hasher();
        name.hash(&mut h);
        isid.hash(&mut h);
        h.finish()
    }

    fn bucket(&self, name: &str, isid: Option<[u8; 6]>) -> impl Iterator<Item = &Registrant> {
        let positions = self.index.get(&self.fingerprint(name, isid)).map_or(&[][..], Vec::as_slice);
        positions.iter().map(|&i| &self.list[i])
    }

    fn reindex(&mut self) {
        let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(self.list.len());
        for (i, r) in self.list.iter().enumerate() {
            index.entry(self.fingerprint(&r.id.initiator.name, r.id.initiator.isid)).or_default().push(i);
        }
        self.index = index;
    }

    fn find(&self, nexus: &ItNexus) -> Option<&Registrant> {
        let name = nexus.initiator.name.as_str();
        let port = self.bucket(name, Some(nexus.initiator.isid));
        let device = self.bucket(name, None);
        port.chain(device).find(|r| r.id.covers(nexus))
    }

    fn position(&self, id: &RegistrantId) -> Option<usize> {
        let positions = self.index.get(&self.fingerprint(&id.initiator.name, id.initiator.isid))?;
        positions.iter().copied().find(|&i| self.list[i].id == *id)
    }

    fn overlapping(&self, id: &RegistrantId) -> Option<&Registrant> {
        match id.initiator.isid {
            Some(isid) => {
                let port = self.bucket(&id.initiator.name, Some(isid));
                port.chain(self.bucket(&id.initiator.name, None)).find(|r| r.id.overlaps(id))
            }
            None => self.list.iter().find(|r| r.id.overlaps(id)),
        }
    }

    fn push(&mut self, registrant: Registrant) {
        let fingerprint = self.fingerprint(&registrant.id.initiator.name, registrant.id.initiator.isid);
        self.index.entry(fingerprint).or_default().push(self.list.len());
        self.list.push(registrant);
    }

    fn retain(&mut self, keep: impl FnMut(&Registrant) -> bool) {
        let before = self.list.len();
        self.list.retain(keep);
        if self.list.len() != before {
            self.reindex();
        }
    }
}

impl Deref for Registrants {
    type Target = [Registrant];
    fn deref(&self) -> &[Registrant] {
        &self.shared.list
    }
}

impl<'a> IntoIterator for &'a Registrants {
    type Item = &'a Registrant;
    type IntoIter = std::slice::Iter<'a, Registrant>;
    fn into_iter(self) -> Self::IntoIter {
        self.shared.list.iter()
    }
}

impl From<Vec<Registrant>> for Registrants {
    fn from(list: Vec<Registrant>) -> Self {
        let mut indexed = Indexed { list, ..Indexed::default() };
        indexed.reindex();
        Registrants { shared: Arc::new(indexed) }
    }
}

/// Two sets of registrations are equal when their lists are (the index follows the list);
/// an unchanged copy is recognised without comparing thousands of registrations.
impl PartialEq for Registrants {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared) || self.shared.list == other.shared.list
    }
}

impl Eq for Registrants {}

impl fmt::Debug for Registrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.list.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;
    use crate::pr::state::InitiatorId;

    fn reg(id: RegistrantId, key: u64) -> Registrant {
        Registrant { id, key }
    }

    /// The index answers exactly what a scan of the list answers.
    fn scan<'a>(list: &'a [Registrant], n: &ItNexus) -> Option<&'a Registrant> {
        list.iter().find(|r| r.id.covers(n))
    }

    #[test]
    fn find_matches_port_device_and_all_target_port_registrations_like_a_scan() {
        let mut other_port = nexus("c", 1);
        other_port.target.tpgt = 2;
        let device = RegistrantId { initiator: InitiatorId::device("iqn.1994-05.com.example:d"), target: None };
        let regs = Registrants::from(vec![
            reg(RegistrantId::of(&nexus("a", 1), false), 1),
            reg(RegistrantId::of(&nexus("b", 1), true), 2),
            reg(RegistrantId::of(&other_port, false), 3),
            reg(device, 4),
        ]);
        for n in [nexus("a", 1), nexus("a", 2), nexus("b", 1), nexus("c", 1), other_port, nexus("d", 9), nexus("e", 1)]
        {
            assert_eq!(regs.find(&n), scan(&regs, &n), "{n:?}");
        }
        assert_eq!(regs.find(&nexus("d", 3)).map(|r| r.key), Some(4));
    }

    #[test]
    fn the_index_follows_push_retain_set_key_and_clear() {
        let mut regs = Registrants::default();
        let host = |i: u64| nexus(&format!("h{}", i / 100), (i % 100) as u8);
        for i in 0..300u64 {
            regs.push(reg(RegistrantId::of(&host(i), i % 2 == 0), i + 1));
        }
        assert_eq!(regs.len(), 300);
        // Every third goes; positions shift and the index must follow.
        regs.retain(|r| r.key % 3 != 0);
        for r in regs.iter() {
            assert_eq!(regs.get(&r.id).map(|g| g.key), Some(r.key));
        }
        for i in 0..300u64 {
            assert_eq!(regs.find(&host(i)), scan(&regs, &host(i)));
        }
        let first = regs[0].id.clone();
        assert!(regs.set_key(&first, 99));
        assert_eq!(regs.find(&host(0)).unwrap().key, 99);
        assert!(!regs.set_key(&RegistrantId::of(&nexus("nobody", 1), false), 1));
        regs.clear();
        assert!(regs.find(&host(1)).is_none() && regs.is_empty());
    }

    #[test]
    fn a_copy_is_shared_until_one_side_changes() {
        let original = Registrants::from(vec![reg(RegistrantId::of(&nexus("a", 1), false), 1)]);
        let mut copy = original.clone();
        assert!(Arc::ptr_eq(&original.shared, &copy.shared) && copy == original);
        copy.push(reg(RegistrantId::of(&nexus("b", 1), false), 2));
        assert_eq!((original.len(), copy.len()), (1, 2));
        assert!(original.find(&nexus("b", 1)).is_none() && copy.find(&nexus("b", 1)).is_some());
        copy.clear();
        assert!(copy.is_empty() && original.len() == 1 && copy != original);
    }

    #[test]
    fn overlapping_finds_ports_under_a_device_and_devices_over_a_port() {
        let device = RegistrantId { initiator: InitiatorId::device("iqn.1994-05.com.example:a"), target: None };
        let regs = Registrants::from(vec![reg(RegistrantId::of(&nexus("b", 1), false), 1)]);
        assert!(regs.overlapping(&RegistrantId::of(&nexus("b", 1), true)).is_some());
        assert!(regs.overlapping(&RegistrantId::of(&nexus("b", 2), false)).is_none());
        let b_device = RegistrantId { initiator: InitiatorId::device("iqn.1994-05.com.example:b"), target: None };
        assert!(regs.overlapping(&b_device).is_some());
        let with_device = Registrants::from(vec![reg(device, 1)]);
        assert!(with_device.overlapping(&RegistrantId::of(&nexus("a", 7), false)).is_some());
    }
}
