//! A small blocking iSCSI initiator for tests that must speak the protocol byte by byte: it logs
//! in (AuthMethod None or CHAP, optionally mutual, with chosen operational keys), sends built
//! PDUs or arbitrary raw bytes, and reads PDUs with a timeout. Built on the `pdu` codec crate;
//! nothing here interprets answers beyond what a test asks for.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use pdu::msg::scsi::attr;
use pdu::msg::{
    DataOut, LoginRequest, LoginResponse, LogoutRequest, NopIn, NopOut, Reject, ScsiCommand, Stage,
    TargetPdu, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse,
};
use pdu::{Digests, Framer, Opcode, OutPdu, Pdu, RESERVED_TAG};

/// Default wait for an answer the target owes us.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// What this initiator declares as its MaxRecvDataSegmentLength.
pub const OUR_MAX_RECV: u32 = 262_144;

/// How to log in.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator: String,
    /// `None` = a Discovery session.
    pub target: Option<String>,
    pub isid: [u8; 6],
    /// CHAP (user, secret) this initiator proves itself with.
    pub chap: Option<(String, String)>,
    /// Mutual CHAP: (user, secret) the target must prove itself with.
    pub mutual: Option<(String, String)>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// More operational keys for the Operational stage (ImmediateData, InitialR2T, ...).
    pub extra_keys: Vec<(String, String)>,
}

impl LoginOptions {
    pub fn normal(initiator: &str, target: &str) -> Self {
        LoginOptions {
            initiator: initiator.into(),
            target: Some(target.into()),
            isid: [0x80, 0x00, 0x00, 0x00, 0x12, 0x34],
            chap: None,
            mutual: None,
            header_digest: false,
            data_digest: false,
            extra_keys: Vec::new(),
        }
    }

    pub fn discovery(initiator: &str) -> Self {
        LoginOptions { target: None, ..Self::normal(initiator, "") }
    }

    pub fn isid(mut self, isid: [u8; 6]) -> Self {
        self.isid = isid;
        self
    }

    pub fn chap(mut self, user: &str, secret: &str) -> Self {
        self.chap = Some((user.into(), secret.into()));
        self
    }

    pub fn mutual(mut self, user: &str, secret: &str) -> Self {
        self.mutual = Some((user.into(), secret.into()));
        self
    }

    pub fn digests(mut self, header: bool, data: bool) -> Self {
        self.header_digest = header;
        self.data_digest = data;
        self
    }

    pub fn key(mut self, key: &str, value: &str) -> Self {
        self.extra_keys.push((key.into(), value.into()));
        self
    }
}

/// Why a login did not reach Full Feature Phase.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The target answered with this Status-Class / Status-Detail (RFC 7143 §11.13.5).
    Status(u8, u8),
    /// Anything else: closed connection, timeout, a target that failed mutual CHAP, ...
    Other(String),
}

/// Why `recv` returned no PDU.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The target closed (or reset) the connection.
    Closed,
    /// What arrived does not frame (or a digest failed).
    Garbled(String),
}

/// What a SCSI command ended with.
#[derive(Debug, Clone)]
pub struct ScsiOutcome {
    pub status: u8,
    /// iSCSI service response (RFC 7143 §11.4.3).
    pub response: u8,
    pub sense: Option<Bytes>,
    pub data: Vec<u8>,
}

