//! The watch of a prefix on etcd: one Watch stream per `watch_prefix`, read by a background
//! task that turns etcd's responses into `WatchEvent`s. The stream has no request deadline (it
//! lives as long as the watcher), so the task checks the connection itself: every request
//! timeout it asks etcd for a progress report (rpc.proto WatchProgressRequest, etcd ≥ 3.4), and
//! two timeouts without any answer end the watch with `Broken`.
//!
//! HTTP/2 pings alone cannot do this: etcd's gRPC server (grpc-go keepalive enforcement,
//! `--grpc-keepalive-min-time`, default 5 s) answers pings more frequent than that on a
//! connection it sends nothing on with GOAWAY "too_many_pings" — measured: an idle watch on a
//! channel pinging every second broke after 4.0 s with no partition at all. Progress answers are
//! data from the server, which also clears its ping strikes.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::codec::Streaming;

use super::pb::etcdserverpb::{WatchRequest, WatchResponse};
use super::pb::mvccpb::event::EventType;
use super::pb::mvccpb::Event;
use super::{requests, unavailable, versioned};
use crate::cluster::store::{KeyChange, StoreError, WatchEvent};

/// Events a watcher may have queued before the forwarding task waits for it.
pub const QUEUED_EVENTS: usize = 256;

/// What one `WatchResponse` means for the watcher.
#[derive(Debug, PartialEq, Eq)]
pub struct Translated {
    /// The changes it carries, one entry per revision, in revision order.
    pub events: Vec<WatchEvent>,
    /// Nothing more will come: the last of `events` says why.
    pub ended: bool,
}

/// One etcd event as a `KeyChange`. etcd puts the deleted key in a DELETE event's kv with its
/// mod revision set to the revision of the deletion (mvcc/kvstore_txn.go `delete`; verified by
/// tests/etcd_store.rs), so that is the change's revision in both cases.
fn key_change(event: &Event) -> Option<KeyChange> {
    let kv = event.kv.as_ref()?;
    let value = match EventType::try_from(event.r#type) {
        Ok(EventType::Delete) => None,
        _ => Some(versioned(kv)),
    };
    Some(KeyChange { key: String::from_utf8_lossy(&kv.key).into_owned(), value, revision: kv.mod_revision })
}

/// Translates one response: the `created` confirmation and progress notifications carry no
/// event; a compacted start revision or a cancel ends the watch. Without `fragment` (see
/// `requests::watch_prefix`) a response holds whole revisions, so grouping consecutive events
/// by mod revision yields each revision's complete change set.
pub fn translate(response: &WatchResponse) -> Translated {
    if response.compact_revision != 0 {
        let event = WatchEvent::Compacted { compact_revision: response.compact_revision };
        return Translated { events: vec![event], ended: true };
    }
    let mut events = Vec::new();
    let mut group: Vec<KeyChange> = Vec::new();
    for change in response.events.iter().filter_map(key_change) {
        if group.last().is_some_and(|last| last.revision != change.revision) {
            events.push(WatchEvent::Changes(std::mem::take(&mut group)));
        }
        group.push(change);
    }
    if !group.is_empty() {
        events.push(WatchEvent::Changes(group));
    }
    if response.canceled {
        let why = if response.cancel_reason.is_empty() { "no reason given" } else { &response.cancel_reason };
        events.push(WatchEvent::Broken(StoreError::Unavailable(format!("etcd cancelled the watch: {why}"))));
        return Translated { events, ended: true };
    }
    Translated { events, ended: false }
}

