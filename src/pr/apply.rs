//! PERSISTENT RESERVE OUT service actions as a pure function of the state (SPC-4 §5.13.7-
//! §5.13.11): `State::apply` returns the next state and its effects (unit attentions, tasks to
//! abort, whether APTPL requires persisting) as data, so every rule is unit-tested here.

use super::request::{PrError, Request};
use super::state::{InitiatorId, ItNexus, PrType, Registrant, RegistrantId, Reservation, State};

/// Registrations per logical unit unless configured (`[limits] max_registrants_per_lun`):
/// every path of every host of a large cluster, on every gateway, is its own I_T nexus.
pub const DEFAULT_MAX_REGISTRANTS: usize = 4096;
/// The most a logical unit may be configured to hold (the APTPL record counts them in 16 bits).
pub const HARD_MAX_REGISTRANTS: usize = u16::MAX as usize;

/// Unit attentions the reservation manager establishes (SPC-4 Annex D, ASC 2Ah).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrUnitAttention {
    /// 2Ah/03h RESERVATIONS PREEMPTED.
    ReservationsPreempted,
    /// 2Ah/04h RESERVATIONS RELEASED.
    ReservationsReleased,
    /// 2Ah/05h REGISTRATIONS PREEMPTED.
    RegistrationsPreempted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Unit attentions for the initiator ports of these registrations.
    pub ua: Vec<(InitiatorId, PrUnitAttention)>,
    /// Every task of these registrations' I_T nexuses on this LU is aborted (PREEMPT AND ABORT).
    pub abort: Vec<RegistrantId>,
    /// APTPL is (or was) in force and the state changed: persist before GOOD (SPC-4 §5.13.5.1).
    pub persist: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: State,
    pub effects: Effects,
}

impl State {
    /// `apply_limited` with the default registration limit.
    pub fn apply(&self, nexus: &ItNexus, request: &Request) -> Result<Transition, PrError> {
        self.apply_limited(nexus, request, DEFAULT_MAX_REGISTRANTS)
    }

    /// Applies one PERSISTENT RESERVE OUT received on `nexus`; a registration beyond
    /// `max_registrants` is refused with INSUFFICIENT REGISTRATION RESOURCES (SPC-4 §5.13.7).
    /// On error nothing changes.
    pub fn apply_limited(
        &self,
        nexus: &ItNexus,
        request: &Request,
        max_registrants: usize,
    ) -> Result<Transition, PrError> {
        let mut step = Step {
            state: self,
            nexus,
            own: self.registrant(nexus).cloned(),
            max_registrants,
            next: self.clone(),
            fx: Effects::default(),
        };
        match request {
            Request::Register { key, new_key, ignore_existing, all_tg_pt, aptpl, spec } => {
                step.register(*key, *new_key, *ignore_existing, *all_tg_pt, *aptpl, spec)?
            }
            Request::Reserve { key, kind } => step.reserve(*key, *kind)?,
            Request::Release { key, kind } => step.release(*key, *kind)?,
            Request::Clear { key } => step.clear(*key)?,
            Request::Preempt { key, victim, kind, abort } => step.preempt(*key, *victim, *kind, *abort)?,
            Request::RegisterAndMove { key, new_key, aptpl, unregister, rel_tgt_port, dest } => {
                step.register_and_move(*key, *new_key, *aptpl, *unregister, *rel_tgt_port, dest)?
            }
        }
        let Step { next, mut fx, .. } = step;
        fx.persist = next != *self && (self.aptpl || next.aptpl);
        Ok(Transition { next, effects: fx })
    }
}

/// One PERSISTENT RESERVE OUT being applied: the state it starts from, the state it builds and
/// its effects. One method per service action.
struct Step<'a> {
    state: &'a State,
    nexus: &'a ItNexus,
    /// The registration of the nexus the command came in on.
    own: Option<Registrant>,
    max_registrants: usize,
    next: State,
    fx: Effects,
}

