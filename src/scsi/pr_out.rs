//! PERSISTENT RESERVE OUT (SPC-4 §6.15): CDB checks at admission; at execution the parameter
//! list is decoded and applied through the LU's fencing gate (pr::Unit::change), whose commit
//! step aborts the preempted nexuses' tasks in the LU's task set and queues the unit
//! attentions; GOOD is returned once those tasks have ended.

use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::task::{Completion, DataOut, ItNexus};
use super::task_set::Drain;
use crate::pr::{self, PrError, PrUnitAttention};
use tracing::{debug, info};

/// The reservation manager's view of an I_T nexus.
pub(crate) fn pr_nexus(n: &ItNexus) -> pr::Nexus {
    pr::Nexus::new(&n.initiator_name, n.isid, &n.target_name, n.tpgt)
}

/// Whether an initiator port name as the LU keys its unit attentions ("<name>,i,0x<ISID>",
/// see `ItNexus::initiator_port`) belongs to `id`.
pub(crate) fn port_matches(id: &pr::InitiatorId, port: &str) -> bool {
    let Some((name, hex)) = port.rsplit_once(",i,0x") else { return false };
    let isid_ok = match id.isid {
        None => true,
        Some(isid) => isid.iter().map(|b| format!("{b:02x}")).collect::<String>().eq_ignore_ascii_case(hex),
    };
    isid_ok && name.eq_ignore_ascii_case(&id.name)
}

/// A validated PERSISTENT RESERVE OUT waiting for its parameter list.
#[derive(Debug)]
pub(crate) struct PrOut {
    action: u8,
    scope_type: u8,
    pub param_len: usize,
}

/// SPC-4 §6.15.1: PARAMETER LIST LENGTH is checked before any data-out is solicited.
pub(crate) fn prepare(cdb: &[u8]) -> Result<PrOut, Sense> {
    let param_len = u32::from_be_bytes([cdb[5], cdb[6], cdb[7], cdb[8]]) as usize;
    pr::request::check_param_len(param_len).map_err(to_sense)?;
    Ok(PrOut { action: cdb[1] & 0x1F, scope_type: cdb[2], param_len })
}

/// Maps every reservation error but RESERVATION CONFLICT to its sense (SPC-4 §6.15, Annex D).
pub(crate) fn to_sense(e: PrError) -> Sense {
    match e {
        PrError::InvalidCdbField { byte, bit } => Sense::invalid_cdb_field(byte, bit),
        PrError::InvalidParamField { byte, bit } => Sense::invalid_param_field(byte, bit),
        PrError::ParamListLength => SenseReason::ParameterListLengthError.into(),
        PrError::InvalidRelease => SenseReason::InvalidReleaseOfPersistentReservation.into(),
        PrError::InsufficientResources => SenseReason::InsufficientRegistrationResources.into(),
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

impl PrOut {
    pub(crate) async fn execute(self, lun: &Lun, nexus: &ItNexus, data: &DataOut, d_sense: bool) -> Completion {
        let fail = |e: PrError| match e {
            PrError::Conflict => Completion::reservation_conflict(),
            other => Completion::check_condition(to_sense(other).encode(d_sense)),
        };
        if data.len() < self.param_len {
            return fail(PrError::ParamListLength);
        }
        let request = match pr::request::decode(self.action, self.scope_type, &data.to_vec(self.param_len)) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let me = pr_nexus(nexus);
        let mut aborted = Drain::default();
        let result = lun
            .pr()
            .change(&me, &request, |_, fx| {
                for (id, ua) in &fx.ua {
                    lun.establish_unit_attention_where(ua_reason(*ua), |port| port_matches(id, port));
                }
                if !fx.abort.is_empty() {
                    // SPC-4 §5.13.11.4.4: the preempted nexuses' tasks are aborted (TASK ABORTED
                    // with TAS set, SAM-5 §5.6), all but this PERSISTENT RESERVE OUT itself.
                    let covered = |n: &ItNexus| n != nexus && fx.abort.iter().any(|id| id.covers(&pr_nexus(n)));
                    aborted = lun.task_set().abort(covered, Some(nexus), lun.mode().tas);
                }
            })
            .await;
        // Under the fencing gate none of them can reach the backend any more; waiting for them
        // to end means none is still running when GOOD goes out.
        let aborted_tasks = aborted.len();
        aborted.wait().await;
        match result {
            Ok(t) => {
                info!(
                    lun = lun.id(),
                    nexus = %nexus.initiator_port(),
                    request = ?request,
                    generation = t.next.generation,
                    registrants = t.next.registrants.len(),
                    reservation = ?t.next.reservation.as_ref().map(|r| (r.kind, r.holder.initiator.display_name())),
                    aborted_nexuses = t.effects.abort.len(),
                    aborted_tasks,
                    "persistent reservation changed"
                );
                Completion::good()
            }
            Err(e) => {
                debug!(lun = lun.id(), nexus = %nexus.initiator_port(), request = ?request, error = ?e, "PR OUT refused");
                if let PrError::Store(msg) = &e {
                    tracing::error!(lun = lun.id(), "APTPL store failed, state unchanged: {msg}");
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
    fn unit_attention_ports_match_by_name_case_insensitively_and_isid() {
        let port = pr::InitiatorId::port("iqn.a:b", [0x80, 0, 0, 0, 0, 1]);
        assert!(port_matches(&port, "IQN.A:B,i,0x800000000001"));
        assert!(!port_matches(&port, "iqn.a:b,i,0x800000000002"));
        assert!(port_matches(&pr::InitiatorId::device("iqn.a:b"), "iqn.a:b,i,0x800000000002"));
        assert!(!port_matches(&pr::InitiatorId::device("iqn.a:b"), "iqn.a:bc,i,0x800000000002"));
    }
}
