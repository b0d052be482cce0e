//! Sessions (RFC 7143 §4.2.7, §5.3): identity, negotiated parameters, the command window, and
//! the table that allocates TSIHs and performs session reinstatement (§6.3.5). Their SCSI
//! tasks live in the logical units' task sets (crate::scsi::task_set).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::limits::ResourceLimits;
use super::login::{LoginStatus, Negotiated, SessionType};
use super::registry::{PortalAddr, TargetEntry};
use crate::scsi::ItNexus;

/// The session's command window (RFC 7143 §4.2.2.1). ExpCmdSN (high 32 bits) and the number
/// of commands in flight (low 32 bits) share one atomic so every reader sees a consistent pair:
/// MaxCmdSN = ExpCmdSN - 1 + depth - in_flight then never moves backwards.
pub struct SeqState {
    packed: AtomicU64,
    depth: u32,
}

impl SeqState {
    pub fn new(exp_cmd_sn: u32, depth: u32) -> SeqState {
        SeqState { packed: AtomicU64::new((exp_cmd_sn as u64) << 32), depth: depth.max(1) }
    }

    /// (ExpCmdSN, MaxCmdSN) to stamp into a PDU.
    pub fn get(&self) -> (u32, u32) {
        let v = self.packed.load(Ordering::Acquire);
        let exp = (v >> 32) as u32;
        let in_flight = (v as u32).min(self.depth);
        (exp, exp.wrapping_sub(1).wrapping_add(self.depth - in_flight))
    }

    /// A non-immediate command was accepted: ExpCmdSN advances and it is in flight.
    pub fn accept_command(&self) {
        self.packed.fetch_add((1 << 32) + 1, Ordering::AcqRel);
    }

    /// A non-immediate PDU that occupies no task slot (NOP-Out, Text, Logout, TMF) was accepted.
    pub fn accept_other(&self) {
        self.packed.fetch_add(1 << 32, Ordering::AcqRel);
    }

