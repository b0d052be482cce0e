//! COMPARE AND WRITE, ORWRITE, WRITE AND VERIFY, VERIFY BYTCHK 11b, PRE-FETCH, GET LBA STATUS
//! and the informational additions, end to end through prepare/execute.

use super::*;

fn caw(lba: u64, blocks: u8, flags: u8) -> Vec<u8> {
    let mut cdb = vec![0x89, flags];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 0, blocks, 0, 0]);
    cdb
}

/// Runs with an exact expected data-out length (CAW refuses a mismatch).
async fn run_exact(t: &ScsiTarget, n: &Arc<ItNexus>, cdb: &[u8], data: &[u8]) -> Completion {
    match t.prepare(task(n, 0, cdb, data.len() as u32)) {
        Err(done) => done,
        Ok(p) => p.execute(DataOut::from(Bytes::copy_from_slice(data))).await,
    }
}

#[tokio::test]
async fn compare_and_write_swaps_only_on_match() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let old = vec![b'A'; 2 * BS as usize];
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 7, 2), &old).await);
    let mut buf = old.clone();
    buf.extend(vec![b'B'; 2 * BS as usize]);
    good(&run_exact(&t, &n, &caw(7, 2, 0x18), &buf).await);
    assert!(good(&run(&t, &n, 0, &rw10(0x28, 0, 7, 2), &[]).await).iter().all(|&b| b == b'B'));
    // Now the verify half ('A') no longer matches: MISCOMPARE, offset 0, nothing written.
    let c = run_exact(&t, &n, &caw(7, 2, 0), &buf).await;
    assert_eq!(sense_code(&c), (0x0E, 0x1D, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[3..7], &0u32.to_be_bytes());
    // A single differing byte deep in the second block is located exactly.
    let mut expect = vec![b'B'; 2 * BS as usize];
    expect[BS as usize + 27] = b'Z';
    expect.extend(vec![b'C'; 2 * BS as usize]);
    let c = run_exact(&t, &n, &caw(7, 2, 0), &expect).await;
    assert_eq!(sense_code(&c), (0x0E, 0x1D, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[3..7], &(BS + 27).to_be_bytes());
    assert!(good(&run(&t, &n, 0, &rw10(0x28, 0, 7, 2), &[]).await).iter().all(|&b| b == b'B'));
}

#[tokio::test]
async fn compare_and_write_cdb_errors() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let two = vec![0u8; 2 * BS as usize];
    // Data-out length disagreeing with 2 × NUMBER OF LOGICAL BLOCKS: field pointer byte 13.
    let c = run_exact(&t, &n, &caw(0, 2, 0), &two).await;
    assert_eq!(sense_code(&c), (5, 0x24, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[15..18], &[0xC0, 0, 13]);
    assert_eq!(sense_code(&run_exact(&t, &n, &caw(0, 0, 0), &two).await), (5, 0x24, 0));
    // Zero blocks with no data-out: nothing happens, GOOD (SBC-3 §5.2).
    good(&run_exact(&t, &n, &caw(0, 0, 0), &[]).await);
    // Beyond the end, WRPROTECT, write-protected LUN.
    assert_eq!(sense_code(&run_exact(&t, &n, &caw(BLOCKS - 1, 2, 0), &[0; 4 * BS as usize]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run_exact(&t, &n, &caw(0, 1, 0x20), &two).await), (5, 0x24, 0));
    let ro = Arc::new(
        Lun::new(
            0,
            Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64)),
            BS,
            LunIdentity::new("ro", "1", "R"),
            true,
        )
        .unwrap(),
    );
    let t = target(vec![ro]);
    let n = fresh(&t, 0).await;
    assert_eq!(sense_code(&run_exact(&t, &n, &caw(0, 1, 0), &two).await), (7, 0x27, 0));
}

#[tokio::test]
async fn concurrent_compare_and_write_has_one_winner_per_round() {
    let lun = memory_lun(0);
    let t = Arc::new(target(vec![lun]));
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 3, 1), &[0u8; BS as usize]).await);
    for round in 0u8..20 {
        let mut tasks = Vec::new();
        for contender in 0u8..4 {
            let (t, n) = (t.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![round; BS as usize];
                buf.extend(vec![round + 1; BS as usize - 1]);
                buf.push(contender);
                run_exact(&t, &n, &caw(3, 1, 0), &buf).await.status
            }));
        }
        let mut winners = 0;
        for task in tasks {
            if task.await.unwrap() == 0 {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
        // Normalise the block for the next round (the winner's id is in the last byte).
        let block = good(&run(&t, &n, 0, &rw10(0x28, 0, 3, 1), &[]).await);
        assert!(block[..BS as usize - 1].iter().all(|&b| b == round + 1));
        good(&run(&t, &n, 0, &rw10(0x2A, 0, 3, 1), &vec![round + 1; BS as usize]).await);
    }
}

