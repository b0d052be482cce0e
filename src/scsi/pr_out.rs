//! PERSISTENT RESERVE OUT (SPC-4 §6.16): CDB checks at admission; at execution the parameter
//! list is decoded and applied through the LU's fencing gate (pr::Unit::change, or on a
//! cluster gateway the shared state, shared_pr.rs), whose commit step aborts the preempted
//! nexuses' tasks in the LU's task set and queues the unit attentions; GOOD is returned once
//! those tasks have ended.

use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::shared_pr::{Changed, PrOutCall};
use super::task::{Completion, DataOut, ItNexus};
use super::task_set::Drain;
use crate::nexus::InitiatorPort;
use crate::pr::{self, PrError, PrUnitAttention};
use std::collections::HashSet;
use tracing::{debug, info};

/// The initiator ports and devices a PR OUT's unit attentions go to. The LU keys its unit
/// attention queues by initiator port; each known port costs one hash lookup here, so
/// thousands of preempted registrations cost one pass over the ports, not a comparison per
/// (registration, port) pair.
#[derive(Debug, Default)]
pub(crate) struct PortSet {
    ports: HashSet<(String, [u8; 6])>,
    devices: HashSet<String>,
}

impl PortSet {
    pub(crate) fn new<'a>(ids: impl IntoIterator<Item = &'a pr::InitiatorId>) -> Self {
        let mut set = PortSet::default();
        for id in ids {
            // InitiatorId names are normalised, as IscsiName is (RFC 7143 §4.2.7.1).
            match id.isid {
                Some(isid) => set.ports.insert((id.name.clone(), isid)),
                None => set.devices.insert(id.name.clone()),
            };
        }
        set
    }

    /// Whether `port` is one of the set's ports or belongs to one of its devices.
    pub(crate) fn contains(&self, port: &InitiatorPort) -> bool {
        let name = port.name.as_str();
        self.devices.contains(name) || self.ports.contains(&(name.to_string(), port.isid))
    }
}

/// A validated PERSISTENT RESERVE OUT waiting for its parameter list.
#[derive(Debug)]
pub(crate) struct PrOut {
    action: u8,
    scope_type: u8,
    pub param_len: usize,
}

/// SPC-4 §6.16.1: PARAMETER LIST LENGTH is checked before any data-out is solicited.
pub(crate) fn prepare(cdb: &[u8]) -> Result<PrOut, Sense> {
    let param_len = u32::from_be_bytes([cdb[5], cdb[6], cdb[7], cdb[8]]) as usize;
    pr::request::check_param_len(param_len).map_err(to_sense)?;
    Ok(PrOut { action: cdb[1] & 0x1F, scope_type: cdb[2], param_len })
}

/// Maps every reservation error but RESERVATION CONFLICT to its sense (SPC-4 §6.16, Annex D).
pub(crate) fn to_sense(e: PrError) -> Sense {
    match e {
        PrError::InvalidCdbField { byte, bit } => Sense::invalid_cdb_field(byte, bit),
        PrError::InvalidParamField { byte, bit } => Sense::invalid_param_field(byte, bit),
        PrError::ParamListLength => SenseReason::ParameterListLengthError.into(),
        PrError::InvalidRelease => SenseReason::InvalidReleaseOfPersistentReservation.into(),
        PrError::InsufficientResources => SenseReason::InsufficientRegistrationResources.into(),
        // SPC-4 §5.16.2.5: NOT READY, ASYMMETRIC ACCESS STATE TRANSITION makes multipath retry.
        PrError::Unavailable(_) => SenseReason::AsymmetricAccessStateTransition.into(),
        PrError::Store(_) | PrError::Conflict => SenseReason::InternalTargetFailure.into(),
    }
}

fn ua_reason(ua: PrUnitAttention) -> SenseReason {
    match ua {
        PrUnitAttention::ReservationsPreempted => SenseReason::ReservationsPreempted,
        PrUnitAttention::ReservationsReleased => SenseReason::ReservationsReleased,
        PrUnitAttention::RegistrationsPreempted => SenseReason::RegistrationsPreempted,
    }
}

