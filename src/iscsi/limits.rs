//! Resource limits of the transport: connections per initiator address, sessions per target
//! and in total, and process-wide gauges of live command tasks and the command data they hold
//! (logged when a connection closes, so a leak shows in the log and in the fault tests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one host, target, session or stalled peer may hold (`[limits]` in the configuration).
#[derive(Clone, Debug)]
pub struct ResourceLimits {
    /// Sessions of every kind held at once; beyond, login answers 03/02 (RFC 7143 §11.13.5).
    pub max_sessions: u32,
    /// Normal sessions of one target; beyond, login answers 03/02.
    pub max_sessions_per_target: u32,
    /// TCP connections from one IP address, logging in or logged in; beyond, closed at accept.
    pub max_connections_per_address: u32,
    /// How long a new connection may stay silent before its first Login Request is in.
    pub login_idle_timeout: Duration,
    /// Command data (write data received, read data produced) one session may hold.
    pub max_session_data_bytes: u64,
    /// Bytes queued for one connection's socket before senders wait.
    pub max_send_queue_bytes: u64,
    /// How long the socket may take no bytes while the target has some to send.
    pub send_timeout: Duration,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            max_sessions: 1024,
            max_sessions_per_target: 512,
            max_connections_per_address: 256,
            login_idle_timeout: Duration::from_secs(5),
            max_session_data_bytes: 64 << 20,
            max_send_queue_bytes: 4 << 20,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// Open connections per initiator IP address.
#[derive(Default)]
pub struct ConnectionsByAddress {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// Holds one connection's place in [`ConnectionsByAddress`] until dropped.
pub struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
}

impl ConnectionsByAddress {
    /// A slot for one more connection from `ip`, or None when it already has `max`.
    pub fn admit(&self, ip: IpAddr, max: u32) -> Option<AddressSlot> {
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { counts: self.counts.clone(), ip })
    }

    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);
static HELD_DATA_BYTES: AtomicU64 = AtomicU64::new(0);

/// SCSI command tasks alive in the process (spawned and not yet dropped).
pub fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

/// Bytes of command data budget granted and not yet returned, over all sessions.
pub fn held_data_bytes() -> u64 {
    HELD_DATA_BYTES.load(Ordering::Relaxed)
}

/// Counts one live command task while it exists.
pub struct LiveTask(());

impl Default for LiveTask {
    fn default() -> LiveTask {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        LiveTask(())
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn add_held(bytes: u64) {
    HELD_DATA_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

pub(super) fn sub_held(bytes: u64) {
    HELD_DATA_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_slots_are_counted_and_returned() {
        let table = ConnectionsByAddress::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = table.admit(ip, 2).unwrap();
        let _b = table.admit(ip, 2).unwrap();
        assert!(table.admit(ip, 2).is_none(), "a third connection from the same address is refused");
        assert!(table.admit(other, 2).is_some(), "other addresses are unaffected");
        drop(a);
        assert_eq!(table.count(ip), 1);
        assert!(table.admit(ip, 2).is_some(), "a closed connection frees its slot");
    }
}
