//! SCSI Command PDUs (RFC 7143 §11.3) in Full Feature Phase: build the SCSI task, collect its
//! write data (immediate, unsolicited, R2T), run it (inline when nothing makes it wait,
//! otherwise as its own tokio task), and send the response. The SCSI layer is reached only
//! through `prepare` and `execute`.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Waker};

use pdu::error::reject_reason;
use pdu::msg::scsi::attr;
use pdu::msg::{DataOut as DataOutPdu, ScsiCommand};
use pdu::Pdu;
use tokio::sync::oneshot;
use tracing::debug;

use super::budget::{DataBudget, Ticket};
use super::data_transfers::WriteCommand;
use super::full_feature::{Flow, FullFeature};
use super::limits::LiveTask;
use super::response::{self, ResponseShape};
use super::session::Session;
use super::transfer::TransferResult;
use super::writer::{StatSn, WriterHandle};
use crate::metrics::CommandProbe;
use crate::scsi::task_set::Registration;
use crate::scsi::{Admitted, Completion, DataOut, NexusTasks, Prepared, ScsiTask, TaskAttr};

/// What the command task will run once its data is in.
enum Exec {
    Ready(Prepared),
    /// `prepare` already answered (bad CDB, no such LUN, unit attention ...).
    Answered(Completion),
}

