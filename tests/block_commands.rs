//! The block command set against the real binary, driven with raw CDBs by a minimal initiator
//! (tests/common/block_initiator.rs, on the raw initiator): COMPARE AND WRITE races between sessions, thin
//! provisioning that really returns space, EXTENDED COPY between LUNs (and not into LUNs the
//! initiator cannot see), and the exact sense data for bad CDBs and parameter lists.

mod common;

use common::block_initiator::BlockInitiator;
use common::{TargetProcess, DEFAULT_IQN};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

const ADMIN: &str = "iqn.2026-11.io.palisade.test:admin";
const RESTRICTED: &str = "iqn.2026-11.io.palisade.test:restricted";
const BS: usize = 512;

/// (sense key, ASC, ASCQ).
type SenseCode = (u8, u8, u8);

/// LUN 0: 256 MiB sparse file; LUN 1: 64 MiB memory. ADMIN sees both, RESTRICTED only LUN 0.
/// (Literal TOML: the ConfigSpec renderer in common/mod.rs predates the config schema.)
fn start() -> TargetProcess {
    let toml = format!(
        r#"
[[portals]]
name = "test"
listen = "127.0.0.1:{{PORT}}"
tpgt = 1

[[targets]]
name = "{DEFAULT_IQN}"

[[targets.luns]]
id = 0
backend = "file"
path = "{{DATA_DIR}}/lun0.img"
size = "256MiB"

[[targets.luns]]
id = 1
backend = "memory"
size = "64MiB"

[[targets.acl]]
initiator = "{ADMIN}"

[[targets.acl]]
initiator = "{RESTRICTED}"
luns = [0]
"#
    );
    TargetProcess::start_with_config(&toml, DEFAULT_IQN)
}

fn login(target: &TargetProcess, initiator: &str, isid: u8, luns: &[u64]) -> BlockInitiator {
    let mut i = BlockInitiator::connect(&target.portal(), target.iqn(), initiator, isid);
    for &lun in luns {
        i.clear_unit_attention(lun);
    }
    i
}

fn rw16(op: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut cdb = vec![op, 0];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&blocks.to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

fn caw(lba: u64, blocks: u8) -> Vec<u8> {
    let mut cdb = vec![0x89, 0];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 0, blocks, 0, 0]);
    cdb
}

fn get_lba_status(lba: u64) -> Vec<u8> {
    let mut cdb = vec![0x9E, 0x12];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 1, 0, 0, 0]);
    cdb
}

/// (LBA, blocks, provisioning status) of the first GET LBA STATUS descriptor.
fn first_lba_status(data: &[u8]) -> (u64, u32, u8) {
    (
        u64::from_be_bytes(data[8..16].try_into().unwrap()),
        u32::from_be_bytes(data[16..20].try_into().unwrap()),
        data[20] & 0x0F,
    )
}

/// One block whose every byte says who wrote it in which round: a torn block cannot pass.
fn value(round: usize, who: usize) -> Vec<u8> {
    vec![(round * 16 + who + 1) as u8; BS]
}

