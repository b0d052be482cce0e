//! `palisade::iscsi::login::LoginMachine` driven by a sequence of Login Requests built from
//! the fuzz input, against a policy with a CHAP target (mutual CHAP configured), an open
//! target, and an ACL that refuses initiators whose name contains "denied".
//!
//! Input: records `[header byte][key text up to 0xFF]`. Header bits: 7 T, 6 C, 5 change the
//! CID, 4 VersionMin=1, 3-2 CSG, 1-0 NSG. Key text: NUL-separated `key=value` (a piece
//! without '=' is a key with an empty value; bytes are taken as lossy UTF-8). Values `@N`
//! and `@R` become the right CHAP_N and CHAP_R for the last challenge the target sent, so
//! the fuzzer can get past authentication; anything else is sent as given.
//!
//! Invariants, for every reply:
//! - status class 0, 2 or 3; a non-zero class has outcome Failed, no keys and T=0;
//!   class 0 is never Failed; a success reply is in the request's stage;
//! - T=1 only when the request had T=1, with the request's NSG, a later defined stage;
//!   T=0 repeats CSG as NSG; Complete exactly when T=1 and NSG is Full Feature;
//! - every key well-formed (RFC 7143 §6.1: name 1..=63 of the key alphabet, value ≤ 255
//!   bytes, ≤ 8192 for CHAP_C/CHAP_R, no NUL), no key twice, and the encoded text fits in
//!   the 8192-byte data segment the initiator accepts during login (§13.12);
//! - after Failed or Complete, any further request is refused with 02/0B;
//! - Complete only for a known target, for an initiator the ACL admits (Normal sessions;
//!   discovery has no per-target ACL), for the CHAP target
//!   only after a correct CHAP_R was sent, and with negotiated values inside the limits.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade::iscsi::login::{
    ChapCredentials, LoginMachine, LoginPolicy, LoginProgress, LoginReply, LoginRequest, SessionType, Stage,
    TargetAccess, TargetLimits,
};
use pdu::chap::{decode_hex as unhex, encode_hex as hex};

const CHAP_TARGET: &str = "iqn.2024-01.org.palisade:disk1";
const OPEN_TARGET: &str = "iqn.2024-01.org.palisade:open";
const CHAP_USER: &str = "initiator-user";
const CHAP_SECRET: &[u8] = b"initiator-secret-16";
const LOGIN_DATA_SEGMENT: usize = 8192;

struct Policy;

impl LoginPolicy for Policy {
    fn target(&self, target_name: &str, initiator_name: &str) -> Option<TargetAccess> {
        let allowed = !initiator_name.contains("denied");
        let creds = |user: &str, secret: &[u8]| ChapCredentials { user: user.into(), secret: secret.to_vec() };
        match target_name {
            CHAP_TARGET => Some(TargetAccess {
                initiator_allowed: allowed,
                chap: Some(creds(CHAP_USER, CHAP_SECRET)),
                mutual_chap: Some(creds("target-user", b"target-secret-1234")),
                alias: Some("disk one".into()),
            }),
            OPEN_TARGET => {
                Some(TargetAccess { initiator_allowed: allowed, chap: None, mutual_chap: None, alias: None })
            }
            _ => None,
        }
    }

    fn discovery_auth(&self) -> Option<ChapCredentials> {
        None
    }
}

/// The initiator's answer to the target's challenge (RFC 1994 §4.1, the shared `pdu::chap`).
fn chap_response(id: u8, challenge: &[u8]) -> [u8; 16] {
    pdu::chap::response(id, CHAP_SECRET, challenge)
}

/// RFC 7143 §6.1 key alphabet, plus '#' of X# names (§13.22) that the machine also accepts
/// (and echoes with NotUnderstood).
fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// What the test has seen, to judge a completed login.
#[derive(Default)]
struct Observed {
    /// CHAP_I and CHAP_C of the target's last challenge.
    challenge: Option<(u8, Vec<u8>)>,
    /// A request carried CHAP_R equal to the right response (or one in base64, not checked).
    chap_proven: bool,
    initiator_name: Option<String>,
    target_name: Option<String>,
}

fn parse_keys(text: &[u8], seen: &Observed) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    for piece in text.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let piece = String::from_utf8_lossy(piece);
        let (key, value) = piece.split_once('=').unwrap_or((&piece, ""));
        let value = match value {
            "@N" => CHAP_USER.to_string(),
            "@R" => match &seen.challenge {
                Some((id, challenge)) => hex(&chap_response(*id, challenge)),
                None => "0x00".into(),
            },
            other => other.to_string(),
        };
        keys.push((key.to_string(), value));
    }
    keys
}

