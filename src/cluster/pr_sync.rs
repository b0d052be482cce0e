//! Keeps every served LU's reservation state in step with etcd: one watch on `PREFIX/pr/` (and
//! the acknowledgements under `PREFIX/pr-acks/`, which wake waiting barriers),
//! whose changes are applied strictly in revision order (reservations.rs `SharedLun::apply`). A
//! watch that breaks or is compacted — and every rejoin — is answered by a full re-read, which
//! installs what changed and fences conservatively for what it missed, then a new watch from
//! just after that read: nothing is missed, nothing applied twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::pr_record;
use super::records::Keys;
use super::reservations::SharedLun;
use super::store::{ClusterStore, StoreError, Swapped, WatchEvent};
use crate::scsi::Lun;

/// A served LU and its shared state.
pub struct SyncedLun<S: ClusterStore> {
    pub shared: Arc<SharedLun<S>>,
    pub lun: Arc<Lun>,
}

/// How the membership asks for a full re-read (after a rejoin) and learns it is done.
#[derive(Clone)]
pub struct ResyncHandle {
    request: Arc<Notify>,
    /// Numbers the requests.
    requested: Arc<AtomicU64>,
    /// The highest request number a completed full re-read started after.
    done: watch::Receiver<u64>,
}

impl ResyncHandle {
    /// Asks for a full re-read that starts after this call, and waits until it has been
    /// applied; false if `within` passed first.
    pub async fn resync(&mut self, within: std::time::Duration) -> bool {
        let wanted = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.request.notify_one();
        timeout(within, self.done.wait_for(|done| *done >= wanted)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The watcher task: `run` it once the LUs' initial state is loaded (`load`).
pub struct PrSync<S: ClusterStore> {
    store: Arc<S>,
    keys: Keys,
    luns: HashMap<String, SyncedLun<S>>,
    /// A LU's acknowledgement prefix → its record key.
    acks: Vec<(String, String)>,
    request: Arc<Notify>,
    requested: Arc<AtomicU64>,
    done: watch::Sender<u64>,
    retry: std::time::Duration,
}

impl<S: ClusterStore> PrSync<S> {
    pub fn new(
        store: Arc<S>,
        keys: Keys,
        luns: Vec<SyncedLun<S>>,
        retry: std::time::Duration,
    ) -> (PrSync<S>, ResyncHandle) {
        let (done, done_rx) = watch::channel(0);
        let request = Arc::new(Notify::new());
        let acks = luns.iter().map(|l| (l.shared.acks_prefix().to_string(), l.shared.key().to_string())).collect();
        let luns = luns.into_iter().map(|l| (l.shared.key().to_string(), l)).collect();
        let requested = Arc::new(AtomicU64::new(0));
        let handle = ResyncHandle { request: request.clone(), requested: requested.clone(), done: done_rx };
        (PrSync { store, keys, luns, acks, request, requested, done, retry }, handle)
    }

    /// Reads every LU's record and installs it; the store revision of the read.
    pub async fn load(&self) -> Result<i64, StoreError> {
        let serving = self.requested.load(Ordering::Acquire);
        let (revision, records) = self.store.get_prefix_at(&self.keys.reservations()).await?;
        let found: HashMap<&str, _> = records.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (key, synced) in &self.luns {
            let value = found.get(key.as_str()).copied();
            let at = value.map_or(revision, |v| v.mod_revision);
            synced.shared.apply(&synced.lun, at, value).await;
            synced.shared.caught_up(revision);
            // Acknowledge the read revision: barriers of changes before it are satisfied.
            synced.shared.acknowledge(revision).await;
        }
        self.done.send_if_modified(|done| std::mem::replace(done, serving.max(*done)) != *done);
        Ok(revision)
    }

    /// Runs until aborted: watch, apply, and re-read whenever the watch ends or a resync is
    /// asked for.
    pub async fn run(self, mut from: i64) {
        loop {
            let ended = self.follow(from).await;
            debug!("reservation watch ended: {ended}; re-reading every LU's reservation state");
            loop {
                match self.load().await {
                    Ok(revision) => {
                        from = revision;
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, "re-reading reservation state failed; retrying");
                        sleep(self.retry).await;
                    }
                }
            }
        }
    }

    /// Applies the watch's changes after store revision `after` until it ends; why it ended.
    async fn follow(&self, after: i64) -> String {
        // Records and acknowledgements: the latter wake the barriers of PR OUTs waiting here.
        let mut events = match self.store.watch_prefix(&self.keys.reservations_and_acks(), after + 1).await {
            Ok(events) => events,
            Err(e) => {
                sleep(self.retry).await;
                return format!("cannot watch: {e}");
            }
        };
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = self.request.notified() => return "resync requested".into(),
            };
            match event {
                Some(WatchEvent::Changes(changes)) => {
                    for change in changes {
                        if let Some(synced) = self.luns.get(&change.key) {
                            synced.shared.apply(&synced.lun, change.revision, change.value.as_ref()).await;
                        } else if let Some((_, key)) =
                            self.acks.iter().find(|(p, _)| change.key.starts_with(p.as_str()))
                        {
                            self.luns[key].shared.acknowledgement_seen();
                        }
                    }
                }
                Some(WatchEvent::Compacted { compact_revision }) => {
                    return format!("compacted at revision {compact_revision}");
                }
                Some(WatchEvent::Broken(e)) => return e.to_string(),
                None => return "watch closed".into(),
            }
        }
    }
}

/// The LU's power-on (SPC-4 §5.13.5.1): when this gateway is the first live member (no other
/// gateway's membership key was created before ours), reservation state saved without APTPL
/// is cleared — only if it was written before we joined, so a registration made since through
/// another gateway that joined after us stays. One gateway's restart while others live is not
/// a power-on, and clears nothing.
pub async fn power_on<S: ClusterStore>(
    store: &S,
    keys: &Keys,
    gateway_id: u16,
    joined: i64,
    luns: &[Arc<SharedLun<S>>],
) -> Result<(), StoreError> {
    let members = store.get_prefix(&keys.gateways()).await?;
    let earlier = members.iter().any(|(k, v)| keys.gateway_id_of(k) != Some(gateway_id) && v.create_revision < joined);
    if earlier {
        return Ok(());
    }
    for shared in luns {
        let Some(record) = store.get(shared.key()).await? else { continue };
        if record.mod_revision > joined {
            continue;
        }
        match pr_record::decode(&record.value) {
            Ok(r) if r.state.aptpl => continue,
            Ok(r) => match store.swap(shared.key(), record.mod_revision, None, None).await? {
                Swapped::Done { revision } => info!(
                    key = shared.key(),
                    revision,
                    registrants = r.state.registrants.len(),
                    "cluster power-on: cleared reservation state saved without APTPL (SPC-4 §5.13.5.1)"
                ),
                Swapped::Stale { .. } => debug!(key = shared.key(), "reservation state changed since read; kept"),
            },
            Err(e) => warn!(key = shared.key(), error = %e, "unreadable reservation record left as it is"),
        }
    }
    Ok(())
}
