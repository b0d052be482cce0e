//! Login phase of the raw initiator (RFC 7143 §6.3): security stage with AuthMethod None or
//! CHAP (optionally mutual, §12.1.3), then operational negotiation (§6.2, §13).

use md5::{Digest, Md5};
use pdu::msg::{LoginRequest, LoginResponse, Stage, TargetPdu};
use pdu::Digests;

use super::{RawInitiator, ANSWER_TIMEOUT, OUR_MAX_RECV};

/// How to log in.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator: String,
    /// `None` = a Discovery session.
    pub target: Option<String>,
    pub isid: [u8; 6],
    /// CHAP (user, secret) this initiator proves itself with.
    pub chap: Option<(String, String)>,
    /// Mutual CHAP: (user, secret) the target must prove itself with.
    pub mutual: Option<(String, String)>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// More operational keys for the Operational stage (ImmediateData, InitialR2T, ...).
    pub extra_keys: Vec<(String, String)>,
}

impl LoginOptions {
    pub fn normal(initiator: &str, target: &str) -> Self {
        LoginOptions {
            initiator: initiator.into(),
            target: Some(target.into()),
            isid: [0x80, 0x00, 0x00, 0x00, 0x12, 0x34],
            chap: None,
            mutual: None,
            header_digest: false,
            data_digest: false,
            extra_keys: Vec::new(),
        }
    }

    pub fn discovery(initiator: &str) -> Self {
        LoginOptions { target: None, ..Self::normal(initiator, "") }
    }

    pub fn isid(mut self, isid: [u8; 6]) -> Self {
        self.isid = isid;
        self
    }

    pub fn chap(mut self, user: &str, secret: &str) -> Self {
        self.chap = Some((user.into(), secret.into()));
        self
    }

    pub fn mutual(mut self, user: &str, secret: &str) -> Self {
        self.mutual = Some((user.into(), secret.into()));
        self
    }

    pub fn digests(mut self, header: bool, data: bool) -> Self {
        self.header_digest = header;
        self.data_digest = data;
        self
    }

    pub fn key(mut self, key: &str, value: &str) -> Self {
        self.extra_keys.push((key.into(), value.into()));
        self
    }
}

/// The first Login Request of a new session (security stage, TSIH 0, CmdSN 1) carrying `data`
/// as given, for tests that hand-craft or abuse the login phase.
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

/// Why a login did not reach Full Feature Phase.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The target answered with this Status-Class / Status-Detail (RFC 7143 §11.13.5).
    Status(u8, u8),
    /// Anything else: closed connection, timeout, a target that failed mutual CHAP, ...
    Other(String),
}

