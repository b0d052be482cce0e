//! Scenario tests of `State::apply`, one SPC-4 rule each.

use super::apply::{PrUnitAttention as Ua, DEFAULT_MAX_REGISTRANTS};
use super::request::{PrError, Request};
use super::state::fixtures::nexus;
use super::state::{InitiatorId, ItNexus, PrType, Registrant, RegistrantId, State};
use proptest::prelude::*;

fn register(key: u64, new_key: u64) -> Request {
    Request::Register { key, new_key, ignore_existing: false, all_tg_pt: false, aptpl: false, spec: vec![] }
}
fn rie(new_key: u64) -> Request {
    Request::Register { key: 0, new_key, ignore_existing: true, all_tg_pt: false, aptpl: false, spec: vec![] }
}
fn reserve(key: u64, kind: PrType) -> Request {
    Request::Reserve { key, kind }
}
fn preempt(key: u64, victim: u64, kind: PrType, abort: bool) -> Request {
    Request::Preempt { key, victim, kind, abort }
}

/// Applies and returns the next state, panicking on error.
fn ok(state: &State, n: &ItNexus, req: Request) -> (State, super::apply::Effects) {
    let t = state.apply(n, &req).unwrap_or_else(|e| panic!("{req:?} from {n:?}: {e:?}"));
    (t.next, t.effects)
}

/// A (key 1) and B (key 2) registered; A holds a `kind` reservation.
fn a_reserves(kind: PrType) -> State {
    let s = ok(&State::default(), &nexus("a", 1), register(0, 1)).0;
    let s = ok(&s, &nexus("b", 1), register(0, 2)).0;
    ok(&s, &nexus("a", 1), reserve(1, kind)).0
}

fn ua_for(host: &str, isid: u8, ua: Ua) -> (InitiatorId, Ua) {
    (InitiatorId::of_port(&nexus(host, isid).initiator), ua)
}

#[test]
fn spc4_5_13_5_register_from_unregistered_nexus_needs_key_zero() {
    let s = State::default();
    assert_eq!(s.apply(&nexus("a", 1), &register(7, 1)).unwrap_err(), PrError::Conflict);
    let (s, fx) = ok(&s, &nexus("a", 1), register(0, 1));
    assert_eq!(s.registrant(&nexus("a", 1)).unwrap().key, 1);
    assert_eq!(s.generation, 1);
    assert!(!fx.persist);
}

#[test]
fn spc4_5_13_5_registered_nexus_changes_key_only_with_its_current_key() {
    let s = ok(&State::default(), &nexus("a", 1), register(0, 1)).0;
    assert_eq!(s.apply(&nexus("a", 1), &register(9, 5)).unwrap_err(), PrError::Conflict);
    let s = ok(&s, &nexus("a", 1), register(1, 5)).0;
    assert_eq!(s.registrant(&nexus("a", 1)).unwrap().key, 5);
    // REGISTER AND IGNORE EXISTING KEY (Windows cluster validation, fence_scsi) ignores it.
    let s = ok(&s, &nexus("a", 1), rie(6)).0;
    assert_eq!((s.registrant(&nexus("a", 1)).unwrap().key, s.generation), (6, 3));
}

#[test]
fn spc4_5_13_5_unregistering_an_unregistered_nexus_is_a_no_op() {
    let (s, fx) = ok(&State::default(), &nexus("a", 1), rie(0));
    assert_eq!((s, fx), (State::default(), Default::default()));
}

#[test]
fn spc4_5_13_11_3_unregistering_the_holder_releases_and_tells_registrants_only() {
    let s = a_reserves(PrType::WriteExclusiveRegistrantsOnly);
    let (s, fx) = ok(&s, &nexus("a", 1), register(1, 0));
    assert_eq!(s.reservation, None);
    assert!(!s.is_registered(&nexus("a", 1)));
    assert_eq!(fx.ua, vec![ua_for("b", 1, Ua::ReservationsReleased)]);
    // Write Exclusive: released silently.
    let (s, fx) = ok(&a_reserves(PrType::WriteExclusive), &nexus("a", 1), register(1, 0));
    assert_eq!((s.reservation, fx.ua), (None, vec![]));
}

