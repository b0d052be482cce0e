//! The transport-agnostic SCSI task layer (SAM-5, SPC-4, SBC-3): a transport builds a
//! `ScsiTask`, calls `ScsiTarget::prepare`, fetches `Prepared::data_out_len()` bytes of
//! data-out and awaits `Prepared::execute`.

mod block;
mod commands;
mod compare;
mod copy_results;
mod inquiry;
pub mod limits;
pub mod lun;
mod mode;
mod pr_in;
pub mod pr_out;
mod provisioning;
mod range_lock;
mod reports;
pub mod sense;
pub mod target;
pub mod task;
mod xcopy;

pub use lun::{Lun, LunIdentity};
pub use mode::ModePages;
pub use pr_out::TaskAborter;
pub use sense::{Sense, SenseReason};
pub use target::{LunMasking, Prepared, ScsiTarget};
pub use task::{Completion, DataOut, ItNexus, ScsiTask, TaskAttr};

#[cfg(test)]
mod tests;
