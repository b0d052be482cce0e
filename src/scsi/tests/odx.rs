//! Offloaded data transfer end to end through `prepare`/`execute`: POPULATE TOKEN, RECEIVE ROD
//! TOKEN INFORMATION, WRITE USING TOKEN, COPY OPERATION ABORT, and every abuse of a token,
//! each asserting the exact sense and that no data moved.

use super::*;
use std::time::Duration;

const PATTERN_LBA: u64 = 100;
const PATTERN_BLOCKS: u32 = 16;

fn pt_cdb(list_id: u32, len: usize) -> Vec<u8> {
    let mut cdb = vec![0x83, 0x10, 0, 0, 0, 0];
    cdb.extend_from_slice(&list_id.to_be_bytes());
    cdb.extend_from_slice(&(len as u32).to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

fn wut_cdb(list_id: u32, len: usize) -> Vec<u8> {
    let mut cdb = pt_cdb(list_id, len);
    cdb[1] = 0x11;
    cdb
}

fn rrti_cdb(list_id: u32) -> Vec<u8> {
    let mut cdb = vec![0x84, 0x07];
    cdb.extend_from_slice(&list_id.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    cdb
}

fn abort_cdb(list_id: u32) -> Vec<u8> {
    let mut cdb = vec![0x83, 0x1C];
    cdb.extend_from_slice(&list_id.to_be_bytes());
    cdb.extend_from_slice(&[0; 10]);
    cdb
}

fn range_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (lba, blocks) in ranges {
        out.extend_from_slice(&lba.to_be_bytes());
        out.extend_from_slice(&blocks.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
    }
    out
}

/// POPULATE TOKEN parameter list (SBC-3 §5.8.2).
fn pt_param(flags: u8, inactivity: u32, rod_type: u32, ranges: &[(u64, u32)]) -> Vec<u8> {
    let list = range_list(ranges);
    let mut p = vec![0u8; 16];
    p[2] = flags;
    p[4..8].copy_from_slice(&inactivity.to_be_bytes());
    p[8..12].copy_from_slice(&rod_type.to_be_bytes());
    p[14..16].copy_from_slice(&(list.len() as u16).to_be_bytes());
    p.extend(list);
    let data_length = (p.len() - 2) as u16;
    p[0..2].copy_from_slice(&data_length.to_be_bytes());
    p
}

/// WRITE USING TOKEN parameter list (SBC-3 §5.45.2).
fn wut_param(flags: u8, offset_into_rod: u64, token: &[u8], ranges: &[(u64, u32)]) -> Vec<u8> {
    let list = range_list(ranges);
    let mut p = vec![0u8; 536];
    p[2] = flags;
    p[8..16].copy_from_slice(&offset_into_rod.to_be_bytes());
    p[16..528].copy_from_slice(token);
    p[534..536].copy_from_slice(&(list.len() as u16).to_be_bytes());
    p.extend(list);
    let data_length = (p.len() - 2) as u16;
    p[0..2].copy_from_slice(&data_length.to_be_bytes());
    p
}

fn pattern() -> Vec<u8> {
    (0..PATTERN_BLOCKS * BS).map(|i| (i % 251) as u8 ^ 0x5A).collect()
}

/// Writes the pattern at PATTERN_LBA of `lun`.
async fn fill(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64) {
    good(&run(t, n, lun, &rw10(0x2A, 0, PATTERN_LBA as u32, PATTERN_BLOCKS as u16), &pattern()).await);
}

async fn read(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64, lba: u32, blocks: u16) -> Bytes {
    good(&run(t, n, lun, &rw10(0x28, 0, lba, blocks), &[]).await)
}

/// A target with LUN 0 (the source, filled with the pattern) and LUN 1 (the destination), and a
/// nexus past both LUNs' power-on unit attentions.
async fn source_and_destination() -> (ScsiTarget, Arc<ItNexus>) {
    let t = target(vec![memory_lun(0), memory_lun(1)]);
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    fill(&t, &n, 0).await;
    (t, n)
}

/// POPULATE TOKEN of the pattern's blocks, then the token from RECEIVE ROD TOKEN INFORMATION.
async fn populate(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64, list_id: u32) -> Vec<u8> {
    let p = pt_param(0, 0, 0, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    good(&run(t, n, lun, &pt_cdb(list_id, p.len()), &p).await);
    let info = good(&run(t, n, lun, &rrti_cdb(list_id), &[]).await);
    // POPULATE TOKEN, completed without errors, 16 logical blocks, one 512-byte token.
    assert_eq!((info[4], info[5], info[15]), (0x10, 0x01, 0xF1));
    assert_eq!(u64::from_be_bytes(info[16..24].try_into().unwrap()), PATTERN_BLOCKS as u64);
    assert_eq!(&info[32..36], &514u32.to_be_bytes());
    assert_eq!(u32::from_be_bytes(info[0..4].try_into().unwrap()) as usize, info.len() - 4);
    info[38..38 + 512].to_vec()
}

fn wut(list_id: u32, token: &[u8], lba: u64) -> (Vec<u8>, Vec<u8>) {
    let p = wut_param(0, 0, token, &[(lba, PATTERN_BLOCKS)]);
    (wut_cdb(list_id, p.len()), p)
}

async fn is_zero(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64, lba: u32) -> bool {
    read(t, n, lun, lba, PATTERN_BLOCKS as u16).await.iter().all(|&b| b == 0)
}

#[tokio::test]
async fn copies_between_luns_and_within_one_and_reports_through_rrti() {
    let (t, n) = source_and_destination().await;
    let token = populate(&t, &n, 0, 1).await;
    assert_eq!(&token[0..4], &[0x00, 0x80, 0x00, 0x01], "point in time, change vulnerable");
    let (cdb, p) = wut(2, &token, 500);
    good(&run(&t, &n, 1, &cdb, &p).await);
    assert_eq!(&read(&t, &n, 1, 500, PATTERN_BLOCKS as u16).await[..], &pattern()[..]);
    let info = good(&run(&t, &n, 1, &rrti_cdb(2), &[]).await);
    assert_eq!((info[4], info[5]), (0x11, 0x01));
    assert_eq!(u64::from_be_bytes(info[16..24].try_into().unwrap()), PATTERN_BLOCKS as u64);
    assert_eq!(&info[32..36], &[0, 0, 0, 0], "no token for WRITE USING TOKEN");
    // The same token again, within the source LU, with OFFSET INTO ROD 4: 12 blocks copied
    // into 16 destination blocks (residual data), then DEL_TKN ends the token.
    let p = wut_param(0x02, 4, &token, &[(1000, 8), (1100, 8)]);
    good(&run(&t, &n, 0, &wut_cdb(3, p.len()), &p).await);
    let info = good(&run(&t, &n, 0, &rrti_cdb(3), &[]).await);
    assert_eq!((info[5], u64::from_be_bytes(info[16..24].try_into().unwrap())), (0x04, 12));
    let expected = &pattern()[4 * BS as usize..];
    assert_eq!(&read(&t, &n, 0, 1000, 8).await[..], &expected[..8 * BS as usize]);
    assert_eq!(&read(&t, &n, 0, 1100, 4).await[..], &expected[8 * BS as usize..]);
    assert!(is_zero(&t, &n, 0, 1104).await);
    let (cdb, p) = wut(4, &token, 600);
    assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x09), "deleted");
    // The failure is held for RECEIVE ROD TOKEN INFORMATION with its sense.
    let info = good(&run(&t, &n, 1, &rrti_cdb(4), &[]).await);
    assert_eq!((info[5], info[12], info[32 + 12], info[32 + 13]), (0x02, 0x02, 0x23, 0x09));
}

#[tokio::test]
async fn block_device_zero_token_zeroes_a_range() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    fill(&t, &n, 0).await;
    let mut zero = vec![0u8; 512];
    zero[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    zero[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
    let p = wut_param(0, 0, &zero, &[(PATTERN_LBA + 2, 4)]);
    good(&run(&t, &n, 0, &wut_cdb(9, p.len()), &p).await);
    let back = read(&t, &n, 0, PATTERN_LBA as u32, PATTERN_BLOCKS as u16).await;
    let (bs, pat) = (BS as usize, pattern());
    assert_eq!(&back[..2 * bs], &pat[..2 * bs]);
    assert!(back[2 * bs..6 * bs].iter().all(|&b| b == 0));
    assert_eq!(&back[6 * bs..], &pat[6 * bs..]);
    // Block device zero is accepted, never made.
    let p = pt_param(0x02, 0, 0xFFFF_0001, &[(0, 1)]);
    assert_eq!(run(&t, &n, 0, &pt_cdb(10, p.len()), &p).await.sense.unwrap()[15..18], [0x80, 0, 8]);
}

#[tokio::test]
async fn abused_tokens_get_invalid_token_operation_and_move_nothing() {
    let (a, b) = (memory_lun(0), memory_lun(1));
    let t = target(vec![a.clone(), b.clone()]);
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    fill(&t, &n, 0).await;
    let token = populate(&t, &n, 0, 1).await;
    let refused = |c: &Completion| sense_code(c);
    // Bit flipped outside the identifier: corrupt. In the identifier: unknown.
    let mut flipped = token.clone();
    flipped[300] ^= 0x04;
    let (cdb, p) = wut(2, &flipped, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x05));
    let mut other_id = token.clone();
    other_id[12] ^= 0x80;
    let (cdb, p) = wut(2, &other_id, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x04));
    // Forged from scratch (a well-formed token this target never made), and a foreign token:
    // one another target (another server) made for its own LU with the same identity.
    let mut forged = token.clone();
    forged[8..].fill(0x42);
    let (cdb, p) = wut(2, &forged, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x04));
    let other = target(vec![memory_lun(0)]);
    let n2 = fresh(&other, 0).await;
    fill(&other, &n2, 0).await;
    let foreign = populate(&other, &n2, 0, 1).await;
    let (cdb, p) = wut(2, &foreign, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x04));
    // ROD TOKEN LENGTH other than 1F8h; an unknown ROD type.
    let mut short = token.clone();
    short[7] = 0xF0;
    let (cdb, p) = wut(2, &short, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x0A));
    let mut odd_type = token.clone();
    odd_type[0..4].copy_from_slice(&0x0080_0002u32.to_be_bytes());
    let (cdb, p) = wut(2, &odd_type, 0);
    assert_eq!(refused(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x01));
    // Truncated: the parameter list ends inside the token.
    let (cdb, p) = wut(2, &token, 0);
    let c = run(&t, &n, 1, &wut_cdb(2, 300), &p[..300]).await;
    assert_eq!(refused(&c), (5, 0x1A, 0));
    let c = run(&t, &n, 1, &cdb, &p[..p.len() - 20]).await;
    assert_eq!(refused(&c), (5, 0x1A, 0));
    // OFFSET INTO ROD at or past the end of the ROD.
    let p = wut_param(0, PATTERN_BLOCKS as u64, &token, &[(0, 1)]);
    let c = run(&t, &n, 1, &wut_cdb(2, p.len()), &p).await;
    assert_eq!(refused(&c), (5, 0x26, 0));
    assert!(is_zero(&t, &n, 1, 0).await, "nothing moved");
    // The genuine token still works after all that.
    good(&run(&t, &n, 1, &cdb, &wut(2, &token, 0).1).await);
    assert_eq!(&read(&t, &n, 1, 0, PATTERN_BLOCKS as u16).await[..], &pattern()[..]);
}

