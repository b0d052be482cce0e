//! Each negotiation rule of RFC 7143 §6.2 and §13, driven through the machine.

use super::*;

const INITIATOR: &str = "iqn.1994-05.com.example:init";

fn identity() -> Vec<(String, String)> {
    keys(&[("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal")])
}

/// One Operational request carrying the identity plus `extra`, with T=0 so nothing completes.
fn answer(limits: TargetLimits, extra: &[(&str, &str)]) -> LoginReply {
    let mut m = machine_with(TestPolicy::open(), limits);
    let mut k = identity();
    k.extend(keys(extra));
    let reply = m.step(&op(false, k));
    assert_ok(&reply);
    reply
}

fn answer_one(key: &str, value: &str) -> Option<String> {
    get(&answer(TargetLimits::default(), &[(key, value)]), key).map(str::to_string)
}

#[test]
fn numerical_minimum() {
    assert_eq!(answer_one("MaxBurstLength", "16776192").as_deref(), Some("1048576"));
    assert_eq!(answer_one("MaxBurstLength", "4096").as_deref(), Some("4096"));
    assert_eq!(answer_one("MaxOutstandingR2T", "64").as_deref(), Some("16"));
    assert_eq!(answer_one("DefaultTime2Retain", "3600").as_deref(), Some("20"));
    assert_eq!(answer_one("MaxConnections", "8").as_deref(), Some("1"));
    assert_eq!(answer_one("ErrorRecoveryLevel", "2").as_deref(), Some("0"));
    assert_eq!(answer_one("MaxBurstLength", "0x10000").as_deref(), Some("65536"), "hex numbers");
}

#[test]
fn numerical_maximum() {
    assert_eq!(answer_one("DefaultTime2Wait", "0").as_deref(), Some("2"));
    assert_eq!(answer_one("DefaultTime2Wait", "10").as_deref(), Some("10"));
}

#[test]
fn boolean_and() {
    assert_eq!(answer_one("ImmediateData", "Yes").as_deref(), Some("Yes"));
    assert_eq!(answer_one("ImmediateData", "No").as_deref(), Some("No"));
    let limits = TargetLimits { immediate_data: false, ..TargetLimits::default() };
    assert_eq!(get(&answer(limits, &[("ImmediateData", "Yes")]), "ImmediateData"), Some("No"));
    assert_eq!(answer_one("IFMarker", "Yes").as_deref(), Some("No"), "markers are never used");
    assert_eq!(answer_one("OFMarker", "No").as_deref(), Some("No"));
    assert_eq!(answer_one("RDMAExtensions", "Yes").as_deref(), Some("No"));
}

#[test]
fn boolean_or() {
    assert_eq!(answer_one("InitialR2T", "No").as_deref(), Some("No"));
    assert_eq!(answer_one("InitialR2T", "Yes").as_deref(), Some("Yes"));
    assert_eq!(answer_one("DataPDUInOrder", "No").as_deref(), Some("Yes"), "we require in-order");
    assert_eq!(answer_one("DataSequenceInOrder", "No").as_deref(), Some("Yes"));
}

#[test]
fn digest_lists_follow_the_offer_order() {
    assert_eq!(answer_one("HeaderDigest", "CRC32C,None").as_deref(), Some("CRC32C"));
    assert_eq!(answer_one("HeaderDigest", "None,CRC32C").as_deref(), Some("None"));
    assert_eq!(answer_one("DataDigest", "Foo,CRC32C").as_deref(), Some("CRC32C"), "unknown items skipped");
    assert_eq!(answer_one("DataDigest", "Foo").as_deref(), Some("Reject"));
    let limits = TargetLimits { header_digest_crc32c: false, ..TargetLimits::default() };
    assert_eq!(get(&answer(limits.clone(), &[("HeaderDigest", "CRC32C,None")]), "HeaderDigest"), Some("None"));
    assert_eq!(get(&answer(limits, &[("HeaderDigest", "CRC32C")]), "HeaderDigest"), Some("Reject"));
}

#[test]
fn digests_reach_the_result() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(with_key(fixture("libiscsi_opneg_first"), "HeaderDigest", "CRC32C"), "DataDigest", "CRC32C,None");
    let result = completed(&m.step(&op(true, k))).clone();
    assert!(result.params.header_digest && result.params.data_digest);
}

#[test]
fn declarative_segment_length_needs_no_answer() {
    let reply = answer(TargetLimits::default(), &[("MaxRecvDataSegmentLength", "4096")]);
    // The only MaxRecvDataSegmentLength in the reply is our own declaration.
    let ours: Vec<_> = reply.keys.iter().filter(|(k, _)| k == "MaxRecvDataSegmentLength").collect();
    assert_eq!(ours, vec![&("MaxRecvDataSegmentLength".to_string(), "262144".to_string())]);

    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("libiscsi_opneg_first"), "MaxRecvDataSegmentLength", "4096");
    let p = completed(&m.step(&op(true, k))).params.clone();
    assert_eq!(p.max_recv_data_segment_length_initiator, 4096);
    assert_eq!(p.max_recv_data_segment_length_target, 262_144);
}

