//! A minimal blocking iSCSI initiator for integration tests that need raw CDBs (libiscsi-bin
//! has no generic "send this CDB" tool): one connection, no digests, InitialR2T=Yes and
//! ImmediateData=No so every write goes through R2T / Data-Out, ERL 0.
#![allow(dead_code)] // each test binary uses a different subset

use bytes::{Bytes, BytesMut};
use pdu::msg::data::DataOut;
use pdu::msg::login::{LoginRequest, Stage};
use pdu::msg::nop::NopOut;
use pdu::msg::scsi::ScsiCommand;
use pdu::msg::TargetPdu;
use pdu::{Digests, Framer};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The outcome of one command.
#[derive(Debug, Clone)]
pub struct CmdResult {
    pub status: u8,
    pub sense: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

impl CmdResult {
    pub fn is_good(&self) -> bool {
        self.status == 0
    }

    /// (sense key, ASC, ASCQ) from fixed or descriptor sense; panics without sense data.
    pub fn sense_code(&self) -> (u8, u8, u8) {
        let s = self.sense.as_ref().unwrap_or_else(|| panic!("no sense data: status {:#x}", self.status));
        match s[0] & 0x7F {
            0x70 | 0x71 => (s[2] & 0x0F, s[12], s[13]),
            _ => (s[1] & 0x0F, s[2], s[3]),
        }
    }

