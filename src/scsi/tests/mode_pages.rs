//! MODE SENSE / MODE SELECT, D_SENSE, SWP and REPORT SUPPORTED OPERATION CODES end to end.

use super::*;

fn mode_sense6(pc_page: u8, subpage: u8, alloc: u8) -> [u8; 6] {
    [0x1A, 0, pc_page, subpage, alloc, 0]
}

/// Finds a page in MODE SENSE(6) data (header + block descriptor skipped).
fn page(data: &[u8], code: u8) -> Vec<u8> {
    let mut at = 4 + data[3] as usize;
    while at + 1 < data.len() {
        let len = data[at + 1] as usize + 2;
        if data[at] & 0x3F == code {
            return data[at..at + len].to_vec();
        }
        at += len;
    }
    panic!("page {code:#x} not found");
}

#[tokio::test]
async fn mode_sense_all_pages_header_and_descriptor() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x3F, 0, 255), &[]).await);
    assert_eq!(ms[0] as usize, ms.len() - 1);
    assert_eq!(ms[2], 0x10); // DPOFUA, not write protected
    assert_eq!(ms[3], 8);
    assert_eq!(&ms[4..12], &[0, 0, 0x08, 0, 0, 0, 2, 0]);
    assert_eq!(page(&ms, 0x08)[2] & 0x04, 0x04); // WCE
    assert_eq!(page(&ms, 0x0A).len(), 12);
    assert_eq!(page(&ms, 0x1C)[2], 0x08);
    // DBD drops the block descriptor; truncation keeps the header consistent.
    let dbd = good(&run(&t, &n, 0, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[]).await);
    assert_eq!(dbd[3], 0);
    assert_eq!(dbd.len(), ms.len() - 8);
    assert_eq!(good(&run(&t, &n, 0, &mode_sense6(0x3F, 0, 4), &[]).await).len(), 4);
    // MODE SENSE(10) with LLBAA: long LBA descriptor.
    let ms10 = good(&run(&t, &n, 0, &[0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0], &[]).await);
    assert_eq!(u16::from_be_bytes([ms10[0], ms10[1]]) as usize, ms10.len() - 2);
    assert_eq!((ms10[4], ms10[7]), (1, 16));
    assert_eq!(&ms10[8..16], &BLOCKS.to_be_bytes());
    assert_eq!(ms10[24], 0x08);
}

#[tokio::test]
async fn mode_sense_page_control_and_bad_fields() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let ch = good(&run(&t, &n, 0, &mode_sense6(0x40 | 0x0A, 0, 255), &[]).await);
    let control = page(&ch, 0x0A);
    assert_eq!((control[2], control[4]), (0x04, 0x08)); // D_SENSE and SWP changeable
    let saved = run(&t, &n, 0, &mode_sense6(0xC0 | 0x3F, 0, 255), &[]).await;
    assert_eq!(sense_code(&saved), (5, 0x39, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &mode_sense6(0x19, 0, 255), &[]).await), (5, 0x24, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &mode_sense6(0x0A, 1, 255), &[]).await), (5, 0x24, 0));
}

/// MODE SELECT(6) with PF=1 of a single page taken from MODE SENSE current values.
async fn select_page(t: &ScsiTarget, n: &Arc<ItNexus>, page: &[u8]) -> Completion {
    let mut param = vec![0, 0, 0, 0];
    param.extend_from_slice(page);
    run(t, n, 0, &[0x15, 0x10, 0, 0, param.len() as u8, 0], &param).await
}

#[tokio::test]
async fn mode_select_d_sense_switches_sense_format_and_signals_others() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let other = nexus(3);
    run(&t, &other, 0, &[0; 6], &[]).await; // consume its power-on UA
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x0A, 0, 255), &[]).await);
    let mut control = page(&ms, 0x0A);
    control[2] |= 0x04;
    good(&select_page(&t, &n, &control).await);
    let oob = run(&t, &n, 0, &rw16(0x88, 0, u64::MAX, 1), &[]).await;
    assert_eq!(oob.sense.as_ref().unwrap()[0], 0x72);
    assert_eq!(sense_code(&oob), (5, 0x21, 0));
    // The other nexus gets MODE PARAMETERS CHANGED, in descriptor format now.
    let ua = run(&t, &other, 0, &[0; 6], &[]).await;
    assert_eq!(sense_code(&ua), (6, 0x2A, 0x01));
    assert_eq!(ua.sense.as_ref().unwrap()[0], 0x72);
    // Invalid field pointer in descriptor format: sense-key-specific descriptor.
    let bad = run(&t, &n, 0, &rw10(0x28, 0x20, 0, 1), &[]).await;
    assert_eq!(&bad.sense.as_ref().unwrap()[8..15], &[0x02, 0x06, 0, 0, 0xCD, 0, 1]);
}

