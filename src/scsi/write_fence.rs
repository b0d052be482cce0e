//! The write fence of a cluster gateway (docs/cluster.md "Self-fencing"): writes may be
//! submitted to the backing store only before a deadline on the local monotonic clock. The
//! cluster layer moves the deadline forward with every acknowledged lease keepalive (to the
//! keepalive's send time + TTL − margin), so a gateway cut off from etcd stops writing before
//! etcd can expire its membership and the other gateways act on its absence.
//!
//! The check compares the clock with the deadline on every write instead of waiting for a timer
//! to close the fence: a gateway whose timer task runs late (a stalled runtime) still refuses a
//! write that arrives past its deadline. Writes already past the check are in the backend under
//! the LU's fencing gate; `pr::Unit::quiesce` waits for them.
//!
//! Refused writes get NOT READY with the ALUA state the gateway reports (SPC-4 §5.15.2.4):
//! ASYMMETRIC ACCESS STATE TRANSITION (04/0A) while it is fencing itself or rejoining, TARGET
//! PORT IN UNAVAILABLE STATE (04/0C) once it has been out of the cluster long enough that its
//! membership has expired. Either way a host's multipath retries another path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use tokio::time::Instant;

use super::sense::SenseReason;

/// The instant every deadline is counted from, so a deadline fits in one atomic.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// Gateway-wide: one fence shared by every LU of the server.
#[derive(Debug)]
pub struct WriteFence {
    /// Writes are admitted while the monotonic clock is before this (nanoseconds since `epoch`).
    deadline: AtomicU64,
    /// Report Unavailable (04/0C) rather than Transitioning (04/0A) when refusing.
    unavailable: AtomicBool,
}

impl Default for WriteFence {
    /// A fence that admits nothing until the cluster layer opens it.
    fn default() -> Self {
        epoch();
        WriteFence { deadline: AtomicU64::new(0), unavailable: AtomicBool::new(false) }
    }
}

impl WriteFence {
    /// Admits writes until `deadline`; called after each acknowledged keepalive.
    pub fn open_until(&self, deadline: Instant) {
        self.unavailable.store(false, Ordering::Release);
        self.deadline.store(nanos_since_epoch(deadline), Ordering::Release);
    }

    /// Refuses every write from now on, reporting Transitioning (or Unavailable).
    pub fn close(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Release);
        self.deadline.store(0, Ordering::Release);
    }

    /// Marks a closed fence's refusals as Unavailable (the membership has expired by now).
    pub fn report_unavailable(&self) {
        self.unavailable.store(true, Ordering::Release);
    }

    /// The deadline writes are admitted until, or `None` when the fence is closed.
    pub fn deadline(&self) -> Option<Instant> {
        let nanos = self.deadline.load(Ordering::Acquire);
        (nanos > 0).then(|| epoch() + std::time::Duration::from_nanos(nanos))
    }

    /// May a write be submitted to the backing store now?
    pub fn admit(&self) -> Result<(), SenseReason> {
        if nanos_since_epoch(Instant::now()) < self.deadline.load(Ordering::Acquire) {
            Ok(())
        } else if self.unavailable.load(Ordering::Acquire) {
            Err(SenseReason::TargetPortInUnavailableState)
        } else {
            Err(SenseReason::AsymmetricAccessStateTransition)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn admits_until_the_deadline_then_refuses_with_the_alua_state() {
        let fence = WriteFence::default();
        assert_eq!(fence.admit(), Err(SenseReason::AsymmetricAccessStateTransition), "closed until opened");
        fence.open_until(Instant::now() + Duration::from_secs(2));
        assert_eq!(fence.admit(), Ok(()));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(fence.admit(), Ok(()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(fence.admit(), Err(SenseReason::AsymmetricAccessStateTransition), "no timer needed");
        fence.report_unavailable();
        assert_eq!(fence.admit(), Err(SenseReason::TargetPortInUnavailableState));
        fence.open_until(Instant::now() + Duration::from_secs(1));
        assert_eq!(fence.admit(), Ok(()));
        fence.close(false);
        assert_eq!(fence.admit(), Err(SenseReason::AsymmetricAccessStateTransition));
        assert_eq!(fence.deadline(), None);
    }
}
