//! End-to-end tests of the task layer through `ScsiTarget::prepare` / `Prepared::execute`,
//! with golden CDBs and hostile inputs.

use super::*;

mod alua;
mod mode_pages;
mod odx;
mod sbc_compare;
mod sbc_extra;
mod write_fence;
mod xcopy;
use crate::backend::{Backend, FileBackend, MemoryBackend};
use bytes::Bytes;
use std::sync::Arc;

const BS: u32 = 512;
const BLOCKS: u64 = 2048;

fn nexus(isid: u8) -> Arc<ItNexus> {
    Arc::new(ItNexus::new(
        &format!("iqn.2026-01.test:init{isid}"),
        [0x80, 0, 0, 0, 0, isid],
        "iqn.2026-01.org.palisade:t",
        1,
    ))
}

fn memory_lun(id: u64) -> Arc<Lun> {
    let backend = Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64));
    Arc::new(Lun::new(id, backend, BS, LunIdentity::new("disk", "0001", &format!("SN{id}")), false).unwrap())
}

fn target(luns: Vec<Arc<Lun>>) -> ScsiTarget {
    ScsiTarget::new("iqn.2026-01.org.palisade:t".into(), luns, LunMasking::allow_all())
}

fn lun_field(id: u64) -> u64 {
    u64::from_be_bytes(lun::encode_lun(id))
}

fn task(nexus: &Arc<ItNexus>, lun: u64, cdb: &[u8], edtl: u32) -> ScsiTask {
    let mut bytes = [0u8; 16];
    bytes[..cdb.len()].copy_from_slice(cdb);
    ScsiTask {
        nexus: nexus.clone(),
        lun: lun_field(lun),
        cdb: bytes,
        cdb_len: 16,
        attr: TaskAttr::Simple,
        expected_data_in_len: edtl,
        expected_data_out_len: edtl,
    }
}

/// Runs one command to completion with `data` as data-out.
async fn run(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64, cdb: &[u8], data: &[u8]) -> Completion {
    match t.prepare(task(n, lun, cdb, data.len().max(1 << 16) as u32)) {
        Err(done) => done,
        Ok(prepared) => {
            let take = (prepared.data_out_len() as usize).min(data.len());
            prepared.execute(DataOut::from(Bytes::copy_from_slice(&data[..take]))).await
        }
    }
}

