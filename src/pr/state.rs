//! Persistent reservation state of one logical unit (SPC-4 §5.13): registrants keyed by
//! I_T nexus (or by initiator port for every target port, ALL_TG_PT), the reservation, the
//! PRgeneration counter and the APTPL setting. Plain data: every change goes through
//! `State::apply` (apply.rs), which returns the next state and its effects.

pub use super::registrants::Registrants;
use crate::nexus::{InitiatorPort, IscsiName};
pub use crate::nexus::{ItNexus, TargetPort};

/// An iSCSI initiator port (RFC 7143 §4.2.7.1, SPC-4 §7.6.4.6): the initiator name plus the
/// ISID. `isid: None` is an initiator *device* (TransportID format 00b): every port of that
/// name, as registered through SPEC_I_PT or REGISTER AND MOVE with a name-only TransportID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InitiatorId {
    /// Lower-cased: iSCSI names compare case-insensitively (RFC 7143 §4.2.7.1).
    pub name: String,
    pub isid: Option<[u8; 6]>,
}

impl InitiatorId {
    pub fn port(name: &str, isid: [u8; 6]) -> Self {
        InitiatorId { name: name.to_ascii_lowercase(), isid: Some(isid) }
    }

    pub fn device(name: &str) -> Self {
        InitiatorId { name: name.to_ascii_lowercase(), isid: None }
    }

    pub fn of_port(port: &InitiatorPort) -> Self {
        InitiatorId { name: port.name.as_str().to_string(), isid: Some(port.isid) }
    }

    pub fn of_device(name: &IscsiName) -> Self {
        InitiatorId { name: name.as_str().to_string(), isid: None }
    }

    /// Whether the initiator port belongs to this identity (both names are normalised).
    pub fn covers(&self, port: &InitiatorPort) -> bool {
        self.name == port.name.as_str() && self.isid.is_none_or(|i| i == port.isid)
    }

    /// Whether two identities can name a common initiator port.
    pub fn overlaps(&self, other: &InitiatorId) -> bool {
        self.name == other.name && (self.isid.is_none() || other.isid.is_none() || self.isid == other.isid)
    }

    /// "<name>,i,0x<ISID>" for a port, the bare name for a device (SPC-4 §7.6.4.6).
    pub fn display_name(&self) -> String {
        match self.isid {
            Some(isid) => {
                let hex: String = isid.iter().map(|b| format!("{b:02x}")).collect();
                format!("{},i,0x{hex}", self.name)
            }
            None => self.name.clone(),
        }
    }
}

