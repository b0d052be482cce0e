//! What `palisade cluster status` shows (admin socket request `cluster`): this gateway's
//! membership and self-fence state, and every gateway it has seen. Updated by the membership
//! task and the peer watcher; read by the admin socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::membership::LeaseTiming;
use crate::scsi::WriteFence;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayState {
    /// Taking the membership and agreeing on LUN definitions; writes refused.
    Joining,
    /// Member of the cluster; writes admitted until the self-fence deadline.
    Serving,
    /// Past its deadline without an acknowledged keepalive; writes refused (ALUA transitioning).
    SelfFenced,
    /// Its lease has expired as far as etcd can tell; writes refused (ALUA unavailable).
    Unavailable,
}

/// One gateway as this one sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayView {
    pub id: u16,
    pub live: bool,
    pub pid: u32,
    pub portals: Vec<String>,
    pub relative_ports: Vec<u16>,
}

/// One LU's shared reservation state as this gateway holds it, and how far every gateway has
/// acknowledged its changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    pub target: String,
    pub lun: u64,
    /// Every change up to this etcd revision is applied here.
    pub applied_revision: i64,
    /// The etcd mod revision of the record held (0: none yet).
    pub held_revision: i64,
    pub generation: u32,
    pub registrants: usize,
    pub reserved: bool,
    /// Gateway id → the highest revision it acknowledged (as of the last poll).
    pub acknowledged: BTreeMap<u16, i64>,
}

/// PERSISTENT RESERVE OUT on this gateway in cluster mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrOutView {
    /// Changes committed to etcd by this gateway.
    pub committed: u64,
    /// Commits that lost the compare-and-swap to another gateway's change and were retried.
    pub lost_races: u64,
    /// Commits that failed (etcd unreachable, membership lost, barrier gave up): NOT READY.
    pub failed: u64,
    /// Total and largest time from taking the gate to GOOD, and of the barrier alone.
    pub commit_ms_total: u64,
    pub commit_ms_max: u64,
    pub barrier_ms_total: u64,
    pub barrier_ms_max: u64,
}

/// Counters the reservation layer feeds (reservations.rs).
#[derive(Debug, Default)]
pub struct PrOutStats {
    committed: AtomicU64,
    lost_races: AtomicU64,
    failed: AtomicU64,
    commit_us_total: AtomicU64,
    commit_us_max: AtomicU64,
    barrier_us_total: AtomicU64,
    barrier_us_max: AtomicU64,
}

impl PrOutStats {
    pub fn committed(&self, commit: Duration, barrier: Duration) {
        let (commit, barrier) = (commit.as_micros() as u64, barrier.as_micros() as u64);
        self.committed.fetch_add(1, Ordering::Relaxed);
        self.commit_us_total.fetch_add(commit, Ordering::Relaxed);
        self.commit_us_max.fetch_max(commit, Ordering::Relaxed);
        self.barrier_us_total.fetch_add(barrier, Ordering::Relaxed);
        self.barrier_us_max.fetch_max(barrier, Ordering::Relaxed);
    }

    pub fn lost_race(&self) {
        self.lost_races.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn view(&self) -> PrOutView {
        let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) / 1000;
        PrOutView {
            committed: self.committed.load(Ordering::Relaxed),
            lost_races: self.lost_races.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            commit_ms_total: ms(&self.commit_us_total),
            commit_ms_max: ms(&self.commit_us_max),
            barrier_ms_total: ms(&self.barrier_us_total),
            barrier_ms_max: ms(&self.barrier_us_max),
        }
    }
}

/// Where the view reads a LU's shared reservation state from.
pub type ReservationSource = Box<dyn Fn() -> ReservationView + Send + Sync>;

/// The answer to the admin socket's `cluster` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub gateway_id: u16,
    pub state: GatewayState,
    pub lease_id: i64,
    pub lease_ttl_ms: u64,
    pub self_fence_margin_ms: u64,
    /// Time since the send time of the last acknowledged keepalive (the self-fence clock).
    pub last_ack_age_ms: u64,
    /// How long writes stay admitted without another acknowledged keepalive; `None` when fenced.
    pub writes_admitted_for_ms: Option<u64>,
    pub self_fence_events: u64,
    /// Keepalives etcd acknowledged, and keepalives that failed or timed out.
    pub keepalives_acknowledged: u64,
    pub keepalives_failed: u64,
    /// Times this gateway came back after fencing itself.
    pub rejoins: u64,
    pub gateways: Vec<GatewayView>,
    #[serde(default)]
    pub reservations: Vec<ReservationView>,
    #[serde(default)]
    pub pr_out: PrOutView,
}

