//! Drives the login phase on a new connection (RFC 7143 §6.3): reads Login Requests, joins
//! continued text (C bit, §11.12.2), asks the pure [`LoginMachine`] for each answer, and on
//! success creates or reinstates the session (§6.3.5) before Full Feature Phase starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pdu::msg::{LoginRequest as LoginPdu, LoginResponse, Stage as PduStage, TargetSeq};
use pdu::text::{self, TextAccumulator};
use pdu::{Digests, Framer, Opcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::login::{
    LoginMachine, LoginProgress, LoginReply, LoginRequest, LoginResult, LoginStatus, SessionType, Stage,
};
use super::registry::{PortalAddr, PortalPolicy, Registry};
use super::session::{NewSession, Session, SessionOrigin};
use crate::scsi::ItNexus;

/// What a successful login hands to the Full Feature Phase.
pub struct Established {
    pub session: Arc<Session>,
    /// The StatSN the next response will carry.
    pub next_stat_sn: u32,
    pub cid: u16,
}

#[derive(Debug)]
pub enum LoginEnd {
    /// The peer went away or broke the protocol; nothing more to say.
    Closed(String),
    /// A Login Response with a failure status was sent (already logged).
    Refused,
}

/// How long a reinstated session may take to wind down before the new one proceeds.
const REINSTATE_WAIT: Duration = Duration::from_secs(10);

pub async fn run(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    registry: &Arc<Registry>,
    portal: &PortalAddr,
    peer: SocketAddr,
) -> Result<Established, LoginEnd> {
    let policy = Arc::new(PortalPolicy { registry: registry.clone(), tpgt: portal.tpgt });
    let mut machine = LoginMachine::new(registry.settings.limits.clone(), policy).with_portal_group_tag(portal.tpgt);
    let framer = Framer::login();
    let mut text = TextAccumulator::default();
    // RFC 7143 §11.13.4: the first Login Response sets the connection's starting StatSN.
    let mut stat_sn: u32 = rand::random::<u32>() >> 8;
    let mut first: Option<LoginPdu> = None;
    let window = registry.settings.cmd_window;

    loop {
        let (req, keys) = match next_request(stream, buf, &framer, &mut text, &mut first, stat_sn).await? {
            Request::Whole(req, keys) => (req, keys),
            Request::Piece(req) => {
                // §11.12.2 / §6.1: answer each continued piece with an empty response.
                let rsp = response(
                    &req,
                    target_seq(stat_sn, &req, window),
                    false,
                    req.csg,
                    req.csg,
                    LoginStatus::SUCCESS,
                    0,
                    Bytes::new(),
                );
                send(stream, &rsp).await?;
                stat_sn = stat_sn.wrapping_add(1);
                continue;
            }
        };
        let seq = target_seq(stat_sn, &req, window);
        let reply = machine.step(&to_machine_request(&req, keys));
        let mut status = reply.status();
        let mut tsih = 0;
        let mut established = None;
        if let LoginProgress::Complete(result) = &reply.outcome {
            match open_session(registry, result, portal.tpgt, req.cmd_sn).await {
                Ok(session) => {
                    tsih = session.tsih;
                    established = Some(session);
                }
                Err(s) => status = s,
            }
        }
        let failed = status != LoginStatus::SUCCESS || reply.outcome == LoginProgress::Failed;
        let data = if failed { Bytes::new() } else { encode_keys(&reply) };
        if data.len() > framer.max_data_segment as usize {
            // Our replies are a handful of short keys; this would be a bug, not peer input.
            send_failure(stream, &req, stat_sn, LoginStatus::TARGET_ERROR).await;
            return Err(LoginEnd::Refused);
        }
        let (transit, csg, nsg) = if failed {
            (false, to_pdu_stage(reply.csg), to_pdu_stage(reply.csg))
        } else {
            (reply.transit, to_pdu_stage(reply.csg), to_pdu_stage(reply.nsg))
        };
        let rsp = response(&req, seq, transit, csg, nsg, status, tsih, data);
        send(stream, &rsp).await?;
        stat_sn = stat_sn.wrapping_add(1);
        // Operator view (src/metrics, src/admin): the final status, and where the session came from.
        if failed || established.is_some() {
            registry.counters.login(status.class, status.detail);
        }
        if let Some(session) = &established {
            session.set_origin(SessionOrigin { peer, portal: portal.clone(), cid: req.cid });
        }
        if failed {
            warn!(%peer, status = %status, "login refused");
            return Err(LoginEnd::Refused);
        }
        if let Some(session) = established {
            log_established(&session, peer);
            return Ok(Established { session, next_stat_sn: stat_sn, cid: req.cid });
        }
    }
}

/// The sequence numbers of a Login Response: the command window opens at the request's CmdSN.
fn target_seq(stat_sn: u32, req: &LoginPdu, window: u32) -> TargetSeq {
    TargetSeq { stat_sn, exp_cmd_sn: req.cmd_sn, max_cmd_sn: req.cmd_sn.wrapping_add(window - 1) }
}

/// One Login Request read off the wire: either its whole (joined) text, or a continued piece.
enum Request {
    Whole(LoginPdu, Vec<(String, String)>),
    Piece(LoginPdu),
}

/// Reads and checks the next Login Request; a request that breaks the rules is answered with a
/// failure here and ends the login.
async fn next_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framer: &Framer,
    text: &mut TextAccumulator,
    first: &mut Option<LoginPdu>,
    stat_sn: u32,
) -> Result<Request, LoginEnd> {
    let pdu = read_pdu(stream, buf, framer).await?;
    if pdu.bhs().opcode() != Opcode::LOGIN_REQUEST {
        // §6.3: only Login Requests are allowed before Full Feature Phase.
        return Err(LoginEnd::Closed(format!("{:?} during login", pdu.bhs().opcode())));
    }
    let req = match LoginPdu::decode(&pdu) {
        Ok(r) => r,
        Err(e) => {
            send_failure(stream, &login_stub(&pdu), stat_sn, LoginStatus::INITIATOR_ERROR).await;
            return Err(LoginEnd::Closed(format!("malformed login request: {e}")));
        }
    };
    let lead = first.get_or_insert_with(|| req.clone());
    if req.isid != lead.isid || req.tsih != lead.tsih || req.cid != lead.cid {
        // §6.3: ISID, TSIH and CID stay constant during a login.
        send_failure(stream, &req, stat_sn, LoginStatus::INITIATOR_ERROR).await;
        return Err(LoginEnd::Refused);
    }
    match text.push(&req.data, req.cont) {
        Ok(Some(keys)) => Ok(Request::Whole(req, keys)),
        Ok(None) => Ok(Request::Piece(req)),
        Err(e) => {
            send_failure(stream, &req, stat_sn, LoginStatus::INITIATOR_ERROR).await;
            Err(LoginEnd::Closed(format!("bad login text: {e}")))
        }
    }
}