impl ScsiOutcome {
    /// (sense key, ASC, ASCQ) of fixed (0x70/0x71) or descriptor (0x72/0x73) sense data.
    pub fn sense_triple(&self) -> Option<(u8, u8, u8)> {
        let s = self.sense.as_ref()?;
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            0x72 | 0x73 if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

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

    // ---------------------------------------------------------------- login (RFC 7143 §6.3)

    pub fn login(&mut self, opts: &LoginOptions) -> Result<(), LoginError> {
        let itt = self.new_itt();
        let mut first = vec![("InitiatorName".to_string(), opts.initiator.clone())];
        match &opts.target {
            Some(t) => {
                first.push(("TargetName".into(), t.clone()));
                first.push(("SessionType".into(), "Normal".into()));
            }
            None => first.push(("SessionType".into(), "Discovery".into())),
        }
        let method = if opts.chap.is_some() { "CHAP" } else { "None" };
        first.push(("AuthMethod".into(), method.into()));
        // Security stage, asking to move on to Operational.
        let mut rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, true, &first)?;
        if let Some((user, secret)) = &opts.chap {
            if key_of(&rsp, "AuthMethod").as_deref() != Some("CHAP") {
                return Err(LoginError::Other(format!("target did not select CHAP: {:?}", rsp)));
            }
            rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, false, &[("CHAP_A", "5")])?;
            let id: u8 = key_of(&rsp, "CHAP_I").and_then(|v| v.parse().ok()).ok_or(LoginError::Other("no CHAP_I".into()))?;
            let challenge = key_of(&rsp, "CHAP_C").and_then(|v| decode_hex(&v)).ok_or(LoginError::Other("no CHAP_C".into()))?;
            let answer = encode_hex(&chap_response(id, secret.as_bytes(), &challenge));
            let mut keys = vec![("CHAP_N".to_string(), user.clone()), ("CHAP_R".to_string(), answer)];
            let my_challenge: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
            let my_id: u8 = rand::random();
            if opts.mutual.is_some() {
                keys.push(("CHAP_I".into(), my_id.to_string()));
                keys.push(("CHAP_C".into(), encode_hex(&my_challenge)));
            }
            rsp = self.login_step(opts, itt, Stage::Security, Stage::Operational, true, &keys)?;
            if let Some((target_user, target_secret)) = &opts.mutual {
                // RFC 7143 §12.1.3: the target answers our challenge with its CHAP_N and CHAP_R.
                let want = chap_response(my_id, target_secret.as_bytes(), &my_challenge);
                let got = key_of(&rsp, "CHAP_R").and_then(|v| decode_hex(&v));
                if key_of(&rsp, "CHAP_N").as_deref() != Some(target_user) || got.as_deref() != Some(&want[..]) {
                    return Err(LoginError::Other(format!("target failed mutual CHAP: {:?}", rsp)));
                }
            }
        }
        if !(rsp.transit && rsp.nsg == Stage::Operational) {
            return Err(LoginError::Other(format!("security stage did not end: {rsp:?}")));
        }
        // Operational stage: declare our keys, then answer any offers until the target agrees.
        let digest = |on: bool| if on { "CRC32C" } else { "None" };
        let mut keys: Vec<(String, String)> = vec![
            ("HeaderDigest".into(), digest(opts.header_digest).into()),
            ("DataDigest".into(), digest(opts.data_digest).into()),
            ("MaxRecvDataSegmentLength".into(), OUR_MAX_RECV.to_string()),
        ];
        if opts.target.is_some() {
            keys.push(("ErrorRecoveryLevel".into(), "0".into()));
        }
        for (k, v) in &opts.extra_keys {
            keys.retain(|(old, _)| old != k);
            keys.push((k.clone(), v.clone()));
        }
        let mut sent: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        for _ in 0..4 {
            rsp = self.login_step(opts, itt, Stage::Operational, Stage::FullFeature, true, &keys)?;
            if rsp.transit && rsp.nsg == Stage::FullFeature {
                let answered = pdu::text::parse(&rsp.data).unwrap_or_default();
                self.finish_login(&rsp, opts, &answered)?;
                return Ok(());
            }
            // Offers from the target: accept them as they are (RFC 7143 §6.2).
            let offers = pdu::text::parse(&rsp.data).map_err(|e| LoginError::Other(e.to_string()))?;
            keys = offers.into_iter().filter(|(k, _)| !is_declarative(k) && !sent.contains(k)).collect();
            sent.extend(keys.iter().map(|(k, _)| k.clone()));
        }
        Err(LoginError::Other("operational negotiation did not converge".into()))
    }

    fn finish_login(&mut self, rsp: &LoginResponse, opts: &LoginOptions, keys: &[(String, String)]) -> Result<(), LoginError> {
        self.tsih = rsp.tsih;
        self.digests = Digests { header: opts.header_digest, data: opts.data_digest };
        for (k, v) in keys {
            match k.as_str() {
                "HeaderDigest" => self.digests.header = v == "CRC32C",
                "DataDigest" => self.digests.data = v == "CRC32C",
                _ => {}
            }
        }
        if let Some(v) = self.login_keys.iter().rev().find(|(k, _)| k == "MaxRecvDataSegmentLength") {
            self.target_max_recv = v.1.parse().map_err(|_| LoginError::Other("bad MaxRecvDataSegmentLength".into()))?;
        }
        Ok(())
    }

    fn login_step<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        opts: &LoginOptions,
        itt: u32,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &[(K, V)],
    ) -> Result<LoginResponse, LoginError> {
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg: if transit { nsg } else { csg },
            version_max: 0,
            version_min: 0,
            isid: opts.isid,
            tsih: 0,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: pdu::text::encode(keys),
        };
        self.send_bytes(&req.encode().to_bytes(Digests::default()));
        let pdu = self.recv(ANSWER_TIMEOUT).map_err(|e| LoginError::Other(format!("no login response: {e:?}")))?;
        let rsp = match TargetPdu::decode(&pdu) {
            Ok(TargetPdu::Login(r)) => r,
            other => return Err(LoginError::Other(format!("expected a Login Response, got {other:?}"))),
        };
        if rsp.status_class != 0 {
            return Err(LoginError::Status(rsp.status_class, rsp.status_detail));
        }
        if let Ok(keys) = pdu::text::parse(&rsp.data) {
            self.login_keys.extend(keys);
        }
        Ok(rsp)
    }

    // ---------------------------------------------------------------- wire

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

    // ---------------------------------------------------------------- full feature helpers

    /// A NOP-Out ping (RFC 7143 §11.18) that takes the next CmdSN; returns its ITT.
    pub fn nop_out(&mut self, data: &[u8]) -> NopOut {
        let nop = NopOut {
            immediate: false,
            lun: 0,
            itt: self.new_itt(),
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::copy_from_slice(data),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        nop
    }

    /// Pings and asserts the echo comes back as the very next PDU.
    pub fn ping(&mut self, data: &[u8]) {
        let nop = self.nop_out(data);
        self.send(&nop.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::NopIn(NopIn { itt, ttt, data: echoed, .. }) => {
                assert_eq!(itt, nop.itt, "NOP-In answers our ITT");
                assert_eq!(ttt, RESERVED_TAG, "NOP-In answering a ping carries TTT 0xffffffff (§11.19.1)");
                assert_eq!(&echoed[..], data, "NOP-In echoes the ping data (§11.19)");
            }
            other => panic!("expected the NOP-In answering our ping, got {other:?}"),
        }
    }

    /// A SCSI Command PDU taking the next CmdSN (not sent).
    pub fn command(&mut self, lun: u64, cdb: &[u8], read_len: u32, write_len: u32, immediate_data: &[u8]) -> ScsiCommand {
        let mut full = [0u8; 16];
        full[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: read_len > 0,
            write: write_len > 0,
            attr: attr::SIMPLE,
            lun: lun_field(lun),
            itt: self.new_itt(),
            expected_data_transfer_length: read_len.max(write_len),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: full,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: Bytes::copy_from_slice(immediate_data),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        cmd
    }

    /// Collects the Data-In and SCSI Response of command `itt`, answering R2Ts from `write`.
    pub fn complete(&mut self, itt: u32, lun: u64, write: &[u8]) -> ScsiOutcome {
        let mut data = Vec::new();
        loop {
            match self.recv_msg(ANSWER_TIMEOUT) {
                TargetPdu::DataIn(d) => {
                    assert_eq!(d.itt, itt, "Data-In for another task");
                    assert_eq!(d.buffer_offset as usize, data.len(), "Data-In offsets in order");
                    data.extend_from_slice(&d.data);
                    if let Some(status) = d.status {
                        return ScsiOutcome { status, response: 0, sense: None, data };
                    }
                }
                TargetPdu::R2t(r) => {
                    assert_eq!(r.itt, itt, "R2T for another task");
                    self.answer_r2t(&r, lun, write);
                }
                TargetPdu::ScsiResponse(rsp) => {
                    assert_eq!(rsp.itt, itt, "SCSI Response for another task");
                    return ScsiOutcome { status: rsp.status, response: rsp.response, sense: rsp.sense(), data };
                }
                other => panic!("unexpected PDU while waiting for task 0x{itt:x}: {other:?}"),
            }
        }
    }

    /// Sends the solicited Data-Out answering `r2t`, in PDUs the target can take.
    pub fn answer_r2t(&mut self, r2t: &pdu::msg::R2t, lun: u64, write: &[u8]) {
        let end = (r2t.buffer_offset + r2t.desired_data_transfer_length) as usize;
        let mut offset = r2t.buffer_offset as usize;
        let mut data_sn = 0;
        while offset < end {
            let len = (end - offset).min(self.target_max_recv as usize);
            let d = DataOut {
                final_bit: offset + len == end,
                lun: lun_field(lun),
                itt: r2t.itt,
                ttt: r2t.ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: offset as u32,
                data: Bytes::copy_from_slice(&write[offset..offset + len]),
            };
            self.send(&d.encode());
            offset += len;
            data_sn += 1;
        }
    }

    /// Runs a command to completion (write data via immediate data up to the target's limit,
    /// then R2Ts).
    pub fn exec(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> ScsiOutcome {
        let cmd = self.command(lun, cdb, read_len, write.len() as u32, &[]);
        self.send(&cmd.encode());
        self.complete(cmd.itt, lun, write)
    }

    /// Runs a command that must end GOOD; returns its data.
    pub fn exec_good(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> Vec<u8> {
        let out = self.exec(lun, cdb, read_len, write);
        assert_eq!(out.status, GOOD, "command {cdb:02x?} failed: {:?}", out.sense_triple());
        out.data
    }

    /// TEST UNIT READY until it returns GOOD, consuming the POWER ON / RESET unit attention a
    /// new I_T nexus starts with (SAM-5 §5.14, SPC-4 §5.14). Panics after a few tries.
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
        let cdb = read10_cdb(lba, blocks);
        self.exec_good(lun, &cdb, blocks as u32 * 512, &[])
    }

    /// WRITE(10) of `data` (whole 512-byte blocks) at `lba`.
    pub fn write10(&mut self, lun: u64, lba: u32, data: &[u8]) {
        let cdb = write10_cdb(lba, (data.len() / 512) as u16);
        self.exec_good(lun, &cdb, 0, data);
    }

    /// Task management request (RFC 7143 §11.5), immediate; returns the response code.
    pub fn task_mgmt(&mut self, function: u8, lun: u64, referenced_itt: u32, ref_cmd_sn: u32) -> TaskMgmtResponse {
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: lun_field(lun),
            itt: self.new_itt(),
            referenced_task_tag: referenced_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        };
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::TaskMgmt(rsp) => {
                assert_eq!(rsp.itt, req.itt, "TMF response ITT");
                rsp
            }
            other => panic!("expected a Task Management Response, got {other:?}"),
        }
    }

    /// One-PDU Text Request (RFC 7143 §11.10); returns the keys of the (single) answer.
    pub fn text(&mut self, keys: &[(&str, &str)]) -> Vec<(String, String)> {
        let req = TextRequest {
            immediate: false,
            final_bit: true,
            cont: false,
            lun: 0,
            itt: self.new_itt(),
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: pdu::text::encode(keys),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Text(TextResponse { itt, final_bit, data, .. }) => {
                assert_eq!(itt, req.itt);
                assert!(final_bit, "a short answer fits one Text Response");
                pdu::text::parse(&data).expect("Text Response keys")
            }
            other => panic!("expected a Text Response, got {other:?}"),
        }
    }

    /// Logout (close the session) and expect response 0 then the connection to close.
    pub fn logout(&mut self) {
        let req = LogoutRequest {
            immediate: true,
            reason: pdu::msg::logout::reason::CLOSE_SESSION,
            itt: self.new_itt(),
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(&req.encode());
        match self.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Logout(rsp) => assert_eq!(rsp.response, 0, "logout response: closed successfully"),
            other => panic!("expected a Logout Response, got {other:?}"),
        }
        self.expect_closed(ANSWER_TIMEOUT, |_| false);
    }
}

/// Keys only the target declares; not to be echoed back as accepted offers.
fn is_declarative(key: &str) -> bool {
    matches!(key, "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress" | "MaxRecvDataSegmentLength")
}

fn key_of(rsp: &LoginResponse, key: &str) -> Option<String> {
    pdu::text::parse(&rsp.data).ok()?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Single-level LUN addressing of LUN numbers below 256 (SAM-5 §4.7.1; peripheral method).
pub fn lun_field(lun: u64) -> u64 {
    assert!(lun < 256, "tests use LUNs below 256");
    lun << 48
}

/// RFC 1994 §4.1 CHAP response: MD5(identifier || secret || challenge).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s += &format!("{b:02x}");
    }
    s
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

pub fn read10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x28;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

pub fn write10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
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

/// Asserts CHECK CONDITION with this sense key / ASC / ASCQ.
pub fn assert_sense(out: &ScsiOutcome, key: u8, asc: u8, ascq: u8) {
    assert_eq!(out.status, CHECK_CONDITION, "expected CHECK CONDITION, got status 0x{:02x}", out.status);
    assert_eq!(out.sense_triple(), Some((key, asc, ascq)), "sense data {:02x?}", out.sense);
}
