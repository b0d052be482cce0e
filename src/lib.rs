pub mod backend;
pub mod bench;
pub mod config;
pub mod iscsi;
pub mod pr;
pub mod scsi;
pub mod server;
