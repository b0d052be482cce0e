pub mod backend;
pub mod scsi;
