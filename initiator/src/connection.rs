//! One connection of an iSCSI session in Full Feature Phase, driven from a single task: commands
//! are queued as PDUs and written with vectored non-blocking writes while responses are read and
//! framed from the same loop, so neither direction can stall the other and no channel sits
//! between the workload and the socket. A session's connections (MC/S, RFC 7143 §5.3) share
//! only its command window, a mutex that is uncontended with one connection.
//!
//! Covers what a load generator needs at ErrorRecoveryLevel 0: CmdSN window (RFC 7143 §4.2.2.1),
//! immediate and unsolicited data within FirstBurstLength (§13.10, §13.11, §13.14), Data-Out in
//! answer to R2T (§11.8, §11.7) in MaxRecvDataSegmentLength pieces, Data-In reassembly with status
//! in the last Data-In (§11.7.4), NOP-In pings answered (§11.19), and logout (§11.14).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use pdu::msg::scsi::attr;
use pdu::msg::{logout, DataOut, LogoutRequest, NopOut, Residual, ScsiCommand, TargetPdu, TargetSeq};
use pdu::{serial, Framer, OutPdu, Pdu, WireWriter, RESERVED_TAG};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::cdb;
use crate::error::Error;
use crate::login::{self, AddConnection, LoginOptions, SessionParams};
use crate::raw::RawConnection;
use crate::url::IscsiUrl;

/// One SCSI command to send.
#[derive(Clone, Debug)]
pub struct Request {
    pub cdb: [u8; 16],
    /// Data for a write (empty for a read); sent without copying.
    pub write_data: Bytes,
    /// Expected read length in bytes (0 for a write).
    pub read_len: u32,
    /// Keep the Data-In payload and hand it back in the completion (verification, setup).
    pub collect: bool,
    /// The caller's cookie, returned in the completion.
    pub tag: u64,
}

/// One finished command.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub status: u8,
    pub sense: Option<Bytes>,
    /// Data-In payload when `collect` was set.
    pub data: Bytes,
    /// Data-In bytes received.
    pub received: u64,
    pub residual: Residual,
    pub started: Instant,
}

struct Task {
    itt: u32,
    tag: u64,
    write_data: Bytes,
    read_len: u32,
    collect: bool,
    pieces: Vec<(u32, Bytes)>,
    received: u64,
    started: Instant,
}

/// Commands in flight are addressed by ITT = slot | (reuse counter << 16), so a response for a
/// slot that has since been reused is recognised as bogus.
const MAX_SLOTS: usize = 0xfff0;
/// Chunks per vectored write; more buys nothing on Linux (IOV_MAX is 1024 but gains flatten).
const MAX_IOVECS: usize = 64;
const READ_RESERVE: usize = 256 * 1024;

/// The session-wide command window (RFC 7143 §4.2.2.1): CmdSN is numbered across all the
/// session's connections, and any connection's responses move ExpCmdSN/MaxCmdSN.
#[derive(Debug)]
struct Window {
    cmd_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
}

impl Window {
    fn open(&self) -> bool {
        serial::le(self.cmd_sn, self.max_cmd_sn)
    }

    /// ExpCmdSN/MaxCmdSN only move forward, and a MaxCmdSN below ExpCmdSN − 1 is ignored.
    fn update(&mut self, seq: &TargetSeq) {
        if serial::lt(seq.max_cmd_sn, seq.exp_cmd_sn.wrapping_sub(1)) {
            return;
        }
        if serial::gt(seq.exp_cmd_sn, self.exp_cmd_sn) {
            self.exp_cmd_sn = seq.exp_cmd_sn;
        }
        if serial::gt(seq.max_cmd_sn, self.max_cmd_sn) {
            self.max_cmd_sn = seq.max_cmd_sn;
        }
    }
}

/// How a connection answers R2Ts (RFC 7143 §11.8). Anything but `Answer` is a test hook: it
/// leaves writes waiting for Data-Out, e.g. to be aborted by PREEMPT AND ABORT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum R2tPolicy {
    /// Send the solicited Data-Out at once.
    Answer,
    /// Send it after a random delay of up to this long (each R2T on its own).
    Delay(Duration),
    /// Never send it.
    Hold,
}

