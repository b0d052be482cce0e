//! The etcd v3 requests the store sends, built from the generated messages: the key ranges of
//! a single key and of a prefix, puts, and the create-if-absent and compare-and-swap
//! transactions.

use super::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use super::pb::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
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

/// If `key` was never created (create revision 0), put `value` under `lease`; otherwise read it
/// back in the same transaction, so the caller sees the record that won.
pub fn create_if_absent(key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(key, CompareTarget::Create, TargetUnion::CreateRevision(0))],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put(key, value, lease))) }],
        failure: vec![RequestOp { request: Some(request_op::Request::RequestRange(single_key(key))) }],
    }
}

/// A put under `lease` (None: no lease).
pub fn put(key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> PutRequest {
    // Lease 0 is etcd's "no lease" (rpc.proto PutRequest).
    PutRequest { key: key.as_bytes().to_vec(), value, lease: lease.map_or(0, |l| l.0), ..PutRequest::default() }
}

fn compare(key: &str, target: CompareTarget, value: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(value),
    }
}

/// `ClusterStore::swap`: if `key`'s mod revision is `expected_mod` — for 0, its create
/// revision is 0 (etcd compares an absent key's revisions as 0, and "never created" is what
/// is meant) — and the guard key has the given create revision, put `value` or delete the
/// key; otherwise read the key and the guard back in the same transaction.
pub fn compare_and_swap(
    key: &str,
    expected_mod: i64,
    guard: Option<(&str, i64)>,
    value: Option<Vec<u8>>,
) -> TxnRequest {
    let mut compares = vec![match expected_mod {
        0 => compare(key, CompareTarget::Create, TargetUnion::CreateRevision(0)),
        r => compare(key, CompareTarget::Mod, TargetUnion::ModRevision(r)),
    }];
    let mut failure = vec![RequestOp { request: Some(request_op::Request::RequestRange(single_key(key))) }];
    if let Some((guard_key, created)) = guard {
        compares.push(compare(guard_key, CompareTarget::Create, TargetUnion::CreateRevision(created)));
        failure.push(RequestOp { request: Some(request_op::Request::RequestRange(single_key(guard_key))) });
    }
    let write = match value {
        Some(value) => request_op::Request::RequestPut(put(key, value, None)),
        None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..DeleteRangeRequest::default()
        }),
    };
    TxnRequest { compare: compares, success: vec![RequestOp { request: Some(write) }], failure }
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
    fn compare_and_swap_guards_on_the_record_and_the_membership_and_reads_both_back() {
        let txn = compare_and_swap("/pr/t/0", 41, Some(("/gw/2", 17)), Some(b"state".to_vec()));
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(
            (txn.compare[0].target, txn.compare[0].target_union.clone()),
            (CompareTarget::Mod as i32, Some(TargetUnion::ModRevision(41)))
        );
        assert_eq!(
            (txn.compare[1].key.as_slice(), txn.compare[1].target_union.clone()),
            (&b"/gw/2"[..], Some(TargetUnion::CreateRevision(17)))
        );
        assert!(
            matches!(&txn.success[0].request, Some(request_op::Request::RequestPut(p)) if p.lease == 0 && p.value == b"state")
        );
        assert_eq!(txn.failure.len(), 2, "the record and the guard are read back");
        // Expecting no record: the key must never have been created.
        let first = compare_and_swap("/pr/t/0", 0, None, None);
        assert_eq!(first.compare[0].target_union, Some(TargetUnion::CreateRevision(0)));
        assert!(
            matches!(&first.success[0].request, Some(request_op::Request::RequestDeleteRange(d)) if d.range_end.is_empty())
        );
        assert_eq!(first.failure.len(), 1);
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
}
