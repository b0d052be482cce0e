//! Full Feature Phase of one connection (RFC 7143 §4.2.2, §11): the reader loop. It frames
//! PDUs, orders commands by CmdSN, routes Data-Out to transfers, runs SCSI commands (inline when
//! they complete without waiting, else as their own tasks), and answers NOP, Text, TMF and
//! Logout. It never waits for the backend: a command that would wait is spawned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pdu::error::reject_reason;
use pdu::msg::async_msg::event;
use pdu::msg::{AsyncMessage, InitiatorPdu, NopIn, NopOut, Reject, TargetSeq};
use pdu::{Framer, Pdu, RESERVED_TAG};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::budget::DataBudget;
use super::cmd_window::CmdWindow;
use super::data_transfers::DataTransfers;
use super::registry::Registry;
use super::session::{CmdSnClass, Session};
use super::transfer;
use super::writer::{StatSn, WriterHandle};

/// Why the connection ended (logged through `Debug` when the connection closes).
#[derive(Debug)]
#[allow(dead_code)]
pub enum End {
    LoggedOut,
    PeerClosed,
    Killed,
    Shutdown,
    Fatal(String),
}

pub(super) enum Flow {
    Continue,
    Stop(End),
}

pub struct FullFeature {
    pub(super) session: Arc<Session>,
    pub(super) registry: Arc<Registry>,
    pub(super) writer: WriterHandle,
    pub(super) framer: Framer,
    pub(super) cid: u16,
    /// Write data, R2Ts, Target Transfer Tags and the data budget.
    pub(super) data: DataTransfers,
    /// PDUs waiting for their turn in CmdSN order.
    pub(super) window: CmdWindow,
    pub(super) text: super::text::TextState,
    /// The connection's spawned command tasks (inline ones never get here).
    pub(super) tasks: JoinSet<()>,
    /// This nexus' task set on each LU it has addressed (SCSI layer, SAM-5 §4.8).
    pub(super) lun_tasks: HashMap<u64, Arc<crate::scsi::NexusTasks>>,
    ping: Option<(u32, Instant)>,
    last_rx: Instant,
    /// Set once the I_T nexus loss has been handed to the SCSI layer.
    nexus_ended: bool,
}

impl FullFeature {
    pub fn new(session: Arc<Session>, registry: Arc<Registry>, writer: WriterHandle, cid: u16) -> FullFeature {
        let p = &session.params;
        let framer = Framer {
            digests: pdu::Digests { header: p.header_digest, data: p.data_digest },
            max_data_segment: p.max_recv_data_segment_length_target,
        };
        let limits = transfer::Limits {
            first_burst: p.first_burst_length,
            max_burst: p.max_burst_length,
            max_outstanding_r2t: p.max_outstanding_r2t,
            immediate_data: p.immediate_data,
            initial_r2t: p.initial_r2t,
        };
        let budget = Arc::new(DataBudget::new(registry.settings.resources.max_session_data_bytes));
        FullFeature {
            data: DataTransfers::new(writer.clone(), limits, budget),
            window: CmdWindow::default(),
            session,
            registry,
            writer,
            framer,
            cid,
            text: Default::default(),
            tasks: JoinSet::new(),
            lun_tasks: HashMap::new(),
            ping: None,
            last_rx: Instant::now(),
            nexus_ended: false,
        }
    }

