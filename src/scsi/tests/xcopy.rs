//! EXTENDED COPY and RECEIVE COPY RESULTS end to end, including LUN masking of copy targets.

use super::*;

fn cscd(lun: &Lun) -> Vec<u8> {
    let mut d = vec![0xE4, 0, 0, 0, 0x01, 0x03, 0, 8];
    d.extend_from_slice(&lun.identity().naa.to_be_bytes());
    d.resize(28, 0);
    d.extend_from_slice(&lun.block_size().to_be_bytes());
    d[28] = 0;
    d
}

fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0x02, 0, 0, 0x18];
    d.extend_from_slice(&src.to_be_bytes());
    d.extend_from_slice(&dst.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&blocks.to_be_bytes());
    d.extend_from_slice(&src_lba.to_be_bytes());
    d.extend_from_slice(&dst_lba.to_be_bytes());
    d
}

fn param(list_id: u8, usage: u8, cscds: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
    let cscd_len: usize = cscds.iter().map(Vec::len).sum();
    let seg_len: usize = segments.iter().map(Vec::len).sum();
    let mut p = vec![list_id, usage << 3];
    p.extend_from_slice(&(cscd_len as u16).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&(seg_len as u32).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    cscds.iter().chain(segments).for_each(|d| p.extend_from_slice(d));
    p
}

fn xcopy_cdb(len: usize) -> Vec<u8> {
    let mut cdb = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb.extend_from_slice(&(len as u32).to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

fn rcr_cdb(sa: u8, list_id: u8) -> Vec<u8> {
    vec![0x84, sa, list_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
}

#[tokio::test]
async fn copies_between_luns_and_reports_status() {
    let (a, b) = (memory_lun(0), memory_lun(1));
    let t = target(vec![a.clone(), b.clone()]);
    let n = fresh(&t, 0).await;
    let data: Vec<u8> = (0..8 * BS).map(|i| (i / 3) as u8).collect();
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 100, 8), &data).await);
    let p = param(7, 0, &[cscd(&a), cscd(&b)], &[segment(0, 1, 8, 100, 40)]);
    good(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await);
    let n1 = fresh(&t, 1).await;
    assert_eq!(&good(&run(&t, &n1, 1, &rw10(0x28, 0, 40, 8), &[]).await)[..], &data[..]);
    // COPY STATUS: completed, 1 segment, 4096 bytes; then discarded.
    let status = good(&run(&t, &n, 0, &rcr_cdb(0, 7), &[]).await);
    assert_eq!(&status[..], &[0, 0, 0, 8, 0x01, 0, 1, 0, 0, 0, 0x10, 0]);
    assert_eq!(sense_code(&run(&t, &n, 0, &rcr_cdb(0, 7), &[]).await), (5, 0x24, 0));
    // OPERATING PARAMETERS lists the implemented descriptor types.
    let op = good(&run(&t, &n, 0, &rcr_cdb(3, 0), &[]).await);
    assert_eq!(&op[op.len() - 2..], &[0x02, 0xE4]);
    // Unsupported RECEIVE COPY RESULTS service action (FAILED SEGMENT DETAILS).
    assert_eq!(sense_code(&run(&t, &n, 0, &rcr_cdb(4, 0), &[]).await), (5, 0x24, 0));
    // Zero parameter list length: nothing happens.
    good(&run(&t, &n, 0, &xcopy_cdb(0), &[]).await);
}

#[tokio::test]
async fn a_masked_lun_is_unreachable_for_copies() {
    let (a, secret) = (memory_lun(0), memory_lun(1));
    let masking = LunMasking::allow_all().restrict("iqn.2026-01.test:init9", [0]);
    let t = ScsiTarget::new("t".into(), vec![a.clone(), secret.clone()], masking);
    let n = fresh(&t, 0).await; // nexus 9: sees LUN 0 only
                                // Neither reading from nor writing to the hidden LUN is possible (CVE-2020-28374).
    for seg in [segment(0, 1, 1, 0, 0), segment(1, 0, 1, 0, 0)] {
        let p = param(1, 2, &[cscd(&a), cscd(&secret)], &[seg]);
        assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (0x0A, 0x0D, 0x02));
    }
}

