//! Round-trip properties for every PDU family: any message encodes and decodes back to itself,
//! with and without digests, through the framer.

use bytes::{Bytes, BytesMut};
use pdu::msg::login::Stage;
use pdu::msg::*;
use pdu::{Digests, Framer, OutPdu};
use proptest::prelude::*;

fn data() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..600).prop_map(Bytes::from)
}

fn seq() -> impl Strategy<Value = TargetSeq> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| TargetSeq {
        stat_sn: a,
        exp_cmd_sn: b,
        max_cmd_sn: c,
    })
}

fn residual() -> impl Strategy<Value = Residual> {
    prop_oneof![
        Just(Residual::None),
        any::<u32>().prop_map(Residual::Overflow),
        any::<u32>().prop_map(Residual::Underflow)
    ]
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![Just(Stage::Security), Just(Stage::Operational), Just(Stage::FullFeature)]
}

/// Frames one encoded PDU back out of its wire bytes.
fn reframe(out: &OutPdu, digests: Digests) -> pdu::Pdu {
    let framer = Framer { digests, max_data_segment: 1 << 16 };
    let mut buf = BytesMut::from(&out.to_bytes(digests)[..]);
    let pdu = framer.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert!(pdu.data_digest_ok());
    pdu
}

fn digests() -> impl Strategy<Value = Digests> {
    (any::<bool>(), any::<bool>()).prop_map(|(header, data)| Digests { header, data })
}

proptest! {
    #[test]
    fn scsi_command(imm: bool, f: bool, r: bool, w: bool, attr in 0u8..5, lun: u64, itt: u32, edtl: u32,
                    cmd_sn: u32, exp: u32, cdb: [u8; 16], d in data(), dg in digests()) {
        let m = ScsiCommand { immediate: imm, final_bit: f, read: r, write: w, attr, lun, itt,
            expected_data_transfer_length: edtl, cmd_sn, exp_stat_sn: exp, cdb,
            extended_cdb: Bytes::new(), bidi_read_length: None, data: d };
        prop_assert_eq!(ScsiCommand::decode(&reframe(&m.encode(), dg)).unwrap(), m);
    }

    #[test]
    fn scsi_response(res in residual(), status: u8, itt: u32, s in seq(), eds: u32, d in data(), dg in digests()) {
        let m = ScsiResponse { residual: res, bidi_residual: Residual::None, response: 0, status, itt, seq: s, exp_data_sn: eds, data: d };
        prop_assert_eq!(ScsiResponse::decode(&reframe(&m.encode(), dg)).unwrap(), m);
    }

    #[test]
    fn data_in(f: bool, with_status: bool, status: u8, res in residual(), lun: u64, itt: u32, s in seq(),
               dsn: u32, off: u32, d in data(), dg in digests()) {
        let has_status = with_status && f;
        let m = DataIn { final_bit: f, ack: false, status: has_status.then_some(status),
            residual: if has_status { res } else { Residual::None }, lun, itt, ttt: 0xffff_ffff,
            seq: s, data_sn: dsn, buffer_offset: off, data: d };
        prop_assert_eq!(DataIn::decode(&reframe(&m.encode(), dg)).unwrap(), m);
    }

    #[test]
    fn r2t_and_nops(lun: u64, itt: u32, ttt: u32, s in seq(), sn: u32, off: u32, len: u32, d in data(), dg in digests()) {
        let m = R2t { lun, itt, ttt, seq: s, r2t_sn: sn, buffer_offset: off, desired_data_transfer_length: len };
        prop_assert_eq!(R2t::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = NopIn { lun, itt, ttt, seq: s, data: d.clone() };
        prop_assert_eq!(NopIn::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = NopOut { immediate: true, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: off, data: d };
        prop_assert_eq!(NopOut::decode(&reframe(&m.encode(), dg)).unwrap(), m);
    }

    #[test]
    fn login(t: bool, csg in stage(), nsg in stage(), isid: [u8; 6], tsih: u16, itt: u32, cid: u16,
             sn: u32, s in seq(), class: u8, detail: u8, d in data()) {
        let m = LoginRequest { transit: t, cont: !t, csg, nsg: if t { nsg } else { Stage::Security },
            version_max: 0, version_min: 0, isid, tsih, itt, cid, cmd_sn: sn, exp_stat_sn: sn, data: d.clone() };
        prop_assert_eq!(LoginRequest::decode(&reframe(&m.encode(), Digests::default())).unwrap(), m);
        let m = LoginResponse { transit: t, cont: false, csg, nsg: if t { nsg } else { Stage::Security },
            version_max: 0, version_active: 0, isid, tsih, itt, seq: s, status_class: class,
            status_detail: detail, data: d };
        prop_assert_eq!(LoginResponse::decode(&reframe(&m.encode(), Digests::default())).unwrap(), m);
    }

    #[test]
    fn text_logout_tmf_reject_async(f: bool, lun: u64, itt: u32, ttt: u32, sn: u32, s in seq(),
                                    reason in 0u8..3, func in 1u8..9, code: u8, d in data(), dg in digests()) {
        let m = TextRequest { immediate: false, final_bit: f, cont: !f, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: sn, data: d.clone() };
        prop_assert_eq!(TextRequest::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = TextResponse { final_bit: f, cont: !f, lun, itt, ttt, seq: s, data: d.clone() };
        prop_assert_eq!(TextResponse::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = LogoutRequest { immediate: true, reason, itt, cid: 1, cmd_sn: sn, exp_stat_sn: sn };
        prop_assert_eq!(LogoutRequest::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = LogoutResponse { response: code, itt, seq: s, time2wait: 2, time2retain: 20 };
        prop_assert_eq!(LogoutResponse::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = TaskMgmtRequest { immediate: true, function: func, lun, itt, referenced_task_tag: ttt,
            cmd_sn: sn, exp_stat_sn: sn, ref_cmd_sn: sn, exp_data_sn: 0 };
        prop_assert_eq!(TaskMgmtRequest::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = TaskMgmtResponse { response: code, itt, seq: s };
        prop_assert_eq!(TaskMgmtResponse::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = Reject { reason: code, seq: s, data_sn: sn, header: d.clone() };
        prop_assert_eq!(Reject::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = AsyncMessage { lun, seq: s, event: code, vcode: 0, parameter1: 1, parameter2: 2, parameter3: 3, data: d };
        prop_assert_eq!(AsyncMessage::decode(&reframe(&m.encode(), dg)).unwrap(), m);
        let m = Snack { kind: func & 0x0f, lun, itt, ttt, exp_stat_sn: sn, beg_run: 1, run_length: 2 };
        prop_assert_eq!(Snack::decode(&reframe(&m.encode(), dg)).unwrap(), m);
    }
}
