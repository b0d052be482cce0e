//! The connection's send side: the single owner of StatSN, so StatSN order is wire order
//! (RFC 7143 §4.2.2.2). A PDU is stamped (StatSN, ExpCmdSN, MaxCmdSN) and appended to the send
//! buffer under one lock, and whoever finds the socket idle writes the buffer with vectored
//! non-blocking writes — usually the connection's reader itself, once per batch of PDUs it
//! handled, so a command that completes inline costs no task hand-off and a batch of responses
//! one system call. Only a write the socket cannot take at once is handed to the writer task,
//! which waits for the socket and keeps writing until the buffer is empty.
//!
//! The buffer is bounded in bytes (`max_send_queue_bytes`): a peer that stops reading
//! back-pressures the command tasks instead of growing memory, and once the socket has taken no
//! bytes for `send_timeout` the connection is dropped.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use pdu::{Digests, OutPdu, WireWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, Semaphore};
use tracing::warn;

use super::session::Session;

/// How a PDU uses the StatSN field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatSn {
    /// A status-bearing response: takes the next StatSN (SCSI Response, Data-In with S, TMF,
    /// Text, Logout, NOP-In answering a NOP-Out, Reject, Async).
    Advance,
    /// Carries the current StatSN without consuming it (R2T §11.8.3, unsolicited NOP-In §11.19.2).
    Current,
    /// StatSN is reserved (Data-In without status, §11.7.3).
    Reserved,
}

/// The writer's bounds: queued bytes and how long the socket may refuse them.
pub struct SendLimits {
    pub queue_bytes: u64,
    pub timeout: Duration,
}

/// Chunks per vectored write (Linux takes up to IOV_MAX = 1024; gains flatten long before).
const MAX_IOVECS: usize = 64;

/// Handle used by the reader and command tasks to send PDUs.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    socket: OwnedWriteHalf,
    digests: Digests,
    session: Arc<Session>,
    /// Free room in the send buffer, in KiB units; closed when the connection's writing ends.
    room: Semaphore,
    capacity_units: u32,
    /// Wakes the writer task: a blocked write to finish, a close, a failure.
    wake: Notify,
}

struct State {
    stat_sn: u32,
    /// Encoded PDUs not yet handed to a write.
    wire: WireWriter,
    /// Room units held by what is in `wire`.
    wire_units: u32,
    /// Someone (a sender inline, or the writer task) is writing to the socket.
    flushing: bool,
    /// A write the socket could not take at once, handed to the writer task.
    blocked: Option<Pending>,
    /// The reader is handling a batch of PDUs and writes their answers when it is done.
    batch_open: bool,
    closing: bool,
    failed: bool,
}

/// Chunks partly written: `chunks[idx][offset..]` onwards is still to go.
struct Pending {
    chunks: Vec<Bytes>,
    idx: usize,
    offset: usize,
    units: u32,
}

impl Pending {
    fn done(&self) -> bool {
        self.idx >= self.chunks.len()
    }

    fn slices(&self) -> Vec<IoSlice<'_>> {
        std::iter::once(&self.chunks[self.idx][self.offset..])
            .chain(self.chunks[self.idx + 1..].iter().map(|c| &c[..]))
            .take(MAX_IOVECS)
            .map(IoSlice::new)
            .collect()
    }

    fn advance(&mut self, mut n: usize) {
        while self.idx < self.chunks.len() && n > 0 {
            let left = self.chunks[self.idx].len() - self.offset;
            if n >= left {
                n -= left;
                self.idx += 1;
                self.offset = 0;
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

/// What an attempt to write without waiting ended with.
enum Written {
    All,
    WouldBlock,
    Failed(io::Error),
}

pub fn spawn(
    socket: OwnedWriteHalf,
    digests: Digests,
    first_stat_sn: u32,
    session: Arc<Session>,
    limits: SendLimits,
) -> (WriterHandle, tokio::task::JoinHandle<io::Result<()>>) {
    let capacity_units = (limits.queue_bytes / 1024).clamp(1, u32::MAX as u64 >> 3) as u32;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            stat_sn: first_stat_sn,
            wire: WireWriter::new(),
            wire_units: 0,
            flushing: false,
            blocked: None,
            batch_open: false,
            closing: false,
            failed: false,
        }),
        socket,
        digests,
        session,
        room: Semaphore::new(capacity_units as usize),
        capacity_units,
        wake: Notify::new(),
    });
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            let result = shared.run(limits.timeout).await;
            if let Err(e) = &result {
                // Nothing more can reach the initiator: end the connection (and with it, at
                // ErrorRecoveryLevel 0, its tasks) instead of letting senders wait.
                warn!(error = %e, "connection writer failed, dropping the connection");
                shared.fail();
            }
            // An orderly end: FIN after the last PDU (a Logout Response, say), even while other
            // handles to the socket still exist.
            // SAFETY: the descriptor belongs to the socket `shared` keeps open for this call.
            unsafe { libc::shutdown(shared.socket.as_ref().as_raw_fd(), libc::SHUT_WR) };
            result
        }
    });
    (WriterHandle { shared }, task)
}