    /// A command finished: its window slot opens again.
    pub fn complete_command(&self) {
        self.packed.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a non-immediate CmdSN is the next expected one, later in the window, or outside.
    pub fn classify(&self, cmd_sn: u32) -> CmdSnClass {
        let (exp, max) = self.get();
        if cmd_sn == exp && pdu::serial::le(exp, max) {
            CmdSnClass::Next
        } else if pdu::serial::in_window(cmd_sn, exp, max) {
            CmdSnClass::Later
        } else {
            CmdSnClass::Outside
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdSnClass {
    Next,
    /// Inside the window but ahead of ExpCmdSN: held until the gap fills (§4.2.2.1).
    Later,
    /// Outside the window or a duplicate: silently ignored (§4.2.2.1).
    Outside,
}

/// Where a session's connection came from, for operators (src/admin). Set once after login.
#[derive(Clone, Debug)]
pub struct SessionOrigin {
    pub peer: std::net::SocketAddr,
    pub portal: PortalAddr,
    pub cid: u16,
}

pub struct Session {
    pub tsih: u16,
    pub kind: SessionType,
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target: Option<Arc<TargetEntry>>,
    /// The I_T nexus of a normal session (SAM-5 §4.7, RFC 7143 §4.2.7.1).
    pub nexus: Option<Arc<ItNexus>>,
    pub params: Negotiated,
    pub seq: SeqState,
    /// Set to true to make the session's connection close (reinstatement, cold reset).
    kill: watch::Sender<bool>,
    /// Becomes true once the connection has ended and its tasks are gone.
    done: watch::Sender<bool>,
    /// Admin view (src/admin): when the session was created and where its connection came from.
    pub login_time: std::time::SystemTime,
    origin: std::sync::OnceLock<SessionOrigin>,
    /// The connection's send side, for answers that do not come from the reader (TAS).
    writer: std::sync::OnceLock<super::writer::WriterHandle>,
}

impl Session {
    /// A short tag for log lines: initiator, ISID and TSIH.
    pub fn log_id(&self) -> String {
        let isid: String = self.isid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/0x{isid}/tsih={}", self.initiator_name, self.tsih)
    }

    /// Records the connection's addresses (admin view); later calls are ignored.
    pub fn set_origin(&self, origin: SessionOrigin) {
        let _ = self.origin.set(origin);
    }

    pub fn origin(&self) -> Option<&SessionOrigin> {
        self.origin.get()
    }

    /// Records the connection's send side once Full Feature Phase starts.
    pub fn set_writer(&self, writer: super::writer::WriterHandle) {
        let _ = self.writer.set(writer);
    }

    pub fn kill_signal(&self) -> watch::Receiver<bool> {
        self.kill.subscribe()
    }

    /// Asks the connection to close and waits (bounded) until it has.
    pub async fn terminate(&self, wait: Duration) {
        self.kill.send_replace(true);
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
    }

    /// Makes the connection close without waiting (its writer could not deliver).
    pub fn kill_connection(&self) {
        self.kill.send_replace(true);
    }

    /// Called by the connection when it has ended and drained its tasks.
    pub fn mark_done(&self) {
        self.done.send_replace(true);
    }
}

/// SAM-5 §5.6: a task of this session that task management ended on behalf of another I_T
/// nexus, with TAS set, is answered TASK ABORTED.
impl crate::scsi::StatusSink for Session {
    fn task_aborted(&self, itt: u32) {
        let (Some(writer), Ok(runtime)) = (self.writer.get(), tokio::runtime::Handle::try_current()) else { return };
        let rsp = pdu::msg::ScsiResponse {
            residual: pdu::msg::Residual::None,
            bidi_residual: pdu::msg::Residual::None,
            response: 0,
            status: crate::scsi::task::status::TASK_ABORTED,
            itt,
            seq: pdu::msg::TargetSeq::default(),
            exp_data_sn: 0,
            data: bytes::Bytes::new(),
        };
        let writer = writer.clone();
        runtime.spawn(async move { writer.send(rsp.encode(), super::writer::StatSn::Advance).await });
    }
}

/// All live sessions, keyed by TSIH.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    sessions: HashMap<u16, Arc<Session>>,
    last_tsih: u16,
}

pub struct NewSession {
    pub kind: SessionType,
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target: Option<Arc<TargetEntry>>,
    pub nexus: Option<Arc<ItNexus>>,
    pub params: Negotiated,
    /// CmdSN of the last login request: the first ExpCmdSN of Full Feature Phase (§11.12.7).
    pub exp_cmd_sn: u32,
    pub cmd_window: u32,
}

impl SessionTable {
    /// Sessions with the same initiator name, ISID, target and (for a normal session) target
    /// portal group as a new leading login: RFC 7143 §6.3.5 session reinstatement closes them
    /// before the new session starts. The same initiator port through another portal group is
    /// another I_T nexus (RFC 7143 §4.2.7.1), a session of its own — a multipath host's second
    /// path, whose PR registration is its own.
    pub fn take_reinstated(
        &self,
        initiator: &str,
        isid: [u8; 6],
        target: Option<&str>,
        tpgt: u16,
    ) -> Vec<Arc<Session>> {
        let mut inner = self.inner.lock().unwrap();
        let old: Vec<u16> = inner
            .sessions
            .values()
            .filter(|s| {
                s.initiator_name.eq_ignore_ascii_case(initiator)
                    && s.isid == isid
                    && s.target.as_ref().map(|t| t.name.as_str()) == target
                    && s.nexus.as_ref().is_none_or(|n| n.target.tpgt == tpgt)
            })
            .map(|s| s.tsih)
            .collect();
        old.iter().filter_map(|tsih| inner.sessions.remove(tsih)).collect()
    }

    /// Registers a session within the session limits: a login that would exceed the total or
    /// the target's count is refused with 03/02 Out of resources (RFC 7143 §11.13.5). The check
    /// and the insertion happen under one lock, so concurrent logins cannot overshoot.
    pub fn insert_within(
        &self,
        new: NewSession,
        keep: Option<u16>,
        limits: &ResourceLimits,
    ) -> Result<Arc<Session>, LoginStatus> {
        let mut inner = self.inner.lock().unwrap();
        let total = inner.sessions.len();
        let target = new.target.as_ref().map(|t| t.name.as_str());
        let of_target = target.map_or(0, |name| {
            inner.sessions.values().filter(|s| s.target.as_ref().is_some_and(|t| t.name == name)).count()
        });
        if total >= limits.max_sessions as usize
            || (target.is_some() && of_target >= limits.max_sessions_per_target as usize)
        {
            tracing::warn!(total, of_target, target, "session limit reached, refusing the login");
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        Self::insert_locked(&mut inner, new, keep).ok_or(LoginStatus::OUT_OF_RESOURCES)
    }

    /// Registers a session under a fresh non-zero TSIH (RFC 7143 §11.12.6: 0 is reserved).
    /// `keep` reuses a TSIH whose session was just removed (connection reinstatement, §6.3.4).
    fn insert_locked(inner: &mut TableInner, new: NewSession, keep: Option<u16>) -> Option<Arc<Session>> {
        if inner.sessions.len() >= u16::MAX as usize - 1 {
            return None;
        }
        let tsih = match keep {
            Some(t) if t != 0 && !inner.sessions.contains_key(&t) => t,
            _ => {
                let mut tsih = inner.last_tsih;
                loop {
                    tsih = tsih.wrapping_add(1);
                    if tsih != 0 && !inner.sessions.contains_key(&tsih) {
                        break;
                    }
                }
                inner.last_tsih = tsih;
                tsih
            }
        };
        let session = Arc::new(Session {
            tsih,
            kind: new.kind,
            initiator_name: new.initiator_name,
            isid: new.isid,
            target: new.target,
            nexus: new.nexus,
            params: new.params,
            seq: SeqState::new(new.exp_cmd_sn, new.cmd_window),
            kill: watch::channel(false).0,
            done: watch::channel(false).0,
            login_time: std::time::SystemTime::now(),
            origin: std::sync::OnceLock::new(),
            writer: std::sync::OnceLock::new(),
        });
        inner.sessions.insert(tsih, session.clone());
        Some(session)
    }

    pub fn get(&self, tsih: u16) -> Option<Arc<Session>> {
        self.inner.lock().unwrap().sessions.get(&tsih).cloned()
    }

    pub fn remove(&self, tsih: u16) {
        self.inner.lock().unwrap().sessions.remove(&tsih);
    }

    /// Removes `session` unless its TSIH already belongs to a successor (§6.3.4 reuses it).
    pub fn remove_if_same(&self, session: &Arc<Session>) {
        let mut inner = self.inner.lock().unwrap();
        if inner.sessions.get(&session.tsih).is_some_and(|s| Arc::ptr_eq(s, session)) {
            inner.sessions.remove(&session.tsih);
        }
    }

    /// Normal sessions logged in to `target` (for LUN and target resets).
    pub fn of_target(&self, target: &str) -> Vec<Arc<Session>> {
        self.inner
            .lock()
            .unwrap()
            .sessions
            .values()
            .filter(|s| s.target.as_ref().is_some_and(|t| t.name == target))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.inner.lock().unwrap().sessions.values().cloned().collect()
    }
}