#[tokio::test]
async fn expired_token_is_refused() {
    let (t, n) = source_and_destination().await;
    let token = populate(&t, &n, 0, 1).await;
    // Default inactivity timeout (60 s) passed without use: expired, and released.
    t.rod_tokens().age(Duration::from_secs(61));
    let (cdb, p) = wut(2, &token, 0);
    assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x07));
    assert_eq!(t.rod_tokens().live(), 0);
    assert!(is_zero(&t, &n, 1, 0).await);
    // An inactivity timeout above the maximum is refused; a shorter one is honoured.
    let p = pt_param(0, 601, 0, &[(0, 1)]);
    assert_eq!(run(&t, &n, 0, &pt_cdb(3, p.len()), &p).await.sense.unwrap()[15..18], [0x80, 0, 4]);
    let p = pt_param(0, 5, 0, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    good(&run(&t, &n, 0, &pt_cdb(4, p.len()), &p).await);
    let token = good(&run(&t, &n, 0, &rrti_cdb(4), &[]).await)[38..550].to_vec();
    t.rod_tokens().age(Duration::from_secs(6));
    let (cdb, p) = wut(5, &token, 0);
    assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x07));
}

#[tokio::test]
async fn a_write_to_the_source_revokes_a_point_in_time_token() {
    let (t, n) = source_and_destination().await;
    let token = populate(&t, &n, 0, 1).await;
    // A write next to the ranges changes nothing; one block inside them revokes the token.
    good(&run(&t, &n, 0, &rw10(0x2A, 0, PATTERN_LBA as u32 - 1, 1), &[7; BS as usize]).await);
    let (cdb, p) = wut(2, &token, 0);
    good(&run(&t, &n, 1, &cdb, &p).await);
    good(&run(&t, &n, 0, &rw10(0x2A, 0, PATTERN_LBA as u32 + 15, 1), &[7; BS as usize]).await);
    let (cdb, p) = wut(3, &token, 200);
    assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x06));
    assert!(is_zero(&t, &n, 1, 200).await, "nothing moved");
    // UNMAP and WRITE SAME are writes too.
    for write in [0x42u8, 0x93] {
        let token = populate(&t, &n, 0, 10).await;
        let c = if write == 0x42 {
            let mut unmap = vec![0, 22, 0, 16, 0, 0, 0, 0];
            unmap.extend_from_slice(&(PATTERN_LBA + 3).to_be_bytes());
            unmap.extend_from_slice(&1u32.to_be_bytes());
            unmap.extend_from_slice(&[0; 4]);
            run(&t, &n, 0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &unmap).await
        } else {
            run(&t, &n, 0, &rw16(0x93, 0x01, PATTERN_LBA + 3, 1), &[]).await // NDOB: zeros
        };
        good(&c);
        let (cdb, p) = wut(11, &token, 300);
        assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (5, 0x23, 0x06), "opcode {write:#x}");
        assert!(is_zero(&t, &n, 1, 300).await);
    }
    // Access upon reference (RTV): the copy reads the source as it is when it runs.
    let p = pt_param(0x02, 0, 0x0001_0000, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    good(&run(&t, &n, 0, &pt_cdb(20, p.len()), &p).await);
    let token = good(&run(&t, &n, 0, &rrti_cdb(20), &[]).await)[38..550].to_vec();
    good(&run(&t, &n, 0, &rw10(0x2A, 0, PATTERN_LBA as u32, 1), &[9; BS as usize]).await);
    let (cdb, p) = wut(21, &token, 400);
    good(&run(&t, &n, 1, &cdb, &p).await);
    assert!(read(&t, &n, 1, 400, 1).await.iter().all(|&b| b == 9));
}

