//! `ClusterStore::watch_prefix` on etcd's Watch stream (rpc.proto Watch): one watcher per
//! stream, created with a start revision; its answers are turned into `WatchEvent`s, one per
//! store revision, in order. A compacted start revision, a cancelled watcher or a broken stream
//! ends it with `Compacted` or `Broken`, after which the caller re-reads and watches again. The
//! channel's HTTP/2 keepalive pings (`endpoint()`) notice a dead connection within about two
//! keepalive intervals, so a partitioned gateway's watch breaks instead of waiting forever.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use super::pb::etcdserverpb::watch_client::WatchClient;
use super::pb::etcdserverpb::watch_request::RequestUnion;
use super::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use super::pb::mvccpb::event::EventType;
use super::{requests, unavailable, versioned};
use crate::cluster::store::{KeyChange, StoreError, StoreResult, WatchEvent};

/// Revisions the reader may lag behind before the stream waits for it.
const QUEUE: usize = 256;

pub(super) async fn open(
    channel: Channel,
    timeout: Duration,
    prefix: &str,
    from_revision: i64,
) -> StoreResult<mpsc::Receiver<WatchEvent>> {
    let range = requests::with_prefix(prefix);
    let create = WatchCreateRequest {
        key: range.key,
        range_end: range.range_end,
        start_revision: from_revision,
        ..WatchCreateRequest::default()
    };
    // The request stream stays open for the watch's life: closing it would end the watch.
    let (requests, queued) = mpsc::channel(1);
    requests
        .try_send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
        .map_err(|_| StoreError::Unavailable("watch request queue refused the create request".into()))?;
    let mut client = WatchClient::new(channel);
    let answers = tokio::time::timeout(timeout, client.watch(ReceiverStream::new(queued)))
        .await
        .map_err(|_| StoreError::Unavailable(format!("watch not opened in {timeout:?}")))?
        .map_err(unavailable)?
        .into_inner();
    let (events, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(follow(answers, requests, events));
    Ok(receiver)
}

async fn follow(
    mut answers: Streaming<WatchResponse>,
    _requests: mpsc::Sender<WatchRequest>,
    events: mpsc::Sender<WatchEvent>,
) {
    loop {
        let answer = tokio::select! {
            answer = answers.message() => answer,
            // The receiver is gone: dropping the stream cancels the watch on the server.
            () = events.closed() => return,
        };
        let last = match answer {
            Ok(Some(answer)) => match translate(answer) {
                Ok(changes) => {
                    for revision in changes {
                        if events.send(WatchEvent::Changes(revision)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(end) => end,
            },
            Ok(None) => WatchEvent::Broken(StoreError::Unavailable("watch stream ended".into())),
            Err(status) => WatchEvent::Broken(unavailable(status)),
        };
        let _ = events.send(last).await;
        return;
    }
}

/// One answer's events grouped by store revision, in order; or how the watch ended.
fn translate(answer: WatchResponse) -> Result<Vec<Vec<KeyChange>>, WatchEvent> {
    if answer.compact_revision != 0 {
        return Err(WatchEvent::Compacted { compact_revision: answer.compact_revision });
    }
    if answer.canceled {
        return Err(WatchEvent::Broken(StoreError::Rejected(format!("watch cancelled: {}", answer.cancel_reason))));
    }
    let mut revisions: Vec<Vec<KeyChange>> = Vec::new();
    for event in answer.events {
        let Some(kv) = event.kv else { continue };
        // A DELETE event's kv carries the key with its mod revision set to the deletion's
        // (mvccpb Event): the revision of the change either way.
        let change = KeyChange {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            revision: kv.mod_revision,
            value: (event.r#type != EventType::Delete as i32).then(|| versioned(&kv)),
        };
        match revisions.last_mut() {
            Some(same) if same[0].revision == change.revision => same.push(change),
            _ => revisions.push(vec![change]),
        }
    }
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::etcd::pb::mvccpb::{Event, KeyValue};

    fn event(kind: EventType, key: &str, revision: i64) -> Event {
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: revision,
            create_revision: 3,
            value: b"v".to_vec(),
            ..KeyValue::default()
        };
        Event { r#type: kind as i32, kv: Some(kv), prev_kv: None }
    }

    #[test]
    fn events_are_grouped_by_revision_and_deletes_carry_no_value() {
        let answer = WatchResponse {
            events: vec![
                event(EventType::Put, "/a", 7),
                event(EventType::Delete, "/b", 7),
                event(EventType::Put, "/a", 9),
            ],
            ..WatchResponse::default()
        };
        let revisions = translate(answer).unwrap();
        assert_eq!(revisions.len(), 2);
        assert_eq!((revisions[0].len(), revisions[0][1].value.clone()), (2, None));
        assert_eq!(revisions[1][0].value.as_ref().map(|v| v.mod_revision), Some(9));
    }

    #[test]
    fn compaction_and_cancellation_end_the_watch() {
        let compacted = WatchResponse { canceled: true, compact_revision: 40, ..WatchResponse::default() };
        assert_eq!(translate(compacted).unwrap_err(), WatchEvent::Compacted { compact_revision: 40 });
        let cancelled = WatchResponse { canceled: true, cancel_reason: "no leader".into(), ..WatchResponse::default() };
        assert!(matches!(translate(cancelled).unwrap_err(), WatchEvent::Broken(StoreError::Rejected(_))));
    }
}
