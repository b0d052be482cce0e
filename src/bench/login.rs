//! Initiator side of the login phase (RFC 7143 §6, §11.12-13): security negotiation with
//! AuthMethod=None or CHAP (§12.1.3), then operational negotiation, ending in Full Feature Phase.

use bytes::BytesMut;
use md5::{Digest, Md5};
use pdu::msg::{LoginRequest, LoginResponse, Stage, TargetPdu};
use pdu::text::{self, TextAccumulator};
use pdu::{Digests, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::BenchError;
use super::url::IscsiUrl;

/// What this initiator asks for.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator_name: String,
    /// Initiator Session ID (RFC 7143 §11.12.5); type 80h (random) in the first byte.
    pub isid: [u8; 6],
    pub header_digest: bool,
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength declaration (RFC 7143 §13.12).
    pub max_recv_data_segment_length: u32,
    /// Connections per session we offer (RFC 7143 §13.2); more than 1 needs a target with MC/S.
    pub max_connections: u16,
    /// What we offer for ImmediateData and InitialR2T (RFC 7143 §13.10, §13.11). The load
    /// generator offers Yes/No (least round trips); tests that need every write solicited by
    /// R2T offer No/Yes.
    pub immediate_data: bool,
    pub initial_r2t: bool,
}

impl LoginOptions {
    pub fn new(initiator_name: &str, isid_random: u64) -> LoginOptions {
        let r = isid_random.to_be_bytes();
        LoginOptions {
            initiator_name: initiator_name.to_string(),
            isid: [0x80, r[3], r[4], r[5], r[6], r[7]],
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: 262_144,
            max_connections: 1,
            immediate_data: true,
            initial_r2t: false,
        }
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
    stream: &'a mut TcpStream,
    rx: BytesMut,
    opts: &'a LoginOptions,
    itt: u32,
    cid: u16,
    cmd_sn: u32,
    exp_stat_sn: u32,
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
    ) -> Result<(LoginResponse, Vec<(String, String)>), BenchError> {
        let mut data = text::encode(keys);
        let mut acc = TextAccumulator::default();
        loop {
            let req = LoginRequest {
                transit,
                cont: false,
                csg,
                nsg: if transit { nsg } else { Stage::Security },
                version_max: 0,
                version_min: 0,
                isid: self.opts.isid,
                tsih: self.tsih,
                itt: self.itt,
                cid: self.cid,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data: std::mem::take(&mut data),
            };
            self.stream.write_all(&req.encode().to_bytes(Digests::default())).await?;
            let rsp = self.read_response().await?;
            self.exp_stat_sn = rsp.seq.stat_sn.wrapping_add(1);
            if rsp.status_class != 0 {
                return Err(login_failure(&rsp));
            }
            if let Some(keys) = acc.push(&rsp.data, rsp.cont)? {
                return Ok((rsp, keys));
            }
        }
    }

    async fn read_response(&mut self) -> Result<LoginResponse, BenchError> {
        let framer = Framer::login();
        loop {
            if let Some(p) = framer.decode(&mut self.rx)? {
                return match TargetPdu::decode(&p)? {
                    TargetPdu::Login(rsp) => Ok(rsp),
                    TargetPdu::Reject(r) => Err(BenchError(format!("login rejected, reason {:#04x}", r.reason))),
                    other => Err(BenchError(format!("unexpected PDU during login: {other:?}"))),
                };
            }
            self.rx.reserve(8192);
            let n = tokio::time::timeout(std::time::Duration::from_secs(15), self.stream.read_buf(&mut self.rx))
                .await
                .map_err(|_| BenchError::new("target did not answer the login within 15 s"))??;
            if n == 0 {
                return Err(BenchError::new("target closed the connection during login"));
            }
        }
    }
}

