//! What `palisade cluster status` shows (admin socket request `cluster`): this gateway's
//! membership and self-fence state, and every gateway it has seen. Updated by the membership
//! task and the peer watcher; read by the admin socket.

use std::sync::{Arc, Mutex};

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
    pub gateways: Vec<GatewayView>,
}

pub struct ClusterStatus {
    fence: Arc<WriteFence>,
    inner: Mutex<Inner>,
}

struct Inner {
    gateway_id: u16,
    state: GatewayState,
    lease_id: i64,
    timing: LeaseTiming,
    acked_sent: Instant,
    self_fence_events: u64,
    gateways: Vec<GatewayView>,
}

impl ClusterStatus {
    pub fn new(gateway_id: u16, timing: LeaseTiming, fence: Arc<WriteFence>) -> Arc<ClusterStatus> {
        Arc::new(ClusterStatus {
            fence,
            inner: Mutex::new(Inner {
                gateway_id,
                state: GatewayState::Joining,
                lease_id: 0,
                timing,
                acked_sent: Instant::now(),
                self_fence_events: 0,
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

    pub(super) fn set_gateways(&self, gateways: Vec<GatewayView>) {
        self.with(|i| i.gateways = gateways);
    }

    pub fn view(&self) -> ClusterView {
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
            gateways: i.gateways.clone(),
        }
    }
}
