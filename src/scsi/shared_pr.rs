//! The seam between PERSISTENT RESERVE OUT and a reservation state that several gateways share
//! (docs/cluster.md, "One reservation state per LUN"). On a single node the LU's `pr::Unit`
//! is the whole truth; on a cluster gateway a change is committed to etcd first and every
//! gateway applies it, so PR OUT hands it to the cluster layer through this trait instead.

use super::lun::Lun;
use super::task::ItNexus;
use super::task_set::Drain;
use crate::pr::{Effects, PrError, Request, State};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One PERSISTENT RESERVE OUT as received: the decoded request, and the CDB fields and
/// parameter list it came from (other gateways decode the same bytes to derive their effects).
#[derive(Debug, Clone, Copy)]
pub struct PrOutCall<'a> {
    pub nexus: &'a ItNexus,
    pub action: u8,
    pub scope_type: u8,
    pub param: &'a [u8],
    pub request: &'a Request,
}

/// A committed change: the new state, its effects, and the tasks its PREEMPT AND ABORT aborted
/// on this gateway (the caller waits for them before GOOD).
pub struct Changed {
    pub next: Arc<State>,
    pub effects: Effects,
    pub aborted: Drain,
}

pub type ChangeFuture<'a> = Pin<Box<dyn Future<Output = Result<Changed, PrError>> + Send + 'a>>;

/// A LU's reservation state shared with other gateways.
pub trait SharedReservations: Send + Sync + fmt::Debug {
    /// Applies `call` to the state every gateway shares and returns once every live gateway
    /// has applied it (and drained the writes it fences) or lost its membership.
    fn change<'a>(&'a self, lun: &'a Lun, call: PrOutCall<'a>) -> ChangeFuture<'a>;
}