fn login_failure(rsp: &LoginResponse) -> BenchError {
    let what = match (rsp.status_class, rsp.status_detail) {
        (1, _) => "target moved (redirect)",
        (2, 0x01) => "authentication failed",
        (2, 0x02) => "authorization failure (ACL)",
        (2, 0x03) => "target not found",
        (2, 0x06) => "too many connections",
        (2, 0x07) => "missing parameter",
        (2, _) => "initiator error",
        (3, _) => "target error",
        _ => "login failed",
    };
    BenchError(format!("login: {what} (status {:02x}/{:02x})", rsp.status_class, rsp.status_detail))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get<'k>(keys: &'k [(String, String)], name: &str) -> Option<&'k str> {
    keys.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Logs in on `stream`, opening a new session or (`add`) adding a connection to one. Returns the
/// negotiated parameters and the sequence numbers to continue with.
pub async fn login(
    stream: &mut TcpStream,
    url: &IscsiUrl,
    opts: &LoginOptions,
    add: Option<&AddConnection>,
) -> Result<LoggedIn, BenchError> {
    let (tsih, cid, cmd_sn) = add.map_or((0, 0, 1), |a| (a.tsih, a.cid, a.cmd_sn));
    let mut ex =
        Exchange { stream, rx: BytesMut::with_capacity(8192), opts, itt: 0, cid, cmd_sn, exp_stat_sn: 0, tsih };
    let auth = if url.chap.is_some() { "CHAP,None" } else { "None" };
    let mut keys = pairs(&[
        ("InitiatorName", &opts.initiator_name),
        ("SessionType", "Normal"),
        ("TargetName", &url.target),
        ("AuthMethod", auth),
    ]);
    // RFC 7143 §6.3: security negotiation first; T=1 asks to move on when the target allows.
    let (mut rsp, answer) = ex.round(Stage::Security, Stage::Operational, true, &keys).await?;
    let mut stage_done = rsp.transit;
    match get(&answer, "AuthMethod") {
        Some("CHAP") => {
            let (user, secret) =
                url.chap.as_ref().ok_or_else(|| BenchError::new("target demands CHAP; put user%secret@ in the URL"))?;
            rsp = chap(&mut ex, user, secret).await?;
            stage_done = rsp.transit;
        }
        Some("None") | None => {}
        Some(other) => {
            return Err(BenchError(format!("target chose AuthMethod={other}, which the bench does not speak")))
        }
    }
    let mut rounds = 0;
    while !stage_done && rsp.csg == Stage::Security {
        // The target did not let us transit yet: ask again with nothing new to say.
        rounds += 1;
        if rounds > MAX_LOGIN_ROUNDS {
            return Err(BenchError::new("target never ended the security stage"));
        }
        rsp = ex.round(Stage::Security, Stage::Operational, true, &[]).await?.0;
        stage_done = rsp.transit;
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
    let digest = |on: bool| if on { "CRC32C,None" } else { "None" };
    let ours = opts.max_recv_data_segment_length.to_string();
    let max_connections = opts.max_connections.max(1).to_string();
    let yes_no = |on: bool| if on { "Yes" } else { "No" };
    keys = pairs(&[
        ("HeaderDigest", digest(opts.header_digest)),
        ("DataDigest", digest(opts.data_digest)),
        ("MaxRecvDataSegmentLength", &ours),
    ]);
    if add.is_none() {
        // RFC 7143 §13: session-wide ("leading only") keys go in the leading login only.
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
    }
    for _ in 0..MAX_LOGIN_ROUNDS {
        let (r, answer) = ex.round(Stage::Operational, Stage::FullFeature, true, &keys).await?;
        keys = apply(&mut params, &answer)?;
        if r.transit && r.nsg == Stage::FullFeature {
            return Ok(finish(ex, params, r));
        }
    }
    Err(BenchError::new("target never ended operational negotiation"))
}

fn finish(ex: Exchange<'_>, params: SessionParams, rsp: LoginResponse) -> LoggedIn {
    LoggedIn {
        params,
        tsih: rsp.tsih,
        cmd_sn: ex.cmd_sn,
        exp_stat_sn: ex.exp_stat_sn,
        exp_cmd_sn: rsp.seq.exp_cmd_sn,
        max_cmd_sn: rsp.seq.max_cmd_sn,
    }
}

fn number(key: &str, value: &str) -> Result<u32, BenchError> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_SANE_LENGTH).contains(&n) => Ok(n as u32),
        _ => Err(BenchError(format!("target answered {key}={value}, not a usable number"))),
    }
}