/// Runs a command on a fresh nexus after clearing its power-on unit attention.
async fn fresh(t: &ScsiTarget, lun: u64) -> Arc<ItNexus> {
    let n = nexus(9);
    let c = run(t, &n, lun, &[0, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(sense_code(&c), (6, 0x29, 0));
    n
}

/// (key, asc, ascq) of a CHECK CONDITION in either format.
fn sense_code(c: &Completion) -> (u8, u8, u8) {
    assert_eq!(c.status, 0x02, "expected CHECK CONDITION, got {c:?}");
    let s = c.sense.as_ref().expect("sense data with CHECK CONDITION");
    // The tests' one sense parser (fixed and descriptor format, SPC-4 §4.5); current errors only.
    let sense = initiator::sense::Sense::parse(s).unwrap_or_else(|| panic!("unparsable sense {s:02x?}"));
    assert!(matches!(sense.response_code, 0x70 | 0x72), "bad response code {:#x}", sense.response_code);
    sense.triple()
}

fn good(c: &Completion) -> Bytes {
    assert_eq!(c.status, 0, "expected GOOD, got {c:?}");
    c.data_in.clone().unwrap_or_default()
}

fn rw10(op: u8, flags: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut cdb = vec![op, flags];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.push(0);
    cdb.extend_from_slice(&blocks.to_be_bytes());
    cdb.push(0);
    cdb
}

fn rw16(op: u8, flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut cdb = vec![op, flags];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&blocks.to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

#[tokio::test]
async fn power_on_unit_attention_once_per_nexus_and_not_for_inquiry() {
    let t = target(vec![memory_lun(0)]);
    let a = nexus(1);
    assert_eq!(good(&run(&t, &a, 0, &[0x12, 0, 0, 0, 36, 0], &[]).await).len(), 36);
    assert_eq!(sense_code(&run(&t, &a, 0, &[0, 0, 0, 0, 0, 0], &[]).await), (6, 0x29, 0));
    good(&run(&t, &a, 0, &[0, 0, 0, 0, 0, 0], &[]).await);
    // REQUEST SENSE reports and clears the UA of another nexus with GOOD status.
    let b = nexus(2);
    let sense = good(&run(&t, &b, 0, &[0x03, 0, 0, 0, 252, 0], &[]).await);
    assert_eq!((sense[0], sense[2], sense[12], sense[13]), (0x70, 6, 0x29, 0));
    let sense = good(&run(&t, &b, 0, &[0x03, 1, 0, 0, 252, 0], &[]).await);
    assert_eq!(&sense[..4], &[0x72, 0, 0, 0]);
    good(&run(&t, &b, 0, &[0, 0, 0, 0, 0, 0], &[]).await);
}

/// SAM-5 §5.14: unit attentions are per I_T nexus — one initiator port through two target
/// ports (a multipath host on two portal groups) is told on each path, and one path taking its
/// unit attention leaves the other's pending.
#[tokio::test]
async fn one_initiator_port_through_two_target_ports_gets_each_unit_attention_on_both() {
    let t = target(vec![memory_lun(0)]);
    let first = nexus(1);
    let second =
        Arc::new(ItNexus::new("iqn.2026-01.test:init1", [0x80, 0, 0, 0, 0, 1], "iqn.2026-01.org.palisade:t", 2));
    for n in [&first, &second] {
        assert_eq!(sense_code(&run(&t, n, 0, &[0; 6], &[]).await), (6, 0x29, 0), "power on, once per nexus");
        good(&run(&t, n, 0, &[0; 6], &[]).await);
    }
    assert!(t.logical_unit_reset(lun_field(0), &first).await);
    assert_eq!(sense_code(&run(&t, &first, 0, &[0; 6], &[]).await), (6, 0x29, 0x03));
    assert_eq!(sense_code(&run(&t, &second, 0, &[0; 6], &[]).await), (6, 0x29, 0x03), "the other path's own");
    good(&run(&t, &second, 0, &[0; 6], &[]).await);
}

#[tokio::test]
async fn lun_reset_and_nexus_loss_unit_attentions() {
    let t = target(vec![memory_lun(0)]);
    let a = fresh(&t, 0).await;
    assert!(t.logical_unit_reset(lun_field(0), &a).await);
    assert!(!t.logical_unit_reset(lun_field(7), &a).await);
    assert_eq!(sense_code(&run(&t, &a, 0, &[0; 6], &[]).await), (6, 0x29, 0x03));
    t.nexus_lost(&a);
    assert_eq!(sense_code(&run(&t, &a, 0, &[0; 6], &[]).await), (6, 0x29, 0x07));
    t.target_reset(&a, true).await;
    assert_eq!(sense_code(&run(&t, &a, 0, &[0; 6], &[]).await), (6, 0x29, 0x03));
    good(&run(&t, &a, 0, &[0; 6], &[]).await);
}

#[tokio::test]
async fn unknown_opcode_lun_and_cdb_errors() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x5D, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await), (5, 0x20, 0));
    assert_eq!(sense_code(&run(&t, &n, 3, &[0x00; 6], &[]).await), (5, 0x25, 0));
    // INQUIRY to a missing LUN: peripheral qualifier 3, device type 1Fh.
    assert_eq!(good(&run(&t, &n, 3, &[0x12, 0, 0, 0, 36, 0], &[]).await)[0], 0x7F);
    // REQUEST SENSE to a missing LUN: GOOD with LOGICAL UNIT NOT SUPPORTED sense data.
    let s = good(&run(&t, &n, 3, &[0x03, 0, 0, 0, 18, 0], &[]).await);
    assert_eq!((s[2], s[12]), (5, 0x25));
    // RDPROTECT set: INVALID FIELD IN CDB with a field pointer at byte 1 bit 5.
    let c = run(&t, &n, 0, &rw10(0x28, 0x20, 0, 1), &[]).await;
    assert_eq!(sense_code(&c), (5, 0x24, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[15..18], &[0xCD, 0, 1]);
    // A CDB of more than 16 bytes (an extended CDB AHS, e.g. a variable-length 7Fh CDB): not
    // implemented, INVALID COMMAND OPERATION CODE, as the transport used to answer it.
    let mut long = task(&n, 0, &[0x7F; 6], 0);
    long.cdb_len = 32;
    assert_eq!(sense_code(&t.prepare(long).unwrap_err()), (5, 0x20, 0));
}

#[tokio::test]
async fn read_write_round_trip_and_ranges() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let data: Vec<u8> = (0..2 * BS).map(|i| i as u8).collect();
    good(&run(&t, &n, 0, &rw10(0x2A, 0x18, 10, 2), &data).await);
    assert_eq!(&good(&run(&t, &n, 0, &rw16(0x88, 0x08, 10, 2), &[]).await)[..], &data[..]);
    // READ(12) of the second block.
    let r12 = [0xA8, 0, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0];
    assert_eq!(&good(&run(&t, &n, 0, &r12, &[]).await)[..], &data[BS as usize..]);
    // Zero blocks: GOOD, no data; last block fine; one past end is out of range.
    assert!(good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 0), &[]).await).is_empty());
    good(&run(&t, &n, 0, &rw10(0x28, 0, BLOCKS as u32 - 1, 1), &[]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x28, 0, BLOCKS as u32 - 1, 2), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x28, 0, BLOCKS as u32 + 1, 0), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x88, 0, u64::MAX, 1), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2A, 0, u32::MAX, 1), &data).await), (5, 0x21, 0));
    // Transfers above the advertised maximum are refused, not allocated.
    let huge = rw16(0x88, 0, 0, u32::MAX);
    assert_eq!(sense_code(&run(&t, &n, 0, &huge, &[]).await), (5, 0x21, 0));
    let max = limits::max_transfer_blocks(BS);
    let backend = Backend::Memory(MemoryBackend::new(2 * max as u64 * BS as u64));
    let large = Arc::new(Lun::new(1, backend, BS, LunIdentity::new("big", "1", "B"), false).unwrap());
    let t = target(vec![large]);
    let n = fresh(&t, 1).await;
    // READ(16): the limit (65536 blocks) does not fit READ(10)'s 16-bit length.
    let big = rw16(0x88, 0, 0, max + 1);
    assert_eq!(sense_code(&run(&t, &n, 1, &big, &[]).await), (5, 0x24, 0));
    assert_eq!(good(&run(&t, &n, 1, &rw16(0x88, 0, 0, max), &[]).await).len(), (max * BS) as usize);
}