#[test]
fn compare_and_write_race_has_exactly_one_winner_per_round() {
    const CONTENDERS: usize = 4;
    const ROUNDS: usize = 40;
    const LBA: u64 = 1234;
    let target = start();
    let mut setup = login(&target, ADMIN, 0, &[0]);
    setup.ok(0, &rw16(0x8A, LBA, 1), &value(0, 15), 0);
    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let wins: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let threads: Vec<_> = (0..CONTENDERS)
        .map(|who| {
            let (barrier, wins, portal, iqn) =
                (barrier.clone(), wins.clone(), target.portal(), target.iqn().to_string());
            std::thread::spawn(move || {
                // Different initiators and sessions, like the hosts of a VMFS datastore.
                let name = if who % 2 == 0 { ADMIN } else { RESTRICTED };
                let mut me = BlockInitiator::connect(&portal, &iqn, name, 10 + who as u8);
                me.clear_unit_attention(0);
                for round in 0..ROUNDS {
                    barrier.wait();
                    // Everyone reads the current value: it must be one whole contender value.
                    let current = me.ok(0, &rw16(0x88, LBA, 1), &[], BS as u32);
                    assert!(current.iter().all(|&b| b == current[0]), "torn block in round {round}");
                    barrier.wait();
                    let mut buf = current.clone();
                    buf.extend(value(round + 1, who));
                    let result = me.command(0, &caw(LBA, 1), &buf, 0);
                    if result.is_good() {
                        wins[round].fetch_add(1, Ordering::SeqCst);
                    } else {
                        assert_eq!(result.sense_code(), (0x0E, 0x1D, 0x00), "loser must see MISCOMPARE");
                        assert_eq!(result.information(), Some(0), "the first byte already differs");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("contender thread");
    }
    for (round, w) in wins.iter().enumerate() {
        assert_eq!(w.load(Ordering::SeqCst), 1, "round {round} must have exactly one winner");
    }
    let last = setup.ok(0, &rw16(0x88, LBA, 1), &[], BS as u32);
    assert!((0..CONTENDERS).any(|who| last == value(ROUNDS, who)), "final block is one complete value");
}

#[test]
fn unmap_returns_space_and_reads_zeros() {
    const MIB: usize = 1 << 20;
    const TOTAL_BLOCKS: u64 = (100 * MIB / BS) as u64;
    let target = start();
    let image = target.data_dir().join("lun0.img");
    let allocated = || std::fs::metadata(&image).unwrap().blocks() * 512;
    let mut i = login(&target, ADMIN, 1, &[0]);
    let before = allocated();
    let chunk: Vec<u8> = (0..MIB).map(|n| (n % 251) as u8 + 1).collect();
    for m in 0..100u64 {
        i.ok(0, &rw16(0x8A, m * (MIB / BS) as u64, (MIB / BS) as u32), &chunk, 0);
    }
    i.ok(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0); // SYNCHRONIZE CACHE
    let written = allocated();
    assert!(written >= before + 100 * MIB as u64, "100 MiB allocated: {before} -> {written}");
    assert_eq!(first_lba_status(&i.ok(0, &get_lba_status(0), &[], 256)), (0, TOTAL_BLOCKS as u32, 0));

    // One UNMAP descriptor covering the 100 MiB (within MAXIMUM UNMAP LBA COUNT).
    let mut param = vec![0, 22, 0, 16, 0, 0, 0, 0];
    param.extend_from_slice(&0u64.to_be_bytes());
    param.extend_from_slice(&(TOTAL_BLOCKS as u32).to_be_bytes());
    param.extend_from_slice(&[0; 4]);
    i.ok(0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &param, 0);
    let after = allocated();
    assert!(after + 99 * MIB as u64 <= written, "space returned: {written} -> {after}");
    // The whole range reads back as zeros.
    for m in 0..100u64 {
        let data = i.ok(0, &rw16(0x88, m * (MIB / BS) as u64, (MIB / BS) as u32), &[], MIB as u32);
        assert!(data.iter().all(|&b| b == 0), "MiB {m} reads zeros after UNMAP");
    }
    // GET LBA STATUS agrees: deallocated from LBA 0 through (at least) the unmapped range.
    let (lba, blocks, status) = first_lba_status(&i.ok(0, &get_lba_status(0), &[], 256));
    assert_eq!((lba, status), (0, 1));
    assert!(blocks as u64 >= TOTAL_BLOCKS);
    // READ CAPACITY(16) and the provisioning VPD page say so too: LBPME, LBPRZ, LBPU.
    let rc16 = i.ok(0, &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[], 32);
    assert_eq!(rc16[14] & 0xC0, 0xC0);
    let b2 = i.ok(0, &[0x12, 1, 0xB2, 0, 64, 0], &[], 64);
    assert_eq!(b2[5] & 0x80, 0x80);
}

/// The 8-byte NAA designator a LUN reports in VPD page 83h.
fn naa_of(i: &mut BlockInitiator, lun: u64) -> [u8; 8] {
    let page = i.ok(lun, &[0x12, 1, 0x83, 0, 255, 0], &[], 255);
    assert_eq!(&page[4..8], &[0x01, 0x03, 0x00, 0x08], "first designator is the NAA one");
    page[8..16].try_into().unwrap()
}

fn xcopy_param(cscds: &[[u8; 8]], src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut p = vec![1, 0];
    p.extend_from_slice(&((32 * cscds.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&28u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for naa in cscds {
        let mut d = vec![0xE4, 0, 0, 0, 0x01, 0x03, 0, 8];
        d.extend_from_slice(naa);
        d.resize(29, 0);
        d.extend_from_slice(&[0, 0x02, 0x00]); // DISK BLOCK LENGTH 512
        p.extend(d);
    }
    p.extend_from_slice(&[0x02, 0, 0, 0x18]);
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&blocks.to_be_bytes());
    p.extend_from_slice(&src_lba.to_be_bytes());
    p.extend_from_slice(&dst_lba.to_be_bytes());
    p
}

fn xcopy_cdb(len: usize) -> Vec<u8> {
    let mut cdb = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb.extend_from_slice(&(len as u32).to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

#[test]
fn extended_copy_between_luns_verifies_and_respects_masking() {
    let target = start();
    let mut admin = login(&target, ADMIN, 2, &[0, 1]);
    let (naa0, naa1) = (naa_of(&mut admin, 0), naa_of(&mut admin, 1));
    let data: Vec<u8> = (0..2048 * BS).map(|n| (n / 7 % 256) as u8).collect();
    admin.ok(0, &rw16(0x8A, 5000, 2048), &data, 0);
    let param = xcopy_param(&[naa0, naa1], 0, 1, 2048, 5000, 300);
    admin.ok(0, &xcopy_cdb(param.len()), &param, 0);
    assert_eq!(admin.ok(1, &rw16(0x88, 300, 2048), &[], (2048 * BS) as u32), data);
    // Held status for list identifier 1: completed, one segment, 1 MiB.
    let status = admin.ok(0, &[0x84, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0], &[], 12);
    assert_eq!(&status[4..12], &[0x01, 0, 1, 0, 0, 0x10, 0, 0]);

    // An initiator that cannot see LUN 1 can neither write to nor read from it through a copy,
    // even knowing its designator (CVE-2020-28374). LUN 1's first blocks hold a secret that a
    // LUN 1 → LUN 0 copy would leak into LUN 0, where the restricted initiator could read it.
    let secret: Vec<u8> = (0..8 * BS).map(|n| (n % 251) as u8 ^ 0xA5).collect();
    admin.ok(1, &rw16(0x8A, 0, 8), &secret, 0);
    let mut restricted = login(&target, RESTRICTED, 3, &[0]);
    for (src, dst) in [(0, 1), (1, 0)] {
        let param = xcopy_param(&[naa0, naa1], src, dst, 8, 0, 0);
        let result = restricted.command(0, &xcopy_cdb(param.len()), &param, 0);
        assert_eq!(result.sense_code(), (0x0A, 0x0D, 0x02), "COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE");
    }
    assert_eq!(admin.ok(1, &rw16(0x88, 0, 8), &[], 8 * BS as u32), secret, "LUN 1 untouched");
    assert_eq!(restricted.ok(0, &rw16(0x88, 0, 8), &[], 8 * BS as u32), vec![0u8; 8 * BS], "nothing leaked into LUN 0");
}

#[test]
fn bad_cdbs_and_parameter_lists_get_the_prescribed_sense() {
    let target = start();
    let mut i = login(&target, ADMIN, 4, &[0, 1]);
    let last = (256u64 << 20) / BS as u64 - 1;
    let invalid_cdb = (0x05, 0x24, 0x00);
    let lba_out_of_range = (0x05, 0x21, 0x00);
    let param_list_length = (0x05, 0x1A, 0x00);
    let invalid_param = (0x05, 0x26, 0x00);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, SenseCode)> = vec![
        // SBC-3 §5.2: data-out must be exactly 2 × NUMBER OF LOGICAL BLOCKS blocks.
        ("CAW data-out too short", caw(0, 2), vec![0; 2 * BS], invalid_cdb),
        ("CAW beyond the end", caw(last, 2), vec![0; 4 * BS], lba_out_of_range),
        ("CAW miscompare", caw(0, 1), [vec![0xFF; BS], vec![0; BS]].concat(), (0x0E, 0x1D, 0x00)),
        // SBC-3 §5.33: BYTCHK 10b is reserved.
        (
            "VERIFY(16) BYTCHK 10b",
            {
                let mut c = rw16(0x8F, 0, 1);
                c[1] = 0x04;
                c
            },
            vec![],
            invalid_cdb,
        ),
        (
            "VERIFY(16) VRPROTECT",
            {
                let mut c = rw16(0x8F, 0, 1);
                c[1] = 0x20;
                c
            },
            vec![],
            invalid_cdb,
        ),
        ("PRE-FETCH(16) beyond the end", rw16(0x90, last + 1, 1), vec![], lba_out_of_range),
        (
            "ORWRITE ORPROTECT",
            {
                let mut c = rw16(0x8B, 0, 1);
                c[1] = 0x20;
                c
            },
            vec![0; BS],
            invalid_cdb,
        ),
        ("WRITE AND VERIFY(16) beyond", rw16(0x8E, last, 2), vec![0; 2 * BS], lba_out_of_range),
        // SBC-3 §5.43: ANCHOR without ANC_SUP; WSNZ: zero blocks.
        (
            "WRITE SAME(16) ANCHOR",
            {
                let mut c = rw16(0x93, 0, 1);
                c[1] = 0x18;
                c
            },
            vec![0; BS],
            invalid_cdb,
        ),
        ("WRITE SAME(16) zero blocks", rw16(0x93, 0, 0), vec![0; BS], invalid_cdb),
        ("UNMAP ANCHOR", vec![0x42, 0x01, 0, 0, 0, 0, 0, 0, 24, 0], vec![0; 24], invalid_cdb),
        ("UNMAP short list", vec![0x42, 0, 0, 0, 0, 0, 0, 0, 7, 0], vec![0; 7], param_list_length),
        ("GET LBA STATUS beyond the end", get_lba_status(last + 1), vec![], lba_out_of_range),
        ("EXTENDED COPY truncated header", xcopy_cdb(15), vec![0; 15], param_list_length),
        ("EXTENDED COPY reserved LIST ID USAGE", xcopy_cdb(16), [vec![1, 0x08], vec![0; 14]].concat(), invalid_param),
        // SPC-4 §6.25: no held status for this list identifier.
        (
            "RECEIVE COPY RESULTS unknown list",
            vec![0x84, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0],
            vec![],
            invalid_cdb,
        ),
        (
            "RECEIVE COPY RESULTS bad service action",
            vec![0x84, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0],
            vec![],
            invalid_cdb,
        ),
        ("MODE SENSE saved values", vec![0x1A, 0, 0xC0 | 0x3F, 0, 255, 0], vec![], (0x05, 0x39, 0x00)),
        ("SANITIZE not offered", vec![0x48, 0x01, 0, 0, 0, 0, 0, 0, 0, 0], vec![], (0x05, 0x20, 0x00)),
    ];
    for (what, cdb, data, expected) in cases {
        let data_in = if data.is_empty() { 1024 } else { 0 };
        let result = i.command(0, &cdb, &data, data_in);
        assert_eq!(result.status, 0x02, "{what}: expected CHECK CONDITION, got {result:?}");
        assert_eq!(result.sense_code(), expected, "{what}");
    }
    // The miscompare of a differing first byte reports offset 0.
    let result = i.command(0, &caw(0, 1), &[vec![0xFF; BS], vec![0; BS]].concat(), 0);
    assert_eq!(result.information(), Some(0));
    // A write-protected (SWP) LUN answers DATA PROTECT to every writing command.
    let mut control = i.ok(0, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[], 255);
    control[0] = 0;
    control[2] = 0; // device-specific parameter is reserved in MODE SELECT
    control[4 + 4] |= 0x08; // SWP
    i.ok(0, &[0x15, 0x10, 0, 0, control.len() as u8, 0], &control, 0);
    for cdb in [caw(0, 1), rw16(0x8B, 0, 1), rw16(0x8E, 0, 1), rw16(0x93, 0, 1)] {
        let data = if cdb[0] == 0x89 { vec![0; 2 * BS] } else { vec![0; BS] };
        assert_eq!(i.command(0, &cdb, &data, 0).sense_code(), (0x07, 0x27, 0x02), "{:#x} under SWP", cdb[0]);
    }
}