impl Step<'_> {
    /// SPC-4 §5.13.7-§5.13.11: every service action but REGISTER AND IGNORE EXISTING KEY and
    /// the unregistered REGISTER needs the nexus's own key.
    fn registered(&self, key: u64) -> Result<Registrant, PrError> {
        match &self.own {
            Some(reg) if reg.key == key => Ok(reg.clone()),
            _ => Err(PrError::Conflict),
        }
    }

    fn bump_generation(&mut self) {
        self.next.generation = self.next.generation.wrapping_add(1);
    }

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.13.7).
    fn register(
        &mut self,
        key: u64,
        new_key: u64,
        ignore_existing: bool,
        all_tg_pt: bool,
        aptpl: bool,
        spec: &[InitiatorId],
    ) -> Result<(), PrError> {
        match self.own.clone() {
            Some(reg) => {
                // SPC-4 §5.13.7 Table 67: a registered nexus changes or removes its key.
                if !ignore_existing && key != reg.key {
                    return Err(PrError::Conflict);
                }
                if !spec.is_empty() {
                    return Err(PrError::InvalidParamField { byte: 20, bit: Some(3) });
                }
                if new_key == 0 {
                    unregister(&mut self.next, &reg.id, &mut self.fx);
                } else {
                    self.next.registrants.set_key(&reg.id, new_key);
                }
            }
            None => {
                // SPC-4 §5.13.7: an unregistered nexus sends key zero (unless ignoring).
                if !ignore_existing && key != 0 {
                    return Err(PrError::Conflict);
                }
                if new_key == 0 {
                    // Unregistering something never registered: no action, GOOD.
                    return Ok(());
                }
                let mut ids = vec![RegistrantId::of(self.nexus, all_tg_pt)];
                for initiator in spec {
                    let target = (!all_tg_pt).then(|| self.nexus.target.clone());
                    let id = RegistrantId { initiator: initiator.clone(), target };
                    if id == ids[0] {
                        continue; // naming the receiving I_T nexus again registers it once
                    }
                    ids.push(id);
                }
                for (i, id) in ids.iter().enumerate() {
                    // SPC-4 §5.13.7: a TransportID naming an already registered I_T nexus (or
                    // one named twice) is an invalid field.
                    let clash =
                        self.state.registrants.overlapping(id).is_some() || ids[..i].iter().any(|o| o.overlaps(id));
                    if clash {
                        let byte = if i == 0 { 20 } else { 28 };
                        return Err(PrError::InvalidParamField { byte, bit: None });
                    }
                }
                if self.state.registrants.len() + ids.len() > self.max_registrants {
                    return Err(PrError::InsufficientResources);
                }
                for id in ids {
                    self.next.registrants.push(Registrant { id, key: new_key });
                }
            }
        }
        self.next.aptpl = aptpl;
        self.bump_generation();
        Ok(())
    }

    /// RESERVE (SPC-4 §5.13.9).
    fn reserve(&mut self, key: u64, kind: PrType) -> Result<(), PrError> {
        let reg = self.registered(key)?;
        match &self.state.reservation {
            // The holder reserving again with the same type: no change.
            Some(res) if self.state.is_holder(self.nexus) && res.kind == kind => {}
            Some(_) => return Err(PrError::Conflict),
            None => self.next.reservation = Some(Reservation { holder: reg.id, kind }),
        }
        Ok(())
    }

    /// RELEASE (SPC-4 §5.13.11.2.2).
    fn release(&mut self, key: u64, kind: PrType) -> Result<(), PrError> {
        self.registered(key)?;
        match &self.state.reservation {
            // No reservation, or not the holder: GOOD, no effect.
            None => {}
            Some(_) if !self.state.is_holder(self.nexus) => {}
            Some(res) if res.kind != kind => return Err(PrError::InvalidRelease),
            Some(res) => {
                self.next.reservation = None;
                // SPC-4 §5.13.11.2.2: registrants-only and all-registrants releases tell every
                // other registrant.
                if res.kind.admits_registrants() {
                    notify_others(&self.next, self.nexus, PrUnitAttention::ReservationsReleased, &mut self.fx);
                }
            }
        }
        Ok(())
    }

    /// CLEAR (SPC-4 §5.13.11.2.7): every registration and the reservation go; the others learn
    /// RESERVATIONS PREEMPTED.
    fn clear(&mut self, key: u64) -> Result<(), PrError> {
        self.registered(key)?;
        notify_others(self.state, self.nexus, PrUnitAttention::ReservationsPreempted, &mut self.fx);
        self.next.registrants.clear();
        self.next.reservation = None;
        self.bump_generation();
        Ok(())
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.13.11.2.4).
    fn preempt(&mut self, key: u64, victim: u64, kind: PrType, abort: bool) -> Result<(), PrError> {
        let reg = self.registered(key)?;
        preempt(self.state, &mut self.next, &reg, victim, kind, &mut self.fx)?;
        if abort {
            // SPC-4 §5.13.11.2.6 (PREEMPT AND ABORT): the preempted nexuses' tasks go; the
            // command itself, on the preempting nexus, is never among them.
            let everyone_else =
                self.state.reservation.as_ref().is_some_and(|r| r.kind.all_registrants()) && victim == 0;
            self.fx.abort = self
                .state
                .registrants
                .iter()
                .filter(|r| r.id != reg.id && (everyone_else || r.key == victim))
                .map(|r| r.id.clone())
                .collect();
        }
        self.bump_generation();
        Ok(())
    }

    /// REGISTER AND MOVE (SPC-4 §5.13.8): only the holder of a reservation that is not
    /// all-registrants.
    fn register_and_move(
        &mut self,
        key: u64,
        new_key: u64,
        aptpl: bool,
        unregister: bool,
        rel_tgt_port: u16,
        dest: &InitiatorId,
    ) -> Result<(), PrError> {
        let reg = self.registered(key)?;
        let Some(res) = &self.state.reservation else { return Err(PrError::Conflict) };
        if !self.state.is_holder(self.nexus) || res.kind.all_registrants() {
            return Err(PrError::Conflict);
        }
        if new_key == 0 {
            return Err(PrError::InvalidParamField { byte: 8, bit: None });
        }
        // This server reports each target portal group as one target port (SPC-4 §6.15.4
        // RELATIVE TARGET PORT IDENTIFIER); only the receiving one is known to the logical unit.
        if rel_tgt_port != self.nexus.target.relative_port {
            return Err(PrError::InvalidParamField { byte: 18, bit: None });
        }
        let dest_id = RegistrantId { initiator: dest.clone(), target: Some(self.nexus.target.clone()) };
        if dest_id.overlaps(&reg.id) {
            return Err(PrError::InvalidParamField { byte: 24, bit: None });
        }
        match self.state.registrants.overlapping(&dest_id) {
            Some(existing) if existing.id == dest_id => {}
            Some(_) => return Err(PrError::InvalidParamField { byte: 24, bit: None }),
            None if self.state.registrants.len() >= self.max_registrants => return Err(PrError::InsufficientResources),
            None => self.next.registrants.push(Registrant { id: dest_id.clone(), key: new_key }),
        }
        self.next.reservation = Some(Reservation { holder: dest_id, kind: res.kind });
        if unregister {
            self.next.registrants.retain(|r| r.id != reg.id);
        }
        self.next.aptpl = aptpl;
        self.bump_generation();
        Ok(())
    }
}

