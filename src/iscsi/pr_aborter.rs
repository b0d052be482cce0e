//! The transport side of PREEMPT AND ABORT (SPC-4 §5.13.11.4.4): the SCSI layer names the
//! I_T nexuses whose tasks on a logical unit must go; this aborts them in every session of the
//! target, as LOGICAL UNIT RESET does (tmf.rs). A task waiting for Data-Out is dropped with
//! its transfer's receiver, so the connection stops soliciting data for it.

use std::sync::{Arc, Weak};

use super::registry::Registry;
use super::session::RunningTask;
use crate::scsi::lun::decode_lun;
use crate::scsi::{ItNexus, TaskAborter};

#[derive(Debug)]
pub struct SessionAborter {
    registry: Weak<Registry>,
}

impl TaskAborter for SessionAborter {
    fn abort_tasks(&self, target: &str, lun: u64, select: &dyn Fn(&ItNexus) -> bool) {
        let Some(registry) = self.registry.upgrade() else { return };
        // SAM-5 §5.6: with TAS set, the preempted nexuses learn of it through TASK ABORTED.
        let entry = registry.target(target);
        let tas = |t: &RunningTask| entry.as_ref().is_some_and(|e| e.scsi.reports_aborted_tasks(t.lun));
        for session in registry.sessions.of_target(target) {
            if !session.nexus.as_deref().is_some_and(select) {
                continue;
            }
            let victims = session.abort_tasks_reporting(|_, t| decode_lun(t.lun) == Some(lun), tas);
            if !victims.is_empty() {
                tracing::info!(session = %session.log_id(), lun, tasks = victims.len(), "aborted by PREEMPT AND ABORT");
            }
        }
    }
}

/// Gives every target of `registry` the aborter (once, at server start).
pub fn install(registry: &Arc<Registry>) {
    for target in registry.targets() {
        target.scsi.set_task_aborter(Arc::new(SessionAborter { registry: Arc::downgrade(registry) }));
    }
}
