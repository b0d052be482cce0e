//! Initiator side of the login phase (RFC 7143 §6, §11.12-13) on a raw connection: security
//! negotiation with AuthMethod=None or CHAP, optionally mutual (§12.1.3), then operational
//! negotiation (§6.2, §13), ending in Full Feature Phase. Normal and Discovery sessions, leading
//! logins and connections added to a session (§5.3.1).

use std::time::Duration;

use pdu::msg::{LoginRequest, LoginResponse, Stage, TargetPdu};
use pdu::text::{self, TextAccumulator};
use pdu::Digests;

use crate::error::Error;
use crate::raw::{RawConnection, OUR_MAX_RECV};
use crate::url::IscsiUrl;
use pdu::chap;

/// What this initiator asks for.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator_name: String,
    /// The target to log in to; `None` = a Discovery session (§13.21).
    pub target: Option<String>,
    /// Initiator Session ID (RFC 7143 §11.12.5); type 80h (random) in the first byte.
    pub isid: [u8; 6],
    /// Connection ID of a leading login (§11.12.7); an added connection brings its own.
    pub cid: u16,
    /// CHAP (user, secret) this initiator proves itself with.
    pub chap: Option<(String, String)>,
    /// Offer only CHAP (a target that picks None fails the login); otherwise `CHAP,None`.
    pub require_chap: bool,
    /// Mutual CHAP: (user, secret) the target must prove itself with.
    pub mutual: Option<(String, String)>,
    /// Offer CRC32C digests (`CRC32C,None`: the target chooses).
    pub header_digest: bool,
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength declaration (RFC 7143 §13.12).
    pub max_recv_data_segment_length: u32,
    /// Propose the session-wide keys below (and the bench's burst sizes); when false, only
    /// digests, MaxRecvDataSegmentLength, ErrorRecoveryLevel and `extra_keys` are sent and the
    /// RFC 7143 §13 defaults stay in force for the rest (what protocol tests want to see).
    pub propose_session_keys: bool,
    /// Connections per session we offer (RFC 7143 §13.2); more than 1 needs a target with MC/S.
    pub max_connections: u16,
    /// What we offer for ImmediateData and InitialR2T (RFC 7143 §13.10, §13.11). The load
    /// generator offers Yes/No (least round trips); tests that need every write solicited by
    /// R2T offer No/Yes.
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// More operational keys, sent as given; one named like a key above replaces it.
    pub extra_keys: Vec<(String, String)>,
    /// How long to wait for each Login Response.
    pub timeout: Duration,
}

impl LoginOptions {
    /// The bench's login: a Normal session (target from the URL), proposing every session key.
    pub fn new(initiator_name: &str, isid_random: u64) -> LoginOptions {
        let r = isid_random.to_be_bytes();
        LoginOptions {
            initiator_name: initiator_name.to_string(),
            target: None,
            isid: [0x80, r[3], r[4], r[5], r[6], r[7]],
            cid: 0,
            chap: None,
            require_chap: false,
            mutual: None,
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: OUR_MAX_RECV,
            propose_session_keys: true,
            max_connections: 1,
            immediate_data: true,
            initial_r2t: false,
            extra_keys: Vec::new(),
            timeout: Duration::from_secs(15),
        }
    }

    /// A Normal session with `target` that leaves the RFC defaults in force (protocol tests).
    pub fn normal(initiator_name: &str, target: &str) -> LoginOptions {
        LoginOptions {
            target: Some(target.to_string()),
            isid: [0x80, 0x00, 0x00, 0x00, 0x12, 0x34],
            cid: 1,
            propose_session_keys: false,
            ..LoginOptions::new(initiator_name, 0)
        }
    }

    /// A Discovery session (SendTargets, §13.21).
    pub fn discovery(initiator_name: &str) -> LoginOptions {
        LoginOptions { target: None, ..LoginOptions::normal(initiator_name, "") }
    }

    pub fn isid(mut self, isid: [u8; 6]) -> Self {
        self.isid = isid;
        self
    }

    /// CHAP as (user, secret), offered alone: a target that does not select it fails the login.
    pub fn chap(mut self, user: &str, secret: &str) -> Self {
        self.chap = Some((user.into(), secret.into()));
        self.require_chap = true;
        self
    }

    /// Mutual CHAP: the target must prove itself as (user, secret).
    pub fn mutual(mut self, user: &str, secret: &str) -> Self {
        self.mutual = Some((user.into(), secret.into()));
        self
    }

    pub fn digests(mut self, header: bool, data: bool) -> Self {
        self.header_digest = header;
        self.data_digest = data;
        self
    }

