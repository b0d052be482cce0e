//! Real PDUs captured from libiscsi and open-iscsi talking to tgt (`fixtures/pdus/`, see its
//! README): every file is framed, decoded as its direction says, re-encoded and compared byte
//! for byte with the wire; a few known PDUs are checked field by field.
//!
//! Digests: each connection's digest setting is followed from its Login Responses (the last
//! HeaderDigest/DataDigest answer takes effect after the response that enters Full Feature
//! Phase, RFC 7143 §13.1, §6.2). The captures all negotiated None; every re-encoded PDU is
//! also pushed through the framer with each digest setting, so CRC32C framing is covered too.
//!
//! Byte-exact round-trip holds for every captured PDU because tgt, libiscsi and the Linux
//! initiator send zero in every reserved field, zero padding, and the I bit on Login Requests.
//! Fields the codec does not carry (reserved bytes, NSG without T, a Data-In's status byte and
//! residual count without the S bit) are re-encoded as zero, so a peer that puts garbage
//! there would not round-trip; none of the captures does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use pdu::msg::{InitiatorPdu, Residual, Stage, TargetPdu};
use pdu::{Digests, Framer, OutPdu, Pdu, MAX_DATA_SEGMENT_LEN};

const ALL_DIGESTS: [Digests; 4] = [
    Digests { header: false, data: false },
    Digests { header: true, data: false },
    Digests { header: false, data: true },
    Digests { header: true, data: true },
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pdus")
}

/// One row of a source's INDEX.tsv whose PDU was kept as a file.
struct Fixture {
    source: String,
    stream: String,
    initiator_to_target: bool,
    file: String,
    bytes: Vec<u8>,
}

/// Every kept PDU of every source, in capture order.
fn load_fixtures() -> Vec<Fixture> {
    let mut sources: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/pdus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("INDEX.tsv").is_file())
        .collect();
    sources.sort();
    assert!(sources.len() >= 2, "expected libiscsi/ and open-iscsi/ under fixtures/pdus");
    let mut out = Vec::new();
    for dir in sources {
        let source = dir.file_name().unwrap().to_string_lossy().into_owned();
        let index = std::fs::read_to_string(dir.join("INDEX.tsv")).unwrap();
        let mut listed = 0;
        for line in index.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (stream, dir_col, file) = (cols[2], cols[3], cols[6]);
            if file == "-" {
                continue;
            }
            listed += 1;
            let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{source}/{file}: {e}"));
            assert_eq!(bytes.len().to_string(), cols[5], "{source}/{file}: size differs from INDEX.tsv");
            assert!(file.contains(dir_col), "{source}/{file}: name disagrees with direction {dir_col}");
            out.push(Fixture {
                source: source.clone(),
                stream: stream.to_owned(),
                initiator_to_target: dir_col == "i2t",
                file: file.to_owned(),
                bytes,
            });
        }
        let on_disk = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "bin"))
            .count();
        assert_eq!(listed, on_disk, "{source}: every .bin file is listed in INDEX.tsv and vice versa");
    }
    out
}

enum Decoded {
    Initiator(InitiatorPdu),
    Target(TargetPdu),
}

impl Decoded {
    fn of(pdu: &Pdu, initiator_to_target: bool) -> Decoded {
        if initiator_to_target {
            Decoded::Initiator(InitiatorPdu::decode(pdu).unwrap_or_else(|e| panic!("decode: {e:?} {pdu:?}")))
        } else {
            Decoded::Target(TargetPdu::decode(pdu).unwrap_or_else(|e| panic!("decode: {e:?} {pdu:?}")))
        }
    }

    fn encode(&self) -> OutPdu {
        match self {
            Decoded::Initiator(p) => p.encode(),
            Decoded::Target(p) => p.encode(),
        }
    }
}