impl ClusterView {
    /// The Prometheus families of cluster mode (appended to the server's metrics page).
    pub fn prometheus(&self) -> String {
        let mut e = crate::metrics::Exposition::default();
        let id = self.gateway_id.to_string();
        let gateway = [("gateway", id.as_str())];
        e.family("palisade_cluster_serving", "gauge", "1 while this gateway is a cluster member admitting writes.");
        e.sample("palisade_cluster_serving", &gateway, u8::from(self.state == GatewayState::Serving));
        e.family("palisade_cluster_keepalives_total", "counter", "Membership lease keepalives by result.");
        let acked = [("gateway", id.as_str()), ("result", "acknowledged")];
        e.sample("palisade_cluster_keepalives_total", &acked, self.keepalives_acknowledged);
        let failed = [("gateway", id.as_str()), ("result", "failed")];
        e.sample("palisade_cluster_keepalives_total", &failed, self.keepalives_failed);
        e.family(
            "palisade_cluster_last_keepalive_age_seconds",
            "gauge",
            "Time since the send time of the last acknowledged keepalive (the self-fence clock).",
        );
        e.sample("palisade_cluster_last_keepalive_age_seconds", &gateway, self.last_ack_age_ms as f64 / 1000.0);
        e.family("palisade_cluster_self_fence_events_total", "counter", "Times this gateway fenced itself.");
        e.sample("palisade_cluster_self_fence_events_total", &gateway, self.self_fence_events);
        e.family("palisade_cluster_rejoins_total", "counter", "Times this gateway rejoined after fencing itself.");
        e.sample("palisade_cluster_rejoins_total", &gateway, self.rejoins);
        e.family("palisade_cluster_gateways_live", "gauge", "Gateways whose membership key this gateway sees.");
        e.sample("palisade_cluster_gateways_live", &gateway, self.gateways.iter().filter(|g| g.live).count());
        let pr = &self.pr_out;
        e.family("palisade_cluster_pr_out_total", "counter", "PERSISTENT RESERVE OUT commits to etcd by result.");
        for (result, n) in [("committed", pr.committed), ("lost_race", pr.lost_races), ("failed", pr.failed)] {
            e.sample("palisade_cluster_pr_out_total", &[("gateway", id.as_str()), ("result", result)], n);
        }
        e.family("palisade_cluster_pr_out_seconds_total", "counter", "Time committed PR OUTs took, gate to GOOD.");
        e.sample("palisade_cluster_pr_out_seconds_total", &gateway, pr.commit_ms_total as f64 / 1000.0);
        e.family(
            "palisade_cluster_pr_barrier_seconds_total",
            "counter",
            "Time PR OUTs waited for every gateway to apply.",
        );
        e.sample("palisade_cluster_pr_barrier_seconds_total", &gateway, pr.barrier_ms_total as f64 / 1000.0);
        e.family("palisade_cluster_pr_barrier_max_seconds", "gauge", "The longest barrier wait so far.");
        e.sample("palisade_cluster_pr_barrier_max_seconds", &gateway, pr.barrier_ms_max as f64 / 1000.0);
        e.family(
            "palisade_cluster_pr_applied_revision",
            "gauge",
            "etcd revision of the reservation state applied, per LU.",
        );
        for r in &self.reservations {
            let lun = r.lun.to_string();
            let labels = [("gateway", id.as_str()), ("target", r.target.as_str()), ("lun", lun.as_str())];
            e.sample("palisade_cluster_pr_applied_revision", &labels, r.applied_revision);
        }
        e.finish()
    }
}

pub struct ClusterStatus {
    fence: Arc<WriteFence>,
    inner: Mutex<Inner>,
    pr_out: Arc<PrOutStats>,
    reservations: Mutex<Vec<ReservationSource>>,
    /// (target, LUN) → gateway → acknowledged revision, from the peer watcher's last poll.
    acknowledged: Mutex<BTreeMap<(String, u64), BTreeMap<u16, i64>>>,
}

struct Inner {
    gateway_id: u16,
    state: GatewayState,
    lease_id: i64,
    timing: LeaseTiming,
    acked_sent: Instant,
    self_fence_events: u64,
    keepalives_acknowledged: u64,
    keepalives_failed: u64,
    rejoins: u64,
    gateways: Vec<GatewayView>,
}

impl ClusterStatus {
    pub fn new(gateway_id: u16, timing: LeaseTiming, fence: Arc<WriteFence>) -> Arc<ClusterStatus> {
        Arc::new(ClusterStatus {
            fence,
            pr_out: Arc::default(),
            reservations: Mutex::default(),
            acknowledged: Mutex::default(),
            inner: Mutex::new(Inner {
                gateway_id,
                state: GatewayState::Joining,
                lease_id: 0,
                timing,
                acked_sent: Instant::now(),
                self_fence_events: 0,
                keepalives_acknowledged: 0,
                keepalives_failed: 0,
                rejoins: 0,
                gateways: Vec::new(),
            }),
        })
    }