#[tokio::test]
async fn parameter_list_errors() {
    let a = memory_lun(0);
    let t = target(vec![a.clone()]);
    let n = fresh(&t, 0).await;
    let ok = param(1, 0, &[cscd(&a)], &[segment(0, 0, 1, 0, 1)]);
    // Truncated: PARAMETER LIST LENGTH ERROR.
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(ok.len() - 1), &ok[..ok.len() - 1]).await), (5, 0x1A, 0));
    // Too long for the advertised maximum descriptor list length: refused before data-out.
    let huge = xcopy_cdb(16 + crate::scsi::xcopy::MAX_DESCRIPTOR_LIST_LENGTH as usize + 1);
    assert_eq!(sense_code(&t.prepare(task(&n, 0, &huge, 0)).unwrap_err()), (5, 0x1A, 0));
    // Too many CSCD / segment descriptors.
    let cscds = vec![cscd(&a); crate::scsi::xcopy::MAX_CSCD_DESCRIPTORS as usize + 1];
    let p = param(1, 0, &cscds, &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0x06));
    let segs = vec![segment(0, 0, 1, 0, 1); crate::scsi::xcopy::MAX_SEGMENT_DESCRIPTORS as usize + 1];
    let p = param(1, 0, &[cscd(&a)], &segs);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0x08));
    // Unsupported CSCD type (FC N_Port_Name E0h) and segment type (stream→stream 03h).
    let mut fc = cscd(&a);
    fc[0] = 0xE0;
    let p = param(1, 0, &[fc], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0x07));
    let mut stream = segment(0, 0, 1, 0, 1);
    stream[0] = 0x03;
    let p = param(1, 0, &[cscd(&a)], &[stream]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0x09));
    // Index without a CSCD, beyond the end of the medium: COPY ABORTED.
    let p = param(1, 0, &[cscd(&a)], &[segment(0, 1, 1, 0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (0x0A, 0x0D, 0x02));
    let p = param(1, 0, &[cscd(&a)], &[segment(0, 0, 2, 0, BLOCKS - 1)]);
    let c = run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await;
    assert_eq!(sense_code(&c), (0x0A, 0, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[15..18], &[0x80, 0, 16 + 32 + 20]); // segment pointer
                                                                              // Wrong DISK BLOCK LENGTH, reserved LIST ID USAGE.
    let mut wrong = cscd(&a);
    wrong[30] = 0x10;
    let p = param(1, 0, &[wrong], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0));
    let p = param(1, 1, &[cscd(&a)], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(sense_code(&run(&t, &n, 0, &xcopy_cdb(p.len()), &p).await), (5, 0x26, 0));
    good(&run(&t, &n, 0, &xcopy_cdb(ok.len()), &ok).await);
}

/// PERSISTENT RESERVE OUT with a 24-byte parameter list (SPC-4 §6.16.3).
fn prout(sa: u8, pr_type: u8, key: u64, sa_key: u64) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, p)
}

#[tokio::test]
async fn copy_into_a_lun_reserved_by_another_nexus_is_refused() {
    let (a, b) = (memory_lun(0), memory_lun(1));
    let t = target(vec![a.clone(), b.clone()]);
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
    // Another initiator registers and takes WRITE EXCLUSIVE on LUN 1.
    let owner = nexus(3);
    let _ = run(&t, &owner, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
    let (cdb, p) = prout(0x00, 0, 0, 0xAB);
    good(&run(&t, &owner, 1, &cdb, &p).await);
    let (cdb, p) = prout(0x01, 0x01, 0xAB, 0);
    good(&run(&t, &owner, 1, &cdb, &p).await);
    let data = vec![0x5Au8; 8 * BS as usize];
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 8), &data).await);
    // SPC-4 §5.13.1 / §6.5: the copy writes LUN 1 on behalf of this nexus, which may not write.
    let param = param(1, 0, &[cscd(&a), cscd(&b)], &[segment(0, 1, 8, 0, 0)]);
    let c = run(&t, &n, 0, &xcopy_cdb(param.len()), &param).await;
    assert_eq!(sense_code(&c), (0x0A, 0x0D, 0x02));
    let back = good(&run(&t, &owner, 1, &rw10(0x28, 0, 0, 8), &[]).await);
    assert!(back.iter().all(|b| *b == 0), "nothing may reach the reserved LUN");
}
