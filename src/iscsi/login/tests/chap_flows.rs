//! CHAP logins (RFC 7143 §12.1.3, §9.2.1) with a fixed random source.

use super::super::chap::chap_response;
use super::super::text::encode_hex;
use super::*;

const USER: &str = "alice";
const SECRET: &str = "alice-secret-12";
/// With `counting_source`, CHAP_I is 0x11 and CHAP_C is 0x12..=0x21.
const EXPECTED_ID: u8 = 0x11;

fn our_challenge() -> Vec<u8> {
    (0x12u8..=0x21).collect()
}

/// Run libiscsi's first two security requests; returns the machine awaiting CHAP_N/CHAP_R.
fn through_challenge(policy: TestPolicy) -> LoginMachine {
    let mut m = machine(policy);
    let first = m.step(&sec(true, Stage::Operational, fixture("libiscsi_secneg_offer_chap")));
    assert_ok(&first);
    assert_eq!(first.keys, keys(&[("TargetPortalGroupTag", "7"), ("AuthMethod", "CHAP")]));
    assert!(!first.transit, "no transit before authentication");
    let second = m.step(&sec(false, Stage::Operational, fixture("libiscsi_secneg_select_algorithm")));
    assert_ok(&second);
    assert_eq!(second.keys, keys(&[("CHAP_A", "5"), ("CHAP_I", "17"), ("CHAP_C", &encode_hex(&our_challenge()))]));
    assert!(!second.transit);
    m
}

fn response_keys(user: &str, secret: &str) -> Vec<(String, String)> {
    let r = chap_response(EXPECTED_ID, secret.as_bytes(), &our_challenge());
    keys(&[("CHAP_N", user), ("CHAP_R", &encode_hex(&r))])
}

#[test]
fn libiscsi_chap_login_succeeds() {
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    let third = m.step(&sec(true, Stage::Operational, response_keys(USER, SECRET)));
    assert_ok(&third);
    assert!(third.keys.is_empty(), "no mutual CHAP asked: {:?}", third.keys);
    assert!(third.transit);
    assert_eq!((third.csg, third.nsg), (Stage::Security, Stage::Operational));
    let fourth = m.step(&op(true, fixture("libiscsi_opneg_after_chap")));
    let result = completed(&fourth);
    assert_eq!(result.params.max_burst_length, 262_144);
}

#[test]
fn uppercase_hex_and_base64_responses_are_accepted() {
    let r = chap_response(EXPECTED_ID, SECRET.as_bytes(), &our_challenge());
    let upper = format!("0X{}", encode_hex(&r)[2..].to_uppercase());
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    assert_ok(&m.step(&sec(true, Stage::Operational, keys(&[("CHAP_N", USER), ("CHAP_R", &upper)]))));

    let b64 = base64(&r);
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    let reply = m.step(&sec(true, Stage::Operational, keys(&[("CHAP_N", USER), ("CHAP_R", &b64)])));
    assert_ok(&reply);
    assert!(reply.transit);
}