#[test]
fn spc4_5_13_10_all_registrants_reservation_outlives_its_creator_until_the_last_registrant() {
    let s = a_reserves(PrType::ExclusiveAccessAllRegistrants);
    assert!(s.is_holder(&nexus("b", 1)));
    let (s, fx) = ok(&s, &nexus("a", 1), register(1, 0));
    assert_eq!(s.reservation.as_ref().unwrap().kind, PrType::ExclusiveAccessAllRegistrants);
    assert!(fx.ua.is_empty());
    assert_eq!(s.reservation_key(), Some(0));
    let (s, _) = ok(&s, &nexus("b", 1), register(2, 0));
    assert_eq!(s.reservation, None);
}

#[test]
fn spc4_5_13_9_reserve_rules() {
    let s = ok(&State::default(), &nexus("a", 1), register(0, 1)).0;
    let s = ok(&s, &nexus("b", 1), register(0, 2)).0;
    // Unregistered or wrong key: conflict.
    assert_eq!(s.apply(&nexus("c", 1), &reserve(0, PrType::WriteExclusive)).unwrap_err(), PrError::Conflict);
    assert_eq!(s.apply(&nexus("a", 1), &reserve(2, PrType::WriteExclusive)).unwrap_err(), PrError::Conflict);
    let (s, fx) = ok(&s, &nexus("a", 1), reserve(1, PrType::WriteExclusive));
    assert_eq!(s.generation, 2, "RESERVE does not change PRgeneration (§6.16.2)");
    assert_eq!(fx, Default::default());
    // The holder again with the same type: GOOD, nothing changes; another type conflicts.
    assert_eq!(ok(&s, &nexus("a", 1), reserve(1, PrType::WriteExclusive)).0, s);
    assert_eq!(s.apply(&nexus("a", 1), &reserve(1, PrType::ExclusiveAccess)).unwrap_err(), PrError::Conflict);
    assert_eq!(s.apply(&nexus("b", 1), &reserve(2, PrType::WriteExclusive)).unwrap_err(), PrError::Conflict);
}

#[test]
fn spc4_5_13_11_2_release_rules() {
    let s = a_reserves(PrType::ExclusiveAccessRegistrantsOnly);
    let release = |key, kind| Request::Release { key, kind };
    // A registered non-holder's RELEASE: GOOD, no effect. Unregistered: conflict.
    assert_eq!(ok(&s, &nexus("b", 1), release(2, PrType::ExclusiveAccessRegistrantsOnly)).0, s);
    assert_eq!(s.apply(&nexus("c", 1), &release(0, PrType::WriteExclusive)).unwrap_err(), PrError::Conflict);
    assert_eq!(s.apply(&nexus("a", 1), &release(1, PrType::WriteExclusive)).unwrap_err(), PrError::InvalidRelease);
    let (next, fx) = ok(&s, &nexus("a", 1), release(1, PrType::ExclusiveAccessRegistrantsOnly));
    assert_eq!((next.reservation.clone(), next.generation), (None, s.generation));
    assert_eq!(fx.ua, vec![ua_for("b", 1, Ua::ReservationsReleased)]);
    // Nothing reserved: GOOD.
    assert_eq!(ok(&next, &nexus("a", 1), release(1, PrType::WriteExclusive)).0, next);
    // Under all-registrants any registrant releases.
    let ar = a_reserves(PrType::WriteExclusiveAllRegistrants);
    let (next, fx) = ok(&ar, &nexus("b", 1), release(2, PrType::WriteExclusiveAllRegistrants));
    assert_eq!((next.reservation, fx.ua), (None, vec![ua_for("a", 1, Ua::ReservationsReleased)]));
}