#[test]
fn malformed_segment_length_declaration_is_answered_once() {
    // Found by fuzzing (fuzz/ login_machine): the Reject and our own declaration both named
    // MaxRecvDataSegmentLength in one response.
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("libiscsi_opneg_first"), "MaxRecvDataSegmentLength", "26214h");
    let reply = m.step(&op(true, k));
    let named: Vec<&str> =
        reply.keys.iter().filter(|(k, _)| k == "MaxRecvDataSegmentLength").map(|(_, v)| v.as_str()).collect();
    assert_eq!(named, vec!["Reject"]);
    let p = completed(&reply).params.clone();
    assert_eq!(p.max_recv_data_segment_length_target, 8192);
    assert_eq!(p.max_recv_data_segment_length_initiator, 8192);
}

#[test]
fn initiator_segment_length_defaults_to_8192() {
    let mut m = machine(TestPolicy::open());
    let k = without_key(fixture("libiscsi_opneg_first"), "MaxRecvDataSegmentLength");
    let p = completed(&m.step(&op(true, k))).params.clone();
    assert_eq!(p.max_recv_data_segment_length_initiator, 8192);
}

#[test]
fn unknown_and_private_keys_are_not_understood() {
    let reply = answer(
        TargetLimits::default(),
        &[
            ("X-com.example.Foo", "1"),
            ("X#org.example.Bar", "2"),
            ("FrobnicateLevel", "3"),
            ("iSCSIProtocolLevel", "2"),
        ],
    );
    for key in ["X-com.example.Foo", "X#org.example.Bar", "FrobnicateLevel", "iSCSIProtocolLevel"] {
        assert_eq!(get(&reply, key), Some("NotUnderstood"), "{key}");
    }
}

#[test]
fn out_of_range_and_malformed_values_are_rejected() {
    for (key, value) in [
        ("MaxBurstLength", "100"),
        ("MaxBurstLength", "16777216"),
        ("FirstBurstLength", "abc"),
        ("MaxConnections", "0"),
        ("MaxOutstandingR2T", "65536"),
        ("ErrorRecoveryLevel", "3"),
        ("DefaultTime2Wait", "3601"),
        ("DefaultTime2Retain", "-1"),
        ("ImmediateData", "yes"),
        ("InitialR2T", "Maybe"),
        ("MaxRecvDataSegmentLength", "511"),
        ("IFMarkInt", "2048~8192"),
    ] {
        assert_eq!(answer_one(key, value).as_deref(), Some("Reject"), "{key}={value}");
    }
}

#[test]
fn rejected_value_keeps_the_default() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("libiscsi_opneg_first"), "MaxBurstLength", "100");
    let reply = m.step(&op(true, k));
    assert_eq!(get(&reply, "MaxBurstLength"), Some("Reject"));
    assert_eq!(completed(&reply).params.max_burst_length, 262_144);
}

#[test]
fn task_reporter_list() {
    assert_eq!(answer_one("TaskReporter", "ResponseFence,RFC3720").as_deref(), Some("RFC3720"));
    assert_eq!(answer_one("TaskReporter", "FastAbort").as_deref(), Some("Reject"));
}

#[test]
fn first_burst_is_capped_by_max_burst_in_the_same_request() {
    let reply = answer(TargetLimits::default(), &[("FirstBurstLength", "262144"), ("MaxBurstLength", "8192")]);
    assert_eq!(get(&reply, "MaxBurstLength"), Some("8192"));
    assert_eq!(get(&reply, "FirstBurstLength"), Some("8192"));
}

#[test]
fn first_burst_above_a_later_max_burst_fails_the_login() {
    let mut m = machine(TestPolicy::open());
    let mut k = identity();
    k.push(("FirstBurstLength".into(), "131072".into()));
    assert_ok(&m.step(&op(false, k)));
    let reply = m.step(&op(true, keys(&[("MaxBurstLength", "65536"), ("InitialR2T", "No")])));
    assert_failed(&reply, LoginStatus::INITIATOR_ERROR);
    assert_eq!(reply.csg, Stage::Operational, "a failed completion stays in its stage");
}

#[test]
fn target_only_keys_from_the_initiator_are_initiator_errors() {
    for key in ["TargetPortalGroupTag", "TargetAddress", "TargetAlias"] {
        let mut m = machine(TestPolicy::open());
        let k = with_key(fixture("libiscsi_opneg_first"), key, "1");
        assert_failed(&m.step(&op(true, k)), LoginStatus::INITIATOR_ERROR);
    }
}

#[test]
fn irrelevant_keys_in_discovery() {
    let mut m = machine(TestPolicy::open());
    let k = keys(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("MaxBurstLength", "8192"),
        ("TaskReporter", "RFC3720"),
        ("DefaultTime2Retain", "0"),
    ]);
    let reply = m.step(&op(false, k));
    assert_eq!(get(&reply, "MaxBurstLength"), Some("Irrelevant"));
    assert_eq!(get(&reply, "TaskReporter"), Some("Irrelevant"));
    assert_eq!(get(&reply, "DefaultTime2Retain"), Some("0"), "relevant to discovery");
}

