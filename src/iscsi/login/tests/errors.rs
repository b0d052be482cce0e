//! Header, stage-transition and identity errors (RFC 7143 §6.3, §11.12, §11.13.5).

use super::*;

#[test]
fn version_min_above_zero_is_unsupported() {
    let mut m = machine(TestPolicy::open());
    let mut req = op(true, fixture("libiscsi_opneg_first"));
    req.version_min = 1;
    req.version_max = 2;
    assert_failed(&m.step(&req), LoginStatus::UNSUPPORTED_VERSION);
}

#[test]
fn version_range_including_zero_is_accepted() {
    let mut m = machine(TestPolicy::open());
    let mut req = op(true, fixture("libiscsi_opneg_first"));
    req.version_max = 3;
    completed(&m.step(&req));
}

#[test]
fn missing_initiator_name() {
    let mut m = machine(TestPolicy::open());
    let k = without_key(fixture("open_iscsi_secneg_none"), "InitiatorName");
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::MISSING_PARAMETER);
}

#[test]
fn missing_target_name_in_normal_session() {
    let mut m = machine(TestPolicy::open());
    let k = without_key(fixture("open_iscsi_secneg_none"), "TargetName");
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::MISSING_PARAMETER);
}

#[test]
fn session_type_defaults_to_normal() {
    let mut m = machine(TestPolicy::open());
    let k = without_key(fixture("libiscsi_opneg_first"), "SessionType");
    assert_eq!(completed(&m.step(&op(true, k))).session_type, SessionType::Normal);
}

#[test]
fn unknown_session_type() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("open_iscsi_secneg_none"), "SessionType", "Bogus");
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::SESSION_TYPE_NOT_SUPPORTED);
}

#[test]
fn unknown_target_is_not_found() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("open_iscsi_secneg_none"), "TargetName", "iqn.2024-01.org.palisade:nope");
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::NOT_FOUND);
}

#[test]
fn reserved_and_backward_stages_are_initiator_errors() {
    let cases = [
        request(Stage::Reserved, false, Stage::Reserved, fixture("open_iscsi_secneg_none")),
        request(Stage::FullFeature, false, Stage::FullFeature, fixture("open_iscsi_secneg_none")),
        request(Stage::Security, true, Stage::Reserved, fixture("open_iscsi_secneg_none")),
        request(Stage::Security, true, Stage::Security, fixture("open_iscsi_secneg_none")),
        request(Stage::Operational, true, Stage::Security, fixture("libiscsi_opneg_first")),
        request(Stage::Operational, true, Stage::Operational, fixture("libiscsi_opneg_first")),
    ];
    for req in cases {
        let mut m = machine(TestPolicy::open());
        assert_failed(&m.step(&req), LoginStatus::INITIATOR_ERROR);
    }
}

#[test]
fn continue_with_transit_is_initiator_error() {
    let mut m = machine(TestPolicy::open());
    let mut req = op(true, fixture("libiscsi_opneg_first"));
    req.cont = true;
    assert_failed(&m.step(&req), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn request_in_the_wrong_stage_is_invalid_during_login() {
    let mut m = machine(TestPolicy::open());
    assert_ok(&m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none"))));
    // Back to the Security stage after the target agreed to leave it.
    let reply = m.step(&sec(false, Stage::Security, Vec::new()));
    assert_failed(&reply, LoginStatus::INVALID_DURING_LOGIN);
    assert_eq!(reply.csg, Stage::Operational);
}

#[test]
fn requests_after_the_end_are_invalid_during_login() {
    let mut m = machine(TestPolicy::open());
    completed(&m.step(&op(true, fixture("libiscsi_opneg_first"))));
    assert_failed(&m.step(&op(true, Vec::new())), LoginStatus::INVALID_DURING_LOGIN);

    let mut m = machine(TestPolicy::open());
    m.step(&op(true, without_key(fixture("libiscsi_opneg_first"), "InitiatorName")));
    assert_failed(&m.step(&op(true, fixture("libiscsi_opneg_first"))), LoginStatus::INVALID_DURING_LOGIN);
}

#[test]
fn changing_isid_tsih_or_cid_mid_login_is_initiator_error() {
    for change in
        [|r: &mut LoginRequest| r.isid[5] = 1, |r: &mut LoginRequest| r.tsih = 9, |r: &mut LoginRequest| r.cid = 2]
    {
        let mut m = machine(TestPolicy::open());
        m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none")));
        let mut req = op(true, fixture("open_iscsi_opneg_normal"));
        change(&mut req);
        assert_failed(&m.step(&req), LoginStatus::INITIATOR_ERROR);
    }
}

#[test]
fn non_leading_login_reports_the_requested_tsih() {
    let mut m = machine(TestPolicy::open());
    let mut req = op(true, fixture("libiscsi_opneg_first"));
    req.tsih = 0x1234;
    req.cid = 1;
    let reply = m.step(&req);
    let result = completed(&reply);
    assert_eq!((result.tsih_requested, result.cid), (0x1234, 1));
}

#[test]
fn oversized_key_or_value_is_initiator_error() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("libiscsi_opneg_first"), &"K".repeat(64), "1");
    assert_failed(&m.step(&op(true, k)), LoginStatus::INITIATOR_ERROR);
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("open_iscsi_secneg_none"), "InitiatorAlias", &"a".repeat(256));
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn security_keys_in_operational_stage_are_initiator_errors() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("libiscsi_opneg_first"), "AuthMethod", "None");
    assert_failed(&m.step(&op(true, k)), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn identity_redeclared_with_another_value_is_initiator_error() {
    let mut m = machine(TestPolicy::open());
    m.step(&sec(true, Stage::Operational, fixture("libiscsi_secneg_offer_chap")));
    let k = with_key(fixture("libiscsi_opneg_after_authmethod_none"), "TargetName", "iqn.2024-01.org.palisade:disk2");
    assert_failed(&m.step(&op(true, k)), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn endless_login_is_cut_off() {
    let mut m = machine(TestPolicy::open());
    let ids = keys(&[("InitiatorName", "iqn.1994-05.com.example:a"), ("TargetName", TARGET)]);
    assert_ok(&m.step(&op(false, ids)));
    let last = (0..100).map(|_| m.step(&op(false, Vec::new()))).find(|r| r.outcome == LoginProgress::Failed);
    assert_failed(&last.expect("login must be cut off"), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn stage_bits_round_trip() {
    for bits in 0..4u8 {
        assert_eq!(Stage::from_bits(bits).bits(), bits);
    }
    assert_eq!(Stage::from_bits(2), Stage::Reserved);
}

#[test]
fn operational_keys_in_security_stage_are_initiator_errors() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("open_iscsi_secneg_none"), "MaxBurstLength", "65536");
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn unknown_keys_in_security_stage_are_not_understood() {
    let mut m = machine(TestPolicy::open());
    let k = with_key(fixture("open_iscsi_secneg_none"), "X-com.example.Hello", "1");
    let reply = m.step(&sec(true, Stage::Operational, k));
    assert_eq!(get(&reply, "X-com.example.Hello"), Some("NotUnderstood"));
    assert!(reply.transit);
}