impl FullFeature {
    pub(super) async fn on_command(&mut self, cmd: ScsiCommand, pdu: &Pdu, ordered: bool) -> Flow {
        let Some(nexus) = self.session.nexus.clone() else {
            // §4.3: a Discovery session carries only Text, NOP and Logout.
            if ordered {
                self.session.seq.accept_other();
            }
            self.send_reject(reject_reason::PROTOCOL_ERROR, pdu.header_bytes()).await;
            return Flow::Continue;
        };
        let Some(target) = self.session.target.clone() else { return Flow::Continue };
        if self.data.is_open(cmd.itt) || self.lun_tasks.values().any(|t| t.is_running(cmd.itt)) {
            // §11.17.1: reusing the ITT of a task still in progress.
            if ordered {
                self.session.seq.accept_other();
            }
            self.send_reject(reject_reason::TASK_IN_PROGRESS, pdu.header_bytes()).await;
            return Flow::Continue;
        }
        if ordered {
            self.session.seq.accept_command();
        }
        // Metrics (src/metrics): timed and counted against its LUN until answered or dropped.
        let probe =
            CommandProbe::start(target.scsi.addressed_lun(&nexus, cmd.lun).map(|l| l.stats().clone()), &cmd.cdb);
        let task_attr = match cmd.attr {
            attr::UNTAGGED => TaskAttr::Untagged,
            attr::ORDERED => TaskAttr::Ordered,
            attr::HEAD_OF_QUEUE => TaskAttr::HeadOfQueue,
            attr::ACA => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let lun_tasks = self.nexus_tasks(&target, &nexus, cmd.lun);
        let task = ScsiTask {
            nexus,
            lun: cmd.lun,
            cdb: cmd.cdb,
            cdb_len: 16 + cmd.extended_cdb.len(),
            attr: task_attr,
            expected_data_in_len: if cmd.read { cmd.expected_data_transfer_length } else { 0 },
            expected_data_out_len: if cmd.write { cmd.expected_data_transfer_length } else { 0 },
        };
        let (exec, needed) = match target.scsi.prepare(task) {
            Ok(p) => {
                let n = p.data_out_len();
                (Exec::Ready(p), n)
            }
            Err(c) => (Exec::Answered(c), 0),
        };
        let shape = ResponseShape {
            lun: cmd.lun,
            itt: cmd.itt,
            read: cmd.read,
            write: cmd.write,
            edtl: cmd.expected_data_transfer_length,
            data_out_len: needed,
            r2t_count: 0,
            max_recv_data_segment_length: self.session.params.max_recv_data_segment_length_initiator,
            max_burst_length: self.session.params.max_burst_length,
        };
        // The session's data budget (budget.rs) covers the write data kept or the read data
        // produced; a command that does not fit yet waits without R2Ts or execution.
        let held = match (&exec, cmd.read) {
            (Exec::Answered(_), _) => 0,
            (Exec::Ready(_), true) => cmd.expected_data_transfer_length,
            (Exec::Ready(_), false) => needed.min(cmd.expected_data_transfer_length),
        };
        let ticket = self.data.admit(cmd.itt, held as u64, &self.session.seq);
        let wants_data = cmd.write && (!cmd.data.is_empty() || !cmd.final_bit || needed > 0);
        let data_rx = if wants_data {
            let write = WriteCommand {
                itt: cmd.itt,
                lun: cmd.lun,
                edtl: cmd.expected_data_transfer_length,
                needed,
                immediate: cmd.data.clone(),
                final_bit: cmd.final_bit,
            };
            Some(self.data.start(write, &ticket).await)
        } else {
            None
        };
        // SAM-5 §8.6: the task takes its place in its nexus' task set on the LU (a command to
        // an absent LU is in no task set and is answered at once).
        let admitted = lun_tasks.map(|tasks| tasks.admit(cmd.itt, task_attr));
        let guard = TaskGuard {
            session: self.session.clone(),
            budget: self.data.budget.clone(),
            counted: ordered,
            admitted,
            _live: LiveTask::default(),
            probe,
        };
        self.spawn_command(guard, exec, (ticket, data_rx), shape);
        Flow::Continue
    }

    /// This nexus' task set on the LU `lun` addresses, joined on first use (None: no such LU).
    fn nexus_tasks(
        &mut self,
        target: &super::registry::TargetEntry,
        nexus: &Arc<crate::scsi::ItNexus>,
        lun: u64,
    ) -> Option<Arc<NexusTasks>> {
        if let Some(tasks) = self.lun_tasks.get(&lun) {
            return Some(tasks.clone());
        }
        let tasks = target.scsi.join_task_set(nexus, lun, self.session.clone())?;
        self.lun_tasks.insert(lun, tasks.clone());
        Some(tasks)
    }

    pub(super) async fn on_data_out(&mut self, d: DataOutPdu, pdu: &Pdu) -> Flow {
        let digest_ok = pdu.data_digest_ok();
        if !digest_ok && self.data.wants(d.itt) {
            // §7.8: Reject the PDU; the task ends with a CRC error once its data is in.
            self.send_reject(reject_reason::DATA_DIGEST_ERROR, pdu.header_bytes()).await;
        }
        if !self.data.data_out(&d, digest_ok).await {
            // Data for a task that ended or was aborted: discard, as at ERL 0 nothing can be
            // recovered for it (§11.7).
            debug!(itt = d.itt, "discarding Data-Out for no active transfer");
        }
        Flow::Continue
    }

    fn spawn_command(
        &mut self,
        guard: TaskGuard,
        exec: Exec,
        data: (Ticket, Option<oneshot::Receiver<TransferResult>>),
        shape: ResponseShape,
    ) {
        let registration: Option<Registration> = guard.admitted.as_ref().map(Admitted::registration);
        let mut command = Box::pin(run_command(guard, self.writer.clone(), exec, data, shape));
        // Fast path: a command that needs nothing it would wait for (no budget wait, its data
        // in, no earlier ORDERED task, a RAM backend, room in the send queue) runs to its
        // response right here, without a task spawn, a task-table entry or a thread hand-off.
        // The no-op waker is safe: a command that would wait returns Pending and is spawned
        // below, and the spawned task polls it again at once with its real waker.
        if command.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready() {
            return;
        }
        // From here task management can reach it: the task set registers it before it can end.
        match registration {
            Some(registration) => Admitted::register(registration, || self.tasks.spawn(command)),
            None => {
                self.tasks.spawn(command);
            }
        }
    }
}

/// Returns the command's window slot and its place in the task set however the task ends,
/// including when it is aborted.
struct TaskGuard {
    session: Arc<Session>,
    budget: Arc<DataBudget>,
    counted: bool,
    /// Its place in the LU's task set (None: no such LU); dropped with the guard, so tasks
    /// ordered after this one may then run.
    admitted: Option<Admitted>,
    probe: CommandProbe,
    _live: LiveTask,
}

impl TaskGuard {
    /// Opens the command's CmdSN window slot now, so the response about to be queued already
    /// advertises the larger MaxCmdSN (RFC 7143 §4.2.2.1).
    fn release_slot(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.budget.release_slot(&self.session.seq);
        }
    }