#[tokio::test]
async fn orwrite_write_and_verify_and_verify_one_block() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0x0F; BS as usize]).await);
    good(&run(&t, &n, 0, &rw16(0x8B, 0x08, 0, 1), &[0xA0; BS as usize]).await);
    assert!(good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await).iter().all(|&b| b == 0xAF));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x8B, 0x20, 0, 1), &[]).await), (5, 0x24, 0));
    // WRITE AND VERIFY(10/12/16) write and read back.
    good(&run(&t, &n, 0, &rw10(0x2E, 0x12, 10, 2), &[0x33; 2 * BS as usize]).await);
    good(&run(&t, &n, 0, &[0xAE, 0x02, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0], &[0x33; BS as usize]).await);
    good(&run(&t, &n, 0, &rw16(0x8E, 0, 13, 1), &[0x33; BS as usize]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x8E, 0x08, 13, 1), &[]).await), (5, 0x24, 0)); // no FUA bit
                                                                                                // VERIFY BYTCHK 11b: one block of data-out compared with each block of the range.
    let v11 = rw10(0x2F, 0x06, 10, 4);
    assert_eq!(t.prepare(task(&n, 0, &v11, BS)).unwrap().data_out_len(), BS);
    good(&run(&t, &n, 0, &v11, &[0x33; BS as usize]).await);
    good(&run(&t, &n, 0, &rw10(0x2F, 0x06, 10, 3), &[0x33; BS as usize]).await);
    let c = run(&t, &n, 0, &rw10(0x2F, 0x06, 10, 5), &[0x33; BS as usize]).await; // block 14 is zeros
    assert_eq!(sense_code(&c), (0x0E, 0x1D, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[3..7], &(4 * BS).to_be_bytes());
    // VERIFY(12) compare.
    good(&run(&t, &n, 0, &[0xAF, 0x02, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0], &[0x33; BS as usize]).await);
}

#[tokio::test]
async fn prefetch_ranges() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x34, 0x02, 0, 0), &[]).await);
    good(&run(&t, &n, 0, &rw16(0x90, 0, BLOCKS - 1, 1), &[]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x34, 0, BLOCKS as u32 + 1, 0), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &rw16(0x90, 0, u64::MAX, 1), &[]).await), (5, 0x21, 0));
}

fn get_lba_status(lba: u64, alloc: u32) -> Vec<u8> {
    let mut cdb = vec![0x9E, 0x12];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&alloc.to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

#[tokio::test]
async fn get_lba_status_reports_memory_chunks() {
    // 4 MiB memory LUN: chunks of 1 MiB = 2048 blocks.
    let lun = Arc::new(
        Lun::new(0, Backend::Memory(MemoryBackend::new(4 << 20)), BS, LunIdentity::new("m", "1", "M"), false).unwrap(),
    );
    let t = target(vec![lun]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 2048 + 5, 1), &[1; BS as usize]).await);
    let d = good(&run(&t, &n, 0, &get_lba_status(0, 1024), &[]).await);
    assert_eq!(&d[..4], &(4 + 3 * 16u32).to_be_bytes());
    let desc = |i: usize| {
        (
            u64::from_be_bytes(d[8 + 16 * i..16 + 16 * i].try_into().unwrap()),
            u32::from_be_bytes(d[16 + 16 * i..20 + 16 * i].try_into().unwrap()),
            d[20 + 16 * i],
        )
    };
    assert_eq!(desc(0), (0, 2048, 1));
    assert_eq!(desc(1), (2048, 2048, 0));
    assert_eq!(desc(2), (4096, 4096, 1));
    // The first descriptor starts at the requested LBA; allocation length truncates.
    let d = good(&run(&t, &n, 0, &get_lba_status(3000, 24), &[]).await);
    assert_eq!(d.len(), 24);
    assert_eq!(u64::from_be_bytes(d[8..16].try_into().unwrap()), 3000);
    assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 1096);
    // Unmapping the whole chunk deallocates it again.
    let mut unmap = vec![0, 22, 0, 16, 0, 0, 0, 0];
    unmap.extend_from_slice(&2048u64.to_be_bytes());
    unmap.extend_from_slice(&2048u32.to_be_bytes());
    unmap.extend_from_slice(&[0; 4]);
    good(&run(&t, &n, 0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &unmap).await);
    let d = good(&run(&t, &n, 0, &get_lba_status(0, 1024), &[]).await);
    assert_eq!((&d[..4], d[20]), (&(4 + 16u32).to_be_bytes()[..], 1));
    assert_eq!(sense_code(&run(&t, &n, 0, &get_lba_status(8192, 24), &[]).await), (5, 0x21, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &get_lba_status(u64::MAX, 24), &[]).await), (5, 0x21, 0));
}

#[tokio::test]
async fn write_same_ndob_and_anchor() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 20, 4), &[9; 4 * BS as usize]).await);
    // NDOB: no data-out, the blocks become zeros.
    let ndob = rw16(0x93, 0x01, 21, 2);
    assert_eq!(t.prepare(task(&n, 0, &ndob, 0)).unwrap().data_out_len(), 0);
    good(&run(&t, &n, 0, &ndob, &[]).await);
    let r = good(&run(&t, &n, 0, &rw10(0x28, 0, 20, 4), &[]).await);
    assert!(
        r[..512].iter().all(|&b| b == 9) && r[512..1536].iter().all(|&b| b == 0) && r[1536..].iter().all(|&b| b == 9)
    );
    // ANCHOR is not supported (ANC_SUP 0): INVALID FIELD IN CDB, byte 1 bit 4.
    let c = run(&t, &n, 0, &rw16(0x93, 0x18, 21, 2), &[0; BS as usize]).await;
    assert_eq!(&c.sense.as_ref().unwrap()[15..18], &[0xCC, 0, 1]);
}

#[tokio::test]
async fn task_management_and_defect_reports() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let tmf = good(&run(&t, &n, 0, &[0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], &[]).await);
    assert_eq!(&tmf[..], &[0xDA, 0, 0, 0]);
    let dd = good(&run(&t, &n, 0, &[0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0], &[]).await);
    assert_eq!(&dd[..], &[0, 0x18, 0, 0]);
}