/// Removes a registration (SPC-4 §5.13.11.2.3): a holder's reservation goes with it, unless it
/// is all-registrants and others remain; registrants-only releases tell the other registrants.
fn unregister(next: &mut State, id: &RegistrantId, fx: &mut Effects) {
    let held = next.holds(id);
    next.registrants.retain(|r| r.id != *id);
    let Some(res) = next.reservation.clone() else { return };
    if !held {
        return;
    }
    if res.kind.all_registrants() {
        match next.registrants.first() {
            Some(other) => next.reservation.as_mut().expect("present").holder = other.id.clone(),
            None => next.reservation = None,
        }
        return;
    }
    next.reservation = None;
    if matches!(res.kind, PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly) {
        for r in &next.registrants {
            fx.ua.push((r.id.initiator.clone(), PrUnitAttention::ReservationsReleased));
        }
    }
}

/// Queues `ua` for every registrant of `state` except the one of `nexus`.
fn notify_others(state: &State, nexus: &ItNexus, ua: PrUnitAttention, fx: &mut Effects) {
    for r in state.registrants.iter().filter(|r| !r.id.covers(nexus)) {
        fx.ua.push((r.id.initiator.clone(), ua));
    }
}

/// SPC-4 §5.13.11.2.4: PREEMPT (the abort part is the caller's).
fn preempt(
    old: &State,
    next: &mut State,
    own: &Registrant,
    victim: u64,
    kind: PrType,
    fx: &mut Effects,
) -> Result<(), PrError> {
    let remove = |next: &mut State, fx: &mut Effects, select: &dyn Fn(&Registrant) -> bool| {
        for r in old.registrants.iter().filter(|r| r.id != own.id && select(r)) {
            fx.ua.push((r.id.initiator.clone(), PrUnitAttention::RegistrationsPreempted));
        }
        next.registrants.retain(|r| r.id == own.id || !select(r));
    };
    match &old.reservation {
        // §5.13.11.2.4.3: all-registrants with key zero: everyone else goes, the preemptor
        // holds a new reservation of the requested type.
        Some(res) if res.kind.all_registrants() && victim == 0 => {
            remove(next, fx, &|_| true);
            next.reservation = Some(Reservation { holder: own.id.clone(), kind });
        }
        // §5.13.11.2.4.3: the holder's key preempts the reservation too.
        Some(res)
            if !res.kind.all_registrants() && old.registrants.get(&res.holder).is_some_and(|r| r.key == victim) =>
        {
            remove(next, fx, &|r| r.key == victim);
            next.reservation = Some(Reservation { holder: own.id.clone(), kind });
            if res.kind != kind {
                // Type changed: every remaining registrant but the preemptor is told.
                for r in next.registrants.iter().filter(|r| r.id != own.id) {
                    fx.ua.push((r.id.initiator.clone(), PrUnitAttention::ReservationsReleased));
                }
            }
        }
        // §5.13.11.2.5: otherwise only registrations are preempted; the key must exist and
        // must not be zero.
        _ => {
            if victim == 0 {
                return Err(PrError::InvalidParamField { byte: 8, bit: None });
            }
            if !old.registrants.iter().any(|r| r.key == victim) {
                return Err(PrError::Conflict);
            }
            remove(next, fx, &|r| r.key == victim);
            // An all-registrants reservation ends with its last registrant.
            if next.registrants.is_empty() {
                next.reservation = None;
            } else if let Some(res) = next.reservation.as_mut() {
                if next.registrants.get(&res.holder).is_none() {
                    res.holder = next.registrants[0].id.clone();
                }
            }
        }
    }
    Ok(())
}