    /// One more operational key, sent as given.
    pub fn key(mut self, key: &str, value: &str) -> Self {
        self.extra_keys.push((key.into(), value.into()));
        self
    }

    /// These options for `url`: its target, and its CHAP credentials unless some are set.
    pub fn for_url(&self, url: &IscsiUrl) -> LoginOptions {
        let mut o = self.clone();
        o.target = Some(url.target.clone());
        if o.chap.is_none() {
            o.chap = url.chap.clone();
        }
        o
    }
}

/// The first Login Request of a new session (security stage, TSIH 0, CID 1, CmdSN 1) carrying
/// `data` as given, for tests that hand-craft or abuse the login phase.
pub fn first_login_request(isid: [u8; 6], itt: u32, transit: bool, cont: bool, data: bytes::Bytes) -> LoginRequest {
    LoginRequest {
        transit,
        cont,
        csg: Stage::Security,
        nsg: if transit { Stage::Operational } else { Stage::Security },
        version_max: 0,
        version_min: 0,
        isid,
        tsih: 0,
        itt,
        cid: 1,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data,
    }
}

/// Adding a connection to a session that is already in Full Feature Phase (RFC 7143 §5.3.1).
#[derive(Clone, Debug)]
pub struct AddConnection {
    pub tsih: u16,
    /// Connection ID, unique within the session (§11.12.7).
    pub cid: u16,
    /// The session's next CmdSN: a login on an added connection carries it (§11.12.8).
    pub cmd_sn: u32,
    /// The session-wide parameters the leading login negotiated.
    pub session: SessionParams,
}

/// The operational parameters in force after login (RFC 7143 §13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// Largest data segment we may send: the target's declared MaxRecvDataSegmentLength.
    pub target_max_recv_data_segment_length: u32,
    /// Largest data segment the target may send us.
    pub our_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    /// Connections the session may have (RFC 7143 §13.2).
    pub max_connections: u16,
    pub digests: Digests,
}

impl SessionParams {
    /// The RFC 7143 §13 defaults, in force for any key the target leaves unanswered.
    fn defaults(ours: u32) -> SessionParams {
        SessionParams {
            target_max_recv_data_segment_length: 8192,
            our_max_recv_data_segment_length: ours,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
            max_connections: 1,
            digests: Digests::default(),
        }
    }
}

/// A connection in Full Feature Phase.
#[derive(Debug)]
pub struct LoggedIn {
    pub params: SessionParams,
    pub tsih: u16,
    /// CmdSN of the first command (the login's CmdSN, not advanced by the immediate login).
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// Numbers above this are nonsense from any target and would only make us allocate.
const MAX_SANE_LENGTH: u64 = 16_777_215;
const MAX_LOGIN_ROUNDS: usize = 16;

struct Exchange<'a> {
    conn: &'a mut RawConnection,
    opts: &'a LoginOptions,
    itt: u32,
    cid: u16,
    tsih: u16,
}

