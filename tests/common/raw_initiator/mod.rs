//! The blocking face of `palisade-initiator`'s raw level for tests that speak the protocol byte
//! by byte from plain threads: each `RawInitiator` is an `initiator::RawConnection` with a
//! current-thread tokio runtime of its own, and turns the crate's errors into test failures.
//! Login (None, CHAP, mutual CHAP, discovery, chosen keys), built or hand-crafted PDUs, one
//! exchange at a time (commands with R2T/Data-In, TMF, Text, logout) all come from the crate.
#![allow(dead_code)] // each test binary uses a different subset

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use pdu::msg::{NopIn, R2t, Reject, ScsiCommand, TargetPdu, TaskMgmtResponse};
use pdu::{OutPdu, Pdu, RESERVED_TAG};

// Each test binary uses a different subset of these.
#[allow(unused_imports)]
pub use initiator::cdb::{CHECK_CONDITION, GOOD};
#[allow(unused_imports)]
pub use initiator::login::{first_login_request, LoginOptions};
#[allow(unused_imports)]
pub use initiator::raw::{
    announcing_data_segment_length, corrupt_data_digest, corrupt_header_digest, RecvError, ANSWER_TIMEOUT, OUR_MAX_RECV,
};
pub use initiator::steps::ScsiOutcome;
use initiator::RawConnection;
#[allow(unused_imports)]
pub use pdu::chap::{decode_hex, encode_hex, response as chap_response};

/// Why a login did not reach Full Feature Phase.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The target answered with this Status-Class / Status-Detail (RFC 7143 §11.13.5).
    Status(u8, u8),
    /// Anything else: closed connection, timeout, a target that failed mutual CHAP, ...
    Other(String),
}

impl From<initiator::Error> for LoginError {
    fn from(e: initiator::Error) -> Self {
        match e {
            initiator::Error::LoginRefused { class, detail } => LoginError::Status(class, detail),
            other => LoginError::Other(other.to_string()),
        }
    }
}

/// Runs one of the connection's async operations to completion on the initiator's runtime.
macro_rules! block_on {
    ($ini:expr, |$conn:ident| $op:expr) => {{
        let RawInitiator { conn: $conn, runtime } = $ini;
        runtime.block_on($op)
    }};
}

pub struct RawInitiator {
    // Declared first so it is dropped before the runtime it is registered with.
    conn: RawConnection,
    runtime: tokio::runtime::Runtime,
}

impl Deref for RawInitiator {
    type Target = RawConnection;
    fn deref(&self) -> &RawConnection {
        &self.conn
    }
}

impl DerefMut for RawInitiator {
    fn deref_mut(&mut self) -> &mut RawConnection {
        &mut self.conn
    }
}

impl RawInitiator {
    pub fn connect(portal: &str) -> RawInitiator {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime");
        let conn = runtime.block_on(RawConnection::connect(portal)).unwrap_or_else(|e| panic!("connect {portal}: {e}"));
        RawInitiator { conn, runtime }
    }

    pub fn login(&mut self, opts: &LoginOptions) -> Result<(), LoginError> {
        block_on!(self, |c| initiator::login::login(c, opts, None))?;
        Ok(())
    }

    /// Connects and logs in, panicking on failure.
    pub fn login_ok(portal: &str, opts: &LoginOptions) -> RawInitiator {
        let mut ini = RawInitiator::connect(portal);
        if let Err(e) = ini.login(opts) {
            panic!("login to {portal} as {} failed: {e:?}", opts.initiator_name);
        }
        ini
    }

    /// Connects and logs in, returning the target's refusal.
    pub fn login_refused(portal: &str, opts: &LoginOptions) -> LoginError {
        let mut ini = RawInitiator::connect(portal);
        match ini.login(opts) {
            Ok(()) => panic!("login as {} unexpectedly succeeded", opts.initiator_name),
            Err(e) => e,
        }
    }

