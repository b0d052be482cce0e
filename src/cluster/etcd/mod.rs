//! `ClusterStore` on etcd v3's gRPC API (tonic + prost over the vendored generated code in
//! `pb/`). Every request has a deadline: a gateway cut off from etcd must learn it from a
//! timeout, never hang (docs/cluster.md). A watch, long-lived, has one for its opening and then
//! checks etcd's liveness itself (watch.rs).

mod pb;
mod requests;
mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio::time::{timeout_at, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint};

use pb::etcdserverpb::kv_client::KvClient;
use pb::etcdserverpb::lease_client::LeaseClient;
use pb::etcdserverpb::watch_client::WatchClient;
use pb::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
    ResponseHeader,
};
use pb::mvccpb::KeyValue;

use super::store::{
    ClusterStore, Created, KeyValues, LeaseId, StoreError, StoreResult, Swapped, Versioned, WatchEvent,
};

/// The open keepalive stream of one lease: requests go in through `requests`, etcd's answers
/// come back on `answers`, one per request, in order.
struct KeepAliveStream {
    lease: LeaseId,
    /// The member (index into `EtcdStore::members`) the stream is open to.
    member: usize,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    answers: Streaming<LeaseKeepAliveResponse>,
}

/// One etcd client: a lazily connected HTTP/2 channel per member, and requests pinned to one
/// member until it fails them (as etcd's own clientv3 pins an endpoint). The membership's
/// keepalives use a store of their own, so a slow or broken request stream on the main
/// connection never delays the self-fence clock.
pub struct EtcdStore {
    members: Vec<Channel>,
    /// The member requests go to first: the last one that answered.
    pinned: AtomicUsize,
    timeout: Duration,
    /// The open keepalive stream and the lease it renews (one lease per gateway).
    keepalive: Mutex<Option<KeepAliveStream>>,
}

/// etcd's errors as the cluster layer sees them: a lease etcd no longer has, or "no usable
/// answer" (unreachable, timed out, no leader, quorum lost), which callers treat as unavailable.
fn unavailable(status: tonic::Status) -> StoreError {
    // etcd's ErrGRPCLeaseNotFound (api/v3rpc/rpctypes): "etcdserver: requested lease not found".
    if status.message().contains("lease not found") {
        return StoreError::LeaseNotFound;
    }
    // No connection to the member could be made (refused: it is down): the request never left.
    let not_sent = status.code() == tonic::Code::Unavailable && status.message().starts_with("tcp connect error");
    let prefix = if not_sent { NOT_SENT } else { "" };
    StoreError::Unavailable(format!("{prefix}grpc {:?}: {}", status.code(), status.message()))
}

/// Marks an `Unavailable` whose request never reached etcd: it may go to another member at once.
const NOT_SENT: &str = "not sent: ";

/// May a request that failed this way be sent again to another member at once?
fn retry_elsewhere(error: &StoreError, idempotent: bool) -> bool {
    match error {
        StoreError::Unavailable(why) => idempotent || why.starts_with(NOT_SENT),
        StoreError::LeaseNotFound | StoreError::Rejected(_) => false,
    }
}

/// The store revision a response was served at (rpc.proto ResponseHeader: "the key-value
/// store revision when the request was applied").
fn revision(header: Option<&ResponseHeader>) -> StoreResult<i64> {
    header.map(|h| h.revision).ok_or_else(|| StoreError::Rejected("etcd answer without a response header".into()))
}

fn versioned(kv: &KeyValue) -> Versioned {
    Versioned {
        value: kv.value.clone(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        lease: (kv.lease != 0).then_some(LeaseId(kv.lease)),
    }
}

/// A range answer's keys with their values, ordered by key.
fn sorted(kvs: &[KeyValue]) -> KeyValues {
    let mut found: KeyValues =
        kvs.iter().map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), versioned(kv))).collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// An endpoint as the config gives it (`http://host:port`, or a bare `host:port` as etcdctl
