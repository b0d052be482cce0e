//! The iSCSI transport (RFC 7143): per-connection login, then Full Feature Phase. It owns
//! sequencing (CmdSN, StatSN, DataSN), data transfer (R2T, Data-In/Out) and task management,
//! and hands SCSI tasks to `crate::scsi` without knowing what they do.

mod budget;
mod command;
pub mod connection;
mod full_feature;
pub mod limits;
pub mod login;
mod login_phase;
mod logout;
mod ordering;
pub mod pr_aborter;
pub mod registry;
mod response;
pub mod session;
mod text;
mod tmf;
mod transfer;
mod writer;