#[tokio::test]
async fn a_token_cannot_read_a_lun_the_writer_cannot_see() {
    let (secret, open) = (memory_lun(0), memory_lun(1));
    // init9 sees both LUNs; init2 only LUN 1.
    let masking = LunMasking::allow_all().restrict("iqn.2026-01.test:init2", [1]);
    let t = ScsiTarget::new("t".into(), vec![secret, open], masking);
    let owner = fresh(&t, 0).await;
    fill(&t, &owner, 0).await;
    let token = populate(&t, &owner, 0, 1).await;
    let outsider = nexus(2);
    let _ = run(&t, &outsider, 1, &[0; 6], &[]).await;
    let (cdb, p) = wut(1, &token, 0);
    assert_eq!(sense_code(&run(&t, &outsider, 1, &cdb, &p).await), (5, 0x23, 0x00));
    assert!(is_zero(&t, &outsider, 1, 0).await, "nothing moved");
    // The token itself is fine: the nexus that can see the source may use it.
    let _ = run(&t, &owner, 1, &[0; 6], &[]).await;
    good(&run(&t, &owner, 1, &cdb, &p).await);
}

/// PERSISTENT RESERVE OUT with a 24-byte parameter list.
async fn prout(t: &ScsiTarget, n: &Arc<ItNexus>, lun: u64, sa: u8, pr_type: u8, key: u64, sa_key: u64) {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    good(&run(t, n, lun, &[0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0], &p).await);
}