#[test]
fn spc4_5_13_11_2_6_clear_removes_everything_and_tells_the_others() {
    let s = a_reserves(PrType::WriteExclusive);
    assert_eq!(s.apply(&nexus("c", 1), &Request::Clear { key: 0 }).unwrap_err(), PrError::Conflict);
    let (next, fx) = ok(&s, &nexus("b", 1), Request::Clear { key: 2 });
    assert!(next.registrants.is_empty() && next.reservation.is_none());
    assert_eq!(next.generation, s.generation + 1);
    assert_eq!(fx.ua, vec![ua_for("a", 1, Ua::ReservationsPreempted)]);
}

#[test]
fn spc4_5_13_11_4_3_preempting_the_holder_takes_the_reservation_and_aborts_its_tasks() {
    let s = a_reserves(PrType::WriteExclusiveRegistrantsOnly);
    let (next, fx) = ok(&s, &nexus("b", 1), preempt(2, 1, PrType::WriteExclusiveRegistrantsOnly, true));
    assert!(!next.is_registered(&nexus("a", 1)));
    assert!(next.is_holder(&nexus("b", 1)));
    assert_eq!(next.generation, s.generation + 1);
    assert_eq!(fx.ua, vec![ua_for("a", 1, Ua::RegistrationsPreempted)]);
    assert_eq!(fx.abort, vec![RegistrantId::of(&nexus("a", 1), false)]);
    // Plain PREEMPT aborts nothing.
    let (_, fx) = ok(&s, &nexus("b", 1), preempt(2, 1, PrType::WriteExclusiveRegistrantsOnly, false));
    assert!(fx.abort.is_empty());
}

#[test]
fn spc4_5_13_11_4_3_type_change_tells_remaining_registrants_reservation_released() {
    let s = a_reserves(PrType::WriteExclusive);
    let s = ok(&s, &nexus("c", 1), register(0, 3)).0;
    let (next, fx) = ok(&s, &nexus("b", 1), preempt(2, 1, PrType::ExclusiveAccess, false));
    assert_eq!(next.reservation.as_ref().unwrap().kind, PrType::ExclusiveAccess);
    assert!(fx.ua.contains(&ua_for("a", 1, Ua::RegistrationsPreempted)));
    assert!(fx.ua.contains(&ua_for("c", 1, Ua::ReservationsReleased)));
    assert!(!fx.ua.iter().any(|(i, _)| *i == InitiatorId::of_port(&nexus("b", 1).initiator)));
}

#[test]
fn spc4_5_13_11_4_2_preempting_a_non_holder_removes_registrations_only() {
    let s = a_reserves(PrType::WriteExclusive);
    let s = ok(&s, &nexus("c", 1), register(0, 3)).0;
    let (next, fx) = ok(&s, &nexus("a", 1), preempt(1, 3, PrType::WriteExclusive, true));
    assert!(!next.is_registered(&nexus("c", 1)));
    assert!(next.is_holder(&nexus("a", 1)));
    assert_eq!(fx.abort, vec![RegistrantId::of(&nexus("c", 1), false)]);
    assert_eq!(
        s.apply(&nexus("a", 1), &preempt(1, 0, PrType::WriteExclusive, false)).unwrap_err(),
        PrError::InvalidParamField { byte: 8, bit: None }
    );
    assert_eq!(s.apply(&nexus("a", 1), &preempt(1, 99, PrType::WriteExclusive, false)).unwrap_err(), PrError::Conflict);
    // No reservation at all: same rules.
    let plain = ok(&State::default(), &nexus("a", 1), register(0, 1)).0;
    let plain = ok(&plain, &nexus("b", 1), register(0, 2)).0;
    let (next, _) = ok(&plain, &nexus("a", 1), preempt(1, 2, PrType::WriteExclusive, false));
    assert_eq!((next.registrants.len(), next.reservation), (1, None));
}