/// Minimal encoder for the test only, so the decoder is checked against an independent path.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::from("0b");
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn wrong_secret_is_authentication_failure() {
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    let reply = m.step(&sec(true, Stage::Operational, response_keys(USER, "not-the-secret")));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn wrong_user_is_authentication_failure() {
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    let reply = m.step(&sec(true, Stage::Operational, response_keys("mallory", SECRET)));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn malformed_or_truncated_response_is_authentication_failure() {
    for bad in ["0xnothex", "deadbeef", "0x", "0x0102"] {
        let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
        let reply = m.step(&sec(true, Stage::Operational, keys(&[("CHAP_N", USER), ("CHAP_R", bad)])));
        assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
    }
}

#[test]
fn authenticated_but_acl_denied_is_authorization_failure() {
    let mut policy = TestPolicy::chap(USER, SECRET);
    policy.allowed = vec!["iqn.1994-05.com.example:other".into()];
    let mut m = through_challenge(policy);
    let reply = m.step(&sec(true, Stage::Operational, response_keys(USER, SECRET)));
    assert_failed(&reply, LoginStatus::AUTHORIZATION_FAILURE);
}

#[test]
fn chap_required_but_only_none_offered() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    let reply = m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_none")));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_required_but_initiator_skips_security_stage() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    assert_failed(&m.step(&op(true, fixture("libiscsi_opneg_first"))), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_required_but_transit_without_authmethod() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    let ids = keys(&[("InitiatorName", "iqn.1994-05.com.example:a"), ("TargetName", TARGET)]);
    assert_failed(&m.step(&sec(true, Stage::Operational, ids)), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_offered_when_target_has_no_credentials() {
    let mut m = machine(TestPolicy::open());
    let reply = m.step(&sec(false, Stage::Security, fixture("open_iscsi_secneg_mutual_chap")));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn algorithm_list_without_md5_fails() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    assert_ok(&m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_chap"))));
    let reply = m.step(&sec(false, Stage::Security, keys(&[("CHAP_A", "7,6")])));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn algorithm_list_picks_md5_among_others() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    m.step(&sec(true, Stage::Operational, fixture("open_iscsi_secneg_chap")));
    let reply = m.step(&sec(false, Stage::Security, keys(&[("CHAP_A", "8,7,6,5")])));
    assert_eq!(get(&reply, "CHAP_A"), Some("5"));
}

#[test]
fn response_before_challenge_is_out_of_sequence() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    m.step(&sec(true, Stage::Operational, fixture("libiscsi_secneg_offer_chap")));
    let reply = m.step(&sec(true, Stage::Operational, response_keys(USER, SECRET)));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_keys_without_chap_method_fail() {
    let mut m = machine(TestPolicy::open());
    let mut k = fixture("open_iscsi_secneg_none");
    k.push(("CHAP_A".into(), "5".into()));
    assert_failed(&m.step(&sec(false, Stage::Security, k)), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn authmethod_and_algorithm_in_one_request() {
    let mut m = machine(TestPolicy::chap(USER, SECRET));
    let k = with_key(fixture("libiscsi_secneg_offer_chap"), "CHAP_A", "5");
    let reply = m.step(&sec(false, Stage::Security, k));
    assert_eq!(get(&reply, "AuthMethod"), Some("CHAP"));
    assert_eq!(get(&reply, "CHAP_I"), Some("17"));
}

fn mutual_policy(target_secret: &str) -> TestPolicy {
    let mut p = TestPolicy::chap(USER, SECRET);
    p.access.mutual_chap = Some(creds("palisade-target", target_secret));
    p
}

fn mutual_request(initiator_challenge: &[u8]) -> LoginRequest {
    let mut k = response_keys(USER, SECRET);
    k.push(("CHAP_I".into(), "200".into()));
    k.push(("CHAP_C".into(), encode_hex(initiator_challenge)));
    sec(true, Stage::Operational, k)
}

#[test]
fn mutual_chap_answers_the_initiator_challenge() {
    let challenge: Vec<u8> = (100u8..132).collect(); // libiscsi sends 32 bytes
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    let reply = m.step(&mutual_request(&challenge));
    assert_ok(&reply);
    assert!(reply.transit);
    let expected = chap_response(200, b"target-secret-99", &challenge);
    assert_eq!(reply.keys, keys(&[("CHAP_N", "palisade-target"), ("CHAP_R", &encode_hex(&expected))]));
    completed(&m.step(&op(true, fixture("libiscsi_opneg_after_chap"))));
}

#[test]
fn mutual_chap_reflected_challenge_is_refused() {
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    let reply = m.step(&mutual_request(&our_challenge()));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn mutual_chap_with_the_initiator_secret_is_refused() {
    let mut m = through_challenge(mutual_policy(SECRET));
    let reply = m.step(&mutual_request(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn mutual_chap_without_target_credentials_is_refused() {
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    let reply = m.step(&mutual_request(&[9; 16]));
    assert_failed(&reply, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn mutual_chap_needs_both_identifier_and_challenge() {
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    let mut k = response_keys(USER, SECRET);
    k.push(("CHAP_I".into(), "3".into()));
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn mutual_chap_identifier_out_of_range_is_refused() {
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    let mut k = response_keys(USER, SECRET);
    k.push(("CHAP_I".into(), "256".into()));
    k.push(("CHAP_C".into(), encode_hex(&[7; 16])));
    assert_failed(&m.step(&sec(true, Stage::Operational, k)), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn oversized_challenge_is_refused() {
    // 1025 bytes decoded: over the RFC 7143 §12.1.3 bound, though the text fits in 8192.
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    assert_failed(&m.step(&mutual_request(&[7; 1025])), LoginStatus::AUTHENTICATION_FAILURE);
    // Text over 8192 bytes is malformed before CHAP even looks at it.
    let mut m = through_challenge(mutual_policy("target-secret-99"));
    assert_failed(&m.step(&mutual_request(&[7; 4100])), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn chap_keys_after_success_are_refused() {
    let mut m = through_challenge(TestPolicy::chap(USER, SECRET));
    assert_ok(&m.step(&sec(false, Stage::Security, response_keys(USER, SECRET))));
    let reply = m.step(&sec(true, Stage::Operational, keys(&[("CHAP_A", "5")])));
    assert_failed(&reply, LoginStatus::INITIATOR_ERROR); // CHAP_A offered twice
}

#[test]
fn production_random_source_varies() {
    let policy = TestPolicy::chap(USER, SECRET);
    let challenge = |_: ()| {
        let mut m = LoginMachine::new(TargetLimits::default(), Arc::new(policy.clone()));
        m.step(&sec(true, Stage::Operational, fixture("libiscsi_secneg_offer_chap")));
        let reply = m.step(&sec(false, Stage::Security, fixture("libiscsi_secneg_select_algorithm")));
        get(&reply, "CHAP_C").unwrap().to_string()
    };
    let a = challenge(());
    assert_eq!(a.len(), 2 + 32);
    assert_ne!(a, challenge(()));
}