#[tokio::test]
async fn reservations_are_checked_on_source_and_destination() {
    let (t, n) = source_and_destination().await;
    let token = populate(&t, &n, 0, 1).await;
    // Another initiator takes WRITE EXCLUSIVE on the destination.
    let owner = nexus(3);
    let _ = run(&t, &owner, 1, &[0; 6], &[]).await;
    let _ = run(&t, &owner, 0, &[0; 6], &[]).await;
    prout(&t, &owner, 1, 0x00, 0, 0, 0xAB).await;
    prout(&t, &owner, 1, 0x01, 0x01, 0xAB, 0).await;
    let (cdb, p) = wut(2, &token, 0);
    assert_eq!(run(&t, &n, 1, &cdb, &p).await.status, 0x18, "RESERVATION CONFLICT");
    assert!(is_zero(&t, &owner, 1, 0).await, "nothing reached the reserved LUN");
    // EXCLUSIVE ACCESS on the source: POPULATE TOKEN is refused, and a token made before
    // cannot be used to read it either.
    prout(&t, &owner, 0, 0x00, 0, 0, 0xCD).await;
    prout(&t, &owner, 0, 0x01, 0x03, 0xCD, 0).await;
    let p = pt_param(0, 0, 0, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    assert_eq!(run(&t, &n, 0, &pt_cdb(5, p.len()), &p).await.status, 0x18);
    prout(&t, &owner, 1, 0x02, 0x01, 0xAB, 0).await; // release the destination
    let (cdb, p) = wut(6, &token, 0);
    assert_eq!(sense_code(&run(&t, &n, 1, &cdb, &p).await), (0x0A, 0x0D, 0x02));
    assert!(is_zero(&t, &owner, 1, 0).await);
}

#[tokio::test]
async fn copy_operation_abort_and_task_abort_end_a_running_copy() {
    let big = |id| {
        let backend = Backend::Memory(MemoryBackend::new(64 << 20));
        Arc::new(Lun::new(id, backend, BS, LunIdentity::new("big", "1", &format!("B{id}")), false).unwrap())
    };
    let (a, b) = (big(0), big(1));
    let t = Arc::new(target(vec![a, b.clone()]));
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    let blocks = (32u32 << 20) / BS;
    let p = pt_param(0, 0, 0, &[(0, blocks)]);
    good(&run(&t, &n, 0, &pt_cdb(1, p.len()), &p).await);
    let token = good(&run(&t, &n, 0, &rrti_cdb(1), &[]).await)[38..550].to_vec();
    for via_tmf in [false, true] {
        // Hold the destination's second 8 MiB chunk so the copy stops there.
        let stall = b.ranges().lock(8 << 20, 1, false).await;
        let p = wut_param(0, 0, &token, &[(0, blocks)]);
        let (t2, n2, cdb) = (t.clone(), n.clone(), wut_cdb(7, p.len()));
        let copy = tokio::spawn(async move { run(&t2, &n2, 1, &cdb, &p).await });
        let info = loop {
            tokio::task::yield_now().await;
            let c = run(&t, &n, 1, &rrti_cdb(7), &[]).await;
            if c.status == 0 && u64::from_be_bytes(c.data_in.as_ref().unwrap()[16..24].try_into().unwrap()) > 0 {
                break good(&c);
            }
        };
        // In progress, in the foreground, one chunk (8 MiB) done.
        assert_eq!((info[5], u64::from_be_bytes(info[16..24].try_into().unwrap())), (0x11, (8 << 20) / BS as u64));
        if via_tmf {
            // Task management (ABORT TASK, nexus loss) stops the command's task.
            copy.abort();
            assert!(copy.await.unwrap_err().is_cancelled());
            drop(stall);
        } else {
            good(&run(&t, &n, 1, &abort_cdb(7), &[]).await);
            drop(stall);
            assert_eq!(sense_code(&copy.await.unwrap()), (0x0A, 0, 0));
        }
        // Either way RECEIVE ROD TOKEN INFORMATION then says: terminated.
        assert_eq!(good(&run(&t, &n, 1, &rrti_cdb(7), &[]).await)[5], 0x60, "via TMF: {via_tmf}");
    }
    assert_eq!(sense_code(&run(&t, &n, 1, &abort_cdb(8), &[]).await), (5, 0x24, 0));
}

#[tokio::test]
async fn nexus_loss_cancels_undelivered_tokens_and_list_ids_are_per_operation() {
    let t = target(vec![memory_lun(0), memory_lun(1)]);
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    fill(&t, &n, 0).await;
    let delivered = populate(&t, &n, 0, 1).await;
    let p = pt_param(0, 0, 0, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    good(&run(&t, &n, 0, &pt_cdb(2, p.len()), &p).await);
    assert_eq!(t.rod_tokens().live(), 2);
    t.nexus_lost(&n);
    // Nobody can ever learn the undelivered token: it is gone, and so is its record.
    assert_eq!(t.rod_tokens().live(), 1);
    assert_eq!(sense_code(&run(&t, &n, 0, &[0; 6], &[]).await), (6, 0x29, 0x07));
    assert_eq!(sense_code(&run(&t, &n, 0, &rrti_cdb(2), &[]).await), (5, 0x24, 0));
    // The delivered one outlives the nexus (ODX hands tokens between hosts).
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    let (cdb, p) = wut(3, &delivered, 0);
    good(&run(&t, &n, 1, &cdb, &p).await);
}

#[tokio::test]
async fn report_supported_opcodes_and_vpd_list_the_token_commands() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    for sa in [0x10u8, 0x11, 0x1C] {
        let cdb = [0xA3, 0x0C, 0x02, 0x83, 0, sa, 0, 0, 1, 0, 0, 0];
        assert_eq!(good(&run(&t, &n, 0, &cdb, &[]).await)[1] & 0x07, 0x03, "83h/{sa:#x} supported");
    }
    let cdb = [0xA3, 0x0C, 0x02, 0x84, 0, 0x07, 0, 0, 1, 0, 0, 0];
    assert_eq!(good(&run(&t, &n, 0, &cdb, &[]).await)[1] & 0x07, 0x03);
    let vpd = good(&run(&t, &n, 0, &[0x12, 1, 0x8F, 0x10, 0, 0], &[]).await);
    let mut kinds = Vec::new();
    let mut at = 4;
    while at < vpd.len() {
        kinds.push(u16::from_be_bytes([vpd[at], vpd[at + 1]]));
        at += 4 + u16::from_be_bytes([vpd[at + 2], vpd[at + 3]]) as usize;
    }
    assert_eq!(kinds, vec![0x0000, 0x0001, 0x0004, 0x0008, 0x000C, 0x0106, 0x0108, 0x8001]);
}

#[tokio::test]
async fn populate_token_parameter_checks() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let code = |c: Completion| sense_code(&c);
    // IMMED is not offered: the field pointer names byte 2 bit 0.
    let p = pt_param(0x01, 0, 0, &[(0, 1)]);
    let c = run(&t, &n, 0, &pt_cdb(1, p.len()), &p).await;
    assert_eq!(c.sense.as_ref().unwrap()[15..18], [0x88, 0, 2]);
    // Past the end of the medium; too long for the parameter list limit (before data-out).
    let p = pt_param(0, 0, 0, &[(BLOCKS - 1, 2)]);
    assert_eq!(code(run(&t, &n, 0, &pt_cdb(1, p.len()), &p).await), (5, 0x21, 0));
    assert_eq!(code(t.prepare(task(&n, 0, &pt_cdb(1, 16 + 65 * 16), 0)).unwrap_err()), (5, 0x1A, 0));
    // Ranges of zero blocks only: a token for nothing is refused.
    let p = pt_param(0, 0, 0, &[(0, 0), (8, 0)]);
    let c = run(&t, &n, 0, &pt_cdb(1, p.len()), &p).await;
    assert_eq!(c.sense.as_ref().unwrap()[15..18], [0x80, 0, 14]);
    // DATA LENGTH larger than what was sent.
    let mut p = pt_param(0, 0, 0, &[(0, 1)]);
    p[1] += 16;
    assert_eq!(code(run(&t, &n, 0, &pt_cdb(1, p.len()), &p).await), (5, 0x1A, 0));
    // A running list identifier is refused only while it runs; zero length is a no-op.
    good(&run(&t, &n, 0, &pt_cdb(1, 0), &[]).await);
    // A read-only destination refuses WRITE USING TOKEN.
    let backend = Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64));
    let ro = Arc::new(Lun::new(0, backend, BS, LunIdentity::new("ro", "1", "R"), true).unwrap());
    let t = target(vec![ro]);
    let n = fresh(&t, 0).await;
    let token = populate(&t, &n, 0, 1).await;
    let (cdb, p) = wut(2, &token, 0);
    assert_eq!(code(run(&t, &n, 0, &cdb, &p).await), (7, 0x27, 0));
}