#[test]
fn spc4_5_13_11_4_4_all_registrants_preempt_with_key_zero_removes_every_other_registrant() {
    let s = a_reserves(PrType::ExclusiveAccessAllRegistrants);
    let s = ok(&s, &nexus("c", 1), register(0, 3)).0;
    let (next, fx) = ok(&s, &nexus("b", 1), preempt(2, 0, PrType::WriteExclusive, true));
    assert_eq!(next.registrants.len(), 1);
    assert_eq!(next.reservation.as_ref().unwrap().kind, PrType::WriteExclusive);
    assert!(next.is_holder(&nexus("b", 1)));
    assert_eq!(fx.abort.len(), 2);
    assert_eq!(fx.ua.len(), 2);
}

#[test]
fn multipath_paths_register_separately_and_fall_together_when_their_key_is_preempted() {
    // fence_scsi registers the node's key on every path: two ISIDs of one initiator.
    let s = ok(&State::default(), &nexus("a", 1), rie(0xA)).0;
    let s = ok(&s, &nexus("a", 2), rie(0xA)).0;
    let s = ok(&s, &nexus("b", 1), rie(0xB)).0;
    let s = ok(&s, &nexus("a", 1), reserve(0xA, PrType::WriteExclusiveRegistrantsOnly)).0;
    assert_eq!(s.registrants.len(), 3);
    assert!(!s.is_holder(&nexus("a", 2)), "the other path is registered, not the holder");
    let (next, fx) = ok(&s, &nexus("b", 1), preempt(0xB, 0xA, PrType::WriteExclusiveRegistrantsOnly, true));
    assert_eq!(next.registrants.len(), 1);
    assert_eq!(fx.abort.len(), 2);
    assert!(fx.ua.contains(&ua_for("a", 2, Ua::RegistrationsPreempted)));
}

#[test]
fn fence_scsi_preempts_its_own_stale_key_left_by_an_old_isid() {
    // The node re-logged in with a new ISID and re-registered the same key.
    let s = a_reserves(PrType::WriteExclusiveRegistrantsOnly);
    let s = ok(&s, &nexus("a", 7), rie(1)).0;
    let (next, fx) = ok(&s, &nexus("a", 7), preempt(1, 1, PrType::WriteExclusiveRegistrantsOnly, true));
    assert!(!next.is_registered(&nexus("a", 1)));
    assert!(next.is_holder(&nexus("a", 7)));
    assert_eq!(fx.abort, vec![RegistrantId::of(&nexus("a", 1), false)]);
    assert!(next.is_registered(&nexus("b", 1)));
}

#[test]
fn spc4_6_15_3_spec_i_pt_registers_every_named_port_or_none() {
    let spec = vec![InitiatorId::of_port(&nexus("b", 1).initiator), InitiatorId::device("iqn.1994-05.com.example:c")];
    let req = Request::Register {
        key: 0,
        new_key: 5,
        ignore_existing: false,
        all_tg_pt: false,
        aptpl: false,
        spec: spec.clone(),
    };
    let (s, _) = ok(&State::default(), &nexus("a", 1), req.clone());
    assert_eq!(s.registrants.len(), 3);
    assert!(s.is_registered(&nexus("b", 1)) && s.is_registered(&nexus("c", 4)) && !s.is_registered(&nexus("b", 2)));
    assert_eq!(s.generation, 1);
    // Naming an already registered port: nothing registered at all.
    let one = ok(&State::default(), &nexus("b", 1), rie(9)).0;
    assert_eq!(one.apply(&nexus("a", 1), &req).unwrap_err(), PrError::InvalidParamField { byte: 28, bit: None });
    // SPEC_I_PT from a registered nexus is invalid.
    let spec_req =
        Request::Register { key: 5, new_key: 5, ignore_existing: false, all_tg_pt: false, aptpl: false, spec };
    assert_eq!(s.apply(&nexus("a", 1), &spec_req).unwrap_err(), PrError::InvalidParamField { byte: 20, bit: Some(3) });
}

#[test]
fn spc4_6_15_3_all_tg_pt_registers_through_every_target_port() {
    let req =
        Request::Register { key: 0, new_key: 5, ignore_existing: false, all_tg_pt: true, aptpl: false, spec: vec![] };
    let (s, _) = ok(&State::default(), &nexus("a", 1), req);
    let mut other_port = nexus("a", 1);
    other_port.target.tpgt = 9;
    assert!(s.is_registered(&other_port));
}

