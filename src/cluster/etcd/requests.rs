//! The etcd v3 requests the store sends, built from the generated messages: the key ranges of
//! a single key and of a prefix, the read of several prefixes, the create-if-absent and
//! compare-and-swap transactions, and the watch of a prefix.

use super::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use super::pb::etcdserverpb::{
    request_op, response_op, watch_request, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, TxnRequest, TxnResponse, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use crate::cluster::store::LeaseId;

/// The `range_end` that makes a range cover every key starting with `prefix` (rpc.proto
/// RangeRequest: "range_end is key plus one": the prefix with its last byte below 0xff
/// incremented and what follows dropped; `\0` — every key — when there is no such byte).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Reads one key (an empty `range_end` means the key alone).
pub fn single_key(key: &str) -> RangeRequest {
    RangeRequest { key: key.as_bytes().to_vec(), ..RangeRequest::default() }
}

/// Reads every key under `prefix`; an empty prefix is the whole key space (`\0` to `\0`).
pub fn with_prefix(prefix: &str) -> RangeRequest {
    let key = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
    RangeRequest { key, range_end: prefix_range_end(prefix.as_bytes()), ..RangeRequest::default() }
}

/// `key`'s revision `target` equals `revision`. An absent key compares as if all its revisions
/// were 0 (etcd server/etcdserver/apply.go `applyCompare` compares an empty KeyValue).
fn revision_equals(key: &str, target: CompareTarget, revision: i64) -> Compare {
    let target_union = match target {
        CompareTarget::Mod => TargetUnion::ModRevision(revision),
        _ => TargetUnion::CreateRevision(revision),
    };
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(target_union),
    }
}

/// A put of `value` at `key`; lease 0 is etcd's "no lease" (rpc.proto PutRequest).
pub fn put(key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> PutRequest {
    PutRequest { key: key.as_bytes().to_vec(), value, lease: lease.map_or(0, |l| l.0), ..PutRequest::default() }
}

fn put_op(key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(put(key, value, lease))) }
}

fn get_op(key: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(single_key(key))) }
}

/// If `key` was never created (create revision 0), put `value` under `lease`; otherwise read it
/// back in the same transaction, so the caller sees the record that won.
pub fn create_if_absent(key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> TxnRequest {
    TxnRequest {
        compare: vec![revision_equals(key, CompareTarget::Create, 0)],
        success: vec![put_op(key, value, lease)],
        failure: vec![get_op(key)],
    }
}

/// Reads every key under each of `prefixes` in one transaction: no compares, so etcd runs the
/// success branch, and a transaction reads one revision.
pub fn prefixes(prefixes: &[&str]) -> TxnRequest {
    let ranges = prefixes
        .iter()
        .map(|prefix| RequestOp { request: Some(request_op::Request::RequestRange(with_prefix(prefix))) })
        .collect();
    TxnRequest { compare: Vec::new(), success: ranges, failure: Vec::new() }
}

/// The compare-and-swap of `ClusterStore::swap`: if `key` has mod revision `expected_mod` and
/// the guard key has the guard's create revision, put `value` (no lease) or, for None, delete
/// the key; otherwise read the key, then the guard key, in the same transaction.
///
/// `expected_mod` 0 compares the CREATE revision with 0: etcd would also accept "mod revision
/// == 0" for an absent key (both compare an empty KeyValue), but "never created" is what the
/// caller means and what `create_if_absent` already compares.
pub fn swap(key: &str, expected_mod: i64, guard: Option<(&str, i64)>, value: Option<Vec<u8>>) -> TxnRequest {
    let mut compare = vec![if expected_mod == 0 {
        revision_equals(key, CompareTarget::Create, 0)
    } else {
        revision_equals(key, CompareTarget::Mod, expected_mod)
    }];
    let mut failure = vec![get_op(key)];
    if let Some((guard_key, guard_create)) = guard {
        compare.push(revision_equals(guard_key, CompareTarget::Create, guard_create));
        failure.push(get_op(guard_key));
    }
    let write = match value {
        Some(value) => put_op(key, value, None),
        None => RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..DeleteRangeRequest::default()
            })),
        },
    };
    TxnRequest { compare, success: vec![write], failure }
}

/// Opens the watch of every key under `prefix` from `start_revision` (inclusive; 0 is "after
/// now"). `fragment` stays off, so etcd never splits one revision's events over several
/// responses (its watchable store batches whole revisions); no progress notifications, no
/// previous values, no filters.
pub fn watch_prefix(prefix: &str, start_revision: i64) -> WatchRequest {
    let range = with_prefix(prefix);
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: range.key,
            range_end: range.range_end,
            start_revision,
            ..WatchCreateRequest::default()
        })),
    }
}

/// Asks etcd to report the stream's progress: it answers with a response of no events whose
/// header carries the current revision (once its watchers are caught up).
pub fn watch_progress() -> WatchRequest {
    WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) }
}