/// A LU of a cluster gateway: its writes pass the gateway's write fence, open for a minute.
fn gateway_lun(id: u64) -> Arc<Lun> {
    let backend = Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64));
    let mut lun = Lun::new(id, backend, BS, LunIdentity::new("disk", "0001", &format!("SN{id}")), false).unwrap();
    let fence = Arc::new(crate::scsi::write_fence::WriteFence::default());
    fence.open_until(tokio::time::Instant::now() + Duration::from_secs(60));
    lun.set_write_fence(fence);
    Arc::new(lun)
}

#[tokio::test]
async fn a_cluster_gateway_makes_access_upon_reference_tokens_only() {
    let t = target(vec![gateway_lun(0), gateway_lun(1)]);
    let n = fresh(&t, 0).await;
    let _ = run(&t, &n, 1, &[0; 6], &[]).await;
    fill(&t, &n, 0).await;
    // Another gateway's writes to the source are invisible here, so a point-in-time token
    // could not be revoked by them: asking for one is refused (SBC-3 §5.8.2, ROD TYPE field)…
    for rod_type in [0x0080_0000u32, 0x0080_0001, 0x0080_FFFF] {
        let p = pt_param(0x02, 0, rod_type, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
        assert_eq!(sense_code(&run(&t, &n, 0, &pt_cdb(30, p.len()), &p).await), (5, 0x26, 0x00), "{rod_type:#x}");
    }
    // …and without RTV the token is access upon reference: the copy reads the source as it is
    // when WRITE USING TOKEN runs, whoever wrote it.
    let p = pt_param(0, 0, 0, &[(PATTERN_LBA, PATTERN_BLOCKS)]);
    good(&run(&t, &n, 0, &pt_cdb(31, p.len()), &p).await);
    let token = good(&run(&t, &n, 0, &rrti_cdb(31), &[]).await)[38..550].to_vec();
    assert_eq!(&token[0..4], &0x0001_0000u32.to_be_bytes(), "ROD TYPE access upon reference");
    good(&run(&t, &n, 0, &rw10(0x2A, 0, PATTERN_LBA as u32, 1), &[9; BS as usize]).await);
    let (cdb, p) = wut(32, &token, 400);
    good(&run(&t, &n, 1, &cdb, &p).await);
    assert!(read(&t, &n, 1, 400, 1).await.iter().all(|&b| b == 9));
    // VPD 8Fh's Supported ROD Types descriptor (0108h) lists no point-in-time type either.
    let vpd = good(&run(&t, &n, 0, &[0x12, 1, 0x8F, 0x10, 0, 0], &[]).await);
    let mut at = 4;
    let mut rod_types = None;
    while at + 4 <= vpd.len() {
        let len = u16::from_be_bytes([vpd[at + 2], vpd[at + 3]]) as usize;
        if vpd[at..at + 2] == [0x01, 0x08] {
            rod_types = Some(vpd[at + 4..at + 4 + len].to_vec());
        }
        at += 4 + len;
    }
    let rod_types = rod_types.expect("Supported ROD Types descriptor");
    let listed: Vec<&[u8]> = rod_types[4..].chunks(64).map(|d| &d[0..4]).collect();
    assert_eq!(listed, vec![&[0, 1, 0, 0][..], &[0xFF, 0xFF, 0, 1][..]], "access upon reference and the zero token");
}

#[tokio::test]
async fn a_cluster_gateway_offers_no_reservations_it_does_not_share() {
    let t = target(vec![gateway_lun(0)]);
    let n = fresh(&t, 0).await;
    // RESERVE(6/10), RELEASE(6/10) are never shared; PERSISTENT RESERVE IN / OUT are withheld
    // until the LU's cluster-wide state is loaded (this LU has none): a reservation held on one
    // gateway would not fence writes through another, so none is offered.
    let prout = [0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0];
    let mut register = [0u8; 24];
    register[8..16].copy_from_slice(&7u64.to_be_bytes());
    assert_eq!(sense_code(&run(&t, &n, 0, &prout, &register).await), (5, 0x20, 0x00));
    for cdb in [&[0x5Eu8, 0, 0, 0, 0, 0, 0, 0x10, 0, 0][..], &[0x16, 0, 0, 0, 0, 0], &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    {
        assert_eq!(sense_code(&run(&t, &n, 0, cdb, &[]).await), (5, 0x20, 0x00), "{cdb:02x?}");
    }
    // REPORT SUPPORTED OPERATION CODES agrees: none of them is listed; READ(10) still is.
    let all = good(&run(&t, &n, 0, &[0xA3, 0x0C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], &[]).await);
    let opcodes: Vec<u8> = all[4..].chunks(8).map(|d| d[0]).collect();
    for withheld in [0x5E, 0x5F, 0x16, 0x17, 0x56, 0x57] {
        assert!(!opcodes.contains(&withheld), "{withheld:#x} listed");
    }
    assert!(opcodes.contains(&0x28));
}
