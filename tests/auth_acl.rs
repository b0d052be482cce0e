//! Login refusals and their exact status (RFC 7143 §11.13.5), CHAP and mutual CHAP (§12.1.3)
//! with the raw initiator and with libiscsi, and SendTargets filtering by ACL. The server runs
//! from a TOML config with three targets: CHAP-protected, ACL-protected and open.

mod common;

use std::process::Command;
use std::time::Duration;

use common::raw_initiator::*;
use common::{run_ok, run_with_timeout, TargetProcess};

const CHAP_TARGET: &str = "iqn.2026-11.io.palisade:chap";
const ACL_TARGET: &str = "iqn.2026-11.io.palisade:acl";
const OPEN_TARGET: &str = "iqn.2026-11.io.palisade:open";
const CHAP_USER: &str = "alice";
const CHAP_SECRET: &str = "alice-secret-1234";
const MUTUAL_USER: &str = "palisade-array";
const MUTUAL_SECRET: &str = "array-secret-5678";
const ALLOWED: &str = "iqn.2026-11.test.palisade:allowed";
const STRANGER: &str = "iqn.2026-11.test.palisade:stranger";
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

fn start() -> TargetProcess {
    let lun = "[[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"8MiB\"\n";
    let toml = format!(
        "[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n\
         [[targets]]\nname = \"{CHAP_TARGET}\"\n\
         chap = {{ user = \"{CHAP_USER}\", secret = \"{CHAP_SECRET}\" }}\n\
         mutual_chap = {{ user = \"{MUTUAL_USER}\", secret = \"{MUTUAL_SECRET}\" }}\n{lun}\n\
         [[targets]]\nname = \"{ACL_TARGET}\"\n{lun}\n[[targets.acl]]\ninitiator = \"{ALLOWED}\"\n\n\
         [[targets]]\nname = \"{OPEN_TARGET}\"\n{lun}"
    );
    TargetProcess::start_with_config(&toml, CHAP_TARGET)
}

fn status_of(err: LoginError) -> (u8, u8) {
    match err {
        LoginError::Status(class, detail) => (class, detail),
        other => panic!("expected a Login Response with a failure status, got {other:?}"),
    }
}

#[test]
fn unknown_target_is_refused_with_not_found() {
    let mut t = start();
    let opts = LoginOptions::normal(ALLOWED, "iqn.2026-11.io.palisade:no-such-target");
    // RFC 7143 §11.13.5: 02/03 "Not found — the requested iSCSI Target Name does not exist here".
    assert_eq!(status_of(RawInitiator::login_refused(&t.portal(), &opts)), (2, 3));
    assert_healthy(&mut t);
}

#[test]
fn wrong_chap_secret_is_refused_with_authentication_failure() {
    let mut t = start();
    let opts = LoginOptions::normal(ALLOWED, CHAP_TARGET).chap(CHAP_USER, "not-the-secret-at-all");
    // RFC 7143 §11.13.5: 02/01 "Authentication failure".
    assert_eq!(status_of(RawInitiator::login_refused(&t.portal(), &opts)), (2, 1));
    // A wrong user name with the right secret fails the same way.
    let opts = LoginOptions::normal(ALLOWED, CHAP_TARGET).chap("mallory", CHAP_SECRET);
    assert_eq!(status_of(RawInitiator::login_refused(&t.portal(), &opts)), (2, 1));
    // So does skipping CHAP on a target that requires it (§12.1: AuthMethod=None refused).
    let opts = LoginOptions::normal(ALLOWED, CHAP_TARGET);
    assert_eq!(status_of(RawInitiator::login_refused(&t.portal(), &opts)), (2, 1));
    assert_healthy(&mut t);
}

#[test]
fn initiator_missing_from_the_acl_is_refused_with_authorization_failure() {
    let mut t = start();
    // RFC 7143 §11.13.5: 02/02 "Authorization failure — the initiator is not allowed access".
    let opts = LoginOptions::normal(STRANGER, ACL_TARGET);
    assert_eq!(status_of(RawInitiator::login_refused(&t.portal(), &opts)), (2, 2));
    // The listed initiator gets in (iSCSI names compare case-insensitively, RFC 3722).
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(&ALLOWED.to_uppercase(), ACL_TARGET));
    ini.ping(b"admitted");
    assert_healthy(&mut t);
}

#[test]
fn chap_and_mutual_chap_logins_succeed() {
    let mut t = start();
    let chap = LoginOptions::normal(STRANGER, CHAP_TARGET).chap(CHAP_USER, CHAP_SECRET);
    let mut ini = RawInitiator::login_ok(&t.portal(), &chap);
    ini.ping(b"chap");
    // Mutual CHAP: the target answers our challenge with its own name and secret (§12.1.3);
    // `login` verifies CHAP_N and CHAP_R against what we expect.
    let mutual = chap.clone().isid([0x80, 0, 0, 0, 0, 2]).mutual(MUTUAL_USER, MUTUAL_SECRET);
    let mut ini = RawInitiator::login_ok(&t.portal(), &mutual);
    ini.ping(b"mutual chap");
    // The check is real: expecting another target secret makes our side refuse the target.
    let mut wrong = RawInitiator::connect(&t.portal());
    match wrong.login(&chap.clone().isid([0x80, 0, 0, 0, 0, 3]).mutual(MUTUAL_USER, "some-other-secret")) {
        Err(LoginError::Other(why)) => assert!(why.contains("mutual CHAP"), "{why}"),
        other => panic!("expected the target to fail our mutual check, got {other:?}"),
    }
    assert_healthy(&mut t);
}

