//! The iSCSI transport (RFC 7143): per-connection login, then Full Feature Phase. It owns
//! sequencing (CmdSN, StatSN, DataSN), data transfer (R2T, Data-In/Out) and task management,
//! and hands SCSI tasks to `crate::scsi` without knowing what they do: the SCSI layer's task
//! sets order them and decide task management; the transport delivers the answers.

mod budget;
mod cmd_window;
mod command;
pub mod connection;
mod data_transfers;
mod full_feature;
pub mod limits;
pub mod login;
mod login_phase;
mod logout;
pub mod registry;
mod response;
pub mod session;
mod text;
mod tmf;
mod transfer;
mod writer;
