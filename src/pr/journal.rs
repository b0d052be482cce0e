//! Incremental APTPL records: what one PERSISTENT RESERVE OUT changed, as a journal entry of a
//! hundred-odd bytes whatever the number of registrants (rewriting a record of 4,096
//! registrations for each REGISTER costs ~300 KB). An entry lists the registrations removed
//! and those added or re-keyed, plus PRgeneration, APTPL and the reservation; replaying it on
//! the state before gives exactly the state after, order of registrations included, because
//! `State::apply` only ever removes registrations in place and appends new ones.

use super::record::{invalid, put_str, Reader, HAS_ISID, HAS_TARGET};
use super::state::{InitiatorId, PrType, Registrant, RegistrantId, Reservation, State, TargetPort};
use std::collections::HashSet;
use std::io;

/// The difference between two states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    generation: u32,
    aptpl: bool,
    /// None: the reservation did not change.
    reservation: Option<Option<Reservation>>,
    removed: Vec<RegistrantId>,
    /// Registrations added (appended in this order) or whose key changed.
    upserts: Vec<Registrant>,
}

/// What turns `previous` into `next`, in one walk over both lists without hashing: the
/// registrations of `previous` found in order at the head of `next` are kept (re-keyed if
/// their key changed), the others are removed, and the rest of `next` is appended. `apply`
/// only removes in place and appends, so that rest is exactly the new registrations; any other
/// order would still replay exactly, as removals plus appends.
pub fn diff(previous: &State, next: &State) -> Delta {
    let (mut removed, mut upserts, mut kept) = (Vec::new(), Vec::new(), 0);
    let after: &[Registrant] = &next.registrants;
    for r in previous.registrants.iter() {
        match after.get(kept) {
            Some(n) if n.id == r.id => {
                if n.key != r.key {
                    upserts.push(n.clone());
                }
                kept += 1;
            }
            _ => removed.push(r.id.clone()),
        }
    }
    upserts.extend(after[kept..].iter().cloned());
    let reservation = (previous.reservation != next.reservation).then(|| next.reservation.clone());
    Delta { generation: next.generation, aptpl: next.aptpl, reservation, removed, upserts }
}

/// Applies `delta` to the state it was taken from.
pub fn replay(state: &mut State, delta: Delta) {
    if !delta.removed.is_empty() {
        let removed: HashSet<&RegistrantId> = delta.removed.iter().collect();
        state.registrants.retain(|r| !removed.contains(&r.id));
    }
    for r in delta.upserts {
        if !state.registrants.set_key(&r.id, r.key) {
            state.registrants.push(r);
        }
    }
    state.generation = delta.generation;
    state.aptpl = delta.aptpl;
    if let Some(reservation) = delta.reservation {
        state.reservation = reservation;
    }
}

fn put_id(out: &mut Vec<u8>, id: &RegistrantId) {
    let flags =
        if id.initiator.isid.is_some() { HAS_ISID } else { 0 } | if id.target.is_some() { HAS_TARGET } else { 0 };
    out.push(flags);
    out.extend_from_slice(&id.initiator.isid.unwrap_or_default());
    if let Some(t) = &id.target {
        put_str(out, &t.name);
        out.extend_from_slice(&t.tpgt.to_be_bytes());
    }
    put_str(out, &id.initiator.name);
}

fn id(r: &mut Reader) -> io::Result<RegistrantId> {
    let flags = r.u8()?;
    if flags & !(HAS_ISID | HAS_TARGET) != 0 {
        return Err(invalid("unknown registration flags"));
    }
    let isid: [u8; 6] = r.take(6)?.try_into().expect("6");
    let target = if flags & HAS_TARGET != 0 {
        let name = r.string()?;
        // Single-node files: the relative port is the TPGT (nexus.rs).
        Some(TargetPort::new(&name, r.u16()?))
    } else {
        None
    };
    let initiator = InitiatorId { name: r.string()?, isid: (flags & HAS_ISID != 0).then_some(isid) };
    Ok(RegistrantId { initiator, target })
}

/// `generation u32, aptpl u8, reservation (0 unchanged, 1 none, 2 type u8 + holder),
/// removed count u32 + registrations, upserts count u32 + (key u64, registration)`; a
/// registration is flags u8, ISID 6 bytes, [target name, TPGT u16], initiator name.
pub fn encode(delta: &Delta) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 80 * (delta.removed.len() + delta.upserts.len()));
    out.extend_from_slice(&delta.generation.to_be_bytes());
    out.push(delta.aptpl as u8);
    match &delta.reservation {
        None => out.push(0),
        Some(None) => out.push(1),
        Some(Some(res)) => {
            out.extend_from_slice(&[2, res.kind.code()]);
            put_id(&mut out, &res.holder);
        }
    }
    out.extend_from_slice(&(delta.removed.len() as u32).to_be_bytes());
    for id in &delta.removed {
        put_id(&mut out, id);
    }
    out.extend_from_slice(&(delta.upserts.len() as u32).to_be_bytes());
    for r in &delta.upserts {
        out.extend_from_slice(&r.key.to_be_bytes());
        put_id(&mut out, &r.id);
    }
    out
}