impl RawInitiator {
    pub fn login(&mut self, opts: &LoginOptions) -> Result<(), LoginError> {
        let itt = self.new_itt();
        let mut first = vec![("InitiatorName".to_string(), opts.initiator.clone())];
        match &opts.target {
            Some(t) => {
                first.push(("TargetName".into(), t.clone()));
                first.push(("SessionType".into(), "Normal".into()));
            }
            None => first.push(("SessionType".into(), "Discovery".into())),
        }
        let method = if opts.chap.is_some() { "CHAP" } else { "None" };
        first.push(("AuthMethod".into(), method.into()));
        // Security stage, asking to move on to Operational.
        let mut rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, true, &first)?;
        if let Some((user, secret)) = &opts.chap {
            if key_of(&rsp, "AuthMethod").as_deref() != Some("CHAP") {
                return Err(LoginError::Other(format!("target did not select CHAP: {:?}", rsp)));
            }
            rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, false, &[("CHAP_A", "5")])?;
            let id: u8 =
                key_of(&rsp, "CHAP_I").and_then(|v| v.parse().ok()).ok_or(LoginError::Other("no CHAP_I".into()))?;
            let challenge =
                key_of(&rsp, "CHAP_C").and_then(|v| decode_hex(&v)).ok_or(LoginError::Other("no CHAP_C".into()))?;
            let answer = encode_hex(&chap_response(id, secret.as_bytes(), &challenge));
            let mut keys = vec![("CHAP_N".to_string(), user.clone()), ("CHAP_R".to_string(), answer)];
            let my_challenge: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
            let my_id: u8 = rand::random();
            if opts.mutual.is_some() {
                keys.push(("CHAP_I".into(), my_id.to_string()));
                keys.push(("CHAP_C".into(), encode_hex(&my_challenge)));
            }
            rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, true, &keys)?;
            if let Some((target_user, target_secret)) = &opts.mutual {
                // RFC 7143 §12.1.3: the target answers our challenge with its CHAP_N and CHAP_R.
                let want = chap_response(my_id, target_secret.as_bytes(), &my_challenge);
                let got = key_of(&rsp, "CHAP_R").and_then(|v| decode_hex(&v));
                if key_of(&rsp, "CHAP_N").as_deref() != Some(target_user) || got.as_deref() != Some(&want[..]) {
                    return Err(LoginError::Other(format!("target failed mutual CHAP: {:?}", rsp)));
                }
            }
        }
        if !(rsp.transit && rsp.nsg == Stage::Operational) {
            return Err(LoginError::Other(format!("security stage did not end: {rsp:?}")));
        }
        // Operational stage: declare our keys, then answer any offers until the target agrees.
        let digest = |on: bool| if on { "CRC32C" } else { "None" };
        let mut keys: Vec<(String, String)> = vec![
            ("HeaderDigest".into(), digest(opts.header_digest).into()),
            ("DataDigest".into(), digest(opts.data_digest).into()),
            ("MaxRecvDataSegmentLength".into(), OUR_MAX_RECV.to_string()),
        ];
        if opts.target.is_some() {
            keys.push(("ErrorRecoveryLevel".into(), "0".into()));
        }
        for (k, v) in &opts.extra_keys {
            keys.retain(|(old, _)| old != k);
            keys.push((k.clone(), v.clone()));
        }
        let mut sent: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        for _ in 0..4 {
            rsp = self.login_step(opts, itt, Stage::Operational, Stage::FullFeature, true, &keys)?;
            if rsp.transit && rsp.nsg == Stage::FullFeature {
                let answered = pdu::text::parse(&rsp.data).unwrap_or_default();
                self.finish_login(&rsp, opts, &answered)?;
                return Ok(());
            }
            // Offers from the target: accept them as they are (RFC 7143 §6.2).
            let offers = pdu::text::parse(&rsp.data).map_err(|e| LoginError::Other(e.to_string()))?;
            keys = offers.into_iter().filter(|(k, _)| !is_declarative(k) && !sent.contains(k)).collect();
            sent.extend(keys.iter().map(|(k, _)| k.clone()));
        }
        Err(LoginError::Other("operational negotiation did not converge".into()))
    }

    fn finish_login(
        &mut self,
        rsp: &LoginResponse,
        opts: &LoginOptions,
        keys: &[(String, String)],
    ) -> Result<(), LoginError> {
        self.tsih = rsp.tsih;
        self.digests = Digests { header: opts.header_digest, data: opts.data_digest };
        for (k, v) in keys {
            match k.as_str() {
                "HeaderDigest" => self.digests.header = v == "CRC32C",
                "DataDigest" => self.digests.data = v == "CRC32C",
                _ => {}
            }
        }
        if let Some(v) = self.login_keys.iter().rev().find(|(k, _)| k == "MaxRecvDataSegmentLength") {
            self.target_max_recv = v.1.parse().map_err(|_| LoginError::Other("bad MaxRecvDataSegmentLength".into()))?;
        }
        Ok(())
    }

    fn login_step<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        opts: &LoginOptions,
        itt: u32,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &[(K, V)],
    ) -> Result<LoginResponse, LoginError> {
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg: if transit { nsg } else { csg },
            version_max: 0,
            version_min: 0,
            isid: opts.isid,
            tsih: 0,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: pdu::text::encode(keys),
        };
        self.send_bytes(&req.encode().to_bytes(Digests::default()));
        let pdu = self.recv(ANSWER_TIMEOUT).map_err(|e| LoginError::Other(format!("no login response: {e:?}")))?;
        let rsp = match TargetPdu::decode(&pdu) {
            Ok(TargetPdu::Login(r)) => r,
            other => return Err(LoginError::Other(format!("expected a Login Response, got {other:?}"))),
        };
        if rsp.status_class != 0 {
            return Err(LoginError::Status(rsp.status_class, rsp.status_detail));
        }
        if let Ok(keys) = pdu::text::parse(&rsp.data) {
            self.login_keys.extend(keys);
        }
        Ok(rsp)
    }
}

/// Keys only the target declares; not to be echoed back as accepted offers.
fn is_declarative(key: &str) -> bool {
    matches!(key, "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress" | "MaxRecvDataSegmentLength")
}

fn key_of(rsp: &LoginResponse, key: &str) -> Option<String> {
    pdu::text::parse(&rsp.data).ok()?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// RFC 1994 §4.1 CHAP response: MD5(identifier || secret || challenge).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s += &format!("{b:02x}");
    }
    s
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}