impl Exchange<'_> {
    /// Sends one Login Request and returns the complete response, following C-bit
    /// continuations (RFC 7143 §11.13.2: answer each partial response with an empty request).
    async fn round(
        &mut self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &[(String, String)],
    ) -> Result<(LoginResponse, Vec<(String, String)>), Error> {
        let mut data = text::encode(keys);
        let mut acc = TextAccumulator::default();
        loop {
            let req = LoginRequest {
                transit,
                cont: false,
                csg,
                nsg: if transit { nsg } else { csg },
                version_max: 0,
                version_min: 0,
                isid: self.opts.isid,
                tsih: self.tsih,
                itt: self.itt,
                cid: self.cid,
                // §11.12.8: the login carries the CmdSN of the session's next command.
                cmd_sn: self.conn.cmd_sn,
                exp_stat_sn: self.conn.exp_stat_sn,
                data: std::mem::take(&mut data),
            };
            self.conn.send_bytes(&req.encode().to_bytes(Digests::default())).await?;
            let rsp = match self.conn.recv_msg(self.opts.timeout).await {
                Ok(TargetPdu::Login(rsp)) => rsp,
                Ok(TargetPdu::Reject(r)) => {
                    return Err(Error::Other(format!("login rejected, reason {:#04x}", r.reason)))
                }
                Ok(other) => return Err(Error::Other(format!("unexpected PDU during login: {other:?}"))),
                Err(Error::Timeout(_)) => {
                    return Err(Error::Timeout(format!(
                        "target did not answer the login within {:?}",
                        self.opts.timeout
                    )))
                }
                Err(e) => return Err(e),
            };
            if rsp.status_class != 0 {
                return Err(Error::LoginRefused { class: rsp.status_class, detail: rsp.status_detail });
            }
            if let Some(keys) = acc.push(&rsp.data, rsp.cont)? {
                self.conn.login_keys.extend(keys.iter().cloned());
                return Ok((rsp, keys));
            }
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get<'k>(keys: &'k [(String, String)], name: &str) -> Option<&'k str> {
    keys.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Logs in on `conn`, opening a new session or (`add`) adding a connection to one. Returns the
/// negotiated parameters and the sequence numbers to continue with; `conn` is left in Full
/// Feature Phase with the negotiated digests and the target's MaxRecvDataSegmentLength.
pub async fn login(
    conn: &mut RawConnection,
    opts: &LoginOptions,
    add: Option<&AddConnection>,
) -> Result<LoggedIn, Error> {
    let (tsih, cid) = add.map_or((0, opts.cid), |a| (a.tsih, a.cid));
    if let Some(a) = add {
        conn.cmd_sn = a.cmd_sn;
    }
    let itt = conn.new_itt();
    let mut ex = Exchange { conn, opts, itt, cid, tsih };
    let auth = match (&opts.chap, opts.require_chap) {
        (Some(_), true) => "CHAP",
        (Some(_), false) => "CHAP,None",
        (None, _) => "None",
    };
    let mut keys = pairs(&[("InitiatorName", &opts.initiator_name)]);
    match &opts.target {
        Some(target) => keys.extend(pairs(&[("SessionType", "Normal"), ("TargetName", target)])),
        None => keys.extend(pairs(&[("SessionType", "Discovery")])),
    }
    keys.extend(pairs(&[("AuthMethod", auth)]));
    // RFC 7143 §6.3: security negotiation first; T=1 asks to move on when the target allows.
    let (mut rsp, answer) = ex.round(Stage::Security, Stage::Operational, true, &keys).await?;
    match get(&answer, "AuthMethod") {
        Some("CHAP") => rsp = chap_exchange(&mut ex).await?,
        _ if opts.require_chap => return Err(Error::new(format!("target did not select CHAP: {answer:?}"))),
        Some("None") | None => {}
        Some(other) => return Err(Error::new(format!("target chose AuthMethod={other}, which we do not speak"))),
    }
    let mut rounds = 0;
    while !rsp.transit && rsp.csg == Stage::Security {
        // The target did not let us transit yet: ask again with nothing new to say.
        rounds += 1;
        if rounds > MAX_LOGIN_ROUNDS {
            return Err(Error::new("target never ended the security stage"));
        }
        rsp = ex.round(Stage::Security, Stage::Operational, true, &[]).await?.0;
    }
    let mut params = match add {
        // Session-wide values stay as the leading login set them; the connection's own
        // declarations (digests, the target's MaxRecvDataSegmentLength) start from the defaults.
        Some(a) => SessionParams {
            target_max_recv_data_segment_length: 8192,
            our_max_recv_data_segment_length: opts.max_recv_data_segment_length,
            digests: Digests::default(),
            ..a.session.clone()
        },
        None => SessionParams::defaults(opts.max_recv_data_segment_length),
    };
    if rsp.transit && rsp.nsg == Stage::FullFeature {
        return Ok(finish(ex, params, rsp));
    }
    keys = operational_keys(opts, add.is_none());
    let mut sent: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    for _ in 0..MAX_LOGIN_ROUNDS {
        let (r, answer) = ex.round(Stage::Operational, Stage::FullFeature, true, &keys).await?;
        keys = apply(&mut params, &answer, &sent)?;
        sent.extend(keys.iter().map(|(k, _)| k.clone()));
        if r.transit && r.nsg == Stage::FullFeature {
            return Ok(finish(ex, params, r));
        }
    }
    Err(Error::new("target never ended operational negotiation"))
}

/// What the Operational stage declares and offers (RFC 7143 §13).
fn operational_keys(opts: &LoginOptions, leading: bool) -> Vec<(String, String)> {
    let digest = |on: bool| if on { "CRC32C,None" } else { "None" };
    let ours = opts.max_recv_data_segment_length.to_string();
    let max_connections = opts.max_connections.max(1).to_string();
    let yes_no = |on: bool| if on { "Yes" } else { "No" };
    let mut keys = pairs(&[
        ("HeaderDigest", digest(opts.header_digest)),
        ("DataDigest", digest(opts.data_digest)),
        ("MaxRecvDataSegmentLength", &ours),
    ]);
    let normal = opts.target.is_some();
    // RFC 7143 §13: session-wide ("leading only") keys go in the leading login only.
    if leading && normal && opts.propose_session_keys {
        keys.extend(pairs(&[
            ("ImmediateData", yes_no(opts.immediate_data)),
            ("InitialR2T", yes_no(opts.initial_r2t)),
            ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "262144"),
            ("MaxOutstandingR2T", "16"),
            ("MaxConnections", &max_connections),
            ("ErrorRecoveryLevel", "0"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
        ]));
    } else if leading && normal {
        keys.extend(pairs(&[("ErrorRecoveryLevel", "0")]));
    }
    for (k, v) in &opts.extra_keys {
        keys.retain(|(old, _)| old != k);
        keys.push((k.clone(), v.clone()));
    }
    keys
}

fn finish(ex: Exchange<'_>, params: SessionParams, rsp: LoginResponse) -> LoggedIn {
    ex.conn.digests = params.digests;
    ex.conn.tsih = rsp.tsih;
    ex.conn.target_max_recv = params.target_max_recv_data_segment_length;
    ex.conn.our_max_recv = params.our_max_recv_data_segment_length;
    LoggedIn {
        params,
        tsih: rsp.tsih,
        cmd_sn: ex.conn.cmd_sn,
        exp_stat_sn: ex.conn.exp_stat_sn,
        exp_cmd_sn: rsp.seq.exp_cmd_sn,
        max_cmd_sn: rsp.seq.max_cmd_sn,
    }
}

fn number(key: &str, value: &str) -> Result<u32, Error> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_SANE_LENGTH).contains(&n) => Ok(n as u32),
        _ => Err(Error::Other(format!("target answered {key}={value}, not a usable number"))),
    }
}