    fn with(&self, change: impl FnOnce(&mut Inner)) {
        change(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(super) fn set_state(&self, state: GatewayState) {
        self.with(|i| {
            if state == GatewayState::SelfFenced && i.state != GatewayState::SelfFenced {
                i.self_fence_events += 1;
            }
            i.state = state;
        });
    }

    pub(super) fn acknowledged(&self, lease_id: i64, sent: Instant) {
        self.with(|i| {
            i.lease_id = lease_id;
            i.acked_sent = sent;
        });
    }

    pub(super) fn keepalive(&self, acknowledged: bool) {
        self.with(|i| {
            if acknowledged {
                i.keepalives_acknowledged += 1;
            } else {
                i.keepalives_failed += 1;
            }
        });
    }

    pub(super) fn rejoined(&self) {
        self.with(|i| i.rejoins += 1);
    }

    pub(super) fn set_gateways(&self, gateways: Vec<GatewayView>) {
        self.with(|i| i.gateways = gateways);
    }

    pub fn pr_out(&self) -> Arc<PrOutStats> {
        self.pr_out.clone()
    }

    pub(super) fn set_reservation_sources(&self, sources: Vec<ReservationSource>) {
        *self.reservations.lock().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    pub(super) fn set_acknowledged(&self, acks: BTreeMap<(String, u64), BTreeMap<u16, i64>>) {
        *self.acknowledged.lock().unwrap_or_else(|e| e.into_inner()) = acks;
    }

    fn reservation_views(&self) -> Vec<ReservationView> {
        let acks = self.acknowledged.lock().unwrap_or_else(|e| e.into_inner());
        let sources = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .iter()
            .map(|source| {
                let mut view = source();
                view.acknowledged = acks.get(&(view.target.clone(), view.lun)).cloned().unwrap_or_default();
                view
            })
            .collect()
    }

    pub fn view(&self) -> ClusterView {
        let reservations = self.reservation_views();
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        ClusterView {
            gateway_id: i.gateway_id,
            state: i.state,
            lease_id: i.lease_id,
            lease_ttl_ms: i.timing.ttl.as_millis() as u64,
            self_fence_margin_ms: i.timing.margin.as_millis() as u64,
            last_ack_age_ms: now.saturating_duration_since(i.acked_sent).as_millis() as u64,
            writes_admitted_for_ms: self
                .fence
                .deadline()
                .filter(|d| *d > now)
                .map(|d| d.saturating_duration_since(now).as_millis() as u64),
            self_fence_events: i.self_fence_events,
            keepalives_acknowledged: i.keepalives_acknowledged,
            keepalives_failed: i.keepalives_failed,
            rejoins: i.rejoins,
            gateways: i.gateways.clone(),
            reservations,
            pr_out: self.pr_out.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_view_and_its_metrics_follow_the_membership() {
        let fence = Arc::new(WriteFence::default());
        let timing = LeaseTiming::new(Duration::from_secs(2), Duration::from_millis(500));
        let status = ClusterStatus::new(4, timing, fence.clone());
        assert_eq!(status.view().state, GatewayState::Joining);
        status.acknowledged(0x42, Instant::now());
        fence.open_until(Instant::now() + Duration::from_millis(1500));
        status.set_state(GatewayState::Serving);
        status.keepalive(true);
        tokio::time::advance(Duration::from_millis(300)).await;
        let view = status.view();
        assert_eq!((view.lease_id, view.last_ack_age_ms, view.writes_admitted_for_ms), (0x42, 300, Some(1200)));
        status.keepalive(false);
        status.set_state(GatewayState::SelfFenced);
        status.set_state(GatewayState::SelfFenced);
        fence.close(false);
        status.rejoined();
        let view = status.view();
        assert_eq!((view.self_fence_events, view.writes_admitted_for_ms), (1, None), "one event per fence");
        let page = view.prometheus();
        for line in [
            "palisade_cluster_serving{gateway=\"4\"} 0",
            "palisade_cluster_keepalives_total{gateway=\"4\",result=\"acknowledged\"} 1",
            "palisade_cluster_keepalives_total{gateway=\"4\",result=\"failed\"} 1",
            "palisade_cluster_last_keepalive_age_seconds{gateway=\"4\"} 0.3",
            "palisade_cluster_self_fence_events_total{gateway=\"4\"} 1",
            "palisade_cluster_rejoins_total{gateway=\"4\"} 1",
            "palisade_cluster_gateways_live{gateway=\"4\"} 0",
        ] {
            assert!(page.lines().any(|l| l == line), "missing `{line}` in:\n{page}");
        }
    }
}