/// Forwards the watch's events to `watcher` until the watch ends or the watcher hangs up; then
/// cancels it (dropping `requests` and `responses` also closes the stream, and etcd's watchers
/// with it). `watch_id` is the id etcd gave the watch in its `created` response; every `check`
/// the task asks for progress, and ends the watch once etcd has been silent for two of them.
pub async fn forward(
    watch_id: i64,
    requests: mpsc::Sender<WatchRequest>,
    mut responses: Streaming<WatchResponse>,
    watcher: mpsc::Sender<WatchEvent>,
    check: Duration,
) {
    let mut last_heard = Instant::now();
    let mut checks = tokio::time::interval_at(last_heard + check, check);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let response = tokio::select! {
            _ = watcher.closed() => break,
            _ = checks.tick() => {
                if last_heard.elapsed() >= check * 2 {
                    let why = format!("no answer from etcd on the watch stream in {:?}", last_heard.elapsed());
                    let _ = watcher.send(WatchEvent::Broken(StoreError::Unavailable(why))).await;
                    return;
                }
                // A full queue means earlier requests are still unsent: the connection is
                // stuck, which the silence above will tell.
                let _ = requests.try_send(requests::watch_progress());
                continue;
            }
            response = responses.message() => response,
        };
        let translated = match response {
            Ok(Some(response)) => translate(&response),
            Ok(None) => Translated {
                events: vec![WatchEvent::Broken(StoreError::Unavailable("etcd closed the watch stream".into()))],
                ended: true,
            },
            Err(status) => Translated { events: vec![WatchEvent::Broken(unavailable(status))], ended: true },
        };
        for event in translated.events {
            if watcher.send(event).await.is_err() {
                break;
            }
        }
        // Heard from etcd; and if a slow watcher held us up since, that was not etcd's silence.
        last_heard = Instant::now();
        if translated.ended {
            return;
        }
        if watcher.is_closed() {
            break;
        }
    }
    // The watcher hung up: tell etcd, without waiting on a stream that may be dead.
    let _ = requests.try_send(requests::watch_cancel(watch_id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::etcd::pb::mvccpb::KeyValue;
    use crate::cluster::store::Versioned;

    fn event(kind: EventType, key: &str, revision: i64) -> Event {
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            mod_revision: revision,
            create_revision: 2,
            ..KeyValue::default()
        };
        Event { r#type: kind as i32, kv: Some(kv), prev_kv: None }
    }

    fn put_change(key: &str, revision: i64) -> KeyChange {
        let value = Versioned { value: b"v".to_vec(), create_revision: 2, mod_revision: revision, lease: None };
        KeyChange { key: key.into(), value: Some(value), revision }
    }

    #[test]
    fn events_are_grouped_by_revision_and_deletes_carry_no_value() {
        let response = WatchResponse {
            events: vec![
                event(EventType::Put, "/a", 5),
                event(EventType::Delete, "/b", 5),
                event(EventType::Put, "/c", 6),
            ],
            ..WatchResponse::default()
        };
        let delete = KeyChange { key: "/b".into(), value: None, revision: 5 };
        assert_eq!(
            translate(&response),
            Translated {
                events: vec![
                    WatchEvent::Changes(vec![put_change("/a", 5), delete]),
                    WatchEvent::Changes(vec![put_change("/c", 6)]),
                ],
                ended: false
            }
        );
    }

    #[test]
    fn created_confirmation_is_silent_compaction_and_cancel_end_the_watch() {
        let created = WatchResponse { created: true, ..WatchResponse::default() };
        assert_eq!(translate(&created), Translated { events: vec![], ended: false });
        // etcd sets both canceled and compact_revision for a compacted start revision.
        let compacted = WatchResponse { canceled: true, compact_revision: 9, ..WatchResponse::default() };
        assert_eq!(
            translate(&compacted),
            Translated { events: vec![WatchEvent::Compacted { compact_revision: 9 }], ended: true }
        );
        let cancelled = WatchResponse { canceled: true, cancel_reason: "gone".into(), ..WatchResponse::default() };
        let translated = translate(&cancelled);
        assert!(translated.ended);
        assert!(
            matches!(&translated.events[..], [WatchEvent::Broken(StoreError::Unavailable(why))] if why.contains("gone"))
        );
    }
}
