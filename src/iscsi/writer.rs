//! The connection's writer task: the single owner of the socket's write half and of StatSN,
//! so StatSN order is wire order (RFC 7143 §4.2.2.2). It stamps ExpCmdSN/MaxCmdSN into every
//! PDU and coalesces whatever is queued into one vectored write.
//!
//! The queue is bounded in PDUs and in bytes (`max_send_queue_bytes`): a peer that stops
//! reading back-pressures the command tasks instead of growing memory, and once the socket has
//! taken no bytes for `send_timeout` the connection is dropped.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pdu::{Digests, OutPdu, WireWriter};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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

pub enum Outbound {
    /// The permit holds the PDU's place in the byte bound until it is written.
    Pdu(OutPdu, StatSn, OwnedSemaphorePermit),
    /// Flush, then close the socket (after a Logout Response or a fatal error).
    Close,
}

/// Handle used by the reader and command tasks to queue PDUs.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Outbound>,
    /// Queued bytes in KiB units; closed when the writer ends so waiting senders give up.
    queued: Arc<Semaphore>,
    capacity_units: u32,
}

impl WriterHandle {
    /// Queues a PDU, waiting while the queue is full; false if the connection is gone.
    pub async fn send(&self, pdu: OutPdu, stat: StatSn) -> bool {
        let bytes = pdu::BHS_LEN + pdu.data.len();
        // A PDU larger than the whole bound takes all of it and goes alone.
        let units = (bytes.div_ceil(1024) as u32).clamp(1, self.capacity_units);
        let Ok(permit) = self.queued.clone().acquire_many_owned(units).await else { return false };
        self.tx.send(Outbound::Pdu(pdu, stat, permit)).await.is_ok()
    }

    pub async fn close(&self) {
        let _ = self.tx.send(Outbound::Close).await;
    }
}

/// Outbound queue depth: deep enough to keep the socket busy, small enough that a stalled
/// initiator back-pressures the command tasks instead of growing memory.
const QUEUE: usize = 256;
/// Bytes gathered into one vectored write before it is issued.
const COALESCE_BYTES: usize = 1 << 20;

/// The writer's bounds: queued bytes and how long the socket may refuse them.
pub struct SendLimits {
    pub queue_bytes: u64,
    pub timeout: Duration,
}

pub fn spawn(
    socket: OwnedWriteHalf,
    digests: Digests,
    first_stat_sn: u32,
    session: Arc<Session>,
    limits: SendLimits,
) -> (WriterHandle, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let capacity_units = (limits.queue_bytes / 1024).clamp(1, u32::MAX as u64 >> 3) as u32;
    let queued = Arc::new(Semaphore::new(capacity_units as usize));
    let task = tokio::spawn({
        let queued = queued.clone();
        async move {
            let result = run(socket, rx, digests, first_stat_sn, session.clone(), limits.timeout).await;
            if let Err(e) = &result {
                // Nothing more can reach the initiator: end the connection (and with it, at
                // ErrorRecoveryLevel 0, its tasks) instead of letting senders wait.
                warn!(error = %e, "connection writer failed, dropping the connection");
                session.kill_connection();
            }
            queued.close();
            result
        }
    });
    (WriterHandle { tx, queued, capacity_units }, task)
}

async fn run(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    digests: Digests,
    mut stat_sn: u32,
    session: Arc<Session>,
    timeout: Duration,
) -> std::io::Result<()> {
    let mut wire = WireWriter::new();
    let mut permits = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outbound::Close => {
                    close = true;
                    break;
                }
                Outbound::Pdu(mut pdu, kind, permit) => {
                    permits.push(permit);
                    let (exp, max) = session.seq.get();
                    let sn = match kind {
                        StatSn::Advance => {
                            let sn = stat_sn;
                            stat_sn = stat_sn.wrapping_add(1);
                            sn
                        }
                        StatSn::Current => stat_sn,
                        StatSn::Reserved => 0,
                    };
                    pdu.bhs = pdu.bhs.u32(24, sn).u32(28, exp).u32(32, max);
                    wire.push(&pdu, digests);
                }
            }
            if wire.len() < COALESCE_BYTES {
                next = rx.try_recv().ok();
            }
        }
        write_all_vectored(&mut socket, wire.take_chunks(), timeout).await?;
        permits.clear();
        if close {
            let _ = socket.shutdown().await;
            return Ok(());
        }
    }
    Ok(())
}

/// Writes every chunk; fails when one write call makes no progress for `timeout`.
async fn write_all_vectored(socket: &mut OwnedWriteHalf, chunks: Vec<Bytes>, timeout: Duration) -> std::io::Result<()> {
    let mut idx = 0;
    let mut offset = 0;
    while idx < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[idx][offset..])
            .chain(chunks[idx + 1..].iter().map(|c| &c[..]))
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut n = tokio::time::timeout(timeout, socket.write_vectored(&slices))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer took no data within the send timeout"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while idx < chunks.len() && n > 0 {
            let left = chunks[idx].len() - offset;
            if n >= left {
                n -= left;
                idx += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}