#[test]
fn spc4_5_13_8_register_and_move_hands_the_reservation_over() {
    let s = a_reserves(PrType::ExclusiveAccess);
    let dest = nexus("c", 1);
    let mv = |key, unregister, rel_tgt_port, dest: &ItNexus| Request::RegisterAndMove {
        key,
        new_key: 3,
        aptpl: false,
        unregister,
        rel_tgt_port,
        dest: InitiatorId::of_port(&dest.initiator),
    };
    let (next, _) = ok(&s, &nexus("a", 1), mv(1, true, 1, &dest));
    assert!(next.is_holder(&dest));
    assert!(!next.is_registered(&nexus("a", 1)));
    assert_eq!(next.registrant(&dest).unwrap().key, 3);
    assert_eq!(next.generation, s.generation + 1);
    // Only the holder; not to itself; only known target ports; never all-registrants.
    assert_eq!(s.apply(&nexus("b", 1), &mv(2, false, 1, &dest)).unwrap_err(), PrError::Conflict);
    assert_eq!(
        s.apply(&nexus("a", 1), &mv(1, false, 1, &nexus("a", 1))).unwrap_err(),
        PrError::InvalidParamField { byte: 24, bit: None }
    );
    assert_eq!(
        s.apply(&nexus("a", 1), &mv(1, false, 5, &dest)).unwrap_err(),
        PrError::InvalidParamField { byte: 18, bit: None }
    );
    let ar = a_reserves(PrType::WriteExclusiveAllRegistrants);
    assert_eq!(ar.apply(&nexus("a", 1), &mv(1, false, 1, &dest)).unwrap_err(), PrError::Conflict);
}

#[test]
fn registrations_are_bounded_with_insufficient_registration_resources() {
    // The default: the 4,096th registration is accepted, the 4,097th refused.
    let almost: Vec<Registrant> = (0..DEFAULT_MAX_REGISTRANTS - 1)
        .map(|i| Registrant { id: RegistrantId::of(&nexus(&format!("h{i}"), 1), false), key: 1 })
        .collect();
    let s = State { registrants: almost.into(), ..State::default() };
    let s = ok(&s, &nexus("last", 1), rie(1)).0;
    assert_eq!(s.registrants.len(), 4096);
    assert_eq!(s.apply(&nexus("one-more", 1), &rie(1)).unwrap_err(), PrError::InsufficientResources);
    // Registered nexuses still change their keys at the limit.
    assert_eq!(ok(&s, &nexus("h7", 1), rie(2)).0.registrant(&nexus("h7", 1)).unwrap().key, 2);
}

#[test]
fn a_configured_limit_bounds_register_spec_i_pt_and_register_and_move() {
    let limit = 3;
    let apply = |s: &State, n: &ItNexus, req: &Request| s.apply_limited(n, req, limit).map(|t| t.next);
    let two = apply(&State::default(), &nexus("a", 1), &rie(1)).unwrap();
    let two = apply(&two, &nexus("b", 1), &rie(2)).unwrap();
    // SPEC_I_PT naming one more port needs two registrations where one is left: none is made.
    let spec = Request::Register {
        key: 0,
        new_key: 3,
        ignore_existing: false,
        all_tg_pt: false,
        aptpl: false,
        spec: vec![InitiatorId::of_port(&nexus("d", 1).initiator)],
    };
    assert_eq!(apply(&two, &nexus("c", 1), &spec).unwrap_err(), PrError::InsufficientResources);
    let full = apply(&two, &nexus("c", 1), &rie(3)).unwrap();
    assert_eq!(apply(&full, &nexus("d", 1), &rie(4)).unwrap_err(), PrError::InsufficientResources);
    // REGISTER AND MOVE to an unregistered nexus registers it: refused at the limit.
    let held = apply(&full, &nexus("a", 1), &reserve(1, PrType::WriteExclusive)).unwrap();
    let mv = Request::RegisterAndMove {
        key: 1,
        new_key: 4,
        aptpl: false,
        unregister: false,
        rel_tgt_port: 1,
        dest: InitiatorId::of_port(&nexus("d", 1).initiator),
    };
    assert_eq!(apply(&held, &nexus("a", 1), &mv).unwrap_err(), PrError::InsufficientResources);
    // Moving to a registered nexus needs no new registration.
    let to_b = Request::RegisterAndMove {
        key: 1,
        new_key: 2,
        aptpl: false,
        unregister: false,
        rel_tgt_port: 1,
        dest: InitiatorId::of_port(&nexus("b", 1).initiator),
    };
    assert!(apply(&held, &nexus("a", 1), &to_b).unwrap().is_holder(&nexus("b", 1)));
}

