//! VERIFY, WRITE SAME and UNMAP end to end.

use super::*;

fn unmap_param(descriptors: &[(u64, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&((6 + 16 * descriptors.len()) as u16).to_be_bytes());
    p.extend_from_slice(&((16 * descriptors.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for &(lba, n) in descriptors {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let [hi, lo] = (len as u16).to_be_bytes();
    [0x42, 0, 0, 0, 0, 0, 0, hi, lo, 0]
}

#[tokio::test]
async fn verify_compares_and_reports_miscompare_offset() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let data: Vec<u8> = (0..3 * BS).map(|i| (i * 7) as u8).collect();
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 50, 3), &data).await);
    good(&run(&t, &n, 0, &rw10(0x2F, 0x02, 50, 3), &data).await);
    good(&run(&t, &n, 0, &rw10(0x2F, 0x10, 50, 3), &[]).await); // BYTCHK=0, DPO
    let mut wrong = data.clone();
    wrong[700] ^= 0xFF;
    let c = run(&t, &n, 0, &rw10(0x2F, 0x02, 50, 3), &wrong).await;
    assert_eq!(sense_code(&c), (0x0E, 0x1D, 0));
    let s = c.sense.unwrap();
    assert_eq!(s[0], 0xF0); // VALID: INFORMATION holds the offset
    assert_eq!(&s[3..7], &700u32.to_be_bytes());
    // VERIFY(16) beyond the end; BYTCHK=10b unsupported; VRPROTECT unsupported.
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x8F, 0, BLOCKS, 1), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2F, 0x04, 0, 1), &[]).await), (5, 0x24, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2F, 0x20, 0, 1), &[]).await), (5, 0x24, 0));
}

#[tokio::test]
async fn write_same_fills_and_unmaps() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let block = vec![0xAB; BS as usize];
    let ws10 = |flags: u8, lba: u32, blocks: u16| {
        let mut c = rw10(0x41, flags, lba, blocks);
        c[0] = 0x41;
        c
    };
    let prepared = t.prepare(task(&n, 0, &ws10(0, 10, 300), BS)).unwrap();
    assert_eq!(prepared.data_out_len(), BS);
    good(&prepared.execute(DataOut::from(Bytes::from(block.clone()))).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 9, 302), &[]).await);
    assert!(read[..512].iter().all(|&b| b == 0));
    assert!(read[512..512 * 301].iter().all(|&b| b == 0xAB));
    assert!(read[512 * 301..].iter().all(|&b| b == 0));
    // UNMAP bit with a zero block deallocates; with data it writes.
    let zero = vec![0; BS as usize];
    let p = t.prepare(task(&n, 0, &ws10(0x08, 10, 100), BS)).unwrap();
    good(&p.execute(DataOut::from(Bytes::from(zero))).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 10, 101), &[]).await);
    assert!(read[..512 * 100].iter().all(|&b| b == 0));
    assert!(read[512 * 100..].iter().all(|&b| b == 0xAB));
    // WSNZ: zero blocks invalid; beyond end; ANCHOR unsupported; wrong data-out size.
    let c = t.prepare(task(&n, 0, &ws10(0, 0, 0), BS)).unwrap_err();
    assert_eq!(sense_code(&c), (5, 0x24, 0));
    let c = t.prepare(task(&n, 0, &ws10(0, BLOCKS as u32 - 1, 2), BS)).unwrap_err();
    assert_eq!(sense_code(&c), (5, 0x21, 0));
    let c = t.prepare(task(&n, 0, &ws10(0x10, 0, 1), BS)).unwrap_err();
    assert_eq!(sense_code(&c), (5, 0x24, 0));
    for edtl in [BS / 2, BS * 2] {
        let c = t.prepare(task(&n, 0, &ws10(0, 0, 1), edtl)).unwrap_err();
        assert_eq!(sense_code(&c), (5, 0x24, 0));
    }
    // WRITE SAME(16) to the last block.
    let mut ws16 = rw16(0x93, 0, BLOCKS - 1, 1);
    ws16[0] = 0x93;
    let p = t.prepare(task(&n, 0, &ws16, BS)).unwrap();
    good(&p.execute(DataOut::from(Bytes::from(block))).await);
}

