//! Framing properties: any PDU encoded with any digest setting, fed in arbitrary chunks,
//! comes back whole and equal; corrupt or oversized input is refused before buffering.

use bytes::{Bytes, BytesMut};
use pdu::bhs::BhsBuf;
use pdu::msg::{DataOut, InitiatorPdu, ScsiCommand};
use pdu::{DecodeError, Digests, Framer, Opcode, OutPdu};
use proptest::prelude::*;

fn decode_all(framer: &Framer, wire: &[u8], chunk: usize) -> Vec<pdu::Pdu> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(p) = framer.decode(&mut buf).unwrap() {
            out.push(p);
        }
    }
    assert!(buf.is_empty(), "left-over bytes");
    out
}

fn data_out(len: usize, seed: u8) -> OutPdu {
    DataOut {
        final_bit: true,
        lun: 0,
        itt: seed as u32,
        ttt: 7,
        exp_stat_sn: 1,
        data_sn: 0,
        buffer_offset: 0,
        data: Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(seed)).collect::<Vec<_>>()),
    }
    .encode()
}

proptest! {
    #[test]
    fn roundtrip_any_chunking(lens in proptest::collection::vec(0usize..3000, 1..6),
                              hd: bool, dd: bool, chunk in 1usize..700, seed: u8) {
        let digests = Digests { header: hd, data: dd };
        let framer = Framer { digests, max_data_segment: 4096 };
        let pdus: Vec<OutPdu> = lens.iter().map(|&l| data_out(l, seed)).collect();
        let mut wire = Vec::new();
        for p in &pdus { wire.extend_from_slice(&p.to_bytes(digests)); }
        let got = decode_all(&framer, &wire, chunk);
        prop_assert_eq!(got.len(), pdus.len());
        for (g, p) in got.iter().zip(&pdus) {
            prop_assert!(g.data_digest_ok());
            prop_assert_eq!(g.data(), p.data.clone());
            prop_assert_eq!(&g.header_bytes()[..], &p.finished_bhs().0[..]);
        }
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), hd: bool, dd: bool) {
        let framer = Framer { digests: Digests { header: hd, data: dd }, max_data_segment: 256 };
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(p)) = framer.decode(&mut buf) {
            let _ = InitiatorPdu::decode(&p);
            let _ = pdu::msg::TargetPdu::decode(&p);
        }
    }
}

#[test]
fn oversized_segment_refused_before_buffering() {
    let framer = Framer { digests: Digests::default(), max_data_segment: 8192 };
    let hdr = BhsBuf::new(Opcode::SCSI_DATA_OUT).lengths(0, 8193);
    let mut buf = BytesMut::from(&hdr.0[..]);
    let cap_before = buf.capacity();
    match framer.decode(&mut buf) {
        Err(DecodeError::DataSegmentTooLong { len: 8193, max: 8192 }) => {}
        other => panic!("expected DataSegmentTooLong, got {other:?}"),
    }
    assert!(buf.capacity() <= cap_before.max(64), "must not reserve for an oversized segment");
}

#[test]
fn header_digest_error_detected() {
    let digests = Digests { header: true, data: false };
    let framer = Framer { digests, max_data_segment: 8192 };
    let mut wire = data_out(10, 3).to_bytes(digests).to_vec();
    wire[20] ^= 0x01;
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(framer.decode(&mut buf).unwrap_err(), DecodeError::HeaderDigest);
}

#[test]
fn data_digest_error_flagged_not_fatal() {
    let digests = Digests { header: true, data: true };
    let framer = Framer { digests, max_data_segment: 8192 };
    let mut wire = data_out(100, 3).to_bytes(digests).to_vec();
    wire[60] ^= 0x80; // inside the data segment
    let mut buf = BytesMut::from(&wire[..]);
    let p = framer.decode(&mut buf).unwrap().unwrap();
    assert!(!p.data_digest_ok());
    assert!(buf.is_empty());
}

#[test]
fn received_data_is_a_slice_of_the_receive_buffer() {
    let framer = Framer { digests: Digests::default(), max_data_segment: 1 << 20 };
    let wire = data_out(65536, 5).to_bytes(Digests::default());
    let mut buf = BytesMut::from(&wire[..]);
    let base = buf.as_ptr() as usize;
    let p = framer.decode(&mut buf).unwrap().unwrap();
    // Zero copy: the data segment points into the same allocation, 48 bytes in.
    assert_eq!(p.data().as_ptr() as usize, base + 48);
}

#[test]
fn unknown_opcode_is_reported() {
    let hdr = BhsBuf::new(Opcode(0x1c)).flags(0x80);
    let p = pdu::Pdu::from_parts(Bytes::copy_from_slice(&hdr.0)).unwrap();
    assert_eq!(InitiatorPdu::decode(&p).unwrap_err(), DecodeError::UnknownOpcode(0x1c));
    let _ = ScsiCommand::decode(&p);
}