#[test]
fn spc4_5_13_4_aptpl_changes_are_persisted_including_switching_it_off() {
    let on =
        Request::Register { key: 0, new_key: 1, ignore_existing: true, all_tg_pt: false, aptpl: true, spec: vec![] };
    let (s, fx) = ok(&State::default(), &nexus("a", 1), on);
    assert!(fx.persist && s.aptpl);
    let (s2, fx) = ok(&s, &nexus("a", 1), reserve(1, PrType::WriteExclusive));
    assert!(fx.persist);
    let (s3, fx) = ok(&s2, &nexus("a", 1), rie(2)); // APTPL=0 now governs
    assert!(fx.persist && !s3.aptpl);
    let (_, fx) = ok(&s3, &nexus("a", 1), Request::Release { key: 2, kind: PrType::WriteExclusive });
    assert!(!fx.persist);
}

proptest! {
    /// Whatever sequence of PR OUT commands three initiators send, the state stays coherent:
    /// no two registrations overlap, the holder is registered, a failed command changes
    /// nothing, and PRgeneration changes only as §6.16.2 allows.
    #[test]
    fn invariants_hold_under_random_sequences(ops in proptest::collection::vec((0u8..4, 0u8..8, 0u64..4, 0u64..4, 0usize..6), 1..60)) {
        let kinds = [PrType::WriteExclusive, PrType::ExclusiveAccess, PrType::WriteExclusiveRegistrantsOnly,
                     PrType::ExclusiveAccessRegistrantsOnly, PrType::WriteExclusiveAllRegistrants, PrType::ExclusiveAccessAllRegistrants];
        let mut s = State::default();
        for (who, action, key, other, kind) in ops {
            let n = nexus(["a", "b", "c", "d"][who as usize], 1 + who % 2);
            let kind = kinds[kind];
            let req = match action {
                0 => register(key, other),
                1 => rie(other),
                2 => reserve(key, kind),
                3 => Request::Release { key, kind },
                4 => Request::Clear { key },
                5 => preempt(key, other, kind, false),
                6 => preempt(key, other, kind, true),
                _ => Request::RegisterAndMove { key, new_key: other, aptpl: false, unregister: true, rel_tgt_port: 1, dest: InitiatorId::of_port(&nexus("d", 2).initiator) },
            };
            match s.apply(&n, &req) {
                Err(_) => {}
                Ok(t) => {
                    let next = t.next;
                    for (i, r) in next.registrants.iter().enumerate() {
                        prop_assert!(r.key != 0);
                        prop_assert!(!next.registrants[i + 1..].iter().any(|o| o.id.overlaps(&r.id)));
                    }
                    if let Some(res) = &next.reservation {
                        prop_assert!(next.registrants.iter().any(|r| r.id == res.holder));
                    }
                    match req {
                        Request::Reserve { .. } | Request::Release { .. } => prop_assert_eq!(next.generation, s.generation),
                        _ => prop_assert!(next.generation == s.generation || next.generation == s.generation + 1),
                    }
                    prop_assert!(t.effects.abort.iter().all(|id| !id.covers(&n)));
                    // The APTPL journal entry of this change turns the old state into the new.
                    prop_assert_eq!(&super::journal::replayed(&s, &next), &next);
                    s = next;
                }
            }
        }
    }
}