impl WriterHandle {
    /// Stamps and queues a PDU, waiting while the send buffer is full, and writes it unless the
    /// reader is in the middle of a batch; false if the connection is gone.
    pub async fn send(&self, pdu: OutPdu, stat: StatSn) -> bool {
        let s = &self.shared;
        let bytes = pdu::BHS_LEN + pdu.data.len();
        // A PDU larger than the whole bound takes all of it and goes alone.
        let units = (bytes.div_ceil(1024) as u32).clamp(1, s.capacity_units);
        match s.room.try_acquire_many(units) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::Closed) => return false,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // What is queued (perhaps by this very batch) must move for room to appear.
                s.flush();
                match s.room.acquire_many(units).await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return false,
                }
            }
        }
        let flush_now = {
            let mut st = s.lock();
            if st.closing || st.failed {
                drop(st);
                s.room.add_permits(units as usize);
                return false;
            }
            let sn = match stat {
                StatSn::Advance => {
                    let sn = st.stat_sn;
                    st.stat_sn = sn.wrapping_add(1);
                    sn
                }
                StatSn::Current => st.stat_sn,
                StatSn::Reserved => 0,
            };
            let (exp, max) = s.session.seq.get();
            let mut pdu = pdu;
            pdu.bhs = pdu.bhs.u32(24, sn).u32(28, exp).u32(32, max);
            st.wire.push(&pdu, s.digests);
            st.wire_units += units;
            !st.batch_open
        };
        if flush_now {
            s.flush();
        }
        true
    }

    /// The reader starts handling the PDUs it has read: answers wait until `end_batch`.
    pub fn begin_batch(&self) {
        self.shared.lock().batch_open = true;
    }

    /// The reader is done with its batch (or about to wait): write what it queued.
    pub fn end_batch(&self) {
        self.shared.lock().batch_open = false;
        self.shared.flush();
    }

    /// Writes what is queued, then closes the sending side; later sends are refused.
    pub async fn close(&self) {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.batch_open = false;
        }
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the queued PDUs now, without waiting: returns at once if someone else is
    /// writing, and hands the rest to the writer task if the socket cannot take it all.
    fn flush(&self) {
        let mut st = self.lock();
        if st.flushing || st.failed {
            return;
        }
        st.flushing = true;
        loop {
            if st.wire.is_empty() {
                st.flushing = false;
                let closing = st.closing;
                drop(st);
                if closing {
                    self.wake.notify_one();
                }
                return;
            }
            let mut pending =
                Pending { chunks: st.wire.take_chunks(), idx: 0, offset: 0, units: std::mem::take(&mut st.wire_units) };
            drop(st);
            match self.write_now(&mut pending) {
                Written::All => self.room.add_permits(pending.units as usize),
                Written::WouldBlock => {
                    // The writer task owns the write from here (`flushing` stays set).
                    self.lock().blocked = Some(pending);
                    self.wake.notify_one();
                    return;
                }
                Written::Failed(e) => {
                    warn!(error = %e, "connection write failed, dropping the connection");
                    self.fail();
                    return;
                }
            }
            st = self.lock();
        }
    }

    /// Writes as much of `pending` as the socket takes without waiting.
    fn write_now(&self, pending: &mut Pending) -> Written {
        while !pending.done() {
            match self.socket.try_write_vectored(&pending.slices()) {
                Ok(0) => return Written::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Written::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Written::Failed(e),
            }
        }
        Written::All
    }

    /// Writes all of `pending`, waiting for the socket; fails when it takes nothing for `timeout`.
    async fn write_all(&self, pending: &mut Pending, timeout: Duration) -> io::Result<()> {
        loop {
            match self.write_now(pending) {
                Written::All => return Ok(()),
                Written::Failed(e) => return Err(e),
                Written::WouldBlock => {
                    tokio::time::timeout(timeout, self.socket.writable()).await.map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "peer took no data within the send timeout")
                    })??
                }
            }
        }
    }

    /// Marks the connection's writing as over: queued data is dropped, waiting senders give up.
    fn fail(&self) {
        {
            let mut st = self.lock();
            st.failed = true;
            st.wire.take_chunks();
            st.blocked = None;
        }
        self.room.close();
        self.session.kill_connection();
        self.wake.notify_one();
    }

    /// The writer task: finishes writes the socket could not take at once, and the final
    /// flush on close.
    async fn run(&self, timeout: Duration) -> io::Result<()> {
        loop {
            self.wake.notified().await;
            while let Some(mut pending) = self.next_task_write() {
                self.write_all(&mut pending, timeout).await?;
                self.room.add_permits(pending.units as usize);
                // Keep the write going from here until the buffer is empty.
                let mut st = self.lock();
                if st.wire.is_empty() {
                    st.flushing = false;
                } else {
                    let units = std::mem::take(&mut st.wire_units);
                    st.blocked = Some(Pending { chunks: st.wire.take_chunks(), idx: 0, offset: 0, units });
                }
            }
            if self.lock().failed {
                return Ok(());
            }
        }
    }

    /// What the writer task writes next, if anything. After the final flush on close it marks
    /// the writing as over and returns None.
    fn next_task_write(&self) -> Option<Pending> {
        let mut st = self.lock();
        if st.failed {
            return None;
        }
        if let Some(p) = st.blocked.take() {
            return Some(p);
        }
        if !st.closing || st.flushing {
            return None;
        }
        // On close, once nobody else is writing, the rest of the buffer goes from here.
        if !st.wire.is_empty() {
            st.flushing = true;
            let units = std::mem::take(&mut st.wire_units);
            return Some(Pending { chunks: st.wire.take_chunks(), idx: 0, offset: 0, units });
        }
        st.failed = true; // closed: nothing more is accepted
        drop(st);
        self.room.close();
        None
    }
}