/// Frames `wire` fed in pieces of `chunk` bytes; exactly one whole PDU must come out.
fn frame_one(wire: &[u8], digests: Digests, chunk: usize) -> Pdu {
    let framer = Framer { digests, max_data_segment: MAX_DATA_SEGMENT_LEN };
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(p) = framer.decode(&mut buf).expect("framing") {
            got.push(p);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over after the PDU", buf.len());
    assert_eq!(got.len(), 1, "one file holds one PDU");
    let pdu = got.pop().unwrap();
    assert!(pdu.data_digest_ok());
    pdu
}

/// Tracks each connection's digests from its Login Responses (RFC 7143 §13.1).
#[derive(Default)]
struct StreamDigests {
    negotiated: Digests,
    active: Digests,
}

impl StreamDigests {
    fn observe(&mut self, decoded: &Decoded) {
        let Decoded::Target(TargetPdu::Login(rsp)) = decoded else { return };
        for (key, value) in pdu::text::parse(&rsp.data).expect("login response text") {
            match key.as_str() {
                "HeaderDigest" => self.negotiated.header = value == "CRC32C",
                "DataDigest" => self.negotiated.data = value == "CRC32C",
                _ => {}
            }
        }
        if rsp.transit && rsp.nsg == Stage::FullFeature && rsp.status_class == 0 {
            self.active = self.negotiated;
        }
    }
}

#[test]
fn every_captured_pdu_round_trips_byte_for_byte() {
    let fixtures = load_fixtures();
    assert!(fixtures.len() > 250, "only {} fixtures found", fixtures.len());
    let mut streams: HashMap<(String, String), StreamDigests> = HashMap::new();
    for fx in &fixtures {
        let name = format!("{}/{}", fx.source, fx.file);
        let state = streams.entry((fx.source.clone(), fx.stream.clone())).or_default();
        let digests = state.active;
        let pdu = frame_one(&fx.bytes, digests, fx.bytes.len());
        let decoded = Decoded::of(&pdu, fx.initiator_to_target);
        let again = decoded.encode().to_bytes(digests);
        assert!(
            again[..] == fx.bytes[..],
            "{name}: re-encoded bytes differ\n got {:02x?}\nwant {:02x?}",
            &again[..again.len().min(64)],
            &fx.bytes[..fx.bytes.len().min(64)]
        );
        // Same PDU fed 5 bytes at a time (boundaries inside every field).
        let chunked = frame_one(&fx.bytes, digests, 5);
        assert_eq!(chunked.header_bytes(), pdu.header_bytes(), "{name}");
        assert_eq!(chunked.data(), pdu.data(), "{name}");
        // With each digest setting, the re-encoded PDU frames back to the same bytes.
        for d in ALL_DIGESTS {
            let wire = decoded.encode().to_bytes(d);
            let back = Decoded::of(&frame_one(&wire, d, wire.len()), fx.initiator_to_target);
            assert_eq!(back.encode().to_bytes(d), wire, "{name} with {d:?}");
        }
        state.observe(&decoded);
    }
    assert!(streams.values().all(|s| s.active == Digests::default()), "README says all sessions chose None");
}

fn fixture(path: &str) -> Bytes {
    Bytes::from(std::fs::read(fixtures_dir().join(path)).unwrap())
}

fn initiator(path: &str) -> InitiatorPdu {
    let raw = fixture(path);
    InitiatorPdu::decode(&frame_one(&raw, Digests::default(), raw.len())).unwrap()
}

fn target(path: &str) -> TargetPdu {
    let raw = fixture(path);
    TargetPdu::decode(&frame_one(&raw, Digests::default(), raw.len())).unwrap()
}

#[test]
fn libiscsi_discovery_login_request_fields() {
    let InitiatorPdu::Login(req) = initiator("libiscsi/001-i2t-login-req.bin") else { panic!("not a login") };
    assert!(req.transit && !req.cont);
    assert_eq!((req.csg, req.nsg), (Stage::Operational, Stage::FullFeature));
    assert_eq!(req.itt, 0x7c20_c3b4);
    assert_eq!(req.tsih, 0);
    let keys = pdu::text::parse(&req.data).unwrap();
    assert_eq!(keys.len(), 18);
    assert_eq!(keys[0], ("InitiatorName".into(), "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-ls".into()));
    assert_eq!(keys[1], ("SessionType".into(), "Discovery".into()));
}

#[test]
fn open_iscsi_login_request_carries_kernel_keys() {
    let InitiatorPdu::Login(req) = initiator("open-iscsi/005-i2t-login-req.bin") else { panic!("not a login") };
    let keys = pdu::text::parse(&req.data).unwrap();
    let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert!(get("InitiatorName").unwrap().starts_with("iqn."));
    assert_eq!(get("SessionType"), Some("Normal"));
    assert_eq!(get("TargetName"), Some("iqn.2026-11.io.palisade:capture"));
    assert_eq!(keys.len(), 20);
}

#[test]
fn scsi_commands_carry_their_cdbs() {
    let InitiatorPdu::ScsiCommand(cmd) = initiator("libiscsi/009-i2t-scsi-cmd.bin") else { panic!() };
    assert_eq!(cmd.cdb[0], 0xa0, "REPORT LUNS");
    assert_eq!(u32::from_be_bytes(cmd.cdb[6..10].try_into().unwrap()), 16, "allocation length");
    assert_eq!(cmd.expected_data_transfer_length, 16);
    assert!(cmd.read && !cmd.write && cmd.final_bit);

    // WRITE(10) of 1 block with 8192 bytes of immediate data and EDTL 10000 (Write10Residuals).
    let InitiatorPdu::ScsiCommand(cmd) = initiator("libiscsi/133-i2t-scsi-cmd.bin") else { panic!() };
    assert_eq!(cmd.cdb[0], 0x2a);
    assert_eq!(cmd.expected_data_transfer_length, 10000);
    assert_eq!(cmd.data.len(), 8192);
    assert!(cmd.write && !cmd.read);

    // The Linux initiator's 64 KiB read at LBA 2048.
    let InitiatorPdu::ScsiCommand(cmd) = initiator("open-iscsi/155-i2t-scsi-cmd.bin") else { panic!() };
    assert_eq!(&cmd.cdb[..10], &[0x28, 0, 0, 0, 0x08, 0, 0, 0, 0x80, 0]);
    assert_eq!(cmd.expected_data_transfer_length, 65536);
}

#[test]
fn r2t_and_data_out_offsets() {
    let TargetPdu::R2t(r2t) = target("libiscsi/134-t2i-r2t.bin") else { panic!() };
    assert_eq!((r2t.r2t_sn, r2t.buffer_offset, r2t.desired_data_transfer_length), (0, 8192, 1808));
    let InitiatorPdu::DataOut(out) = initiator("libiscsi/135-i2t-data-out.bin") else { panic!() };
    assert_eq!((out.ttt, out.buffer_offset, out.data.len()), (r2t.ttt, 8192, 1808));
    assert!(out.final_bit);

    let InitiatorPdu::DataOut(out) = initiator("open-iscsi/148-i2t-data-out.bin") else { panic!() };
    assert_eq!((out.itt, out.data_sn, out.buffer_offset, out.data.len()), (0x4600_0000, 1, 16384, 8192));
    assert!(!out.final_bit);
}

#[test]
fn data_in_and_responses_carry_status_and_residuals() {
    let TargetPdu::DataIn(din) = target("open-iscsi/020-t2i-data-in.bin") else { panic!() };
    assert_eq!(din.status, Some(0));
    assert_eq!(din.residual, Residual::Underflow(26));
    assert_eq!((din.data_sn, din.buffer_offset, din.data.len()), (0, 0, 10));

    let TargetPdu::ScsiResponse(rsp) = target("libiscsi/136-t2i-scsi-rsp.bin") else { panic!() };
    assert_eq!((rsp.status, rsp.residual), (0, Residual::Underflow(9488)));
    let TargetPdu::ScsiResponse(rsp) = target("libiscsi/138-t2i-scsi-rsp.bin") else { panic!() };
    assert_eq!(rsp.residual, Residual::Overflow(312));

    // CHECK CONDITION with fixed-format sense (tgt answers the first TUR with UNIT ATTENTION).
    let TargetPdu::ScsiResponse(rsp) = target("libiscsi/014-t2i-scsi-rsp.bin") else { panic!() };
    assert_eq!(rsp.status, 0x02);
    let sense = rsp.sense().expect("sense data");
    assert_eq!(sense[0] & 0x7f, 0x70);
    assert_eq!(sense[2] & 0x0f, 0x06, "UNIT ATTENTION");
}

#[test]
fn task_management_abort_and_answer() {
    let InitiatorPdu::TaskMgmt(tmf) = initiator("libiscsi/208-i2t-tmf-req.bin") else { panic!() };
    assert_eq!(tmf.function, pdu::msg::task_mgmt::function::ABORT_TASK);
    assert_eq!(tmf.referenced_task_tag, 0x2848_3ca4);
    let TargetPdu::TaskMgmt(rsp) = target("libiscsi/210-t2i-tmf-rsp.bin") else { panic!() };
    assert_eq!(rsp.response, pdu::msg::task_mgmt::response::TASK_DOES_NOT_EXIST);
    assert_eq!(rsp.itt, tmf.itt);
}

#[test]
fn send_targets_answer_names_the_capture_target() {
    let TargetPdu::Text(rsp) = target("open-iscsi/004-t2i-text-rsp.bin") else { panic!() };
    let keys = pdu::text::parse(&rsp.data).unwrap();
    assert_eq!(keys[0], ("TargetName".into(), "iqn.2026-11.io.palisade:capture".into()));
    assert_eq!(keys[1].0, "TargetAddress");
    assert!(rsp.final_bit && !rsp.cont);
}