#[test]
fn iser_lengths_are_irrelevant_and_sendtargets_waits_for_full_feature() {
    let reply = answer(TargetLimits::default(), &[("InitiatorRecvDataSegmentLength", "8192"), ("SendTargets", "All")]);
    assert_eq!(get(&reply, "InitiatorRecvDataSegmentLength"), Some("Irrelevant"));
    assert_eq!(get(&reply, "SendTargets"), Some("Irrelevant"));
}

#[test]
fn duplicate_key_in_one_request_is_initiator_error() {
    let mut m = machine(TestPolicy::open());
    let mut k = fixture("libiscsi_opneg_first");
    k.push(("MaxBurstLength".into(), "8192".into()));
    assert_failed(&m.step(&op(true, k)), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn renegotiation_in_a_later_request_is_initiator_error() {
    let mut m = machine(TestPolicy::open());
    let mut k = identity();
    k.push(("MaxBurstLength".into(), "65536".into()));
    assert_ok(&m.step(&op(false, k)));
    let reply = m.step(&op(true, keys(&[("MaxBurstLength", "8192")])));
    assert_failed(&reply, LoginStatus::INITIATOR_ERROR);
}

#[test]
fn keys_spread_over_several_requests() {
    let mut m = machine(TestPolicy::open());
    let all = fixture("open_iscsi_opneg_normal");
    let (a, b) = all.split_at(8);
    let mut first = identity();
    first.extend(a.iter().cloned());
    let r1 = m.step(&op(false, first));
    assert_ok(&r1);
    assert!(!r1.transit, "T=0 asked, T=0 answered");
    assert_eq!(get(&r1, "MaxRecvDataSegmentLength"), Some("262144"), "declared in first operational reply");
    let r2 = m.step(&op(true, b.to_vec()));
    let ours = r2.keys.iter().filter(|(k, _)| k == "MaxRecvDataSegmentLength").count();
    assert_eq!(ours, 0, "our declaration is not repeated");
    let p = completed(&r2).params.clone();
    assert_eq!(p.default_time2retain, 0, "from the first request");
    assert_eq!(p.max_burst_length, 1_048_576, "from the second request");
}

#[test]
fn target_offers_its_preference_and_waits_for_the_answer() {
    let mut m = machine(TestPolicy::open());
    let k = without_key(fixture("libiscsi_opneg_first"), "InitialR2T");
    let r1 = m.step(&op(true, k));
    assert_ok(&r1);
    assert!(!r1.transit, "an outstanding offer holds the transition");
    assert_eq!(get(&r1, "InitialR2T"), Some("No"));
    let r2 = m.step(&op(true, keys(&[("InitialR2T", "No")])));
    assert!(!completed(&r2).params.initial_r2t);
    assert!(r2.keys.iter().all(|(k, _)| k != "InitialR2T"), "answers are not answered");
}

#[test]
fn target_offer_answered_yes_by_or_function() {
    let mut m = machine(TestPolicy::open());
    m.step(&op(true, without_key(fixture("libiscsi_opneg_first"), "InitialR2T")));
    let r2 = m.step(&op(true, keys(&[("InitialR2T", "Yes")])));
    assert!(completed(&r2).params.initial_r2t);
}

#[test]
fn target_offer_left_unanswered_fails() {
    let mut m = machine(TestPolicy::open());
    m.step(&op(true, without_key(fixture("libiscsi_opneg_first"), "InitialR2T")));
    assert_failed(&m.step(&op(true, Vec::new())), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn target_offers_a_limit_below_the_default() {
    let limits = TargetLimits { max_burst_length: 65_536, ..TargetLimits::default() };
    let mut m = machine_with(TestPolicy::open(), limits);
    let r1 = m.step(&op(true, without_key(fixture("libiscsi_opneg_first"), "MaxBurstLength")));
    assert_eq!(get(&r1, "MaxBurstLength"), Some("65536"));
    // An answer above our offer breaks the minimum function.
    assert_failed(&m.step(&op(true, keys(&[("MaxBurstLength", "131072")]))), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn no_offers_when_the_initiator_offered_everything() {
    let mut m = machine(TestPolicy::open());
    completed(&m.step(&op(true, fixture("open_iscsi_opneg_normal").into_iter().chain(identity()).collect())));
}

#[test]
fn answered_target_offer_cannot_be_renegotiated() {
    let mut m = machine(TestPolicy::open());
    m.step(&op(false, identity()));
    m.step(&op(true, Vec::new())); // no keys offered: we offer InitialR2T=No
    assert_ok(&m.step(&op(false, keys(&[("InitialR2T", "No")]))));
    assert_failed(&m.step(&op(true, keys(&[("InitialR2T", "Yes")]))), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn misconfigured_limits_never_produce_out_of_range_answers() {
    let limits =
        TargetLimits { default_time2wait: 9999, max_recv_data_segment_length: 1 << 30, ..TargetLimits::default() };
    let reply = answer(limits, &[("DefaultTime2Wait", "2")]);
    assert_eq!(get(&reply, "DefaultTime2Wait"), Some("3600"));
    assert_eq!(get(&reply, "MaxRecvDataSegmentLength"), Some("16777215"));
}