#[tokio::test]
async fn six_byte_length_zero_means_256_blocks() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let prepared = t.prepare(task(&n, 0, &[0x0A, 0, 0, 0, 0, 0], 256 * BS)).unwrap();
    assert_eq!(prepared.data_out_len(), 256 * BS);
    let data = vec![0x5A; 256 * BS as usize];
    good(&prepared.execute(DataOut::from(Bytes::from(data.clone()))).await);
    let read = good(&run(&t, &n, 0, &[0x08, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(read.len(), 256 * BS as usize);
    assert!(read.iter().all(|&b| b == 0x5A));
    // READ(6) with 21-bit LBA past the end.
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x08, 0x1F, 0xFF, 0xFF, 1, 0], &[]).await), (5, 0x21, 0));
}

#[tokio::test]
async fn short_data_out_writes_only_what_arrived() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0x61; BS as usize]).await);
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0x62; 200]).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await);
    assert!(read[..200].iter().all(|&b| b == 0x62));
    assert!(read[200..].iter().all(|&b| b == 0x61));
}

#[tokio::test]
async fn file_backend_round_trip_with_fua_and_sync_cache() {
    let path = std::env::temp_dir().join(format!("palisade-scsi-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let backend = Backend::File(FileBackend::open(&path, BLOCKS * BS as u64, false).unwrap());
    let lun = Arc::new(Lun::new(0, backend, BS, LunIdentity::new("file", "1", "F1"), false).unwrap());
    let t = target(vec![lun]);
    let n = fresh(&t, 0).await;
    let data = vec![0xC3; 4 * BS as usize];
    good(&run(&t, &n, 0, &rw10(0x2A, 0x08, 100, 4), &data).await);
    assert_eq!(&good(&run(&t, &n, 0, &rw10(0x28, 0x10, 100, 4), &[]).await)[..], &data[..]);
    good(&run(&t, &n, 0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
    good(&run(&t, &n, 0, &[0x35, 0x02, 0, 0, 0, 100, 0, 0, 4, 0], &[]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x91, 0, BLOCKS, 1), &[]).await), (5, 0x21, 0));
    // UNMAP punches a hole that reads back as zeros.
    let mut unmap = vec![0, 22, 0, 16, 0, 0, 0, 0];
    unmap.extend_from_slice(&101u64.to_be_bytes());
    unmap.extend_from_slice(&2u32.to_be_bytes());
    unmap.extend_from_slice(&[0; 4]);
    good(&run(&t, &n, 0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &unmap).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 100, 4), &[]).await);
    assert!(read[..512].iter().all(|&b| b == 0xC3));
    assert!(read[512..1536].iter().all(|&b| b == 0));
    assert!(read[1536..].iter().all(|&b| b == 0xC3));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn read_only_lun_refuses_writes() {
    let backend = Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64));
    let lun = Arc::new(Lun::new(0, backend, BS, LunIdentity::new("ro", "1", "R1"), true).unwrap());
    let t = target(vec![lun]);
    let n = fresh(&t, 0).await;
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0; 512]).await), (7, 0x27, 0));
    good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await);
    let ms = good(&run(&t, &n, 0, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await);
    assert_eq!(ms[2] & 0x80, 0x80);
}