fn inq_url(t: &TargetProcess, userinfo: &str, target: &str, args: &str) -> String {
    format!("iscsi://{userinfo}@{}/{target}/0{args}", t.portal())
}

#[test]
fn libiscsi_logs_in_with_chap_and_mutual_chap() {
    let mut t = start();
    let name = format!("iqn.2026-11.test.palisade:libiscsi-{}", t.port());
    let userinfo = format!("{CHAP_USER}%{CHAP_SECRET}");
    let out = run_ok("iscsi-inq", &["-i", &name, &inq_url(&t, &userinfo, CHAP_TARGET, "")], TOOL_TIMEOUT);
    assert!(out.contains("PALISADE"), "standard INQUIRY through a CHAP session:\n{out}");
    let mutual = format!("?target_user={MUTUAL_USER}&target_password={MUTUAL_SECRET}");
    let out = run_ok("iscsi-inq", &["-i", &name, &inq_url(&t, &userinfo, CHAP_TARGET, &mutual)], TOOL_TIMEOUT);
    assert!(out.contains("PALISADE"), "standard INQUIRY through a mutual CHAP session:\n{out}");
    // libiscsi really checks the target's answer: expecting another target secret fails.
    let wrong_mutual = format!("?target_user={MUTUAL_USER}&target_password=another-secret-99");
    let bad = inq_url(&t, &userinfo, CHAP_TARGET, &wrong_mutual);
    let out = run_with_timeout(Command::new("iscsi-inq").args(["-i", &name, &bad]), TOOL_TIMEOUT);
    assert!(!out.status.success(), "iscsi-inq must refuse a target that fails mutual CHAP");
    // A wrong secret makes the tool fail.
    let bad = inq_url(&t, &format!("{CHAP_USER}%wrong-secret-0000"), CHAP_TARGET, "");
    let out = run_with_timeout(Command::new("iscsi-inq").args(["-i", &name, &bad]), TOOL_TIMEOUT);
    assert!(!out.status.success(), "iscsi-inq with a wrong CHAP secret must fail");
    assert_healthy(&mut t);
}

/// TargetName values of a SendTargets=All answer (RFC 7143 Appendix C).
fn discovered(initiator: &str, t: &TargetProcess) -> Vec<String> {
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::discovery(initiator));
    let keys = ini.text(&[("SendTargets", "All")]);
    let mut names: Vec<String> = keys.into_iter().filter(|(k, _)| k == "TargetName").map(|(_, v)| v).collect();
    names.sort();
    ini.logout();
    names
}

#[test]
fn send_targets_hides_targets_whose_acl_refuses_the_initiator() {
    let mut t = start();
    // docs/configuration.md `[discovery] acl_filter` (default true): a target is listed only to
    // initiators its ACL admits.
    assert_eq!(discovered(STRANGER, &t), vec![CHAP_TARGET.to_string(), OPEN_TARGET.to_string()]);
    assert_eq!(discovered(ALLOWED, &t), vec![ACL_TARGET.to_string(), CHAP_TARGET.to_string(), OPEN_TARGET.to_string()]);
    // libiscsi's discovery sees the same filtered list.
    let out = run_ok("iscsi-ls", &["-i", STRANGER, &t.portal_url()], TOOL_TIMEOUT);
    assert!(out.contains(OPEN_TARGET) && !out.contains(ACL_TARGET), "iscsi-ls as a stranger:\n{out}");
    assert_healthy(&mut t);
}

#[test]
fn lun_masking_matches_initiator_names_case_insensitively() {
    // RFC 7143 §4.2.7.1: iSCSI names are compared after normalisation, so an ACL entry written
    // with capitals admits the lower-case initiator at login *and* masks its LUNs.
    let target = "iqn.2026-11.io.palisade:masked";
    let luns = (0..3).map(|id| format!("[[targets.luns]]\nid = {id}\nbackend = \"memory\"\nsize = \"4MiB\"\n"));
    let toml = format!(
        "[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n[[targets]]\nname = \"{target}\"\n{}\n\
         [[targets.acl]]\ninitiator = \"IQN.2026-11.Test.Palisade:Allowed\"\nluns = [1]\n",
        luns.collect::<String>()
    );
    let mut t = TargetProcess::start_with_config(&toml, target);
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(ALLOWED, target));
    // REPORT LUNS (SPC-4 §6.33): exactly LUN 1.
    let data = ini.exec_good(0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256, &[]);
    assert_eq!(u32::from_be_bytes(data[0..4].try_into().unwrap()), 8, "one LUN listed: {data:02x?}");
    assert_eq!(&data[8..16], &[0, 1, 0, 0, 0, 0, 0, 0], "LUN 1");
    // A masked LUN is not there for it: LOGICAL UNIT NOT SUPPORTED.
    assert_sense(&ini.exec(0, &[0; 6], 0, &[]), 0x05, 0x25, 0x00);
    assert_healthy(&mut t);
}