/// Takes the target's answers (it computed each result function, RFC 7143 §6.2.1) and returns
/// our replies to anything it offered on its own initiative (keys not in `sent`): a known key
/// is accepted as offered, an unknown one NotUnderstood (§6.2).
fn apply(p: &mut SessionParams, answer: &[(String, String)], sent: &[String]) -> Result<Vec<(String, String)>, Error> {
    let mut replies = Vec::new();
    for (k, v) in answer {
        if matches!(v.as_str(), "NotUnderstood" | "Irrelevant" | "Reject") {
            continue; // the default stays in force
        }
        match k.as_str() {
            "MaxRecvDataSegmentLength" => p.target_max_recv_data_segment_length = number(k, v)?.max(512),
            "MaxBurstLength" => p.max_burst_length = number(k, v)?,
            "FirstBurstLength" => p.first_burst_length = number(k, v)?,
            "MaxOutstandingR2T" => p.max_outstanding_r2t = number(k, v)?,
            "MaxConnections" => p.max_connections = number(k, v)?.min(u16::MAX as u32) as u16,
            "ImmediateData" => p.immediate_data = v == "Yes",
            "InitialR2T" => p.initial_r2t = v == "Yes",
            "HeaderDigest" => p.digests.header = v == "CRC32C",
            "DataDigest" => p.digests.data = v == "CRC32C",
            // Declarations that need no answer.
            "TargetAlias" | "TargetPortalGroupTag" | "TargetAddress" => continue,
            // Answers that change nothing here.
            "ErrorRecoveryLevel"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain" => {}
            // A key the target offers that we never sent and do not know: RFC 7143 §6.2.
            _ => {
                replies.push((k.clone(), "NotUnderstood".to_string()));
                continue;
            }
        }
        if !sent.iter().any(|s| s == k) && k != "MaxRecvDataSegmentLength" {
            // The target's own offer of a key we know: accept its value (§6.2).
            replies.push((k.clone(), v.clone()));
        }
    }
    if p.first_burst_length > p.max_burst_length {
        return Err(Error::Other(format!(
            "target negotiated FirstBurstLength {} above MaxBurstLength {} (RFC 7143 §13.14)",
            p.first_burst_length, p.max_burst_length
        )));
    }
    Ok(replies)
}