/// The operator's record of a new session and what was negotiated for it.
fn log_established(session: &Session, peer: SocketAddr) {
    let p = &session.params;
    info!(
        session = %session.log_id(),
        %peer,
        kind = ?session.kind,
        target = session.target.as_ref().map(|t| t.name.as_str()).unwrap_or("-"),
        header_digest = p.header_digest,
        data_digest = p.data_digest,
        mrdsl_target = p.max_recv_data_segment_length_target,
        mrdsl_initiator = p.max_recv_data_segment_length_initiator,
        max_burst = p.max_burst_length,
        first_burst = p.first_burst_length,
        immediate_data = p.immediate_data,
        initial_r2t = p.initial_r2t,
        max_outstanding_r2t = p.max_outstanding_r2t,
        "login complete"
    );
}

/// Creates the session, reinstating (§6.3.5) an older one with the same initiator port and
/// target, or replacing the connection of the session named by a non-zero TSIH.
async fn open_session(
    registry: &Registry,
    result: &LoginResult,
    tpgt: u16,
    exp_cmd_sn: u32,
) -> Result<Arc<Session>, LoginStatus> {
    let target = match (&result.session_type, &result.target_name) {
        (SessionType::Normal, Some(name)) => Some(registry.target(name).ok_or(LoginStatus::NOT_FOUND)?.clone()),
        (SessionType::Normal, None) => return Err(LoginStatus::MISSING_PARAMETER),
        (SessionType::Discovery, _) => None,
    };
    let target_name = target.as_ref().map(|t| t.name.clone());
    let mut replaced = Vec::new();
    if result.tsih_requested != 0 {
        // §6.3.1: a non-zero TSIH names an existing session; with MaxConnections=1 the only
        // legal case is connection reinstatement of that session's one connection (§6.3.4),
        // which at ErrorRecoveryLevel 0 ends the old connection's tasks.
        let old = registry.sessions.get(result.tsih_requested).ok_or(LoginStatus::SESSION_DOES_NOT_EXIST)?;
        if !old.initiator_name.eq_ignore_ascii_case(&result.initiator_name) || old.isid != result.isid {
            return Err(LoginStatus::SESSION_DOES_NOT_EXIST);
        }
        registry.sessions.remove(old.tsih);
        replaced.push(old);
    } else {
        replaced = registry.sessions.take_reinstated(&result.initiator_name, result.isid, target_name.as_deref(), tpgt);
    }
    for old in &replaced {
        info!(session = %old.log_id(), "session reinstatement: closing the old session");
        old.terminate(REINSTATE_WAIT).await;
    }
    let nexus = target.as_ref().map(|t| {
        // SPC-4 §7.8.6.7: the port's relative identifier is the ALUA layer's (TPGT, or
        // gateway id × 256 + TPGT on a cluster gateway).
        let nexus = ItNexus::new(&result.initiator_name, result.isid, &t.name, tpgt);
        Arc::new(nexus.with_relative_port(t.scsi.relative_port(tpgt)))
    });
    let new = NewSession {
        kind: result.session_type,
        initiator_name: result.initiator_name.clone(),
        isid: result.isid,
        target,
        nexus,
        params: result.params.clone(),
        exp_cmd_sn,
        cmd_window: registry.settings.cmd_window,
    };
    let keep_tsih = (result.tsih_requested != 0).then_some(result.tsih_requested);
    registry.sessions.insert_within(new, keep_tsih, &registry.settings.resources)
}

