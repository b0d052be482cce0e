pub mod backend;
pub mod config;
pub mod scsi;
