//! The raw level: one TCP connection to a target that sends PDUs (built or hand-crafted bytes)
//! and reads the next PDU with a timeout, keeping ExpStatSN / ExpCmdSN / MaxCmdSN from what it
//! reads (RFC 7143 §4.2.2). Login (`crate::login`) runs on it; the pipelined `Connection` takes
//! it over for Full Feature Phase; hostile and bad-input tests use it directly.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pdu::msg::TargetPdu;
use pdu::{Digests, Framer, Opcode, OutPdu, Pdu, RESERVED_TAG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::Error;

/// Default wait for an answer the target owes us.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// What this initiator declares as its MaxRecvDataSegmentLength unless told otherwise.
pub const OUR_MAX_RECV: u32 = 262_144;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `recv` returned no PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// The target closed (or reset) the connection.
    Closed,
    /// What arrived does not frame (or a digest failed).
    Garbled(String),
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        match e {
            RecvError::Timeout => Error::Timeout("no PDU from the target in time".into()),
            RecvError::Closed => Error::Closed,
            RecvError::Garbled(why) => Error::Other(format!("garbled stream from the target: {why}")),
        }
    }
}

pub struct RawConnection {
    stream: TcpStream,
    rx: BytesMut,
    /// Digests in force for both directions (set when login negotiates them).
    pub digests: Digests,
    /// Largest data segment we accept (our MaxRecvDataSegmentLength).
    pub our_max_recv: u32,
    /// The next CmdSN to send.
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// ExpCmdSN / MaxCmdSN from the last PDU that carried them.
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    next_itt: u32,
    pub tsih: u16,
    /// What the target declared as its MaxRecvDataSegmentLength (8192 when it declared none).
    pub target_max_recv: u32,
    /// Every key the target sent during login, in order.
    pub login_keys: Vec<(String, String)>,
    /// How long command helpers wait for each PDU (long for slow block commands).
    pub answer_timeout: Duration,
}

impl RawConnection {
    /// A TCP connection to `addr` ("host:port"), no login yet.
    pub async fn connect(addr: &str) -> Result<RawConnection, Error> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(format!("connect to {addr} timed out")))?
            .map_err(|e| Error::Other(format!("connect {addr}: {e}")))?;
        // Small command PDUs must leave at once, not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream,
            rx: BytesMut::with_capacity(64 * 1024),
            digests: Digests::default(),
            our_max_recv: OUR_MAX_RECV,
            cmd_sn: 1,
            exp_stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            next_itt: 0x100,
            tsih: 0,
            target_max_recv: 8192,
            login_keys: Vec::new(),
            answer_timeout: ANSWER_TIMEOUT,
        })
    }

    /// A fresh Initiator Task Tag (never the reserved 0xffffffff).
    pub fn new_itt(&mut self) -> u32 {
        self.next_itt = self.next_itt.wrapping_add(1);
        if self.next_itt == RESERVED_TAG {
            self.next_itt = 1;
        }
        self.next_itt
    }

    /// Takes the next CmdSN (RFC 7143 §4.2.2.1: non-immediate PDUs advance it).
    pub fn take_cmd_sn(&mut self) -> u32 {
        let sn = self.cmd_sn;
        self.cmd_sn = sn.wrapping_add(1);
        sn
    }

    /// Writes bytes exactly as given (no digests added).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        Ok(self.stream.write_all(bytes).await?)
    }

    /// The wire form of a PDU with the connection's digests.
    pub fn wire(&self, pdu: &OutPdu) -> Bytes {
        pdu.to_bytes(self.digests)
    }

    pub async fn send(&mut self, pdu: &OutPdu) -> Result<(), Error> {
        let bytes = self.wire(pdu);
        self.send_bytes(&bytes).await
    }

    /// Next PDU from the target within `timeout`, its data digest checked.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Pdu, RecvError> {
        let deadline = Instant::now() + timeout;
        let framer = Framer { digests: self.digests, max_data_segment: self.our_max_recv };
        loop {
            match framer.decode(&mut self.rx) {
                Ok(Some(pdu)) => {
                    if !pdu.data_digest_ok() {
                        return Err(RecvError::Garbled("data digest mismatch".into()));
                    }
                    self.track(&pdu);
                    return Ok(pdu);
                }
                Ok(None) => {}
                Err(e) => return Err(RecvError::Garbled(e.to_string())),
            }
            self.rx.reserve(16 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rx)).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(0)) => return Err(RecvError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(RecvError::Closed)
                }
                Ok(Err(e)) => return Err(RecvError::Garbled(format!("read: {e}"))),
            }
        }
    }

    /// Next PDU, decoded.
    pub async fn recv_msg(&mut self, timeout: Duration) -> Result<TargetPdu, Error> {
        let pdu = self.recv(timeout).await?;
        Ok(TargetPdu::decode(&pdu)?)
    }

    /// Updates ExpStatSN / ExpCmdSN / MaxCmdSN from a received PDU (RFC 7143 §11.2.1, §4.2.2).
    fn track(&mut self, pdu: &Pdu) {
        let b = pdu.bhs();
        let op = b.opcode();
        let has_status = match op {
            // §11.7.4: only a Data-In with the S bit carries a StatSN.
            Opcode::SCSI_DATA_IN => b.flags() & 0x01 != 0,
            // §11.19: a NOP-In that is not answering us carries StatSN without advancing it.
            Opcode::NOP_IN => b.itt() != RESERVED_TAG,
            Opcode::R2T => false,
            _ => true,
        };
        if has_status {
            let stat_sn = b.u32_at(24);
            if pdu::serial::lt(self.exp_stat_sn.wrapping_sub(1), stat_sn) || op == Opcode::LOGIN_RESPONSE {
                self.exp_stat_sn = stat_sn.wrapping_add(1);
            }
        }
        // §11.13: a refused login's ExpCmdSN/MaxCmdSN are meaningless (byte 36 = Status-Class).
        if op != Opcode::LOGIN_RESPONSE || b.byte(36) == 0 {
            self.exp_cmd_sn = b.u32_at(28);
            self.max_cmd_sn = b.u32_at(32);
        }
    }

    /// The socket and whatever was read past the last PDU, for a connection that takes over.
    pub(crate) fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.rx)
    }
}

/// The wire bytes of `pdu` (no digests) with its DataSegmentLength field (RFC 7143 §11.2.1.5)
/// set to `len` whatever data follows: a peer announcing more than it sends, or than allowed.
pub fn announcing_data_segment_length(pdu: &OutPdu, len: u32) -> Vec<u8> {
    assert!(len < 1 << 24, "DataSegmentLength is 24 bits");
    let mut wire = pdu.to_bytes(Digests::default()).to_vec();
    wire[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    wire
}

/// The wire bytes of `pdu` with its header digest corrupted (RFC 7143 §11.2.3).
pub fn corrupt_header_digest(mut wire: Vec<u8>, ahs_len: usize) -> Vec<u8> {
    let at = pdu::BHS_LEN + ahs_len;
    wire[at] ^= 0xff;
    wire
}

/// The wire bytes with the data digest (the last 4 bytes) corrupted (RFC 7143 §11.2.4).
pub fn corrupt_data_digest(mut wire: Vec<u8>) -> Vec<u8> {
    let at = wire.len() - 1;
    wire[at] ^= 0xff;
    wire
}
