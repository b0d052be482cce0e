//! Counters for the Prometheus endpoint (issue 6). A leaf module: the transport and the SCSI
//! layer bump relaxed atomics here (a handful per command, no locks), and the admin module
//! renders them in the Prometheus text format at scrape time.
//!
//! - [`LunStats`]: per logical unit — commands, bytes, errors by kind, latency histogram and
//!   reservation events, fed by a [`CommandProbe`] per SCSI command.
//! - [`ServerCounters`]: per server — logins by status, Rejects by reason.

mod exposition;
mod lun;
mod render;
mod server;

pub use exposition::{Exposition, CONTENT_TYPE};
pub use lun::{CommandProbe, ErrorKind, LunStats, OpKind, PrEvent, LATENCY_BUCKETS_MICROS};
pub use render::{render, LunSample, Scrape, SessionCount};
pub use server::{login_status_name, reject_reason_name, ServerCounters};
