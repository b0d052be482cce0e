//! Whole logins as libiscsi and open-iscsi perform them, without CHAP.

use super::*;

#[test]
fn libiscsi_normal_login_in_one_operational_exchange() {
    let mut m = machine(TestPolicy::open());
    let reply = m.step(&op(true, fixture("libiscsi_opneg_first")));
    let expected = [
        ("TargetPortalGroupTag", "7"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("MaxConnections", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
    ];
    for (key, value) in expected {
        assert_eq!(get(&reply, key), Some(value), "{key} in {:?}", reply.keys);
    }
    assert_eq!(reply.keys.len(), expected.len(), "no other keys: {:?}", reply.keys);
    assert_eq!(reply.csg, Stage::Operational);
    let result = completed(&reply);
    assert_eq!(result.session_type, SessionType::Normal);
    assert_eq!(result.initiator_name, "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test");
    assert_eq!(result.target_name.as_deref(), Some(TARGET));
    assert_eq!(result.isid, ISID);
    assert_eq!(result.tsih_requested, 0);
    let p = &result.params;
    assert!(!p.header_digest && !p.data_digest);
    assert_eq!(p.max_recv_data_segment_length_target, 262_144);
    assert_eq!(p.max_recv_data_segment_length_initiator, 262_144);
    assert_eq!((p.max_burst_length, p.first_burst_length), (262_144, 262_144));
    assert!(!p.initial_r2t && p.immediate_data);
    assert_eq!((p.default_time2wait, p.default_time2retain), (2, 0));
    assert_eq!((p.max_outstanding_r2t, p.max_connections, p.error_recovery_level), (1, 1, 0));
    assert!(p.data_pdu_in_order && p.data_sequence_in_order);
}

#[test]
fn libiscsi_discovery_answers_normal_only_keys_irrelevant() {
    let mut m = machine(TestPolicy::open());
    let reply = m.step(&op(true, fixture("libiscsi_discovery_opneg_first")));
    for key in [
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "MaxConnections",
        "DataPDUInOrder",
        "DataSequenceInOrder",
    ] {
        assert_eq!(get(&reply, key), Some("Irrelevant"), "{key}");
    }
    assert_eq!(get(&reply, "HeaderDigest"), Some("None"));
    assert_eq!(get(&reply, "ErrorRecoveryLevel"), Some("0"));
    assert_eq!(get(&reply, "MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(get(&reply, "TargetPortalGroupTag"), None, "TPGT is for normal sessions");
    let result = completed(&reply);
    assert_eq!(result.session_type, SessionType::Discovery);
    assert_eq!(result.target_name, None);
    assert_eq!(result.params.max_burst_length, 262_144, "irrelevant keys keep defaults");
}

#[test]
fn open_iscsi_normal_login_security_then_operational() {
    let mut m = machine(TestPolicy::open());
    let first = m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none")));
    assert_ok(&first);
    assert_eq!(first.keys, keys(&[("TargetPortalGroupTag", "7"), ("AuthMethod", "None")]));
    assert!(first.transit);
    assert_eq!((first.csg, first.nsg), (Stage::Security, Stage::Operational));
    assert_eq!(first.outcome, LoginProgress::Continue);
    assert_eq!(m.stage(), Stage::Operational);

    let second = m.step(&op(true, fixture("open_iscsi_opneg_normal")));
    // open-iscsi fails the login on any key it does not know; only these may come back.
    let known = [
        "HeaderDigest",
        "DataDigest",
        "DefaultTime2Wait",
        "DefaultTime2Retain",
        "IFMarker",
        "OFMarker",
        "ErrorRecoveryLevel",
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "MaxConnections",
        "DataPDUInOrder",
        "DataSequenceInOrder",
        "MaxRecvDataSegmentLength",
    ];
    assert!(second.keys.iter().all(|(k, _)| known.contains(&k.as_str())), "{:?}", second.keys);
    assert_eq!(get(&second, "MaxBurstLength"), Some("1048576"), "min(16776192, our 1 MiB)");
    assert_eq!(get(&second, "MaxConnections"), Some("1"), "open-iscsi requires exactly 1");
    assert_eq!(get(&second, "ErrorRecoveryLevel"), Some("0"), "open-iscsi requires exactly 0");
    let result = completed(&second);
    assert_eq!(result.initiator_alias.as_deref(), Some("vm1"));
    assert_eq!(result.params.max_burst_length, 1_048_576);
    assert_eq!(result.params.first_burst_length, 262_144);
    assert_eq!(result.params.max_recv_data_segment_length_initiator, 262_144);
}

#[test]
fn open_iscsi_discovery_login() {
    let mut m = machine(TestPolicy::open());
    let first = m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_discovery")));
    assert_eq!(first.keys, keys(&[("AuthMethod", "None")]));
    assert!(first.transit);
    let second = m.step(&op(true, fixture("open_iscsi_opneg_discovery")));
    assert_eq!(get(&second, "MaxRecvDataSegmentLength"), Some("262144"));
    let result = completed(&second);
    assert_eq!(result.session_type, SessionType::Discovery);
    assert_eq!(result.params.max_recv_data_segment_length_initiator, 32_768);
}

#[test]
fn security_straight_to_full_feature_keeps_default_segment_length() {
    // open-iscsi discovery with default settings may skip the Operational stage.
    let mut m = machine(TestPolicy::open());
    let reply = m.step(&sec(true, Stage::FullFeature, fixture("open_iscsi_secneg_discovery")));
    let result = completed(&reply);
    assert_eq!(reply.csg, Stage::Security);
    // We could not declare our MaxRecvDataSegmentLength, so the RFC default holds.
    assert_eq!(result.params, Negotiated::default());
}

#[test]
fn libiscsi_chap_offer_answered_none_then_identity_repeated() {
    let mut m = machine(TestPolicy::open());
    let first = m.step(&sec(true, Stage::Operational, fixture("libiscsi_secneg_offer_chap")));
    assert_eq!(get(&first, "AuthMethod"), Some("None"));
    assert!(first.transit);
    let second = m.step(&op(true, fixture("libiscsi_opneg_after_authmethod_none")));
    let result = completed(&second);
    assert_eq!(result.target_name.as_deref(), Some(TARGET));
}

#[test]
fn security_transit_without_authmethod_when_none_required() {
    let mut m = machine(TestPolicy::open());
    let ids = keys(&[("InitiatorName", "iqn.1994-05.com.example:a"), ("TargetName", TARGET)]);
    let reply = m.step(&sec(true, Stage::Operational, ids));
    assert_ok(&reply);
    assert!(reply.transit);
    assert_eq!(reply.keys, keys(&[("TargetPortalGroupTag", "7")]));
}

#[test]
fn target_alias_is_declared_in_first_response() {
    let mut policy = TestPolicy::open();
    policy.access.alias = Some("disk one".into());
    let mut m = machine(policy);
    let reply = m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none")));
    assert_eq!(get(&reply, "TargetAlias"), Some("disk one"));
    let second = m.step(&op(true, fixture("open_iscsi_opneg_normal")));
    assert_eq!(get(&second, "TargetAlias"), None, "declared once");
    assert_eq!(get(&second, "TargetPortalGroupTag"), None, "declared once");
}

#[test]
fn acl_refusal_without_authentication_is_authorization_failure() {
    let mut policy = TestPolicy::open();
    policy.allowed = vec!["iqn.1994-05.com.example:someone-else".into()];
    let mut m = machine(policy.clone());
    assert_failed(
        &m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none"))),
        LoginStatus::AUTHORIZATION_FAILURE,
    );
    let mut m = machine(policy);
    assert_failed(&m.step(&op(true, fixture("libiscsi_opneg_first"))), LoginStatus::AUTHORIZATION_FAILURE);
}

#[test]
fn acl_allows_the_listed_initiator() {
    let mut policy = TestPolicy::open();
    policy.allowed = vec!["iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test".into()];
    let mut m = machine(policy);
    completed(&m.step(&op(true, fixture("libiscsi_opneg_first"))));
}

#[test]
fn discovery_with_required_chap_refuses_none() {
    let mut policy = TestPolicy::open();
    policy.discovery = Some(creds("disc", "discovery-secret"));
    let mut m = machine(policy);
    assert_failed(
        &m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_discovery"))),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
}

#[test]
fn continued_text_is_buffered_until_the_final_request() {
    let mut m = machine(TestPolicy::open());
    let all = fixture("libiscsi_opneg_first");
    let (head, tail) = all.split_at(5);
    let mut part = op(false, head.to_vec());
    part.cont = true;
    let partial = m.step(&part);
    assert_ok(&partial);
    assert!(partial.keys.is_empty() && !partial.transit);
    assert_eq!(partial.outcome, LoginProgress::Continue);
    let reply = m.step(&op(true, tail.to_vec()));
    let result = completed(&reply);
    assert_eq!(result.initiator_name, "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test");
    assert_eq!(get(&reply, "HeaderDigest"), Some("None"), "keys of the continued part answered");
}

#[test]
fn portal_group_tag_follows_a_continued_first_request() {
    let mut m = machine(TestPolicy::open());
    let all = fixture("open_iscsi_secneg_none");
    let (head, tail) = all.split_at(2);
    let mut part = sec(false, Stage::Security, head.to_vec());
    part.cont = true;
    assert!(m.step(&part).keys.is_empty());
    let reply = m.step(&sec(true, Stage::Operational, tail.to_vec()));
    assert_eq!(get(&reply, "TargetPortalGroupTag"), Some("7"));
    assert_eq!(get(&reply, "AuthMethod"), Some("None"));
}