/// CHAP with MD5 (RFC 7143 §12.1.3, RFC 1994): CHAP_A, then CHAP_N/CHAP_R, and with mutual
/// CHAP our own CHAP_I/CHAP_C, whose answer the target must get right.
async fn chap_exchange(ex: &mut Exchange<'_>) -> Result<LoginResponse, Error> {
    let (user, secret) = ex
        .opts
        .chap
        .clone()
        .ok_or_else(|| Error::new("target demands CHAP; give a user and secret (user%secret@ in a URL)"))?;
    let keys = pairs(&[("CHAP_A", chap::ALGORITHM_MD5)]);
    let (_, answer) = ex.round(Stage::Security, Stage::Security, false, &keys).await?;
    if get(&answer, "CHAP_A") != Some(chap::ALGORITHM_MD5) {
        return Err(Error::new("target offered no MD5 CHAP (CHAP_A=5)"));
    }
    let id: u8 = get(&answer, "CHAP_I")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new("target sent no usable CHAP_I"))?;
    let challenge = get(&answer, "CHAP_C")
        .and_then(chap::decode_hex)
        .ok_or_else(|| Error::new("target sent no usable CHAP_C (hex expected)"))?;
    let mut keys =
        pairs(&[("CHAP_N", &user), ("CHAP_R", &chap::encode_hex(&chap::response(id, secret.as_bytes(), &challenge)))]);
    let our_id: u8 = rand::random();
    let our_challenge: [u8; 16] = rand::random();
    if ex.opts.mutual.is_some() {
        keys.extend(pairs(&[("CHAP_I", &our_id.to_string()), ("CHAP_C", &chap::encode_hex(&our_challenge))]));
    }
    let (rsp, answer) = ex.round(Stage::Security, Stage::Operational, true, &keys).await?;
    if let Some((target_user, target_secret)) = &ex.opts.mutual {
        // RFC 7143 §12.1.3: the target answers our challenge with its CHAP_N and CHAP_R.
        let want = chap::response(our_id, target_secret.as_bytes(), &our_challenge);
        let got = get(&answer, "CHAP_R").and_then(chap::decode_hex);
        if get(&answer, "CHAP_N") != Some(target_user.as_str()) || got.as_deref() != Some(&want[..]) {
            return Err(Error::new(format!("target failed mutual CHAP: {answer:?}")));
        }
    }
    Ok(rsp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_set_parameters_and_unknown_offers_get_replies() {
        let mut p = SessionParams::defaults(262_144);
        let answer = pairs(&[
            ("MaxRecvDataSegmentLength", "65536"),
            ("ImmediateData", "No"),
            ("InitialR2T", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("HeaderDigest", "CRC32C"),
            ("X-com.example.Magic", "1"),
            ("MaxOutstandingR2T", "NotUnderstood"),
        ]);
        let sent: Vec<String> = answer.iter().map(|(k, _)| k.clone()).filter(|k| !k.starts_with("X-")).collect();
        let replies = apply(&mut p, &answer, &sent).unwrap();
        assert_eq!(p.target_max_recv_data_segment_length, 65536);
        assert!(!p.immediate_data && p.initial_r2t && p.digests.header && !p.digests.data);
        assert_eq!(p.max_outstanding_r2t, 1);
        assert_eq!(replies, pairs(&[("X-com.example.Magic", "NotUnderstood")]));
    }

    #[test]
    fn nonsense_numbers_are_refused() {
        let mut p = SessionParams::defaults(8192);
        assert!(apply(&mut p, &pairs(&[("MaxBurstLength", "0")]), &[]).is_err());
        assert!(apply(&mut p, &pairs(&[("MaxBurstLength", "99999999999")]), &[]).is_err());
        assert!(apply(&mut p, &pairs(&[("FirstBurstLength", "1048576"), ("MaxBurstLength", "65536")]), &[]).is_err());
    }

    #[test]
    fn target_offers_of_known_keys_are_accepted() {
        let mut p = SessionParams::defaults(8192);
        let replies = apply(&mut p, &pairs(&[("MaxOutstandingR2T", "4"), ("TargetAlias", "x")]), &[]).unwrap();
        assert_eq!(p.max_outstanding_r2t, 4);
        assert_eq!(replies, pairs(&[("MaxOutstandingR2T", "4")]));
    }

    #[test]
    fn operational_keys_follow_the_options() {
        let plain = operational_keys(&LoginOptions::normal("i", "t"), true);
        let names: Vec<&str> = plain.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength", "ErrorRecoveryLevel"]);
        let mut o = LoginOptions::normal("i", "t");
        o.extra_keys.push(("HeaderDigest".into(), "CRC32C".into()));
        let k = operational_keys(&o, true);
        assert_eq!(get(&k, "HeaderDigest"), Some("CRC32C"));
        assert_eq!(k.iter().filter(|(n, _)| n == "HeaderDigest").count(), 1);
        let bench = operational_keys(&LoginOptions { target: Some("t".into()), ..LoginOptions::new("i", 1) }, true);
        assert_eq!(get(&bench, "InitialR2T"), Some("No"));
        let added = operational_keys(&LoginOptions { target: Some("t".into()), ..LoginOptions::new("i", 1) }, false);
        assert_eq!(get(&added, "InitialR2T"), None, "session-wide keys only in the leading login");
        assert_eq!(operational_keys(&LoginOptions::discovery("i"), true).len(), 3);
    }
}