#[tokio::test]
async fn mode_select_swp_write_protects() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x0A, 0, 255), &[]).await);
    let mut control = page(&ms, 0x0A);
    control[4] |= 0x08;
    good(&select_page(&t, &n, &control).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0; 512]).await), (7, 0x27, 0x02));
    good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await);
    assert_eq!(good(&run(&t, &n, 0, &mode_sense6(0x0A, 0, 255), &[]).await)[2] & 0x80, 0x80);
    control[4] &= !0x08;
    good(&select_page(&t, &n, &control).await);
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0; 512]).await);
}

#[tokio::test]
async fn mode_select_rejects_bad_parameter_lists() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x0A, 0, 255), &[]).await);
    let control = page(&ms, 0x0A);
    // A non-changeable bit (QAM) altered.
    let mut bad = control.clone();
    bad[3] ^= 0x10;
    let c = select_page(&t, &n, &bad).await;
    assert_eq!(sense_code(&c), (5, 0x26, 0));
    assert_eq!(&c.sense.as_ref().unwrap()[15..18], &[0x8C, 0, 7]); // param byte 4+3, bit 4
                                                                   // Wrong page length, unknown page, truncated page.
    let mut bad = control.clone();
    bad[1] = 0x0B;
    assert_eq!(sense_code(&select_page(&t, &n, &bad).await), (5, 0x26, 0));
    assert_eq!(sense_code(&select_page(&t, &n, &[0x19, 2, 0, 0]).await), (5, 0x26, 0));
    assert_eq!(sense_code(&select_page(&t, &n, &control[..6]).await), (5, 0x1A, 0));
    // PF=0 and SP=1 are invalid fields in the CDB; length 0 is a no-op.
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x15, 0, 0, 0, 16, 0], &[0; 16]).await), (5, 0x24, 0));
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x15, 0x11, 0, 0, 16, 0], &[0; 16]).await), (5, 0x24, 0));
    good(&run(&t, &n, 0, &[0x15, 0x10, 0, 0, 0, 0], &[]).await);
    // Parameter list shorter than the header.
    assert_eq!(sense_code(&run(&t, &n, 0, &[0x15, 0x10, 0, 0, 2, 0], &[0, 0]).await), (5, 0x1A, 0));
    // Block descriptor with a different block length.
    let mut with_bd = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    with_bd.extend_from_slice(&control);
    let cdb = [0x15, 0x10, 0, 0, with_bd.len() as u8, 0];
    assert_eq!(sense_code(&run(&t, &n, 0, &cdb, &with_bd).await), (5, 0x26, 0));
    with_bd[10] = 0x02;
    good(&run(&t, &n, 0, &cdb, &with_bd).await);
}

#[tokio::test]
async fn write_cache_disable_is_honoured_in_mode_sense() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x08, 0, 255), &[]).await);
    let mut caching = page(&ms, 0x08);
    caching[2] &= !0x04;
    good(&select_page(&t, &n, &caching).await);
    let ms = good(&run(&t, &n, 0, &mode_sense6(0x08, 0, 255), &[]).await);
    assert_eq!(page(&ms, 0x08)[2] & 0x04, 0);
    // Default values still report WCE set; LUN reset restores defaults.
    let def = good(&run(&t, &n, 0, &mode_sense6(0x80 | 0x08, 0, 255), &[]).await);
    assert_eq!(page(&def, 0x08)[2] & 0x04, 0x04);
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[1; 512]).await);
}

#[tokio::test]
async fn rsoc_through_the_target() {
    let t = target(vec![memory_lun(0)]);
    let n = fresh(&t, 0).await;
    let all = good(&run(&t, &n, 0, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0], &[]).await);
    let len = u32::from_be_bytes(all[..4].try_into().unwrap()) as usize;
    assert_eq!(len, all.len() - 4);
    let opcodes: Vec<u8> = all[4..].chunks(8).map(|d| d[0]).collect();
    assert!(opcodes.contains(&0x42) && opcodes.contains(&0x9E) && !opcodes.contains(&0x5D));
    let one = good(&run(&t, &n, 0, &[0xA3, 0x0C, 0x81, 0x2A, 0, 0, 0, 0, 0x04, 0, 0, 0], &[]).await);
    assert_eq!(&one[..4], &[0, 0x83, 0, 10]);
    assert_eq!(one.len(), 4 + 10 + 12);
    let bad = run(&t, &n, 0, &[0xA3, 0x0C, 0x01, 0xA3, 0, 0x0C, 0, 0, 0x04, 0, 0, 0], &[]).await;
    assert_eq!(sense_code(&bad), (5, 0x24, 0));
}