/// SPC-4 §6.15.3.4 Table 206 persistent reservation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    pub fn from_code(code: u8) -> Option<PrType> {
        use PrType::*;
        Some(match code {
            1 => WriteExclusive,
            3 => ExclusiveAccess,
            5 => WriteExclusiveRegistrantsOnly,
            6 => ExclusiveAccessRegistrantsOnly,
            7 => WriteExclusiveAllRegistrants,
            8 => ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Reads as well as writes are exclusive (EA, EA-RO, EA-AR).
    pub fn excludes_reads(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess | PrType::ExclusiveAccessRegistrantsOnly | PrType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registered I_T nexuses share access (RO and AR types, SPC-4 §5.13.1).
    pub fn admits_registrants(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Every registrant is a reservation holder (SPC-4 §5.13.10: all registrants types).
    pub fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }
}

/// Who a registration belongs to: an initiator port (or device) at one target port, or at
/// every target port (ALL_TG_PT, SPC-4 §6.16.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistrantId {
    pub initiator: InitiatorId,
    /// None: registered through every target port (ALL_TG_PT = 1).
    pub target: Option<TargetPort>,
}

impl RegistrantId {
    pub fn of(nexus: &ItNexus, all_tg_pt: bool) -> Self {
        RegistrantId {
            initiator: InitiatorId::of_port(&nexus.initiator),
            target: (!all_tg_pt).then(|| nexus.target.clone()),
        }
    }

    /// The four registrations that could cover `nexus`: its port or its device, at its
    /// target port or at every one. A set of registrations is probed with these, not scanned.
    pub fn candidates(nexus: &ItNexus) -> [RegistrantId; 4] {
        let (port, device) = (InitiatorId::of_port(&nexus.initiator), InitiatorId::of_device(&nexus.initiator.name));
        let at = |initiator: &InitiatorId, target: Option<&TargetPort>| RegistrantId {
            initiator: initiator.clone(),
            target: target.cloned(),
        };
        [at(&port, Some(&nexus.target)), at(&port, None), at(&device, Some(&nexus.target)), at(&device, None)]
    }

    pub fn covers(&self, nexus: &ItNexus) -> bool {
        self.initiator.covers(&nexus.initiator) && self.target.as_ref().is_none_or(|t| *t == nexus.target)
    }

    /// Whether some I_T nexus would match both.
    pub fn overlaps(&self, other: &RegistrantId) -> bool {
        self.initiator.overlaps(&other.initiator)
            && (self.target.is_none() || other.target.is_none() || self.target == other.target)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrant {
    pub id: RegistrantId,
    pub key: u64,
}

/// SPC-4 §6.15.3.3: only LU_SCOPE (0h) exists; the scope field is kept for READ RESERVATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The registrant that holds it; for all-registrants types every registrant is a holder
    /// and this is the one that created it.
    pub holder: RegistrantId,
    pub kind: PrType,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// SPC-4 §6.15.2 PRgeneration.
    pub generation: u32,
    /// In registration order, indexed by initiator port (registrants.rs).
    pub registrants: Registrants,
    pub reservation: Option<Reservation>,
    /// SPC-4 §5.13.5.1: the last APTPL value received governs all registrations.
    pub aptpl: bool,
}

impl State {
    /// The registration of the I_T nexus, if any: an index lookup, never a scan.
    pub fn registrant(&self, nexus: &ItNexus) -> Option<&Registrant> {
        self.registrants.find(nexus)
    }

    pub fn is_registered(&self, nexus: &ItNexus) -> bool {
        self.registrant(nexus).is_some()
    }

    /// SPC-4 §5.13.10: the holder is the reserving I_T nexus, or any registrant for an
    /// all-registrants type.
    pub fn is_holder(&self, nexus: &ItNexus) -> bool {
        let Some(res) = &self.reservation else { return false };
        match self.registrant(nexus) {
            Some(reg) => res.kind.all_registrants() || reg.id == res.holder,
            None => false,
        }
    }

    /// Whether the registrant `id` holds the reservation.
    pub fn holds(&self, id: &RegistrantId) -> bool {
        self.reservation.as_ref().is_some_and(|r| r.kind.all_registrants() || r.holder == *id)
    }

    /// The reservation key READ RESERVATION reports: the holder's, or zero for all-registrants
    /// types (SPC-4 §6.15.3).
    pub fn reservation_key(&self) -> Option<u64> {
        let res = self.reservation.as_ref()?;
        if res.kind.all_registrants() {
            return Some(0);
        }
        Some(self.registrants.get(&res.holder).map_or(0, |r| r.key))
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const TARGET: &str = "iqn.2026-11.io.palisade:default";

    /// ItNexus of initiator `host` with ISID ending in `isid` on target port 1.
    pub fn nexus(host: &str, isid: u8) -> ItNexus {
        ItNexus::new(&format!("iqn.1994-05.com.example:{host}"), [0x80, 0, 0, 0, 0, isid], TARGET, 1)
    }

    /// A state with a port registration at one target port, one at all of them, a device
    /// registration and a registrants-only reservation, under APTPL: what the stores round-trip.
    pub fn sample() -> State {
        let a = RegistrantId::of(&nexus("a", 1), false);
        State {
            generation: 41,
            registrants: vec![
                Registrant { id: RegistrantId::of(&nexus("b", 3), true), key: 2 },
                Registrant { id: a.clone(), key: u64::MAX },
                Registrant { id: RegistrantId { initiator: InitiatorId::device("iqn.x:dev"), target: None }, key: 9 },
            ]
            .into(),
            reservation: Some(Reservation { holder: a, kind: PrType::ExclusiveAccessRegistrantsOnly }),
            aptpl: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::nexus;
    use super::*;

    #[test]
    fn initiator_identity_is_case_insensitive_and_device_covers_every_port() {
        let a = nexus("a", 1);
        let upper = ItNexus::new("IQN.1994-05.COM.EXAMPLE:A", a.initiator.isid, fixtures::TARGET, 1);
        assert!(RegistrantId::of(&a, false).covers(&upper));
        let device = RegistrantId { initiator: InitiatorId::device("iqn.1994-05.com.example:a"), target: None };
        assert!(device.covers(&nexus("a", 2)));
        assert!(!device.covers(&nexus("b", 1)));
        assert!(device.overlaps(&RegistrantId::of(&a, false)));
        assert!(!RegistrantId::of(&a, false).overlaps(&RegistrantId::of(&nexus("a", 2), false)));
    }

    #[test]
    fn a_registration_covers_a_nexus_exactly_when_it_is_one_of_its_candidates() {
        let a = nexus("a", 1);
        let mut other_port = a.clone();
        other_port.target.tpgt = 2;
        let ids = [
            RegistrantId::of(&a, false),
            RegistrantId::of(&a, true),
            RegistrantId::of(&nexus("a", 2), true),
            RegistrantId { initiator: InitiatorId::of_device(&a.initiator.name), target: Some(a.target.clone()) },
            RegistrantId { initiator: InitiatorId::of_device(&a.initiator.name), target: None },
            RegistrantId { initiator: InitiatorId::device("iqn.x:other"), target: None },
        ];
        for n in [&a, &other_port, &nexus("a", 2), &nexus("b", 1)] {
            for id in &ids {
                assert_eq!(id.covers(n), RegistrantId::candidates(n).contains(id), "{id:?} {n:?}");
            }
        }
    }

    #[test]
    fn registration_at_one_target_port_does_not_cover_another() {
        let a = nexus("a", 1);
        let mut other_port = a.clone();
        other_port.target.tpgt = 2;
        assert!(!RegistrantId::of(&a, false).covers(&other_port));
        assert!(RegistrantId::of(&a, true).covers(&other_port));
    }

    #[test]
    fn type_codes_round_trip_and_decompose_like_spc4_table_212() {
        for code in 0..16u8 {
            match PrType::from_code(code) {
                Some(t) => assert_eq!(t.code(), code),
                None => assert!(matches!(code, 0 | 2 | 4 | 9..=15)),
            }
        }
        assert!(!PrType::WriteExclusive.excludes_reads());
        assert!(PrType::ExclusiveAccessAllRegistrants.excludes_reads());
        assert!(PrType::WriteExclusiveRegistrantsOnly.admits_registrants());
        assert!(!PrType::WriteExclusiveRegistrantsOnly.all_registrants());
        assert_eq!(
            InitiatorId::of_port(&nexus("a", 1).initiator).display_name(),
            "iqn.1994-05.com.example:a,i,0x800000000001"
        );
    }
}