/// accepts), with the deadlines and the HTTP/2 pings that notice a silently dead connection
/// (a partition) between requests. etcd closes a connection pinged more often than its
/// `--grpc-keepalive-min-time` (5 s) while it sends nothing on it (watch.rs): the pings suit a
/// connection that carries requests every interval, not an idle one.
fn endpoint(address: &str, timeout: Duration) -> StoreResult<Endpoint> {
    let uri = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| StoreError::Unavailable(format!("bad etcd endpoint {address:?}: {e}")))?;
    Ok(endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .http2_keep_alive_interval(timeout)
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true))
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`); every request later gives up after `timeout`.
    /// The channels connect lazily, so one dead etcd member fails neither this call nor, while
    /// another member is up, later requests.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> StoreResult<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints configured".into()));
        }
        let members = endpoints
            .iter()
            .map(|address| endpoint(address, timeout).map(|e| e.connect_lazy()))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(EtcdStore { members, pinned: AtomicUsize::new(0), timeout, keepalive: Mutex::new(None) })
    }

    /// Stops pinning `member` (it failed a request): the next request goes to the next one.
    fn unpin(&self, member: usize) {
        let next = (member + 1) % self.members.len();
        let _ = self.pinned.compare_exchange(member, next, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Runs `attempt` on the pinned member within the request timeout. A member that cannot be
    /// connected to (down), or, for an `idempotent` request, that fails it fast (a broken
    /// connection, no leader), is passed over for the next one at once, each member at most
    /// once; a member that fails a request is unpinned either way. (tonic's balanced channel
    /// kept choosing a dead member: with one of three down, 52 of 240 requests failed,
    /// tests/etcd_store.rs.)
    async fn request<T, F, Fut>(&self, idempotent: bool, attempt: F) -> StoreResult<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        self.request_on(idempotent, |member| attempt(self.members[member].clone())).await
    }

    /// `request`, with `attempt` given the member's index.
    async fn request_on<T, F, Fut>(&self, idempotent: bool, attempt: F) -> StoreResult<T>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let deadline = Instant::now() + self.timeout;
        let first = self.pinned.load(Ordering::Acquire);
        let mut failed = None;
        for step in 0..self.members.len() {
            let member = (first + step) % self.members.len();
            match timeout_at(deadline, attempt(member)).await {
                Ok(Ok(answer)) => {
                    self.pinned.store(member, Ordering::Release);
                    return Ok(answer);
                }
                Ok(Err(e)) if retry_elsewhere(&e, idempotent) => {
                    self.unpin(member);
                    failed = Some(e);
                }
                Ok(Err(e)) => {
                    if matches!(e, StoreError::Unavailable(_)) {
                        self.unpin(member);
                    }
                    return Err(e);
                }
                Err(_) => {
                    self.unpin(member);
                    return Err(StoreError::Unavailable(format!("no answer in {:?}", self.timeout)));
                }
            }
        }
        Err(failed.unwrap_or_else(|| StoreError::Unavailable("no etcd member answered".into())))
    }

    /// Compacts etcd's history up to `revision`: watches from an older revision then report
    /// `Compacted`. Not part of `ClusterStore` (the cluster layer never compacts; etcd's
    /// `--auto-compaction-*` or an operator does); the integration tests provoke it with this.
    pub async fn compact(&self, revision: i64) -> StoreResult<()> {
        self.request(true, |channel| async move {
            KvClient::new(channel)
                .compact(CompactionRequest { revision, physical: true })
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Sends one keepalive for `lease` on `open` if it renews that lease on `member`, else on a
    /// new stream to `member`, and waits for etcd's answer to it. The stream comes back only
    /// with an answer: one that failed or was abandoned may still deliver a late answer, so it
    /// is never reused.
    async fn renew(
        &self,
        open: Option<KeepAliveStream>,
        lease: LeaseId,
        member: usize,
    ) -> StoreResult<(Duration, KeepAliveStream)> {
        let request = LeaseKeepAliveRequest { id: lease.0 };
        let mut stream = match open {
            Some(open) if open.lease == lease && open.member == member => {
                open.requests
                    .send(request)
                    .await
                    .map_err(|_| StoreError::Unavailable("keepalive stream closed".into()))?;
                open
            }
            _ => {
                // The first request is queued before the call: etcd answers the stream's
                // headers with its first message, and the call returns only once it has them.
                let (requests, queued) = mpsc::channel(1);
                requests
                    .try_send(request)
                    .map_err(|_| StoreError::Unavailable("keepalive request queue refused the first request".into()))?;
                let answers = LeaseClient::new(self.members[member].clone())
                    .lease_keep_alive(ReceiverStream::new(queued))
                    .await
                    .map_err(unavailable)?
                    .into_inner();
                KeepAliveStream { lease, member, requests, answers }
            }
        };
        match stream.answers.message().await.map_err(unavailable)? {
            // etcd answers TTL 0 for a lease it no longer has (rpc.proto LeaseKeepAliveResponse).
            Some(answer) if answer.ttl <= 0 => Err(StoreError::LeaseNotFound),
            Some(answer) => Ok((Duration::from_secs(answer.ttl as u64), stream)),
            None => Err(StoreError::Unavailable("keepalive stream closed".into())),
        }
    }
}

impl ClusterStore for EtcdStore {
    async fn grant_lease(&self, ttl: Duration) -> StoreResult<LeaseId> {
        let ttl = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        // Retried elsewhere like a read: a grant whose answer was lost leaves a lease that
        // nothing is attached to, which etcd expires after its TTL.
        self.request(true, |channel| async move {
            // ID 0: etcd chooses the lease ID (rpc.proto LeaseGrantRequest).
            let granted = LeaseClient::new(channel)
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .map_err(unavailable)?
                .into_inner();
            if !granted.error.is_empty() {
                return Err(StoreError::Rejected(granted.error));
            }
            Ok(LeaseId(granted.id))
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Duration> {
        // Idempotent: a keepalive that a member fails fast (it died under the stream, it has no
        // leader) is sent at once on a new stream to the next member.
        self.request_on(true, |member| async move {
            let mut slot = self.keepalive.lock().await;
            let (ttl, stream) = self.renew(slot.take(), lease, member).await?;
            *slot = Some(stream);
            Ok(ttl)
        })
        .await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        self.request(true, |channel| async move {
            match LeaseClient::new(channel).lease_revoke(LeaseRevokeRequest { id: lease.0 }).await.map_err(unavailable)
            {
                Ok(_) | Err(StoreError::LeaseNotFound) => Ok(()),
                Err(other) => Err(other),
            }
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<Created> {
        let txn = requests::create_if_absent(key, value, lease);
        self.request(false, |channel| {
            let txn = txn.clone();
            async move {
                let answer = KvClient::new(channel).txn(txn).await.map_err(unavailable)?.into_inner();
                if answer.succeeded {
                    return Ok(Created::Created);
                }
                if let Some(existing) = requests::ranges(&answer).next().and_then(|range| range.kvs.first()) {
                    return Ok(Created::Exists(versioned(existing)));
                }
                // Deleted between the compare and the get of the same transaction cannot happen
                // (a transaction is atomic); an empty answer means etcd broke its contract.
                Err(StoreError::Rejected("create failed but the key is absent".into()))
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let request = requests::single_key(key);
        self.request(true, |channel| {
            let request = request.clone();
            async move {
                let answer = KvClient::new(channel).range(request).await.map_err(unavailable)?.into_inner();
                Ok(answer.kvs.first().map(versioned))
            }
        })
        .await
    }

    async fn get_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        let request = requests::with_prefix(prefix);
        self.request(true, |channel| {
            let request = request.clone();
            async move {
                let answer = KvClient::new(channel).range(request).await.map_err(unavailable)?.into_inner();
                Ok(sorted(&answer.kvs))
            }
        })
        .await
    }

    async fn get_prefix_at(&self, prefix: &str) -> StoreResult<(i64, Vec<(String, Versioned)>)> {
        let request = requests::with_prefix(prefix);
        self.request(true, |channel| {
            let request = request.clone();
            async move {
                let answer = KvClient::new(channel).range(request).await.map_err(unavailable)?.into_inner();
                Ok((revision(answer.header.as_ref())?, sorted(&answer.kvs)))
            }
        })
        .await
    }

    async fn get_prefixes_at(&self, prefixes: &[&str]) -> StoreResult<(i64, Vec<KeyValues>)> {
        let txn = requests::prefixes(prefixes);
        let asked = prefixes.len();
        self.request(true, |channel| {
            let txn = txn.clone();
            async move {
                let answer = KvClient::new(channel).txn(txn).await.map_err(unavailable)?.into_inner();
                let found: Vec<_> = requests::ranges(&answer).map(|range| sorted(&range.kvs)).collect();
                // No compares: etcd runs the success branch, one range answer per prefix, in order.
                if !answer.succeeded || found.len() != asked {
                    return Err(StoreError::Rejected(format!(
                        "read of {asked} prefixes answered with {} ranges (succeeded: {})",
                        found.len(),
                        answer.succeeded
                    )));
                }
                Ok((revision(answer.header.as_ref())?, found))
            }
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<i64> {
        let request = requests::put(key, value, lease);
        self.request(false, |channel| {
            let request = request.clone();
            async move {
                let answer = KvClient::new(channel).put(request).await.map_err(unavailable)?.into_inner();
                revision(answer.header.as_ref())
            }
        })
        .await
    }

    async fn swap(
        &self,
        key: &str,
        expected_mod: i64,
        guard: Option<(&str, i64)>,
        value: Option<Vec<u8>>,
    ) -> StoreResult<Swapped> {
        let txn = requests::swap(key, expected_mod, guard, value);
        let guard_create = guard.map(|(_, create)| create);
        self.request(false, |channel| {
            let txn = txn.clone();
            async move {
                let answer = KvClient::new(channel).txn(txn).await.map_err(unavailable)?.into_inner();
                if answer.succeeded {
                    return Ok(Swapped::Done { revision: revision(answer.header.as_ref())? });
                }
                // The failure branch read the key, then the guard key (requests::swap).
                let mut reads = requests::ranges(&answer);
                let current = reads.next().and_then(|range| range.kvs.first()).map(versioned);
                let guard_held = match guard_create {
                    None => true,
                    // As etcd compares: an absent guard key has create revision 0.
                    Some(create) => {
                        reads.next().and_then(|range| range.kvs.first()).map_or(0, |kv| kv.create_revision) == create
                    }
                };
                Ok(Swapped::Stale { current, guard_held })
            }
        })
        .await
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: i64) -> StoreResult<mpsc::Receiver<WatchEvent>> {
        let create = requests::watch_prefix(prefix, from_revision);
        // Only the opening is bounded by the request timeout; the stream itself lives on.
        let (created, responses, requests) = self
            .request(true, |channel| {
                let create = create.clone();
                async move {
                    // The create request is queued before the call, as for the keepalive
                    // stream: etcd sends the stream's headers with its first message, the
                    // `created` confirmation.
                    let (requests, queued) = mpsc::channel(4);
                    requests.try_send(create).map_err(|_| {
                        StoreError::Unavailable("watch request queue refused the create request".into())
                    })?;
                    let mut request = tonic::Request::new(ReceiverStream::new(queued));
                    // etcd's WithRequireLeader (api/v3rpc/rpctypes: metadata "hasleader" = "true"):
                    // a member that loses its leader cancels the stream instead of going silent
                    // (measured in tests/etcd_store.rs: without it, silent for 20 s and more).
                    request.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
                    let mut responses =
                        WatchClient::new(channel).watch(request).await.map_err(unavailable)?.into_inner();
                    // etcd answers `created` first (api/v3rpc/watch.go sendLoop holds a new watch's
                    // events until its confirmation is sent).
                    match responses.message().await.map_err(unavailable)? {
                        Some(response) if response.created => Ok((response, responses, requests)),
                        Some(other) => Err(StoreError::Rejected(format!("watch answered before created: {other:?}"))),
                        None => Err(StoreError::Unavailable("etcd closed the watch before creating it".into())),
                    }
                }
            })
            .await?;
        let (watcher, receiver) = mpsc::channel(watch::QUEUED_EVENTS);
        let translated = watch::translate(&created);
        for event in translated.events {
            // At most two events into an empty channel of QUEUED_EVENTS: cannot fail.
            let _ = watcher.try_send(event);
        }
        if !translated.ended {
            tokio::spawn(watch::forward(created.watch_id, requests, responses, watcher, self.timeout));
        }
        Ok(receiver)
    }
}
