//! Which commands a persistent reservation lets through (SPC-4 §5.13.1 Table 65, SBC-3 §4.17
//! Table 13), and how SPC-2 RESERVE/RELEASE coexist with it (SPC-4 §5.13.3, CRH = 1). The
//! command table gives each command a `PrClass`; this file never lists opcodes.

use super::state::{ItNexus, State};

/// How a command fares under a persistent reservation held by another I_T nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrClass {
    /// "Allowed" in every column: INQUIRY, REPORT LUNS, REQUEST SENSE, TEST UNIT READY,
    /// READ CAPACITY, PERSISTENT RESERVE IN/OUT (PR OUT checks itself, §5.13.1)...
    Allowed,
    /// Reads the medium or device state: allowed under Write Exclusive types, a conflict
    /// under Exclusive Access types unless registered (RO/AR).
    Read,
    /// Changes the medium or device state: a conflict unless registered under RO/AR.
    Write,
    /// SPC-2 RESERVE(6/10) and RELEASE(6/10): see `spc2_outcome`.
    Spc2,
}

/// SPC-4 §5.13.1: whether `class` from `nexus` conflicts with the persistent reservation.
pub fn conflicts(state: &State, nexus: &ItNexus, class: PrClass) -> bool {
    let Some(res) = &state.reservation else { return false };
    if class == PrClass::Allowed {
        return false;
    }
    // One index lookup (never a scan of the registrants): the holder passes, and RO/AR types
    // admit every registered I_T nexus (the "registered" columns of Table 66).
    if let Some(own) = state.registrant(nexus) {
        if own.id == res.holder || res.kind.admits_registrants() {
            return false;
        }
    }
    match class {
        PrClass::Read => res.kind.excludes_reads(),
        // SPC-4 Table 66: RESERVE/RELEASE conflict with another nexus's reservation (the CRH
        // exceptions are decided by `spc2_outcome` before this).
        PrClass::Write | PrClass::Spc2 => true,
        PrClass::Allowed => false,
    }
}

/// What an SPC-2 RESERVE or RELEASE does while persistent reservations exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spc2Outcome {
    /// SPC-4 §5.13.3: GOOD without establishing or releasing anything.
    NoOp,
    /// RESERVATION CONFLICT.
    Conflict,
    /// Processed as SPC-2 defines.
    Process,
}

/// SPC-4 §5.13.3 (CRH = 1): RESERVE/RELEASE from the persistent reservation holder, or from a
/// registrant under a registrants-only or all-registrants reservation, complete with GOOD and
/// change nothing. A RESERVE against another nexus's persistent reservation conflicts; a
/// RELEASE is then processed as SPC-2 (where releasing nothing is GOOD).
pub fn spc2_outcome(state: &State, nexus: &ItNexus, reserve: bool) -> Spc2Outcome {
    let Some(res) = &state.reservation else { return Spc2Outcome::Process };
    if state.is_holder(nexus) || (res.kind.admits_registrants() && state.is_registered(nexus)) {
        return Spc2Outcome::NoOp;
    }
    if reserve {
        Spc2Outcome::Conflict
    } else {
        Spc2Outcome::Process
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;
    use crate::pr::state::{PrType, Registrant, RegistrantId, Reservation};

    /// A holds a `kind` reservation; B is registered; C is not.
    fn reserved(kind: PrType) -> State {
        let reg = |host, key| Registrant { id: RegistrantId::of(&nexus(host, 1), false), key };
        State {
            generation: 2,
            registrants: vec![reg("a", 1), reg("b", 2)].into(),
            reservation: Some(Reservation { holder: RegistrantId::of(&nexus("a", 1), false), kind }),
            aptpl: false,
        }
    }

    /// (registered non-holder, unregistered) × (read allowed, write allowed), as libiscsi's
    /// ProutReserve.Access* expect, SPC-4 Table 66 / SBC-3 Table 13.
    fn access(kind: PrType) -> [bool; 4] {
        let s = reserved(kind);
        let ok = |host, class| !conflicts(&s, &nexus(host, 1), class);
        [ok("b", PrClass::Read), ok("b", PrClass::Write), ok("c", PrClass::Read), ok("c", PrClass::Write)]
    }

    #[test]
    fn spc4_table_66_access_per_reservation_type() {
        use PrType::*;
        assert_eq!(access(WriteExclusive), [true, false, true, false]);
        assert_eq!(access(ExclusiveAccess), [false, false, false, false]);
        assert_eq!(access(WriteExclusiveRegistrantsOnly), [true, true, true, false]);
        assert_eq!(access(ExclusiveAccessRegistrantsOnly), [true, true, false, false]);
        assert_eq!(access(WriteExclusiveAllRegistrants), [true, true, true, false]);
        assert_eq!(access(ExclusiveAccessAllRegistrants), [true, true, false, false]);
    }

    #[test]
    fn holder_and_allowed_commands_never_conflict() {
        for kind in [PrType::ExclusiveAccess, PrType::ExclusiveAccessRegistrantsOnly] {
            let s = reserved(kind);
            assert!(!conflicts(&s, &nexus("a", 1), PrClass::Write));
            assert!(!conflicts(&s, &nexus("c", 1), PrClass::Allowed));
            // Another ISID of the holder's initiator is another I_T nexus (SAM-5 §4.7).
            assert!(conflicts(&s, &nexus("a", 2), PrClass::Write));
        }
        assert!(!conflicts(&State::default(), &nexus("c", 1), PrClass::Write));
    }

    #[test]
    fn spc4_5_13_3_spc2_reserve_release_exceptions() {
        let s = reserved(PrType::WriteExclusive);
        assert_eq!(spc2_outcome(&s, &nexus("a", 1), true), Spc2Outcome::NoOp);
        assert_eq!(spc2_outcome(&s, &nexus("b", 1), true), Spc2Outcome::Conflict);
        assert_eq!(spc2_outcome(&s, &nexus("b", 1), false), Spc2Outcome::Process);
        let ro = reserved(PrType::WriteExclusiveRegistrantsOnly);
        assert_eq!(spc2_outcome(&ro, &nexus("b", 1), true), Spc2Outcome::NoOp);
        assert_eq!(spc2_outcome(&ro, &nexus("c", 1), true), Spc2Outcome::Conflict);
        assert_eq!(spc2_outcome(&State::default(), &nexus("c", 1), true), Spc2Outcome::Process);
        assert!(conflicts(&s, &nexus("c", 1), PrClass::Spc2));
    }
}
