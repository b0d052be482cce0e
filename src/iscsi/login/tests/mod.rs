//! Login machine tests driven by the key lists real initiators send (fixtures/params/).

mod chap_flows;
mod errors;
mod flows;
mod negotiation;

use std::sync::Arc;

use super::*;

pub const TARGET: &str = "iqn.2024-01.org.palisade:disk1";
pub const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x00, 0x00];

/// The fixture files, embedded so the tests need no working directory.
pub fn fixture(name: &str) -> Vec<(String, String)> {
    let text = match name {
        "libiscsi_opneg_first" => {
            include_str!("../../../../fixtures/params/libiscsi_opneg_first.txt")
        }
        "libiscsi_discovery_opneg_first" => {
            include_str!("../../../../fixtures/params/libiscsi_discovery_opneg_first.txt")
        }
        "libiscsi_secneg_offer_chap" => {
            include_str!("../../../../fixtures/params/libiscsi_secneg_offer_chap.txt")
        }
        "libiscsi_secneg_select_algorithm" => {
            include_str!("../../../../fixtures/params/libiscsi_secneg_select_algorithm.txt")
        }
        "libiscsi_opneg_after_chap" => {
            include_str!("../../../../fixtures/params/libiscsi_opneg_after_chap.txt")
        }
        "libiscsi_opneg_after_authmethod_none" => {
            include_str!("../../../../fixtures/params/libiscsi_opneg_after_authmethod_none.txt")
        }
        "open_iscsi_secneg_none" => {
            include_str!("../../../../fixtures/params/open_iscsi_secneg_none.txt")
        }
        "open_iscsi_secneg_chap" => {
            include_str!("../../../../fixtures/params/open_iscsi_secneg_chap.txt")
        }
        "open_iscsi_secneg_mutual_chap" => {
            include_str!("../../../../fixtures/params/open_iscsi_secneg_mutual_chap.txt")
        }
        "open_iscsi_opneg_normal" => {
            include_str!("../../../../fixtures/params/open_iscsi_opneg_normal.txt")
        }
        "open_iscsi_secneg_discovery" => {
            include_str!("../../../../fixtures/params/open_iscsi_secneg_discovery.txt")
        }
        "open_iscsi_opneg_discovery" => {
            include_str!("../../../../fixtures/params/open_iscsi_opneg_discovery.txt")
        }
        other => panic!("no fixture {other}"),
    };
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("fixture lines are key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Replace or append one key of a key list.
pub fn with_key(mut list: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(pair) => pair.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
    list
}

pub fn without_key(list: Vec<(String, String)>, key: &str) -> Vec<(String, String)> {
    list.into_iter().filter(|(k, _)| k != key).collect()
}

pub fn request(csg: Stage, transit: bool, nsg: Stage, keys: Vec<(String, String)>) -> LoginRequest {
    LoginRequest {
        transit,
        cont: false,
        csg,
        nsg: if transit { nsg } else { csg },
        version_max: 0,
        version_min: 0,
        isid: ISID,
        tsih: 0,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
        keys,
    }
}

pub fn sec(transit: bool, nsg: Stage, keys: Vec<(String, String)>) -> LoginRequest {
    request(Stage::Security, transit, nsg, keys)
}

pub fn op(transit: bool, keys: Vec<(String, String)>) -> LoginRequest {
    request(Stage::Operational, transit, Stage::FullFeature, keys)
}

pub fn creds(user: &str, secret: &str) -> ChapCredentials {
    ChapCredentials { user: user.into(), secret: secret.as_bytes().to_vec() }
}

#[derive(Clone)]
pub struct TestPolicy {
    pub access: TargetAccess,
    /// Initiators the ACL lets in; empty means everyone.
    pub allowed: Vec<String>,
    pub discovery: Option<ChapCredentials>,
}

impl TestPolicy {
    pub fn open() -> Self {
        TestPolicy {
            access: TargetAccess { initiator_allowed: true, chap: None, mutual_chap: None, alias: None },
            allowed: Vec::new(),
            discovery: None,
        }
    }

    pub fn chap(user: &str, secret: &str) -> Self {
        let mut p = TestPolicy::open();
        p.access.chap = Some(creds(user, secret));
        p
    }
}

impl LoginPolicy for TestPolicy {
    fn target(&self, target_name: &str, initiator_name: &str) -> Option<TargetAccess> {
        (target_name == TARGET).then(|| TargetAccess {
            initiator_allowed: self.allowed.is_empty() || self.allowed.iter().any(|i| i == initiator_name),
            ..self.access.clone()
        })
    }

    fn discovery_auth(&self) -> Option<ChapCredentials> {
        self.discovery.clone()
    }
}

/// Deterministic random bytes: 0x11, 0x12, 0x13, ... continuing across calls.
pub fn counting_source() -> RandomSource {
    let mut next = 0x11u8;
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_add(1);
        }
    })
}

pub fn machine_with(policy: TestPolicy, limits: TargetLimits) -> LoginMachine {
    LoginMachine::new(limits, Arc::new(policy)).with_portal_group_tag(7).with_random_source(counting_source())
}

pub fn machine(policy: TestPolicy) -> LoginMachine {
    machine_with(policy, TargetLimits::default())
}

pub fn get<'a>(reply: &'a LoginReply, key: &str) -> Option<&'a str> {
    reply.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn assert_failed(reply: &LoginReply, status: LoginStatus) {
    assert_eq!(reply.status(), status, "reply: {reply:?}");
    assert_eq!(reply.outcome, LoginProgress::Failed);
    assert!(!reply.transit);
    assert!(reply.keys.is_empty());
}

pub fn assert_ok(reply: &LoginReply) {
    assert_eq!(reply.status(), LoginStatus::SUCCESS, "reply: {reply:?}");
}

pub fn completed(reply: &LoginReply) -> &LoginResult {
    assert_ok(reply);
    assert!(reply.transit && reply.nsg == Stage::FullFeature, "reply: {reply:?}");
    match &reply.outcome {
        LoginProgress::Complete(result) => result,
        other => panic!("login not complete: {other:?}"),
    }
}
