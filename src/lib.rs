pub mod admin;
pub mod backend;
pub mod config;
pub mod iscsi;
pub mod metrics;
pub mod pr;
pub mod scsi;
pub mod server;
