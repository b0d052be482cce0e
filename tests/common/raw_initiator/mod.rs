//! A small blocking iSCSI initiator for tests that must speak the protocol byte by byte: it logs
//! in (AuthMethod None or CHAP, optionally mutual, with chosen operational keys), sends built
//! PDUs or arbitrary raw bytes, and reads PDUs with a timeout. Built on the `pdu` codec crate;
//! nothing here interprets answers beyond what a test asks for.
#![allow(dead_code)] // each test binary uses a different subset

mod commands;
mod login;

// Each test binary uses a different subset of the helpers.
#[allow(unused_imports)]
pub use commands::*;
#[allow(unused_imports)]
pub use login::*;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pdu::msg::{Reject, TargetPdu};
use pdu::{Digests, Framer, Opcode, OutPdu, Pdu, RESERVED_TAG};

/// Default wait for an answer the target owes us.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// What this initiator declares as its MaxRecvDataSegmentLength.
pub const OUR_MAX_RECV: u32 = 262_144;

/// Why `recv` returned no PDU.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The target closed (or reset) the connection.
    Closed,
    /// What arrived does not frame (or a digest failed).
    Garbled(String),
}

pub struct RawInitiator {
    stream: TcpStream,
    buf: BytesMut,
    /// Digests in force (set once login succeeds).
    pub digests: Digests,
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
    /// How long `complete` waits for each PDU of a command (long for slow block commands).
    pub answer_timeout: Duration,
}

impl RawInitiator {
    pub fn connect(portal: &str) -> RawInitiator {
        let stream = TcpStream::connect(portal).unwrap_or_else(|e| panic!("connect {portal}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        RawInitiator {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            digests: Digests::default(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            next_itt: 0x100,
            tsih: 0,
            target_max_recv: 8192,
            login_keys: Vec::new(),
            answer_timeout: ANSWER_TIMEOUT,
        }
    }

    /// Connects and logs in, panicking on failure.
    pub fn login_ok(portal: &str, opts: &LoginOptions) -> RawInitiator {
        let mut ini = RawInitiator::connect(portal);
        if let Err(e) = ini.login(opts) {
            panic!("login to {portal} as {} failed: {e:?}", opts.initiator);
        }
        ini
    }

    /// Connects and logs in, returning the target's refusal.
    pub fn login_refused(portal: &str, opts: &LoginOptions) -> LoginError {
        let mut ini = RawInitiator::connect(portal);
        match ini.login(opts) {
            Ok(()) => panic!("login as {} unexpectedly succeeded", opts.initiator),
            Err(e) => e,
        }
    }

    pub fn new_itt(&mut self) -> u32 {
        self.next_itt = self.next_itt.wrapping_add(1);
        self.next_itt
    }

    /// Writes bytes exactly as given (no digests added).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        // A target that already hung up may make this fail; the test's next read tells.
        let _ = self.stream.write_all(bytes);
    }

    /// The wire form of a PDU with the connection's digests.
    pub fn wire(&self, pdu: &OutPdu) -> Vec<u8> {
        pdu.to_bytes(self.digests).to_vec()
    }

    pub fn send(&mut self, pdu: &OutPdu) {
        let bytes = self.wire(pdu);
        self.send_bytes(&bytes);
    }

    /// Next PDU from the target within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Pdu, RecvError> {
        let deadline = Instant::now() + timeout;
        let framer = Framer { digests: self.digests, max_data_segment: OUR_MAX_RECV };
        loop {
            match framer.decode(&mut self.buf) {
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).expect("set_read_timeout");
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(RecvError::Timeout)
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                    return Err(RecvError::Closed)
                }
                Err(e) => return Err(RecvError::Garbled(format!("read: {e}"))),
            }
        }
    }

    /// Next PDU, decoded; panics on timeout or close.
    pub fn recv_msg(&mut self, timeout: Duration) -> TargetPdu {
        let pdu = self.recv(timeout).unwrap_or_else(|e| panic!("expected a PDU from the target, got {e:?}"));
        TargetPdu::decode(&pdu).unwrap_or_else(|e| panic!("undecodable target PDU {pdu:?}: {e}"))
    }

    /// Next PDU must be a Reject; returns it.
    pub fn expect_reject(&mut self) -> Reject {
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Reject(r) => r,
            other => panic!("expected a Reject, got {other:?}"),
        }
    }

    /// Asserts the target sends nothing for `quiet` and keeps the connection open.
    pub fn expect_silence(&mut self, quiet: Duration) {
        match self.recv(quiet) {
            Err(RecvError::Timeout) => {}
            Ok(pdu) => panic!("expected silence, got {:?}", TargetPdu::decode(&pdu)),
            Err(e) => panic!("expected silence on an open connection, got {e:?}"),
        }
    }

    /// Asserts the target closes the connection within `timeout`, ignoring PDUs that come first
    /// except those `allowed` accepts (others fail the test). Returns the PDUs seen.
    pub fn expect_closed(&mut self, timeout: Duration, allowed: impl Fn(&TargetPdu) -> bool) -> Vec<TargetPdu> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Err(RecvError::Closed) => return seen,
                Err(RecvError::Timeout) => panic!("connection still open after {timeout:?}; saw {seen:?}"),
                Err(RecvError::Garbled(e)) => panic!("garbled stream before close: {e}; saw {seen:?}"),
                Ok(pdu) => {
                    let msg = TargetPdu::decode(&pdu).unwrap_or_else(|e| panic!("undecodable PDU: {e}"));
                    assert!(allowed(&msg), "unexpected PDU before close: {msg:?}");
                    seen.push(msg);
                }
            }
        }
    }

    /// Updates ExpStatSN / ExpCmdSN / MaxCmdSN from a received PDU (RFC 7143 §11.2.1, §4.2.2).
    fn track(&mut self, pdu: &Pdu) {
        let b = pdu.bhs();
        let op = b.opcode();
        let has_status = match op {
            Opcode::SCSI_DATA_IN => b.flags() & 0x01 != 0,
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
        if op != Opcode::LOGIN_RESPONSE || b.byte(36) == 0 {
            self.exp_cmd_sn = b.u32_at(28);
            self.max_cmd_sn = b.u32_at(32);
        }
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

/// Asserts the server process is still up and never panicked.
pub fn assert_healthy(t: &mut super::TargetProcess) {
    assert!(t.is_running(), "palisade exited; log:\n{}", t.log());
    let log = t.log();
    assert!(!log.contains("panicked"), "palisade panicked:\n{log}");
}

/// The default target IQN served from a memory LUN 0 of 16 MiB, with `extra` TOML appended
/// (e.g. a `[session]` table). For `TargetProcess::start_with_config`.
pub fn memory_target_toml(extra: &str) -> String {
    format!(
        "[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n\
         [[targets]]\nname = \"{}\"\n\n[[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"16MiB\"\n\n{extra}\n",
        super::DEFAULT_IQN
    )
}