    /// The fixed-format INFORMATION field when VALID is set.
    pub fn information(&self) -> Option<u32> {
        let s = self.sense.as_ref()?;
        (s[0] & 0x80 != 0).then(|| u32::from_be_bytes([s[3], s[4], s[5], s[6]]))
    }
}

pub struct BlockInitiator {
    stream: TcpStream,
    rx: BytesMut,
    framer: Framer,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    /// The target's MaxRecvDataSegmentLength: the largest Data-Out segment we may send.
    max_send: usize,
}

/// The SAM LUN field for LUN `id` (peripheral addressing below 256, flat above).
pub fn lun_field(id: u64) -> u64 {
    if id < 256 {
        id << 48
    } else {
        (0x4000 | id) << 48
    }
}

const MAX_RECV: u32 = 262_144;

impl BlockInitiator {
    /// Logs in to `target` at `portal` ("host:port") as `initiator`; `isid_tail` makes the
    /// session (I_T nexus) distinct.
    pub fn connect(portal: &str, target: &str, initiator: &str, isid_tail: u8) -> BlockInitiator {
        let stream = TcpStream::connect(portal).expect("connect to target");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut me = BlockInitiator {
            stream,
            rx: BytesMut::new(),
            framer: Framer::login(),
            itt: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_send: 8192,
        };
        let keys = pdu::text::encode(&[
            ("InitiatorName", initiator),
            ("SessionType", "Normal"),
            ("TargetName", target),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", &MAX_RECV.to_string()),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "1048576"),
            ("FirstBurstLength", "262144"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxConnections", "1"),
        ]);
        let mut data = keys;
        loop {
            let request = LoginRequest {
                transit: true,
                cont: false,
                csg: Stage::Operational,
                nsg: Stage::FullFeature,
                version_max: 0,
                version_min: 0,
                isid: [0x80, 0x00, 0x00, 0x00, 0x42, isid_tail],
                tsih: 0,
                itt: 0,
                cid: 0,
                cmd_sn: me.cmd_sn,
                exp_stat_sn: me.exp_stat_sn,
                data: data.clone(),
            };
            me.send(request.encode().to_bytes(Digests::default()));
            let TargetPdu::Login(response) = me.receive() else { panic!("expected a login response") };
            assert_eq!(response.status_class, 0, "login refused: {response:?}");
            me.exp_stat_sn = response.seq.stat_sn.wrapping_add(1);
            for (key, value) in pdu::text::parse(&response.data).expect("login text") {
                if key == "MaxRecvDataSegmentLength" {
                    me.max_send = value.parse().expect("MaxRecvDataSegmentLength");
                }
            }
            if response.transit && response.nsg == Stage::FullFeature {
                break;
            }
            data = Bytes::new();
        }
        me.framer = Framer { digests: Digests::default(), max_data_segment: MAX_RECV };
        me
    }

    fn send(&mut self, bytes: Bytes) {
        self.stream.write_all(&bytes).expect("send PDU");
    }

    fn receive(&mut self) -> TargetPdu {
        loop {
            if let Some(pdu) = self.framer.decode(&mut self.rx).expect("framing") {
                return TargetPdu::decode(&pdu).expect("decode target PDU");
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read from target");
            assert!(n > 0, "target closed the connection");
            self.rx.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one CDB to `lun` with `data_out` (may be empty) expecting up to `data_in_len`
    /// bytes back; returns when the status arrives.
    pub fn command(&mut self, lun: u64, cdb: &[u8], data_out: &[u8], data_in_len: u32) -> CmdResult {
        let itt = self.itt;
        self.itt = self.itt.wrapping_add(1);
        let mut cdb16 = [0u8; 16];
        cdb16[..cdb.len()].copy_from_slice(cdb);
        let command = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: data_in_len > 0,
            write: !data_out.is_empty(),
            attr: 1, // SIMPLE
            lun: lun_field(lun),
            itt,
            expected_data_transfer_length: (data_out.len() as u32).max(data_in_len),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb16,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: Bytes::new(),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(command.encode().to_bytes(Digests::default()));
        let mut data_in = Vec::new();
        loop {
            match self.receive() {
                TargetPdu::DataIn(d) => {
                    let at = d.buffer_offset as usize;
                    if data_in.len() < at + d.data.len() {
                        data_in.resize(at + d.data.len(), 0);
                    }
                    data_in[at..at + d.data.len()].copy_from_slice(&d.data);
                    if let Some(status) = d.status {
                        self.exp_stat_sn = d.seq.stat_sn.wrapping_add(1);
                        return CmdResult { status, sense: None, data: data_in };
                    }
                }
                TargetPdu::R2t(r2t) => {
                    let (start, len) = (r2t.buffer_offset as usize, r2t.desired_data_transfer_length as usize);
                    let end = (start + len).min(data_out.len());
                    let mut at = start;
                    let mut data_sn = 0;
                    while at < end {
                        let n = (end - at).min(self.max_send);
                        let out = DataOut {
                            final_bit: at + n == end,
                            lun: lun_field(lun),
                            itt,
                            ttt: r2t.ttt,
                            exp_stat_sn: self.exp_stat_sn,
                            data_sn,
                            buffer_offset: at as u32,
                            data: Bytes::copy_from_slice(&data_out[at..at + n]),
                        };
                        self.send(out.encode().to_bytes(Digests::default()));
                        data_sn += 1;
                        at += n;
                    }
                }
                TargetPdu::ScsiResponse(r) => {
                    self.exp_stat_sn = r.seq.stat_sn.wrapping_add(1);
                    let sense = r.sense().map(|s| s.to_vec());
                    return CmdResult { status: r.status, sense, data: data_in };
                }
                TargetPdu::NopIn(nop) if nop.ttt != 0xFFFF_FFFF => {
                    // A target ping: answer it (RFC 7143 §11.18) so the session stays up.
                    let out = NopOut {
                        immediate: true,
                        lun: nop.lun,
                        itt: 0xFFFF_FFFF,
                        ttt: nop.ttt,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: self.exp_stat_sn,
                        data: Bytes::new(),
                    };
                    self.send(out.encode().to_bytes(Digests::default()));
                }
                TargetPdu::Reject(r) => panic!("target rejected a PDU: {r:?}"),
                _ => {}
            }
        }
    }

    /// Shorthand: the command must succeed; returns its data-in.
    pub fn ok(&mut self, lun: u64, cdb: &[u8], data_out: &[u8], data_in_len: u32) -> Vec<u8> {
        let result = self.command(lun, cdb, data_out, data_in_len);
        assert!(result.is_good(), "CDB {cdb:02x?} failed: {result:?}");
        result.data
    }

    /// TEST UNIT READY until the power-on / reset unit attention is consumed.
    pub fn clear_unit_attention(&mut self, lun: u64) {
        for _ in 0..4 {
            if self.command(lun, &[0; 6], &[], 0).is_good() {
                return;
            }
        }
        panic!("unit attention did not clear on LUN {lun}");
    }
}