#[tokio::test]
async fn report_luns_with_flat_addressing_and_masking() {
    let luns = vec![memory_lun(0), memory_lun(300)];
    let masking =
        LunMasking::from(std::collections::HashMap::from([("iqn.2026-01.test:init2".to_string(), vec![300])]));
    let name = crate::nexus::IscsiName::new;
    assert!(masking.permits(&name("iqn.other"), 0) && !masking.permits(&name("IQN.2026-01.test:INIT2"), 0));
    let t = ScsiTarget::new("t".into(), luns, masking);
    let a = nexus(1);
    let rl = good(&run(&t, &a, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await);
    assert_eq!(&rl[..], &[0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
    let b = nexus(2);
    // Masked initiator: LUN 0 invisible, REPORT LUNS (sent to LUN 0) still answers.
    let rl = good(&run(&t, &b, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await);
    assert_eq!(&rl[..], &[0, 0, 0, 8, 0, 0, 0, 0, 0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
    assert_eq!(sense_code(&run(&t, &b, 0, &[0; 6], &[]).await), (5, 0x25, 0));
    assert_eq!(sense_code(&run(&t, &b, 300, &[0; 6], &[]).await), (6, 0x29, 0));
    good(&run(&t, &b, 300, &[0; 6], &[]).await);
    // Truncation to the allocation length.
    let rl = good(&run(&t, &a, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[]).await);
    assert_eq!(rl.len(), 16);
}

#[tokio::test]
async fn read_capacity_10_and_16() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let rc = good(&run(&t, &n, 0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(&rc[..], &[0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &[]).await), (5, 0x24, 0));
    let cdb16 = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let rc = good(&run(&t, &n, 0, &cdb16, &[]).await);
    assert_eq!(&rc[..12], &[0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
    assert_eq!(rc[14], 0xC0); // LBPME + LBPRZ: memory UNMAP really zeroes
    let mut short = cdb16;
    short[13] = 5;
    assert_eq!(good(&run(&t, &n, 0, &short, &[]).await).len(), 5);
    short[13] = 0;
    assert!(good(&run(&t, &n, 0, &short, &[]).await).is_empty());
    let mut bad_sa = cdb16;
    bad_sa[1] = 0x11;
    assert_eq!(sense_code(&run(&t, &n, 0, &bad_sa, &[]).await), (5, 0x24, 0));
}

#[tokio::test]
async fn excess_data_out_is_never_written_past_the_range() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let prepared = t.prepare(task(&n, 0, &rw10(0x2A, 0, 5, 1), 2 * BS)).unwrap();
    assert_eq!(prepared.data_out_len(), BS);
    good(&prepared.execute(DataOut::from(Bytes::from(vec![0x77; 2 * BS as usize]))).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 5, 2), &[]).await);
    assert!(read[..512].iter().all(|&b| b == 0x77));
    assert!(read[512..].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn random_cdbs_never_panic_or_ask_for_unbounded_data() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20_000u32 {
        let mut cdb = [0u8; 16];
        for b in cdb.iter_mut() {
            *b = next() as u8;
        }
        cdb[0] = (round % 256) as u8;
        if round % 3 == 0 {
            // Mostly-zero CDBs reach deeper into the handlers.
            for b in cdb[2..].iter_mut() {
                *b &= 0x03;
            }
        }
        let edtl = (next() % (1 << 16)) as u32;
        match t.prepare(task(&n, 0, &cdb, edtl)) {
            Err(c) => assert_ne!(c.status, 0),
            Ok(p) => {
                assert!(p.data_out_len() <= limits::MAX_TRANSFER_BYTES);
                let data: Vec<u8> = (0..p.data_out_len().min(edtl)).map(|_| next() as u8).collect();
                let c = p.execute(DataOut::from(Bytes::from(data))).await;
                if let Some(d) = &c.data_in {
                    assert!(d.len() <= limits::MAX_TRANSFER_BYTES as usize);
                }
            }
        }
    }
}