fn to_machine_request(req: &LoginPdu, keys: Vec<(String, String)>) -> LoginRequest {
    LoginRequest {
        transit: req.transit,
        cont: req.cont,
        csg: Stage::from_bits(req.csg as u8),
        nsg: Stage::from_bits(req.nsg as u8),
        version_max: req.version_max,
        version_min: req.version_min,
        isid: req.isid,
        tsih: req.tsih,
        cid: req.cid,
        cmd_sn: req.cmd_sn,
        exp_stat_sn: req.exp_stat_sn,
        keys,
    }
}

fn to_pdu_stage(s: Stage) -> PduStage {
    match s {
        Stage::Security => PduStage::Security,
        Stage::Operational => PduStage::Operational,
        Stage::FullFeature => PduStage::FullFeature,
        // The machine never answers with the reserved stage; keep the request's stage safe.
        Stage::Reserved => PduStage::Security,
    }
}

fn encode_keys(reply: &LoginReply) -> Bytes {
    text::encode(&reply.keys)
}

#[allow(clippy::too_many_arguments)]
fn response(
    req: &LoginPdu,
    seq: TargetSeq,
    transit: bool,
    csg: PduStage,
    nsg: PduStage,
    status: LoginStatus,
    tsih: u16,
    data: Bytes,
) -> LoginResponse {
    LoginResponse {
        transit,
        cont: false,
        csg,
        nsg,
        // §11.13.2-3: we speak version 0x00 only.
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih,
        itt: req.itt,
        seq,
        status_class: status.class,
        status_detail: status.detail,
        data,
    }
}

/// A Login Request view built from raw header fields when the request itself failed to decode.
fn login_stub(pdu: &pdu::Pdu) -> LoginPdu {
    let b = pdu.bhs();
    LoginPdu {
        transit: false,
        cont: false,
        csg: PduStage::Security,
        nsg: PduStage::Security,
        version_max: 0,
        version_min: 0,
        isid: b.bytes()[8..14].try_into().unwrap(),
        tsih: 0,
        itt: b.itt(),
        cid: b.u16_at(20),
        cmd_sn: b.u32_at(24),
        exp_stat_sn: b.u32_at(28),
        data: Bytes::new(),
    }
}

async fn send_failure(stream: &mut TcpStream, req: &LoginPdu, stat_sn: u32, status: LoginStatus) {
    let seq = TargetSeq { stat_sn, exp_cmd_sn: req.cmd_sn, max_cmd_sn: req.cmd_sn };
    let rsp = response(req, seq, false, req.csg, req.csg, status, 0, Bytes::new());
    let _ = send(stream, &rsp).await;
}

async fn send(stream: &mut TcpStream, rsp: &LoginResponse) -> Result<(), LoginEnd> {
    let bytes = rsp.encode().to_bytes(Digests::default());
    stream.write_all(&bytes).await.map_err(|e| LoginEnd::Closed(format!("write: {e}")))
}

/// Reads one whole PDU during login (no digests, 8 KiB data segments at most).
async fn read_pdu(stream: &mut TcpStream, buf: &mut BytesMut, framer: &Framer) -> Result<pdu::Pdu, LoginEnd> {
    loop {
        match framer.decode(buf) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(LoginEnd::Closed(format!("login framing: {e}"))),
        }
        let n = stream.read_buf(buf).await.map_err(|e| LoginEnd::Closed(format!("read: {e}")))?;
        if n == 0 {
            return Err(LoginEnd::Closed("peer closed during login".into()));
        }
    }
}
