//! The transport-agnostic SCSI task layer (SAM-5, SPC-4, SBC-3): a transport joins each
//! logical unit's task set for its I_T nexus (`ScsiTarget::join_task_set`), builds a
//! `ScsiTask`, calls `ScsiTarget::prepare`, admits the task (`NexusTasks::admit`), fetches
//! `Prepared::data_out_len()` bytes of data-out, waits its turn and awaits `Prepared::execute`.
//! Task management (TMF, resets, PREEMPT AND ABORT) ends tasks here; the transport only sends
//! the TASK ABORTED status it is told to (`task_set::StatusSink`).

pub mod alua;
mod block;
mod commands;
mod compare;
mod copy_results;
mod inquiry;
pub mod limits;
pub mod lun;
mod mode;
mod odx;
mod odx_vpd;
mod pr_in;
pub mod pr_out;
mod provisioning;
mod range_lock;
mod reports;
mod rod_status;
mod rod_token;
mod rtpg;
pub mod sense;
pub mod shared_pr;
pub mod target;
pub mod task;
pub mod task_set;
pub mod write_fence;
mod xcopy;

pub use lun::{Lun, LunIdentity};
pub use mode::ModePages;
pub use sense::{Sense, SenseReason};
pub use shared_pr::{Changed, PrOutCall, SharedReservations};
pub use target::{LunMasking, Prepared, ScsiTarget};
pub use task::{Completion, DataOut, ItNexus, ScsiTask, TaskAttr};
pub use task_set::{Admitted, Drain, NexusTasks, StatusSink};
pub use write_fence::WriteFence;

#[cfg(test)]
mod tests;