/// The Data-Out an R2T asked for: bytes `from..to` of task `itt`, for transfer tag `ttt`.
#[derive(Clone, Copy, Debug)]
struct DelayedR2t {
    itt: u32,
    ttt: u32,
    from: usize,
    to: usize,
}

pub struct Connection {
    stream: TcpStream,
    framer: Framer,
    params: SessionParams,
    rx: BytesMut,
    writer: WireWriter,
    out: VecDeque<Bytes>,
    lun: u64,
    window: Arc<Mutex<Window>>,
    tsih: u16,
    cid: u16,
    /// Per connection: StatSN is numbered per connection (RFC 7143 §4.2.2.2).
    exp_stat_sn: u32,
    slots: Vec<Option<Task>>,
    reuse: Vec<u16>,
    free: Vec<usize>,
    outstanding: usize,
    logout_done: bool,
    r2t_policy: R2tPolicy,
    /// R2Ts answered later (`R2tPolicy::Delay`), with when.
    delayed: Vec<(Instant, DelayedR2t)>,
    /// NOP-In pings answered (RFC 7143 §11.19).
    pub pings_answered: u64,
    /// How long the target may stay silent while commands are outstanding.
    pub io_timeout: Duration,
}

impl Connection {
    /// Connects, logs in a new session, and enters Full Feature Phase.
    pub async fn connect(url: &IscsiUrl, opts: &LoginOptions) -> Result<Connection, Error> {
        Self::open(url, opts, None).await
    }

    /// Adds a connection with ID `cid` to this connection's session (RFC 7143 §5.3.1). The
    /// session must have negotiated MaxConnections above its current connection count.
    pub async fn add_connection(&self, url: &IscsiUrl, opts: &LoginOptions, cid: u16) -> Result<Connection, Error> {
        let add = AddConnection {
            tsih: self.tsih,
            cid,
            cmd_sn: self.window.lock().expect("window lock").cmd_sn,
            session: self.params.clone(),
        };
        let mut c = Self::open(url, opts, Some(&add)).await?;
        // One window for the whole session: the new connection shares ours.
        c.window = self.window.clone();
        Ok(c)
    }

    async fn open(url: &IscsiUrl, opts: &LoginOptions, add: Option<&AddConnection>) -> Result<Connection, Error> {
        let in_context = |e: Error| match e {
            Error::Other(why) => Error::Other(format!("{url}: {why}")),
            Error::Timeout(why) => Error::Timeout(format!("{url}: {why}")),
            refused_or_closed => refused_or_closed,
        };
        let mut raw = RawConnection::connect(&url.address()).await.map_err(in_context)?;
        let done = login::login(&mut raw, &opts.for_url(url), add).await.map_err(in_context)?;
        Ok(Connection::from_raw(raw, done, url.lun_field(), add.map_or(opts.cid, |a| a.cid)))
    }

    /// Takes over a raw connection that `login::login` brought into Full Feature Phase; its
    /// commands address `lun_field` (see `cdb::lun_field`).
    pub fn from_raw(raw: RawConnection, done: login::LoggedIn, lun_field: u64, cid: u16) -> Connection {
        let (stream, mut rx) = raw.into_parts();
        rx.reserve(READ_RESERVE);
        let params = done.params;
        Connection {
            stream,
            framer: Framer { digests: params.digests, max_data_segment: params.our_max_recv_data_segment_length },
            params,
            rx,
            writer: WireWriter::new(),
            out: VecDeque::new(),
            lun: lun_field,
            window: Arc::new(Mutex::new(Window {
                cmd_sn: done.cmd_sn,
                exp_cmd_sn: done.exp_cmd_sn,
                max_cmd_sn: done.max_cmd_sn,
            })),
            tsih: done.tsih,
            cid,
            exp_stat_sn: done.exp_stat_sn,
            slots: Vec::new(),
            reuse: Vec::new(),
            free: Vec::new(),
            outstanding: 0,
            logout_done: false,
            r2t_policy: R2tPolicy::Answer,
            delayed: Vec::new(),
            pings_answered: 0,
            io_timeout: Duration::from_secs(30),
        }
    }

