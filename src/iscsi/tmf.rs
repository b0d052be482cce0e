//! Task management (RFC 7143 §11.5-§11.6, SAM-5 §7). Aborted tasks send no response; the TMF
//! response goes out after the tasks it affects have been stopped.

use pdu::msg::task_mgmt::{function, response};
use pdu::msg::{TargetSeq, TaskMgmtRequest, TaskMgmtResponse};
use tracing::info;

use super::full_feature::FullFeature;
use super::writer::StatSn;

impl FullFeature {
    pub(super) async fn on_task_mgmt(&mut self, tmf: TaskMgmtRequest) {
        let code = self.task_management(&tmf).await;
        let rsp = TaskMgmtResponse { response: code, itt: tmf.itt, seq: TargetSeq::default() };
        self.writer.send(rsp.encode(), StatSn::Advance).await;
        if tmf.function == function::TARGET_COLD_RESET && code == response::COMPLETE {
            // The response goes out before the connections (this one included) are dropped.
            self.writer.end_batch();
            // §11.5.1: after a cold reset the target drops all connections, this one included.
            for s in self.registry.sessions.all() {
                if s.target.as_ref().map(|t| &t.name) == self.session.target.as_ref().map(|t| &t.name) {
                    s.terminate(std::time::Duration::from_secs(0)).await;
                }
            }
        }
    }

    async fn task_management(&mut self, tmf: &TaskMgmtRequest) -> u8 {
        let Some(target) = self.session.target.clone() else {
            return response::REJECTED;
        };
        let nexus = self.session.nexus.clone().expect("normal sessions have a nexus");
        let lun = tmf.lun;
        match tmf.function {
            function::ABORT_TASK => {
                let aborted = self.lun_tasks.get(&lun).and_then(|tasks| tasks.abort_task(tmf.referenced_task_tag));
                if let Some(drain) = aborted {
                    self.data.forget(tmf.referenced_task_tag);
                    drain.wait().await;
                    return response::COMPLETE;
                }
                // §11.5.1 c: the task is unknown. If its CmdSN is in the window and before this
                // TMF, it is treated as received and aborted; otherwise it does not exist.
                let (exp, max) = self.session.seq.get();
                let not_yet_arrived =
                    pdu::serial::in_window(tmf.ref_cmd_sn, exp, max) && pdu::serial::lt(tmf.ref_cmd_sn, tmf.cmd_sn);
                if not_yet_arrived {
                    self.window.consider_received(tmf.ref_cmd_sn, tmf.referenced_task_tag);
                    response::COMPLETE
                } else {
                    response::TASK_DOES_NOT_EXIST
                }
            }
            function::ABORT_TASK_SET | function::CLEAR_TASK_SET => {
                // The control mode page reports TST=001b (a task set per I_T nexus), so both
                // act on this nexus' tasks for the LUN only (SAM-5 §7.3, §7.5).
                if !target.scsi.has_lun(lun, &nexus) {
                    return response::LUN_DOES_NOT_EXIST;
                }
                if let Some(tasks) = self.lun_tasks.get(&lun).cloned() {
                    let drain = tasks.abort_all();
                    for itt in drain.tags_of(&tasks) {
                        self.data.forget(itt);
                    }
                    drain.wait().await;
                }
                response::COMPLETE
            }
            function::LOGICAL_UNIT_RESET => {
                // SAM-5 §7.7, done by the SCSI layer: every task of the LU from every nexus.
                if !target.scsi.logical_unit_reset(lun, &nexus).await {
                    return response::LUN_DOES_NOT_EXIST;
                }
                self.data.forget_lun(lun);
                info!(lun, "logical unit reset");
                response::COMPLETE
            }
            function::TARGET_WARM_RESET | function::TARGET_COLD_RESET => {
                let warm = tmf.function == function::TARGET_WARM_RESET;
                self.data.forget_all();
                target.scsi.target_reset(&nexus, warm).await;
                info!(cold = !warm, "target reset");
                response::COMPLETE
            }
            // §11.5.1: TASK REASSIGN needs ErrorRecoveryLevel 2.
            function::TASK_REASSIGN => response::REASSIGNMENT_NOT_SUPPORTED,
            // CLEAR ACA: we never establish ACA (NACA=0 is the only value accepted).
            _ => response::NOT_SUPPORTED,
        }
    }
}
