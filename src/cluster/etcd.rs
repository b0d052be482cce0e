//! `ClusterStore` on etcd v3 through the `etcd-client` crate. Every request has a deadline:
//! a gateway cut off from etcd must learn it from a timeout, never hang (docs/cluster.md).

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    Txn, TxnOp,
};
use tokio::sync::Mutex;

use super::store::{ClusterStore, Created, LeaseId, StoreError, StoreResult, Versioned};

/// One etcd client connection. The membership's keepalives use a store of their own, so a
/// slow or broken request stream on the main client never delays the self-fence clock.
pub struct EtcdStore {
    client: Client,
    timeout: Duration,
    /// The open keepalive stream and the lease it renews (one lease per gateway).
    keepalive: Mutex<Option<(LeaseId, LeaseKeeper, LeaseKeepAliveStream)>>,
}

/// etcd's errors as the cluster layer sees them: a lease etcd no longer has, or "no usable
/// answer" (unreachable, timed out, no leader, quorum lost), which callers treat as unavailable.
fn unavailable(error: etcd_client::Error) -> StoreError {
    match error {
        // etcd's ErrGRPCLeaseNotFound (api/v3rpc/rpctypes).
        etcd_client::Error::GRpcStatus(status) if status.message().contains("lease not found") => {
            StoreError::LeaseNotFound
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn versioned(kv: &KeyValue) -> Versioned {
    Versioned {
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    }
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`); every request later gives up after `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> StoreResult<EtcdStore> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            // HTTP/2 pings notice a silently dead connection (a partition) between requests.
            .with_keep_alive(timeout, timeout)
            .with_keep_alive_while_idle(true);
        let client = tokio::time::timeout(timeout * 2, Client::connect(endpoints, Some(options)))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer from {} in {timeout:?}", endpoints.join(", "))))?
            .map_err(unavailable)?;
        Ok(EtcdStore { client, timeout, keepalive: Mutex::new(None) })
    }

    async fn bounded<T>(&self, request: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer in {:?}", self.timeout))))
    }
}

impl ClusterStore for EtcdStore {
    async fn grant_lease(&self, ttl: Duration) -> StoreResult<LeaseId> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        self.bounded(async move {
            let granted = client.lease_grant(seconds, None).await.map_err(unavailable)?;
            if !granted.error().is_empty() {
                return Err(StoreError::Rejected(granted.error().to_string()));
            }
            Ok(LeaseId(granted.id()))
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Duration> {
        let mut slot = self.keepalive.lock().await;
        let result = self
            .bounded(async {
                if slot.as_ref().is_none_or(|(id, _, _)| *id != lease) {
                    let (keeper, stream) = self.client.clone().lease_keep_alive(lease.0).await.map_err(unavailable)?;
                    *slot = Some((lease, keeper, stream));
                }
                let (_, keeper, stream) = slot.as_mut().expect("opened above");
                keeper.keep_alive().await.map_err(unavailable)?;
                match stream.message().await.map_err(unavailable)? {
                    // etcd answers TTL 0 for a lease it no longer has (rpc.proto LeaseKeepAliveResponse).
                    Some(answer) if answer.ttl() <= 0 => Err(StoreError::LeaseNotFound),
                    Some(answer) => Ok(Duration::from_secs(answer.ttl() as u64)),
                    None => Err(StoreError::Unavailable("keepalive stream closed".into())),
                }
            })
            .await;
        if result.is_err() {
            // A stream that failed or timed out may hold a late answer: never reuse it.
            *slot = None;
        }
        result
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        let mut client = self.client.clone();
        self.bounded(async move {
            match client.lease_revoke(lease.0).await.map_err(unavailable) {
                Ok(_) | Err(StoreError::LeaseNotFound) => Ok(()),
                Err(other) => Err(other),
            }
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<Created> {
        let mut client = self.client.clone();
        let put_options = lease.map(|l| PutOptions::new().with_lease(l.0));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, put_options)])
            .or_else([TxnOp::get(key, None)]);
        self.bounded(async move {
            let answer = client.txn(txn).await.map_err(unavailable)?;
            if answer.succeeded() {
                return Ok(Created::Created);
            }
            for op in answer.op_responses() {
                if let etcd_client::TxnOpResponse::Get(get) = op {
                    if let Some(kv) = get.kvs().first() {
                        return Ok(Created::Exists(versioned(kv)));
                    }
                }
            }
            // Deleted between the compare and the get of the same transaction cannot happen
            // (a transaction is atomic); an empty answer means etcd broke its contract.
            Err(StoreError::Rejected("create failed but the key is absent".into()))
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let mut client = self.client.clone();
        self.bounded(async move {
            let answer = client.get(key, None).await.map_err(unavailable)?;
            Ok(answer.kvs().first().map(versioned))
        })
        .await
    }

    async fn get_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        let mut client = self.client.clone();
        self.bounded(async move {
            let answer = client.get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(unavailable)?;
            let mut found = Vec::new();
            for kv in answer.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                found.push((key, versioned(kv)));
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(found)
        })
        .await
    }
}