/// Cancels the watch `watch_id` of the stream.
pub fn watch_cancel(watch_id: i64) -> WatchRequest {
    WatchRequest { request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id })) }
}

/// The range answers of a transaction's operations, in order.
pub fn ranges(answer: &TxnResponse) -> impl Iterator<Item = &RangeResponse> {
    answer.responses.iter().filter_map(|op| match &op.response {
        Some(response_op::Response::ResponseRange(range)) => Some(range),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_range_end(b"/palisade/"), b"/palisade0".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    #[test]
    fn create_if_absent_compares_create_revision_zero_and_reads_back_on_failure() {
        let txn = create_if_absent("/k", b"v".to_vec(), Some(LeaseId(7)));
        assert_eq!(txn.compare[0].target_union, Some(TargetUnion::CreateRevision(0)));
        assert_eq!(txn.compare[0].result, CompareResult::Equal as i32);
        match &txn.success[0].request {
            Some(request_op::Request::RequestPut(put)) => assert_eq!((put.lease, put.value.as_slice()), (7, &b"v"[..])),
            other => panic!("success branch is not a put: {other:?}"),
        }
        match &txn.failure[0].request {
            Some(request_op::Request::RequestRange(range)) => assert!(range.range_end.is_empty()),
            other => panic!("failure branch is not a get: {other:?}"),
        }
    }

    fn ranged_key(op: &RequestOp) -> &[u8] {
        match &op.request {
            Some(request_op::Request::RequestRange(range)) if range.range_end.is_empty() => &range.key,
            other => panic!("not a single-key get: {other:?}"),
        }
    }

    #[test]
    fn swap_compares_mod_revision_and_guard_create_revision_and_reads_both_back() {
        let txn = swap("/k", 41, Some(("/gw/1", 7)), Some(b"v".to_vec()));
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(
            (txn.compare[0].key.as_slice(), txn.compare[0].target, txn.compare[0].result),
            (&b"/k"[..], CompareTarget::Mod as i32, CompareResult::Equal as i32)
        );
        assert_eq!(txn.compare[0].target_union, Some(TargetUnion::ModRevision(41)));
        assert_eq!(
            (txn.compare[1].key.as_slice(), txn.compare[1].target),
            (&b"/gw/1"[..], CompareTarget::Create as i32)
        );
        assert_eq!(txn.compare[1].target_union, Some(TargetUnion::CreateRevision(7)));
        match &txn.success[..] {
            [RequestOp { request: Some(request_op::Request::RequestPut(put)) }] => {
                assert_eq!((put.key.as_slice(), put.value.as_slice(), put.lease), (&b"/k"[..], &b"v"[..], 0))
            }
            other => panic!("success branch is not one put: {other:?}"),
        }
        assert_eq!(txn.failure.len(), 2);
        assert_eq!((ranged_key(&txn.failure[0]), ranged_key(&txn.failure[1])), (&b"/k"[..], &b"/gw/1"[..]));
    }

    #[test]
    fn swap_from_absent_compares_create_revision_zero_and_none_deletes_the_key_alone() {
        let txn = swap("/k", 0, None, None);
        assert_eq!(txn.compare.len(), 1, "no guard, no guard compare");
        assert_eq!(txn.compare[0].target, CompareTarget::Create as i32);
        assert_eq!(txn.compare[0].target_union, Some(TargetUnion::CreateRevision(0)));
        match &txn.success[..] {
            [RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }] => {
                assert_eq!((delete.key.as_slice(), delete.range_end.is_empty()), (&b"/k"[..], true))
            }
            other => panic!("success branch is not one single-key delete: {other:?}"),
        }
        assert_eq!(txn.failure.len(), 1);
        assert_eq!(ranged_key(&txn.failure[0]), b"/k");
    }

    #[test]
    fn prefixes_range_each_prefix_in_order_in_one_unconditional_transaction() {
        let txn = prefixes(&["/gw/", "/acks/"]);
        assert!(txn.compare.is_empty() && txn.failure.is_empty());
        let ranged: Vec<_> = txn
            .success
            .iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestRange(range)) => (range.key.clone(), range.range_end.clone()),
                other => panic!("not a range: {other:?}"),
            })
            .collect();
        assert_eq!(ranged, [(b"/gw/".to_vec(), b"/gw0".to_vec()), (b"/acks/".to_vec(), b"/acks0".to_vec())]);
    }

    #[test]
    fn watch_prefix_covers_the_prefix_from_the_start_revision_unfragmented() {
        match watch_prefix("/palisade/", 12).request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => {
                assert_eq!(create.key, b"/palisade/".to_vec());
                assert_eq!(create.range_end, b"/palisade0".to_vec());
                assert_eq!(create.start_revision, 12);
                assert!(!create.fragment && !create.prev_kv && create.filters.is_empty());
            }
            other => panic!("not a create request: {other:?}"),
        }
        match watch_cancel(3).request_union {
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => assert_eq!(cancel.watch_id, 3),
            other => panic!("not a cancel request: {other:?}"),
        }
    }
}