    /// Claims the task's one response; false when an abort already answered TASK ABORTED.
    fn claim_response(&self) -> bool {
        self.admitted.as_ref().is_none_or(Admitted::claim_response)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.counted {
            self.budget.release_slot(&self.session.seq);
        }
    }
}

async fn run_command(
    mut guard: TaskGuard,
    writer: WriterHandle,
    exec: Exec,
    (ticket, data_rx): (Ticket, Option<oneshot::Receiver<TransferResult>>),
    mut shape: ResponseShape,
) {
    // Held until the response is queued; None: aborted while waiting for budget.
    let Some(_permit) = ticket.redeem().await else { return };
    let data = match data_rx {
        None => DataOut::new(),
        Some(rx) => match rx.await {
            Ok(TransferResult::Complete { data, r2t_count }) => {
                shape.r2t_count = r2t_count;
                data
            }
            Ok(TransferResult::Failed { reason, r2t_count }) => {
                // §7.8 b) / §11.4.7.2: a digest or sequence failure ends the task with
                // CHECK CONDITION, ABORTED COMMAND; nothing of its data is written.
                debug!(?reason, "write data sequence failed");
                shape.r2t_count = r2t_count;
                let session = &guard.session;
                // Commands run only in normal sessions, which have both (on_command checks).
                let (Some(target), Some(nexus)) = (&session.target, &session.nexus) else { return };
                let c = target.scsi.data_out_failed(nexus, shape.lun, reason);
                guard.release_slot();
                record(&mut guard.probe, &shape, &c);
                if guard.claim_response() {
                    send_all(&writer, response::build(&shape, c)).await;
                }
                return;
            }
            // The transfer was dropped with the connection or by an abort.
            Err(_) => return,
        },
    };
    // SAM-5 §8.6: wait for the tasks this one is ordered after.
    if let Some(admitted) = &guard.admitted {
        admitted.ordered().await;
    }
    let completion = match (exec, &guard.admitted) {
        // I/O it hands to a thread keeps the task alive after an abort drops this future, so
        // task management waits for it (backend/handoff.rs).
        (Exec::Ready(prepared), Some(admitted)) => {
            crate::backend::owned_by(admitted.keep_alive(), prepared.execute(data)).await
        }
        (Exec::Ready(prepared), None) => prepared.execute(data).await,
        (Exec::Answered(c), _) => c,
    };
    guard.release_slot();
    record(&mut guard.probe, &shape, &completion);
    if guard.claim_response() {
        send_all(&writer, response::build(&shape, completion)).await;
    }
}

/// Metrics (src/metrics): the command's status and the bytes it moved, as its response goes out.
fn record(probe: &mut CommandProbe, shape: &ResponseShape, c: &Completion) {
    let moved = if shape.read {
        c.data_in.as_ref().map_or(0, |d| d.len().min(shape.edtl as usize) as u64)
    } else if shape.write {
        shape.data_out_len.min(shape.edtl) as u64
    } else {
        0
    };
    probe.finish(c.status, c.sense.as_deref(), moved);
}

async fn send_all(writer: &WriterHandle, pdus: Vec<(pdu::OutPdu, StatSn)>) {
    for (pdu, stat) in pdus {
        if !writer.send(pdu, stat).await {
            return;
        }
    }
}