/// Runs a committed change's effects on this LU: unit attentions to the affected initiator
/// ports, and for PREEMPT AND ABORT the preempted nexuses' tasks aborted (all but `origin`'s,
/// the PERSISTENT RESERVE OUT itself). Called with the fencing gate held for writing, so none
/// of the aborted tasks can reach the backend any more; the caller waits for the returned drain.
pub(crate) fn apply_effects(lun: &Lun, fx: &pr::Effects, origin: Option<&ItNexus>) -> Drain {
    // One pass over the known ports per kind of unit attention, in first-seen order.
    let mut kinds: Vec<PrUnitAttention> = Vec::new();
    for (_, ua) in &fx.ua {
        if !kinds.contains(ua) {
            kinds.push(*ua);
        }
    }
    for kind in kinds {
        let ports = PortSet::new(fx.ua.iter().filter(|(_, ua)| *ua == kind).map(|(id, _)| id));
        lun.establish_unit_attention_where(ua_reason(kind), |port| ports.contains(port));
    }
    if fx.abort.is_empty() {
        return Drain::default();
    }
    // SPC-4 §5.13.11.2.6: the preempted nexuses' tasks are aborted (TASK ABORTED with TAS set,
    // SAM-5 §5.6). Each nexus probes the victims by hash, however many there are.
    let victims: HashSet<&pr::RegistrantId> = fx.abort.iter().collect();
    let covered =
        |n: &ItNexus| Some(n) != origin && pr::RegistrantId::candidates(n).iter().any(|c| victims.contains(c));
    lun.task_set().abort(covered, origin, lun.mode().tas)
}

impl PrOut {
    pub(crate) async fn execute(self, lun: &Lun, nexus: &ItNexus, data: &DataOut, d_sense: bool) -> Completion {
        let fail = |e: PrError| match e {
            PrError::Conflict => Completion::reservation_conflict(),
            other => Completion::check_condition(to_sense(other).encode(d_sense)),
        };
        if data.len() < self.param_len {
            return fail(PrError::ParamListLength);
        }
        let param = data.to_vec(self.param_len);
        let request = match pr::request::decode(self.action, self.scope_type, &param) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let result = match lun.shared_reservations() {
            // A cluster gateway commits the change to the state every gateway shares.
            Some(shared) => {
                let call = PrOutCall {
                    nexus,
                    action: self.action,
                    scope_type: self.scope_type,
                    param: &param,
                    request: &request,
                };
                shared.change(lun, call).await
            }
            None => {
                let mut aborted = Drain::default();
                lun.pr()
                    .change(nexus, &request, |_, fx| aborted = apply_effects(lun, fx, Some(nexus)))
                    .await
                    .map(|(next, effects)| Changed { next, effects, aborted })
            }
        };
        match result {
            Ok(Changed { next, effects, aborted }) => {
                // Under the fencing gate none of them can reach the backend any more; waiting
                // for them to end means none is still running when GOOD goes out.
                let aborted_tasks = aborted.len();
                aborted.wait().await;
                info!(
                    lun = lun.id(),
                    nexus = %nexus.initiator_port(),
                    request = ?request,
                    generation = next.generation,
                    registrants = next.registrants.len(),
                    reservation = ?next.reservation.as_ref().map(|r| (r.kind, r.holder.initiator.display_name())),
                    aborted_nexuses = effects.abort.len(),
                    aborted_tasks,
                    "persistent reservation changed"
                );
                Completion::good()
            }
            Err(e) => {
                debug!(lun = lun.id(), nexus = %nexus.initiator_port(), request = ?request, error = ?e, "PR OUT refused");
                match &e {
                    PrError::Store(msg) => {
                        tracing::error!(lun = lun.id(), "APTPL store failed, state unchanged: {msg}")
                    }
                    PrError::Unavailable(msg) => {
                        tracing::warn!(lun = lun.id(), "PR OUT not committed cluster-wide: {msg}")
                    }
                    _ => {}
                }
                fail(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_attention_ports_match_by_name_and_isid() {
        let p = |name: &str, isid: u8| InitiatorPort::new(name, [0x80, 0, 0, 0, 0, isid]);
        let port = pr::InitiatorId::port("iqn.a:b", [0x80, 0, 0, 0, 0, 1]);
        let ports = PortSet::new([&port]);
        assert!(ports.contains(&p("IQN.A:B", 1)), "names are normalised (RFC 7143 §4.2.7.1)");
        assert!(!ports.contains(&p("iqn.a:b", 2)));
        let device = PortSet::new([&pr::InitiatorId::device("iqn.a:b")]);
        assert!(device.contains(&p("iqn.a:b", 2)));
        assert!(!device.contains(&p("iqn.a:bc", 2)));
    }

    #[test]
    fn a_port_set_of_thousands_finds_exactly_its_members() {
        let isid = |i: usize| [0x80, 0, 0, 0, (i >> 8) as u8, i as u8];
        let port = |i: usize| pr::InitiatorId::port(&format!("iqn.h:{}", i % 64), isid(i));
        let members: Vec<pr::InitiatorId> = (0..4096).map(port).collect();
        let set = PortSet::new(members.iter());
        for i in (0..4096).step_by(97) {
            assert!(set.contains(&InitiatorPort::new(&format!("iqn.h:{}", i % 64), isid(i))));
        }
        assert!(set.contains(&InitiatorPort::new("IQN.H:63", [0x80, 0, 0, 0, 0, 0x3F])));
        assert!(!set.contains(&InitiatorPort::new("iqn.h:5", [0x80, 0, 0, 0, 0, 6])));
    }
}