    /// Writes bytes exactly as given (no digests added).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        // A target that already hung up may make this fail; the test's next read tells.
        let _ = block_on!(self, |c| c.send_bytes(bytes));
    }

    /// The wire form of a PDU with the connection's digests.
    pub fn wire(&self, pdu: &OutPdu) -> Vec<u8> {
        self.conn.wire(pdu).to_vec()
    }

    pub fn send(&mut self, pdu: &OutPdu) {
        let bytes = self.wire(pdu);
        self.send_bytes(&bytes);
    }

    /// Next PDU from the target within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Pdu, RecvError> {
        block_on!(self, |c| c.recv(timeout))
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

    /// Pings and asserts the echo comes back, answering the target's own pings (ITT
    /// 0xffffffff, RFC 7143 §11.19) that cross it on the wire; any other PDU fails the test.
    pub fn ping(&mut self, data: &[u8]) {
        let nop = self.conn.nop_out(data);
        self.send(&nop.encode());
        loop {
            match self.recv_msg(ANSWER_TIMEOUT) {
                TargetPdu::NopIn(ping) if ping.itt == RESERVED_TAG && ping.ttt != RESERVED_TAG => {
                    let answer = self.conn.answer_to_ping(&ping);
                    self.send(&answer.encode());
                }
                TargetPdu::NopIn(NopIn { itt, ttt, data: echoed, .. }) => {
                    assert_eq!(itt, nop.itt, "NOP-In answers our ITT");
                    assert_eq!(ttt, RESERVED_TAG, "NOP-In answering a ping carries TTT 0xffffffff (§11.19.1)");
                    assert_eq!(&echoed[..], data, "NOP-In echoes the ping data (§11.19)");
                    return;
                }
                other => panic!("expected the NOP-In answering our ping, got {other:?}"),
            }
        }
    }

    /// A SCSI Command PDU taking the next CmdSN (not sent).
    pub fn command(&mut self, lun: u64, cdb: &[u8], read_len: u32, write_len: u32, immediate: &[u8]) -> ScsiCommand {
        self.conn.command(lun, cdb, read_len, write_len, immediate).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Collects the Data-In and SCSI Response of command `itt`, answering R2Ts from `write`
    /// and the target's NOP-In pings.
    pub fn complete(&mut self, itt: u32, lun: u64, write: &[u8]) -> ScsiOutcome {
        block_on!(self, |c| c.complete(itt, lun, write)).unwrap_or_else(|e| panic!("task {itt:#x}: {e}"))
    }

    /// Sends the solicited Data-Out answering `r2t`, in PDUs the target can take.
    pub fn answer_r2t(&mut self, r2t: &R2t, lun: u64, write: &[u8]) {
        block_on!(self, |c| c.answer_r2t(r2t, lun, write)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a command to completion (write data in answer to R2Ts).
    pub fn exec(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> ScsiOutcome {
        block_on!(self, |c| c.exec(lun, cdb, read_len, write)).unwrap_or_else(|e| panic!("command on LUN {lun}: {e}"))
    }

    /// Runs a command that must end GOOD; returns its data.
    pub fn exec_good(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> Vec<u8> {
        let out = self.exec(lun, cdb, read_len, write);
        assert_eq!(out.status, GOOD, "command {cdb:02x?} failed: {:?}", out.sense_triple());
        out.data
    }

    /// TEST UNIT READY until it returns GOOD, consuming the POWER ON / RESET unit attention a
    /// new I_T nexus starts with (SAM-5 §5.14). Panics after a few tries.
    pub fn clear_unit_attention(&mut self, lun: u64) {
        for _ in 0..4 {
            let out = self.exec(lun, &[0x00; 6], 0, &[]);
            if out.status == GOOD {
                return;
            }
            assert_eq!(out.sense_triple().map(|s| s.0), Some(0x06), "only UNIT ATTENTION may precede GOOD");
        }
        panic!("TEST UNIT READY never returned GOOD");
    }

    /// READ(10) of `blocks` 512-byte blocks at `lba`.
    pub fn read10(&mut self, lun: u64, lba: u32, blocks: u16) -> Vec<u8> {
        self.exec_good(lun, &read10_cdb(lba, blocks), blocks as u32 * 512, &[])
    }

    /// WRITE(10) of `data` (whole 512-byte blocks) at `lba`.
    pub fn write10(&mut self, lun: u64, lba: u32, data: &[u8]) {
        self.exec_good(lun, &write10_cdb(lba, (data.len() / 512) as u16), 0, data);
    }

    /// Task management request (RFC 7143 §11.5), immediate; returns the response.
    pub fn task_mgmt(&mut self, function: u8, lun: u64, referenced_itt: u32, ref_cmd_sn: u32) -> TaskMgmtResponse {
        block_on!(self, |c| c.task_mgmt(function, lun, referenced_itt, ref_cmd_sn))
            .unwrap_or_else(|e| panic!("TMF: {e}"))
    }

    /// One-PDU Text Request (RFC 7143 §11.10); returns the keys of the (single) answer.
    pub fn text(&mut self, keys: &[(&str, &str)]) -> Vec<(String, String)> {
        let itt = self.new_itt();
        let rsp = block_on!(self, |c| c.text_round(itt, RESERVED_TAG, keys)).unwrap_or_else(|e| panic!("Text: {e}"));
        assert!(rsp.final_bit, "a short answer fits one Text Response");
        pdu::text::parse(&rsp.data).expect("Text Response keys")
    }

    /// SendTargets (RFC 7143 Appendix C), following continued Text Responses (§11.10.2):
    /// (TargetName, [TargetAddress…]) per target.
    pub fn send_targets(&mut self, which: &str) -> Vec<(String, Vec<String>)> {
        block_on!(self, |c| c.send_targets(which)).unwrap_or_else(|e| panic!("SendTargets: {e}"))
    }

    /// Logout (close the session) and expect response 0 then the connection to close.
    pub fn logout(&mut self) {
        let rsp = block_on!(self, |c| c.logout(true, 1)).unwrap_or_else(|e| panic!("logout: {e}"));
        assert_eq!(rsp.response, 0, "logout response: closed successfully");
        self.expect_closed(ANSWER_TIMEOUT, |_| false);
    }
}

/// Single-level LUN addressing (SAM-5 §4.7.1): the peripheral method below 256, flat above.
pub fn lun_field(lun: u64) -> u64 {
    initiator::cdb::lun_field(lun).expect("single-level LUNs stop at 16383")
}

pub fn read10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    initiator::cdb::rw10(false, lba, blocks)
}

pub fn write10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    initiator::cdb::rw10(true, lba, blocks)
}

/// Asserts CHECK CONDITION with this sense key / ASC / ASCQ.
pub fn assert_sense(out: &ScsiOutcome, key: u8, asc: u8, ascq: u8) {
    assert_eq!(out.status, CHECK_CONDITION, "expected CHECK CONDITION, got status 0x{:02x}", out.status);
    assert_eq!(out.sense_triple(), Some((key, asc, ascq)), "sense data {:02x?}", out.sense);
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