/// Takes the target's answers (it computed each result function, RFC 7143 §6.2.1) and returns
/// our replies to anything it offered on its own initiative.
fn apply(p: &mut SessionParams, answer: &[(String, String)]) -> Result<Vec<(String, String)>, BenchError> {
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
            // Declarations and answers that change nothing for the bench.
            "TargetAlias"
            | "TargetPortalGroupTag"
            | "TargetAddress"
            | "ErrorRecoveryLevel"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain" => {}
            // A key the target offers that we never sent: RFC 7143 §6.2 says answer it.
            _ => replies.push((k.clone(), "NotUnderstood".to_string())),
        }
    }
    if p.first_burst_length > p.max_burst_length {
        return Err(BenchError(format!(
            "target negotiated FirstBurstLength {} above MaxBurstLength {} (RFC 7143 §13.14)",
            p.first_burst_length, p.max_burst_length
        )));
    }
    Ok(replies)
}

/// CHAP with MD5 (RFC 7143 §12.1.3, RFC 1994): CHAP_A, then CHAP_N/CHAP_R.
async fn chap(ex: &mut Exchange<'_>, user: &str, secret: &str) -> Result<LoginResponse, BenchError> {
    let (_, answer) = ex.round(Stage::Security, Stage::Security, false, &pairs(&[("CHAP_A", "5")])).await?;
    if get(&answer, "CHAP_A") != Some("5") {
        return Err(BenchError::new("target offered no MD5 CHAP (CHAP_A=5)"));
    }
    let id: u8 = get(&answer, "CHAP_I")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::new("target sent no usable CHAP_I"))?;
    let challenge = get(&answer, "CHAP_C")
        .and_then(decode_hex)
        .ok_or_else(|| BenchError::new("target sent no usable CHAP_C (hex expected)"))?;
    let mut md5 = Md5::new();
    md5.update([id]);
    md5.update(secret.as_bytes());
    md5.update(&challenge);
    let response: [u8; 16] = md5.finalize().into();
    let hex: String = response.iter().map(|b| format!("{b:02x}")).collect();
    let keys = pairs(&[("CHAP_N", user), ("CHAP_R", &format!("0x{hex}"))]);
    Ok(ex.round(Stage::Security, Stage::Operational, true, &keys).await?.0)
}

/// RFC 7143 §6.1 binary values in hexadecimal form (`0x…`).
fn decode_hex(value: &str) -> Option<Vec<u8>> {
    let digits = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X"))?;
    if digits.is_empty() || digits.len() > 2048 {
        return None;
    }
    let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_string() };
    (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values() {
        assert_eq!(decode_hex("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_hex("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_hex("0xzz"), None);
        assert_eq!(decode_hex("abcd"), None);
    }

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
        let replies = apply(&mut p, &answer).unwrap();
        assert_eq!(p.target_max_recv_data_segment_length, 65536);
        assert!(!p.immediate_data && p.initial_r2t && p.digests.header && !p.digests.data);
        assert_eq!(p.max_outstanding_r2t, 1);
        assert_eq!(replies, pairs(&[("X-com.example.Magic", "NotUnderstood")]));
    }

    #[test]
    fn nonsense_numbers_are_refused() {
        let mut p = SessionParams::defaults(8192);
        assert!(apply(&mut p, &pairs(&[("MaxBurstLength", "0")])).is_err());
        assert!(apply(&mut p, &pairs(&[("MaxBurstLength", "99999999999")])).is_err());
        assert!(apply(&mut p, &pairs(&[("FirstBurstLength", "1048576"), ("MaxBurstLength", "65536")])).is_err());
    }
}