    /// How R2Ts are answered from now on (a test hook: writes left waiting for Data-Out).
    pub fn set_r2t_policy(&mut self, policy: R2tPolicy) {
        self.r2t_policy = policy;
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// This connection's ID within its session.
    pub fn cid(&self) -> u16 {
        self.cid
    }

    /// Whether the CmdSN window admits another command (RFC 7143 §4.2.2.1).
    pub fn can_submit(&self) -> bool {
        self.outstanding < MAX_SLOTS && self.window.lock().expect("window lock").open()
    }

    /// Queues a command and whatever data may go with it unsolicited. Call `poll` to send.
    pub fn submit(&mut self, req: Request) -> Result<(), Error> {
        let cmd_sn = {
            let mut w = self.window.lock().expect("window lock");
            if !w.open() || self.outstanding >= MAX_SLOTS {
                return Err(Error::new("CmdSN window closed (MaxCmdSN reached)"));
            }
            let sn = w.cmd_sn;
            w.cmd_sn = sn.wrapping_add(1);
            sn
        };
        let len = req.write_data.len();
        if len > u32::MAX as usize || (len > 0 && req.read_len > 0) {
            return Err(Error::new("a request is either a read or a write"));
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.reuse.push(0);
                self.slots.len() - 1
            }
        };
        self.reuse[slot] = self.reuse[slot].wrapping_add(1);
        let itt = slot as u32 | (self.reuse[slot] as u32) << 16;
        let p = &self.params;
        // RFC 7143 §13.11/§13.14: immediate data up to FirstBurstLength and the target's MRDSL.
        let immediate = if p.immediate_data {
            len.min(p.first_burst_length as usize).min(p.target_max_recv_data_segment_length as usize)
        } else {
            0
        };
        // RFC 7143 §13.10: with InitialR2T=No the rest of the first burst follows unsolicited.
        let unsolicited_end = if p.initial_r2t { immediate } else { len.min(p.first_burst_length as usize) };
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: unsolicited_end == immediate,
            read: req.read_len > 0,
            write: len > 0,
            attr: attr::SIMPLE,
            lun: self.lun,
            itt,
            expected_data_transfer_length: if len > 0 { len as u32 } else { req.read_len },
            cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: req.cdb,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: req.write_data.slice(..immediate),
        };
        self.writer.push(&cmd.encode(), self.params.digests);
        if unsolicited_end > immediate {
            self.queue_data_out(itt, RESERVED_TAG, &req.write_data, immediate, unsolicited_end);
        }
        self.slots[slot] = Some(Task {
            itt,
            tag: req.tag,
            write_data: req.write_data,
            read_len: req.read_len,
            collect: req.collect,
            pieces: Vec::new(),
            received: 0,
            started: Instant::now(),
        });
        self.outstanding += 1;
        Ok(())
    }

    /// Data-Out PDUs for `[from, to)` of `data` as one sequence (DataSN from 0, F on the last),
    /// each at most the target's MaxRecvDataSegmentLength (RFC 7143 §11.7).
    fn queue_data_out(&mut self, itt: u32, ttt: u32, data: &Bytes, from: usize, to: usize) {
        let step = self.params.target_max_recv_data_segment_length as usize;
        let mut at = from;
        let mut data_sn = 0;
        while at < to {
            let end = (at + step).min(to);
            let pdu = DataOut {
                final_bit: end == to,
                lun: self.lun,
                itt,
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: at as u32,
                data: data.slice(at..end),
            };
            self.writer.push(&pdu.encode(), self.params.digests);
            data_sn += 1;
            at = end;
        }
    }

    fn queue(&mut self, pdu: &OutPdu) {
        self.writer.push(pdu, self.params.digests);
    }

    /// Writes what the socket takes now. Returns whether anything is left.
    fn flush(&mut self) -> Result<bool, Error> {
        if !self.writer.is_empty() {
            self.out.extend(self.writer.take_chunks());
        }
        while !self.out.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.out.iter().take(MAX_IOVECS).map(|b| IoSlice::new(b)).collect();
            match self.stream.try_write_vectored(&slices) {
                Ok(0) => return Err(Error::new("target closed the connection")),
                Ok(mut n) => {
                    while n > 0 {
                        let front = self.out.front_mut().expect("written bytes were queued");
                        if front.len() <= n {
                            n -= front.len();
                            self.out.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Sends queued PDUs and handles what arrives until at least one command completes (or, with
    /// nothing outstanding, until everything queued is written). Silence for `io_timeout` with
    /// commands outstanding is an error.
    pub async fn poll(&mut self, done: &mut Vec<Completion>) -> Result<(), Error> {
        self.poll_until_completion(done, false).await
    }

    /// Like `poll`, but keeps reading while nothing is outstanding and never calls silence an
    /// error: for a driver that owns the connection for its whole life (NOP-In pings must be
    /// answered, aborted commands may never be). Cancel-safe.
    pub async fn serve(&mut self, done: &mut Vec<Completion>) -> Result<(), Error> {
        self.poll_until_completion(done, true).await
    }

    async fn poll_until_completion(&mut self, done: &mut Vec<Completion>, serving: bool) -> Result<(), Error> {
        let before = done.len();
        loop {
            self.release_due_r2ts();
            let pending_write = self.flush()?;
            if done.len() > before || (!serving && self.outstanding == 0 && !pending_write) {
                return Ok(());
            }
            let interest = if pending_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let next_due = self.delayed.iter().map(|(due, _)| *due).min();
            let wait = next_due.map_or(self.io_timeout, |due| due.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait.min(self.io_timeout), self.stream.ready(interest)).await {
                Ok(ready) => {
                    if ready?.is_readable() {
                        self.receive(done)?;
                    }
                }
                Err(_) if serving || next_due.is_some() => {}
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "target silent for {:?} with {} commands outstanding",
                        self.io_timeout, self.outstanding
                    )))
                }
            }
        }
    }

    /// Queues the Data-Out of delayed R2Ts whose time has come.
    fn release_due_r2ts(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, r) = self.delayed.swap_remove(i);
                // A task that ended meanwhile (e.g. TASK ABORTED) needs no Data-Out any more.
                if let Ok(task) = self.task_mut(r.itt) {
                    let data = task.write_data.clone();
                    self.queue_data_out(r.itt, r.ttt, &data, r.from, r.to);
                }
            } else {
                i += 1;
            }
        }
    }

    fn receive(&mut self, done: &mut Vec<Completion>) -> Result<(), Error> {
        if self.rx.capacity() - self.rx.len() < 4096 {
            self.rx.reserve(READ_RESERVE);
        }
        match self.stream.try_read_buf(&mut self.rx) {
            Ok(0) => return Err(Error::new("target closed the connection")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        while let Some(p) = self.framer.decode(&mut self.rx)? {
            self.handle(p, done)?;
        }
        Ok(())
    }

    fn update_window(&mut self, seq: &TargetSeq) {
        self.window.lock().expect("window lock").update(seq);
    }

    /// The session's next CmdSN, carried (not consumed) by immediate PDUs (§4.2.2.1).
    fn next_cmd_sn(&self) -> u32 {
        self.window.lock().expect("window lock").cmd_sn
    }

    fn status_seen(&mut self, stat_sn: u32) {
        let next = stat_sn.wrapping_add(1);
        if serial::gt(next, self.exp_stat_sn) {
            self.exp_stat_sn = next;
        }
    }

    fn task_mut(&mut self, itt: u32) -> Result<&mut Task, Error> {
        let slot = (itt & 0xffff) as usize;
        match self.slots.get_mut(slot).and_then(|t| t.as_mut()) {
            Some(t) if t.itt == itt => Ok(t),
            _ => Err(Error::Other(format!("target answered unknown task {itt:#010x}"))),
        }
    }

    fn complete(&mut self, itt: u32, status: u8, sense: Option<Bytes>, residual: Residual, done: &mut Vec<Completion>) {
        let slot = (itt & 0xffff) as usize;
        let Some(task) = self.slots[slot].take() else { return };
        self.free.push(slot);
        self.outstanding -= 1;
        let data = if task.collect { assemble(task.pieces, task.received) } else { Bytes::new() };
        done.push(Completion {
            tag: task.tag,
            status,
            sense,
            data,
            received: task.received,
            residual,
            started: task.started,
        });
    }

    fn handle(&mut self, p: Pdu, done: &mut Vec<Completion>) -> Result<(), Error> {
        if !p.data_digest_ok() {
            // ERL 0 has no recovery for a damaged data segment (RFC 7143 §7.8).
            return Err(Error::new("data digest error on a PDU from the target"));
        }
        match TargetPdu::decode(&p)? {
            TargetPdu::DataIn(d) => {
                self.update_window(&d.seq);
                let task = self.task_mut(d.itt)?;
                let end = d.buffer_offset as u64 + d.data.len() as u64;
                if end > task.read_len as u64 {
                    return Err(Error::Other(format!(
                        "Data-In beyond the expected length ({end} > {})",
                        task.read_len
                    )));
                }
                task.received += d.data.len() as u64;
                if task.collect && !d.data.is_empty() {
                    task.pieces.push((d.buffer_offset, d.data));
                }
                if let Some(status) = d.status {
                    // RFC 7143 §11.7.4: status with the last Data-In, no SCSI Response follows.
                    self.status_seen(d.seq.stat_sn);
                    self.complete(d.itt, status, None, d.residual, done);
                }
            }
            TargetPdu::ScsiResponse(r) => {
                self.update_window(&r.seq);
                self.status_seen(r.seq.stat_sn);
                self.task_mut(r.itt)?;
                if r.response != 0 {
                    return Err(Error::Other(format!(
                        "target reported iSCSI response {:#04x} (command failed in the target)",
                        r.response
                    )));
                }
                let sense = r.sense();
                self.complete(r.itt, r.status, sense, r.residual, done);
            }
            TargetPdu::R2t(r) => {
                self.update_window(&r.seq);
                let task = self.task_mut(r.itt)?;
                let data = task.write_data.clone();
                let from = r.buffer_offset as usize;
                let to = from + r.desired_data_transfer_length as usize;
                if to > data.len() || r.desired_data_transfer_length == 0 {
                    return Err(Error::Other(format!("R2T for bytes {from}..{to} of a {}-byte write", data.len())));
                }
                match self.r2t_policy {
                    R2tPolicy::Answer => self.queue_data_out(r.itt, r.ttt, &data, from, to),
                    R2tPolicy::Hold => {}
                    R2tPolicy::Delay(max) => {
                        let delay = Duration::from_micros(rand::random::<u64>() % (max.as_micros() as u64 + 1));
                        let r2t = DelayedR2t { itt: r.itt, ttt: r.ttt, from, to };
                        self.delayed.push((Instant::now() + delay, r2t));
                    }
                }
            }
            TargetPdu::NopIn(n) => {
                self.update_window(&n.seq);
                if n.itt != RESERVED_TAG {
                    self.status_seen(n.seq.stat_sn);
                }
                if n.ttt != RESERVED_TAG {
                    // RFC 7143 §11.18: a ping from the target is answered with its TTT, immediately.
                    let reply = NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmd_sn: self.next_cmd_sn(),
                        exp_stat_sn: self.exp_stat_sn,
                        data: n.data,
                    };
                    self.queue(&reply.encode());
                    self.pings_answered += 1;
                }
            }
            TargetPdu::Logout(l) => {
                self.status_seen(l.seq.stat_sn);
                self.logout_done = true;
                if l.response != logout::response::CLOSED {
                    return Err(Error::Other(format!("logout refused (response {})", l.response)));
                }
            }
            TargetPdu::Async(a) => {
                self.update_window(&a.seq);
                if a.event != pdu::msg::async_msg::event::SCSI_ASYNC_EVENT {
                    return Err(Error::Other(format!(
                        "target sent asynchronous event {} (logout/drop requested)",
                        a.event
                    )));
                }
            }
            TargetPdu::Reject(r) => {
                return Err(Error::Other(format!("target rejected a PDU, reason {:#04x}", r.reason)));
            }
            other => return Err(Error::Other(format!("unexpected PDU from target: {other:?}"))),
        }
        Ok(())
    }

    /// Sends one command and waits for it; completions of other commands are dropped, so use
    /// this only when nothing else is in flight (setup, tests).
    pub async fn execute(&mut self, req: Request) -> Result<Completion, Error> {
        let tag = req.tag;
        while !self.can_submit() {
            let mut sink = Vec::new();
            self.poll(&mut sink).await?;
        }
        self.submit(req)?;
        let mut done = Vec::new();
        loop {
            self.poll(&mut done).await?;
            if let Some(i) = done.iter().position(|c| c.tag == tag) {
                return Ok(done.swap_remove(i));
            }
        }
    }

    /// Runs `request` until it gets past the unit attentions every new nexus first sees (SAM-5
    /// §5.14, at most 8); returns its data when it ends GOOD.
    pub async fn execute_past_unit_attentions(&mut self, request: Request) -> Result<Bytes, Error> {
        for _ in 0..8 {
            let done = self.execute(request.clone()).await?;
            let sense = done.sense.as_deref().and_then(crate::sense::triple);
            match (done.status, sense) {
                (cdb::CHECK_CONDITION, Some((cdb::UNIT_ATTENTION, _, _))) => continue,
                (cdb::GOOD, _) => return Ok(done.data),
                (status, _) => return Err(Error::Other(crate::sense::describe_status(status, done.sense.as_deref()))),
            }
        }
        Err(Error::new("unit attentions never ended"))
    }

    /// TEST UNIT READY until the unit attentions of a new I_T nexus are taken (SAM-5 §5.14), so
    /// the commands that matter do not get them.
    pub async fn clear_unit_attention(&mut self) -> Result<(), Error> {
        let tur =
            Request { cdb: cdb::test_unit_ready(), write_data: Bytes::new(), read_len: 0, collect: false, tag: 0 };
        self.execute_past_unit_attentions(tur)
            .await
            .map(|_| ())
            .map_err(|e| Error::Other(format!("TEST UNIT READY: {e}")))
    }

    /// Waits for outstanding commands, then logs out (RFC 7143 §11.14): the session from its
    /// leading connection (CID 0), only this connection from an added one. Log the added
    /// connections out first.
    pub async fn logout(mut self) -> Result<(), Error> {
        let mut done = Vec::new();
        while self.outstanding > 0 {
            self.poll(&mut done).await?;
            done.clear();
        }
        let req = LogoutRequest {
            immediate: true,
            reason: if self.cid == 0 { logout::reason::CLOSE_SESSION } else { logout::reason::CLOSE_CONNECTION },
            itt: 0xffff_fffe,
            cid: self.cid,
            cmd_sn: self.next_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
        };
        self.queue(&req.encode());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logout_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new("no Logout Response within 10 s"));
            }
            let pending = self.flush()?;
            let interest = if pending { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            match tokio::time::timeout(left, self.stream.ready(interest)).await {
                Ok(Ok(r)) if r.is_readable() => {
                    // A target may close right after (istgt sometimes instead of) the Logout
                    // Response; once our request is out, the session ends either way.
                    if let Err(e) = self.receive(&mut done) {
                        if self.logout_done || !pending {
                            break;
                        }
                        return Err(e);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(Error::new("no Logout Response within 10 s")),
            }
        }
        Ok(())
    }
}

/// Joins Data-In pieces by offset into one buffer (no copy for the usual single piece).
fn assemble(mut pieces: Vec<(u32, Bytes)>, received: u64) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 if pieces[0].0 == 0 => pieces.pop().expect("one piece").1,
        _ => {
            let len = pieces.iter().map(|(o, d)| *o as usize + d.len()).max().unwrap_or(0).max(received as usize);
            let mut buf = vec![0u8; len];
            for (off, d) in pieces {
                buf[off as usize..off as usize + d.len()].copy_from_slice(&d);
            }
            Bytes::from(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_orders_pieces_by_offset() {
        let pieces = vec![(4u32, Bytes::from_static(b"5678")), (0, Bytes::from_static(b"1234"))];
        assert_eq!(&assemble(pieces, 8)[..], b"12345678");
        let one = Bytes::from_static(b"abc");
        assert_eq!(assemble(vec![(0, one.clone())], 3), one);
        assert!(assemble(Vec::new(), 0).is_empty());
    }
}