pub fn decode(bytes: &[u8]) -> io::Result<Delta> {
    let mut r = Reader { data: bytes };
    let generation = r.u32()?;
    let aptpl = r.u8()? != 0;
    let reservation = match r.u8()? {
        0 => None,
        1 => Some(None),
        2 => {
            let kind = PrType::from_code(r.u8()?).ok_or_else(|| invalid("bad type"))?;
            Some(Some(Reservation { kind, holder: id(&mut r)? }))
        }
        _ => return Err(invalid("bad reservation tag")),
    };
    // Counts are bounded by the bytes present (every registration takes at least 9).
    let count = |r: &mut Reader| -> io::Result<usize> {
        let n = r.u32()? as usize;
        if n > r.data.len() / 9 {
            return Err(invalid("count beyond the entry"));
        }
        Ok(n)
    };
    let removed = (0..count(&mut r)?).map(|_| id(&mut r)).collect::<io::Result<_>>()?;
    let upserts =
        (0..count(&mut r)?).map(|_| Ok(Registrant { key: r.u64()?, id: id(&mut r)? })).collect::<io::Result<_>>()?;
    if !r.data.is_empty() {
        return Err(invalid("trailing bytes in journal entry"));
    }
    Ok(Delta { generation, aptpl, reservation, removed, upserts })
}

/// `replay(previous, diff(previous, next))`, for tests of every state transition.
#[cfg(test)]
pub fn replayed(previous: &State, next: &State) -> State {
    let mut state = previous.clone();
    replay(&mut state, decode(&encode(&diff(previous, next))).expect("an encoded delta decodes"));
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;

    fn crowd(n: usize) -> State {
        let registrants: Vec<Registrant> = (0..n)
            .map(|i| Registrant { id: RegistrantId::of(&nexus(&format!("node-{i:04}"), 1), i % 3 == 0), key: i as u64 })
            .collect();
        let holder = registrants[0].id.clone();
        State {
            generation: 9,
            registrants: registrants.into(),
            reservation: Some(Reservation { holder, kind: PrType::WriteExclusiveAllRegistrants }),
            aptpl: true,
        }
    }

    #[test]
    fn one_registration_changed_among_thousands_is_a_small_entry() {
        let before = crowd(4096);
        let mut after = before.clone();
        after.registrants.push(Registrant { id: RegistrantId::of(&nexus("newcomer", 1), false), key: 5 });
        after.generation += 1;
        let entry = encode(&diff(&before, &after));
        assert!(entry.len() < 128, "{} bytes", entry.len());
        assert_eq!(replayed(&before, &after), after);
    }

    #[test]
    fn removals_key_changes_reservation_and_order_replay_exactly() {
        let before = crowd(50);
        let mut after = before.clone();
        after.registrants.retain(|r| r.key % 7 != 0);
        let fifth = after.registrants[5].id.clone();
        after.registrants.set_key(&fifth, 0xFFFF);
        after.registrants.push(Registrant { id: RegistrantId::of(&nexus("late", 2), true), key: 3 });
        after.reservation = Some(Reservation { holder: fifth, kind: PrType::ExclusiveAccess });
        after.aptpl = false;
        assert_eq!(replayed(&before, &after), after);
        let mut cleared = before.clone();
        cleared.registrants.clear();
        cleared.reservation = None;
        assert_eq!(replayed(&before, &cleared), cleared);
        assert_eq!(replayed(&cleared, &before), before);
    }

    #[test]
    fn any_reordering_still_replays_exactly() {
        let before = crowd(6);
        let mut list: Vec<Registrant> = before.registrants.to_vec();
        list.rotate_left(2);
        list.swap(0, 3);
        let after = State { registrants: list.into(), ..before.clone() };
        assert_eq!(replayed(&before, &after), after);
    }

    proptest::proptest! {
        /// Whatever bytes an entry holds, decoding answers Ok or Err and allocates no more
        /// than the entry's size allows.
        #[test]
        fn arbitrary_entries_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let entry = encode(&diff(&crowd(3), &State::default()));
        for cut in 0..entry.len() {
            assert!(decode(&entry[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge_count = entry.clone();
        huge_count[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_count).is_err());
    }
}