fn check_reply(req: &LoginRequest, reply: &LoginReply, limits: &TargetLimits, seen: &Observed) {
    let class = reply.status_class;
    assert!(matches!(class, 0 | 2 | 3), "status class {class}");
    if class != 0 {
        assert_eq!(reply.outcome, LoginProgress::Failed);
        assert!(reply.keys.is_empty() && !reply.transit, "failure reply with keys or T");
        return;
    }
    assert_ne!(reply.outcome, LoginProgress::Failed, "Failed with status 00/00");
    assert_eq!(reply.csg, req.csg, "success reply in another stage");
    if reply.transit {
        assert!(req.transit, "T=1 reply to a T=0 request");
        assert_eq!(reply.nsg, req.nsg);
        assert!(reply.nsg > reply.csg && reply.nsg != Stage::Reserved);
    } else {
        assert_eq!(reply.nsg, reply.csg, "T=0 reply must repeat CSG as NSG");
    }
    let complete = matches!(reply.outcome, LoginProgress::Complete(_));
    assert_eq!(complete, reply.transit && reply.nsg == Stage::FullFeature);

    let mut names = std::collections::HashSet::new();
    for (key, value) in &reply.keys {
        assert!(!key.is_empty() && key.len() <= 63 && key.bytes().all(is_key_char), "bad key {key:?}");
        let max = if matches!(key.as_str(), "CHAP_C" | "CHAP_R") { 8192 } else { 255 };
        assert!(value.len() <= max && !value.contains('\0'), "bad value for {key}: {} bytes", value.len());
        assert!(names.insert(key.as_str()), "key {key} twice in one reply");
    }
    let text = pdu::text::encode(&reply.keys);
    assert!(text.len() <= LOGIN_DATA_SEGMENT, "reply text of {} bytes exceeds 8192", text.len());

    if let LoginProgress::Complete(result) = &reply.outcome {
        assert_eq!(Some(&result.initiator_name), seen.initiator_name.as_ref());
        if result.session_type == SessionType::Normal {
            // Target ACLs govern Normal sessions; discovery filters SendTargets instead.
            assert!(!result.initiator_name.contains("denied"), "ACL bypassed");
            let target = result.target_name.as_deref().expect("a Normal session names its target");
            assert!(target == CHAP_TARGET || target == OPEN_TARGET, "unknown target {target}");
            assert_eq!(Some(target), seen.target_name.as_deref());
            if target == CHAP_TARGET {
                assert!(seen.chap_proven, "CHAP target entered without a correct CHAP_R");
            }
        }
        let p = &result.params;
        assert!(p.first_burst_length <= p.max_burst_length);
        assert!(p.max_burst_length <= limits.max_burst_length && p.max_burst_length >= 512);
        assert!(p.first_burst_length >= 512);
        assert!((512..=(1 << 24) - 1).contains(&p.max_recv_data_segment_length_initiator));
        assert!(p.max_recv_data_segment_length_target <= limits.max_recv_data_segment_length.max(8192));
        assert!((1..=limits.max_outstanding_r2t).contains(&p.max_outstanding_r2t));
        assert!((1..=limits.max_connections).contains(&p.max_connections));
        assert!(p.error_recovery_level <= limits.error_recovery_level);
        assert!(!p.header_digest || limits.header_digest_crc32c);
        assert!(!p.data_digest || limits.data_digest_crc32c);
    }
}

fn observe(req: &LoginRequest, reply: &LoginReply, seen: &mut Observed) {
    for (key, value) in &req.keys {
        match key.as_str() {
            "InitiatorName" if seen.initiator_name.is_none() => seen.initiator_name = Some(value.clone()),
            "TargetName" if seen.target_name.is_none() => seen.target_name = Some(value.clone()),
            "CHAP_R" => {
                let right = seen.challenge.as_ref().map(|(id, c)| chap_response(*id, c).to_vec());
                if value.starts_with("0b") || value.starts_with("0B") || (right.is_some() && unhex(value) == right) {
                    seen.chap_proven = true;
                }
            }
            _ => {}
        }
    }
    let get = |k: &str| reply.keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let (Some(id), Some(challenge)) = (get("CHAP_I"), get("CHAP_C")) {
        let id = id.parse().expect("CHAP_I is a decimal byte");
        seen.challenge = Some((id, unhex(challenge).expect("CHAP_C is hex")));
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = TargetLimits::default();
    let mut counter = 0u8;
    let mut machine =
        LoginMachine::new(limits.clone(), Arc::new(Policy)).with_random_source(Box::new(move |buf: &mut [u8]| {
            for b in buf {
                counter = counter.wrapping_mul(31).wrapping_add(7);
                *b = counter;
            }
        }));
    let mut seen = Observed::default();
    let mut ended = false;
    let mut rest = data;
    while let Some((&header, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0xff).unwrap_or(tail.len());
        let (text, after) = tail.split_at(end);
        rest = after.get(1..).unwrap_or(&[]);
        let req = LoginRequest {
            transit: header & 0x80 != 0,
            cont: header & 0x40 != 0,
            csg: Stage::from_bits(header >> 2),
            nsg: Stage::from_bits(header),
            version_max: 0,
            version_min: (header >> 4) & 1,
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
            tsih: 0,
            cid: if header & 0x20 != 0 { 2 } else { 1 },
            cmd_sn: 1,
            exp_stat_sn: 0,
            keys: parse_keys(text, &seen),
        };
        let reply = machine.step(&req);
        if ended {
            // RFC 7143 §11.13.5: nothing is valid after the login ended.
            assert_eq!((reply.status_class, reply.status_detail), (2, 0x0b));
            assert_eq!(reply.outcome, LoginProgress::Failed);
            continue;
        }
        observe(&req, &reply, &mut seen);
        check_reply(&req, &reply, &limits, &seen);
        ended = !matches!(reply.outcome, LoginProgress::Continue);
    }
});
