//! The connection's writer task: the single owner of the socket's write half and of StatSN,
//! so StatSN order is wire order (RFC 7143 §4.2.2.2). It stamps ExpCmdSN/MaxCmdSN into every
//! PDU and coalesces whatever is queued into one vectored write.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::Bytes;
use pdu::{Digests, OutPdu, WireWriter};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

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
    Pdu(OutPdu, StatSn),
    /// Flush, then close the socket (after a Logout Response or a fatal error).
    Close,
}

/// Handle used by the reader and command tasks to queue PDUs.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Outbound>,
}

impl WriterHandle {
    /// Queues a PDU; false if the connection is gone.
    pub async fn send(&self, pdu: OutPdu, stat: StatSn) -> bool {
        self.tx.send(Outbound::Pdu(pdu, stat)).await.is_ok()
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

pub fn spawn(
    socket: OwnedWriteHalf,
    digests: Digests,
    first_stat_sn: u32,
    session: Arc<Session>,
) -> (WriterHandle, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(socket, rx, digests, first_stat_sn, session));
    (WriterHandle { tx }, task)
}

async fn run(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    digests: Digests,
    mut stat_sn: u32,
    session: Arc<Session>,
) -> std::io::Result<()> {
    let mut wire = WireWriter::new();
    while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outbound::Close => {
                    close = true;
                    break;
                }
                Outbound::Pdu(mut pdu, kind) => {
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
        write_all_vectored(&mut socket, wire.take_chunks()).await?;
        if close {
            let _ = socket.shutdown().await;
            return Ok(());
        }
    }
    Ok(())
}

async fn write_all_vectored(socket: &mut OwnedWriteHalf, chunks: Vec<Bytes>) -> std::io::Result<()> {
    let mut idx = 0;
    let mut offset = 0;
    while idx < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[idx][offset..])
            .chain(chunks[idx + 1..].iter().map(|c| &c[..]))
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut n = socket.write_vectored(&slices).await?;
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
