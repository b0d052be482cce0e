//! PERSISTENT RESERVE OUT (SPC-4 §6.15): CDB checks at admission; at execution the parameter
//! list is decoded and applied through the LU's fencing gate (pr::Unit::change), whose commit
//! step aborts the preempted nexuses' tasks through the transport's `TaskAborter` and queues
//! the unit attentions, all before GOOD is returned.

use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::task::{Completion, DataOut, ItNexus};
use crate::pr::{self, PrError, PrUnitAttention};
use std::sync::Arc;
use tracing::{debug, info};

/// Implemented by the transport, which alone knows the running tasks (SAM-5 §5.6): aborts
/// every task on logical unit `lun` of target `target` whose I_T nexus `select` picks. When it
/// returns, none of those tasks runs any further; aborted tasks send no status (TAS = 0).
pub trait TaskAborter: Send + Sync + std::fmt::Debug {
    fn abort_tasks(&self, target: &str, lun: u64, select: &dyn Fn(&ItNexus) -> bool);
}

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
    target_name: String,
    aborter: Option<Arc<dyn TaskAborter>>,
}

/// SPC-4 §6.15.1: PARAMETER LIST LENGTH is checked before any data-out is solicited.
pub(crate) fn prepare(cdb: &[u8], target_name: &str, aborter: Option<Arc<dyn TaskAborter>>) -> Result<PrOut, Sense> {
    let param_len = u32::from_be_bytes([cdb[5], cdb[6], cdb[7], cdb[8]]) as usize;
    pr::request::check_param_len(param_len).map_err(to_sense)?;
    Ok(PrOut { action: cdb[1] & 0x1F, scope_type: cdb[2], param_len, target_name: target_name.to_string(), aborter })
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
        let result = lun
            .pr()
            .change(&me, &request, |_, fx| {
                for (id, ua) in &fx.ua {
                    lun.establish_unit_attention_where(ua_reason(*ua), |port| port_matches(id, port));
                }
                if fx.abort.is_empty() {
                    return;
                }
                match &self.aborter {
                    Some(aborter) => aborter.abort_tasks(&self.target_name, lun.id(), &|n: &ItNexus| {
                        n != nexus && fx.abort.iter().any(|id| id.covers(&pr_nexus(n)))
                    }),
                    // Without a transport (unit tests) nothing runs concurrently; the gate's
                    // re-check still refuses the preempted nexuses' later I/O.
                    None => debug!("no task aborter installed"),
                }
            })
            .await;
        match result {
            Ok(t) => {
                info!(
                    lun = lun.id(),
                    nexus = %nexus.initiator_port(),
                    request = ?request,
                    generation = t.next.generation,
                    registrants = t.next.registrants.len(),
                    reservation = ?t.next.reservation.as_ref().map(|r| (r.kind, r.holder.initiator.display_name())),
                    aborted = t.effects.abort.len(),
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