    pub async fn run(mut self, mut rd: OwnedReadHalf, mut buf: BytesMut, mut shutdown: watch::Receiver<bool>) -> End {
        let mut kill = self.session.kill_signal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut logout_deadline: Option<Instant> = None;
        let end = 'conn: loop {
            // Answers to the PDUs already read go out together, in one write, after the batch.
            self.writer.begin_batch();
            loop {
                match self.framer.decode(&mut buf) {
                    Ok(Some(pdu)) => {
                        if let Flow::Stop(end) = self.handle(pdu).await {
                            break 'conn end;
                        }
                    }
                    Ok(None) => {
                        self.writer.end_batch();
                        break;
                    }
                    Err(e) => {
                        // Header digest errors and oversized segments leave the byte stream
                        // unusable at ERL 0 (§7.8, §13.12): reject what we can, then drop.
                        warn!(error = %e, "framing error, dropping the connection");
                        if let Some(header) = buf.get(..pdu::BHS_LEN) {
                            let header = Bytes::copy_from_slice(header);
                            if !matches!(e, pdu::DecodeError::HeaderDigest) {
                                self.send_reject(e.reject_reason(), header).await;
                            }
                        }
                        break 'conn End::Fatal(e.to_string());
                    }
                }
            }
            tokio::select! {
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => break End::PeerClosed,
                    Ok(_) => self.last_rx = Instant::now(),
                    Err(e) => break End::Fatal(format!("read: {e}")),
                },
                _ = wait_true(&mut kill) => break End::Killed,
                _ = wait_true(&mut shutdown), if logout_deadline.is_none() => {
                    // §11.9.1 AsyncEvent 1: ask the initiator to log out within Parameter3 s.
                    self.send_async_logout_request(5).await;
                    logout_deadline = Some(Instant::now() + Duration::from_secs(10));
                }
                _ = tick.tick() => {
                    if logout_deadline.is_some_and(|d| Instant::now() >= d) {
                        break End::Shutdown;
                    }
                    if let Some(end) = self.nop_tick().await {
                        break end;
                    }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                permit = self.data.admission.next_grant() => self.data.on_granted(permit, &self.session.seq).await,
            }
        };
        self.finish().await;
        end
    }

    /// Ends every task of the session (ERL 0: a lost connection ends its tasks, §6.1.5) and
    /// waits for them, so nothing of this nexus runs once the connection is gone.
    async fn finish(&mut self) {
        let _ = self.abort_all_tasks();
        self.data.forget_all();
        while self.tasks.join_next().await.is_some() {}
        self.end_nexus();
    }

    /// I_T nexus loss (SAM-5 §6.3.4): the SCSI layer drops what belonged to this nexus (SPC-2
    /// reservation, unit attentions). Once per connection: at logout, or when it ends otherwise.
    pub(super) fn end_nexus(&mut self) {
        if std::mem::replace(&mut self.nexus_ended, true) {
            return;
        }
        if let (Some(target), Some(nexus)) = (&self.session.target, &self.session.nexus) {
            target.scsi.nexus_lost(nexus);
        }
    }

    /// Aborts every task of this nexus on every LU (no responses); the drain says when they
    /// have ended.
    pub(super) fn abort_all_tasks(&self) -> crate::scsi::Drain {
        let mut drain = crate::scsi::Drain::default();
        for tasks in self.lun_tasks.values() {
            drain.merge(tasks.abort_all());
        }
        drain
    }

    /// Target-initiated NOP-In pings on an idle connection (§11.19) and their timeout.
    async fn nop_tick(&mut self) -> Option<End> {
        let settings = &self.registry.settings;
        if let Some((_, sent)) = self.ping {
            if sent.elapsed() >= settings.nop_timeout {
                warn!("no answer to NOP-In ping, dropping the connection");
                return Some(End::Fatal("NOP-In timeout".into()));
            }
            return None;
        }
        let interval = settings.nop_interval?;
        if self.last_rx.elapsed() >= interval {
            let ttt = self.data.next_ttt();
            let ping = NopIn { lun: 0, itt: RESERVED_TAG, ttt, seq: TargetSeq::default(), data: Bytes::new() };
            self.ping = Some((ttt, Instant::now()));
            self.writer.send(ping.encode(), StatSn::Current).await;
        }
        None
    }

    async fn handle(&mut self, pdu: Pdu) -> Flow {
        let msg = match InitiatorPdu::decode(&pdu) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "rejecting PDU");
                self.send_reject(e.reject_reason(), pdu.header_bytes()).await;
                return Flow::Continue;
            }
        };
        match msg {
            InitiatorPdu::DataOut(d) => return self.on_data_out(d, &pdu).await,
            InitiatorPdu::Snack(_) => {
                // SNACK needs ErrorRecoveryLevel ≥ 1; we negotiated 0 (§13.20).
                self.send_reject(reject_reason::PROTOCOL_ERROR, pdu.header_bytes()).await;
                return Flow::Continue;
            }
            InitiatorPdu::Login(_) => {
                // §6: Login Requests are valid only on a connection in login phase.
                self.send_reject(reject_reason::PROTOCOL_ERROR, pdu.header_bytes()).await;
                return Flow::Continue;
            }
            _ => {}
        }
        if !pdu.data_digest_ok() {
            // §7.8: a payload digest error discards the PDU and is answered with a Reject. This
            // includes a SCSI Command with immediate data ("the non-data PDU rule applies"): its
            // CmdSN is not received (§11.17.1) and the initiator retries it to plug the gap.
            self.send_reject(reject_reason::DATA_DIGEST_ERROR, pdu.header_bytes()).await;
            return Flow::Continue;
        }
        let (immediate, cmd_sn) = match &msg {
            InitiatorPdu::ScsiCommand(c) => (c.immediate, c.cmd_sn),
            InitiatorPdu::TaskMgmt(t) => (t.immediate, t.cmd_sn),
            InitiatorPdu::Text(t) => (t.immediate, t.cmd_sn),
            InitiatorPdu::NopOut(n) => (n.immediate, n.cmd_sn),
            InitiatorPdu::Logout(l) => (l.immediate, l.cmd_sn),
            _ => unreachable!("handled above"),
        };
        if immediate {
            // §4.2.2.1: immediate PDUs are delivered at once and do not advance ExpCmdSN.
            if let Flow::Stop(end) = self.deliver(pdu, msg, false).await {
                return Flow::Stop(end);
            }
            // An immediate ABORT TASK may have plugged the gap held PDUs wait behind.
            return self.release_held().await;
        }
        match self.session.seq.classify(cmd_sn) {
            CmdSnClass::Next => {
                if let Flow::Stop(end) = self.deliver(pdu, msg, true).await {
                    return Flow::Stop(end);
                }
                self.release_held().await
            }
            CmdSnClass::Later => {
                self.window.hold(cmd_sn, pdu, msg);
                Flow::Continue
            }
            CmdSnClass::Outside => {
                // §4.2.2.1: silently ignore commands outside the window and duplicates.
                debug!(cmd_sn, "ignoring PDU outside the CmdSN window");
                Flow::Continue
            }
        }
    }

    /// Delivers held PDUs that are now next in line, stepping over plugged CmdSNs.
    async fn release_held(&mut self) -> Flow {
        while let Some((pdu, msg)) = self.window.next_in_line(&self.session.seq) {
            if let Flow::Stop(end) = self.deliver(pdu, msg, true).await {
                return Flow::Stop(end);
            }
        }
        Flow::Continue
    }

    /// Hands one in-order PDU to its handler. `ordered` says it consumed a CmdSN.
    async fn deliver(&mut self, pdu: Pdu, msg: InitiatorPdu, ordered: bool) -> Flow {
        match msg {
            InitiatorPdu::ScsiCommand(cmd) => return self.on_command(cmd, &pdu, ordered).await,
            _ if ordered => self.session.seq.accept_other(),
            _ => {}
        }
        match msg {
            InitiatorPdu::NopOut(nop) => self.on_nop_out(nop).await,
            InitiatorPdu::TaskMgmt(tmf) => self.on_task_mgmt(tmf).await,
            InitiatorPdu::Text(text) => self.on_text(text, &pdu).await,
            InitiatorPdu::Logout(logout) => return self.on_logout(logout).await,
            _ => {}
        }
        Flow::Continue
    }

    async fn on_nop_out(&mut self, nop: NopOut) {
        if nop.itt == RESERVED_TAG {
            // An answer to our ping (§11.18.3).
            if self.ping.is_some_and(|(ttt, _)| ttt == nop.ttt) {
                self.ping = None;
            }
            return;
        }
        // §11.19: echo the ping data, within what the initiator can receive.
        let max = self.session.params.max_recv_data_segment_length_initiator as usize;
        let data = nop.data.slice(..nop.data.len().min(max));
        let rsp = NopIn { lun: nop.lun, itt: nop.itt, ttt: RESERVED_TAG, seq: TargetSeq::default(), data };
        self.writer.send(rsp.encode(), StatSn::Advance).await;
    }

    pub(super) async fn send_reject(&self, reason: u8, header: Bytes) {
        self.registry.counters.reject(reason); // metrics (src/metrics)
        let reject = Reject { reason, seq: TargetSeq::default(), data_sn: 0, header };
        self.writer.send(reject.encode(), StatSn::Advance).await;
    }

    async fn send_async_logout_request(&self, seconds: u16) {
        info!("asking the initiator to log out (shutdown)");
        let msg = AsyncMessage {
            lun: 0,
            seq: TargetSeq::default(),
            event: event::LOGOUT_REQUESTED,
            vcode: 0,
            parameter1: 0,
            parameter2: 0,
            parameter3: seconds,
            data: Bytes::new(),
        };
        self.writer.send(msg.encode(), StatSn::Advance).await;
    }
}

/// Resolves once the flag is true (or its sender is gone). The borrow guard of
/// `wait_for` is dropped here, so callers may await afterwards.
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}