#[tokio::test]
async fn unmap_parameter_list_validation() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 4), &[0xEE; 4 * BS as usize]).await);
    let p = unmap_param(&[(1, 2), (3, 0)]);
    good(&run(&t, &n, 0, &unmap_cdb(p.len()), &p).await);
    let read = good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 4), &[]).await);
    assert!(read[..512].iter().all(|&b| b == 0xEE));
    assert!(read[512..1536].iter().all(|&b| b == 0));
    assert!(read[1536..].iter().all(|&b| b == 0xEE));
    // Zero-length list, and zero blocks at the end of the medium, are fine.
    good(&run(&t, &n, 0, &unmap_cdb(0), &[]).await);
    let p = unmap_param(&[(BLOCKS, 0)]);
    good(&run(&t, &n, 0, &unmap_cdb(p.len()), &p).await);
    // Out of range, too long, too many descriptors, short lists.
    let p = unmap_param(&[(BLOCKS - 1, 2)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(p.len()), &p).await), (5, 0x21, 0));
    let p = unmap_param(&[(0, limits::MAX_UNMAP_LBA_COUNT + 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(p.len()), &p).await), (5, 0x26, 0));
    let many = vec![(0u64, 1u32); limits::MAX_UNMAP_DESCRIPTORS as usize + 1];
    let p = unmap_param(&many);
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(p.len()), &p).await), (5, 0x26, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(4), &[0; 4]).await), (5, 0x1A, 0));
    let p = unmap_param(&[(0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(p.len()), &p[..20]).await), (5, 0x1A, 0));
    let mut lying = unmap_param(&[(0, 1)]);
    lying[3] = 32; // descriptor length beyond the list
    assert_eq!(sense_code(&run(&t, &n, 0, &unmap_cdb(lying.len()), &lying).await), (5, 0x1A, 0));
    // ANCHOR is not supported.
    let mut cdb = unmap_cdb(24);
    cdb[1] = 1;
    assert_eq!(sense_code(&run(&t, &n, 0, &cdb, &unmap_param(&[(0, 1)])).await), (5, 0x24, 0));
}

#[tokio::test]
async fn start_stop_and_test_unit_ready() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &[0x1B, 0, 0, 0, 0x03, 0], &[]).await);
    good(&run(&t, &n, 0, &[0x1B, 1, 0, 0, 0x00, 0], &[]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x1B, 0, 0, 0, 0x08, 0], &[]).await), (5, 0x24, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x00, 1, 0, 0, 0, 0], &[]).await), (5, 0x24, 0));
}

#[tokio::test]
async fn spc2_reserve_release_between_two_nexuses() {
    let t = target(vec![memory_lun(0)]);
    let a = fresh(&t, 0).await;
    let b = nexus(4);
    assert_eq!(sense_code(&run(&t, &b, 0, &[0; 6], &[]).await), (6, 0x29, 0));
    let conflict = |c: &Completion| c.status == 0x18 && c.sense.is_none();
    good(&run(&t, &a, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    good(&run(&t, &a, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    assert!(conflict(&run(&t, &b, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await));
    assert!(conflict(&run(&t, &b, 0, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await));
    assert!(conflict(&run(&t, &b, 0, &rw10(0x28, 0, 0, 1), &[]).await));
    good(&run(&t, &b, 0, &[0x12, 0, 0, 0, 36, 0], &[]).await);
    good(&run(&t, &b, 0, &[0x17, 0, 0, 0, 0, 0], &[]).await); // no effect for a non-holder
    assert!(conflict(&run(&t, &b, 0, &[0x00; 6], &[]).await));
    good(&run(&t, &a, 0, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await);
    good(&run(&t, &a, 0, &[0x17, 0, 0, 0, 0, 0], &[]).await);
    good(&run(&t, &b, 0, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
    // ItNexus loss and LUN reset both release the reservation.
    t.nexus_lost(&b);
    good(&run(&t, &a, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    assert!(t.logical_unit_reset(lun_field(0), &a).await);
    let c = run(&t, &b, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(sense_code(&c), (6, 0x29, 0x03)); // the reset supersedes the nexus-loss UA
    good(&run(&t, &b, 0, &[0x16, 0, 0, 0, 0, 0], &[]).await);
}
