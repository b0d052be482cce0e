//! `ScsiTarget::prepare` + `Prepared::execute` with arbitrary CDBs and data-out, against a
//! fresh target per input: LUN 0 = 64 blocks of 512 bytes, LUN 1 = 16 blocks of 4096 bytes
//! (both in memory), two I_T nexuses (so reservations and unit attentions interact).
//!
//! Input: records `[control][16 CDB bytes][u16 n][n data-out bytes]`. Control bits: 1-0 LUN
//! (0, 1, absent LUN 7, absent LUN 300), 2 second nexus, 4-3 CDB length (16, 6, 10, 12),
//! 5 LOGICAL UNIT RESET first, 6 nexus loss after, 7 EDTL 64 KiB instead of n.
//!
//! Invariants for every command:
//! - status is GOOD, CHECK CONDITION or RESERVATION CONFLICT; GOOD has no sense; CHECK
//!   CONDITION has well-formed sense (fixed 70h/71h of 18 bytes, or descriptor 72h/73h whose
//!   length matches its ADDITIONAL SENSE LENGTH) and no data; a conflict has neither;
//!   a command refused by `prepare` is never GOOD;
//! - data-in never exceeds what the CDB's allocation length (or transfer length × block size
//!   for READ) implies, and commands without data-in return none;
//! - a GOOD READ returns exactly transfer length × block size bytes, equal to the medium at
//!   LBA × block size; after a GOOD WRITE the medium holds the data-out given;
//! - data-out wanted never exceeds the 32 MiB transfer limit, and a WRITE wants exactly
//!   transfer length × block size.
//!
//! ROD tokens (SBC-3 §4.30): every token a GOOD RECEIVE ROD TOKEN INFORMATION hands out is
//! kept, and the ROD TOKEN field of a WRITE USING TOKEN parameter list is XORed with the latest
//! one, so the input's bytes there are a delta from a genuine token (zeros: the token itself,
//! anything else: a bit-flipped, truncated or forged one). Invariant: a WRITE USING TOKEN that
//! ends GOOD with a non-empty parameter list presented, byte for byte, a token this target
//! made or the block device zero ROD token.

#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use palisade::backend::{Backend, MemoryBackend};
use palisade::scsi::limits::MAX_TRANSFER_BYTES;
use palisade::scsi::lun::encode_lun;
use palisade::scsi::{Completion, DataOut, ItNexus, Lun, LunIdentity, LunMasking, ScsiTarget, ScsiTask, TaskAttr};
use pdu::be::{be16, be32, be64};

const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const RESERVATION_CONFLICT: u8 = 0x18;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().build().expect("current-thread runtime");
}

/// (LBA, blocks) of READ/WRITE(6/10/12/16) (SBC-3 §5.11-§5.13, §5.35-§5.38).
fn rw_range(cdb: &[u8; 16]) -> Option<(u64, u64)> {
    Some(match cdb[0] {
        0x08 | 0x0a => {
            let lba = ((cdb[1] as u64 & 0x1f) << 16) | be16(&cdb[2..4]);
            (lba, if cdb[4] == 0 { 256 } else { cdb[4] as u64 })
        }
        0x28 | 0x2a => (be32(&cdb[2..6]), be16(&cdb[7..9])),
        0xa8 | 0xaa => (be32(&cdb[2..6]), be32(&cdb[6..10])),
        0x88 | 0x8a => (be64(&cdb[2..10]), be32(&cdb[10..14])),
        _ => return None,
    })
}

fn is_read(op: u8) -> bool {
    matches!(op, 0x08 | 0x28 | 0xa8 | 0x88)
}

fn is_write(op: u8) -> bool {
    matches!(op, 0x0a | 0x2a | 0xaa | 0x8a)
}

/// Most data-in the CDB allows (SPC-4 allocation length fields; SBC-3 transfer lengths).
fn data_in_allowed(cdb: &[u8; 16], block_size: u64) -> u64 {
    match cdb[0] {
        0x03 | 0x1a => cdb[4] as u64,     // REQUEST SENSE, MODE SENSE(6)
        0x12 => be16(&cdb[3..5]),         // INQUIRY
        0x5a | 0x5e => be16(&cdb[7..9]),  // MODE SENSE(10), PERSISTENT RESERVE IN
        0x37 => be16(&cdb[7..9]),         // READ DEFECT DATA(10)
        0xb7 => be32(&cdb[6..10]),        // READ DEFECT DATA(12)
        0x84 => be32(&cdb[10..14]),       // RECEIVE COPY RESULTS
        0x25 => 8,                        // READ CAPACITY(10)
        0x9e => be32(&cdb[10..14]),       // SERVICE ACTION IN(16): READ CAPACITY(16)
        0xa0 | 0xa3 => be32(&cdb[6..10]), // REPORT LUNS, MAINTENANCE IN (RSOC)
        op if is_read(op) => rw_range(cdb).map_or(0, |(_, n)| n * block_size),
        _ => 0,
    }
}

fn check_sense(sense: &[u8]) {
    match sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => {
            assert_eq!(sense.len(), 18, "fixed sense length");
            assert_eq!(sense[7] as usize, sense.len() - 8, "fixed sense ADDITIONAL SENSE LENGTH");
        }
        Some(0x72 | 0x73) => {
            assert!(sense.len() >= 8, "descriptor sense too short");
            assert_eq!(sense[7] as usize, sense.len() - 8, "descriptor sense ADDITIONAL SENSE LENGTH");
        }
        other => panic!("sense response code {other:?}"),
    }
}

fn lun(id: u64, block_size: u32, blocks: u64) -> Arc<Lun> {
    let backend = Backend::Memory(MemoryBackend::new(block_size as u64 * blocks));
    Arc::new(Lun::new(id, backend, block_size, LunIdentity::new("fuzz", "0001", &format!("SN{id}")), false).unwrap())
}

fn nexus(n: u8) -> Arc<ItNexus> {
    Arc::new(ItNexus::new(
        &format!("iqn.2026-11.io.palisade:fuzz{n}"),
        [0x80, 0, 0, 0, 0, n],
        "iqn.2026-11.io.palisade:fuzz",
        1,
    ))
}

async fn run(data: &[u8]) {
    let luns = [lun(0, 512, 64), lun(1, 4096, 16)];
    let target = ScsiTarget::new("iqn.2026-11.io.palisade:fuzz".into(), luns.to_vec(), LunMasking::allow_all());
    let nexuses = [nexus(1), nexus(2)];
    let mut tokens: Vec<[u8; TOKEN_LEN]> = Vec::new();
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let mut cdb = [0u8; 16];
        let n = tail.len().min(16);
        cdb[..n].copy_from_slice(&tail[..n]);
        let tail = &tail[n..];
        let want = tail.get(..2).map_or(0, |b| be16(b) as usize);
        let tail = tail.get(2..).unwrap_or(&[]);
        let (data_out, after) = tail.split_at(want.min(tail.len()));
        rest = after;
        let mut data_out = data_out.to_vec();
        let write_using_token = cdb[0] == 0x83 && cdb[1] & 0x1f == 0x11;
        if let (true, Some(latest)) = (write_using_token, tokens.last()) {
            for (byte, genuine) in data_out.iter_mut().skip(WUT_TOKEN_AT).zip(latest) {
                *byte ^= genuine;
            }
        }
        let data_out = &data_out[..];

        let lun_id = [0, 1, 7, 300][(control & 3) as usize];
        let lun = luns.get(lun_id as usize).filter(|_| lun_id < 2);
        let block_size = lun.map_or(512, |l| l.block_size()) as u64;
        let nexus = &nexuses[(control >> 2 & 1) as usize];
        let cdb_len = [16, 6, 10, 12][(control >> 3 & 3) as usize];
        let edtl = if control & 0x80 != 0 { 1 << 16 } else { data_out.len() as u32 };
        let lun_field = u64::from_be_bytes(encode_lun(lun_id));
        if control & 0x20 != 0 {
            target.logical_unit_reset(lun_field, nexus).await;
        }
        let task = ScsiTask {
            nexus: nexus.clone(),
            lun: lun_field,
            cdb,
            cdb_len,
            attr: TaskAttr::Simple,
            expected_data_in_len: edtl,
            expected_data_out_len: edtl,
        };
        let (completion, wanted): (Completion, Option<u32>) = match target.prepare(task) {
            Err(done) => {
                assert_ne!(done.status, GOOD, "prepare refused with GOOD status");
                (done, None)
            }
            Ok(prepared) => {
                let wanted = prepared.data_out_len();
                // The transport hands over at most what the command wants (RFC 7143 §11.3:
                // never more than EDTL either), in up to three segments.
                let given = &data_out[..data_out.len().min(wanted as usize)];
                let mut segments = DataOut::new();
                let third = given.len() / 3;
                for piece in [&given[..third], &given[third..2 * third], &given[2 * third..]] {
                    segments.push(Bytes::copy_from_slice(piece));
                }
                (prepared.execute(segments).await, Some(wanted))
            }
        };
        check_completion(&cdb, block_size, &completion);
        if let Some(wanted) = wanted {
            assert!(wanted <= MAX_TRANSFER_BYTES, "data-out of {wanted} bytes wanted");
            if is_write(cdb[0]) {
                let (_, blocks) = rw_range(&cdb).unwrap();
                assert_eq!(wanted as u64, blocks * block_size, "WRITE data-out length");
            }
        }
        if let (Some(wanted), GOOD) = (wanted, completion.status) {
            let given = &data_out[..data_out.len().min(wanted as usize)];
            if write_using_token && !given.is_empty() {
                let presented = given.get(WUT_TOKEN_AT..WUT_TOKEN_AT + TOKEN_LEN).expect("GOOD with a whole token");
                let zero_token = presented[..4] == [0xff, 0xff, 0, 1];
                assert!(
                    zero_token || tokens.iter().any(|t| t[..] == *presented),
                    "WRITE USING TOKEN honoured a token this target never made"
                );
            }
            if cdb[0] == 0x84 && cdb[1] & 0x1f == 0x07 {
                remember_token(&mut tokens, completion.data_in.as_deref().unwrap_or_default());
            }
        }
        if let (Some(lun), GOOD) = (lun, completion.status) {
            check_medium(lun, &cdb, &completion, &data_out[..data_out.len().min(wanted.unwrap_or(0) as usize)]).await;
        }
        if control & 0x40 != 0 {
            target.nexus_lost(nexus);
        }
    }
}

/// Where WRITE USING TOKEN's parameter list holds the ROD token (SBC-3 §5.45.2), and its length.
const WUT_TOKEN_AT: usize = 16;
const TOKEN_LEN: usize = 512;

/// Keeps the token of a RECEIVE ROD TOKEN INFORMATION answer, if it carries a whole one (after
/// the 32-byte header, the sense data, the 4-byte descriptors length and 2 reserved bytes).
fn remember_token(tokens: &mut Vec<[u8; TOKEN_LEN]>, info: &[u8]) {
    let Some(&sense_len) = info.get(13) else { return };
    let at = 32 + sense_len as usize + 6;
    if let Some(token) = info.get(at..at + TOKEN_LEN) {
        if tokens.len() < 64 {
            tokens.push(token.try_into().expect("512 bytes"));
        }
    }
}

fn check_completion(cdb: &[u8; 16], block_size: u64, c: &Completion) {
    match c.status {
        GOOD => assert!(c.sense.is_none(), "GOOD with sense"),
        CHECK_CONDITION => {
            check_sense(c.sense.as_ref().expect("CHECK CONDITION without sense"));
            assert!(c.data_in.is_none(), "CHECK CONDITION with data-in");
        }
        RESERVATION_CONFLICT => assert!(c.sense.is_none() && c.data_in.is_none()),
        other => panic!("status {other:#x}"),
    }
    if let Some(data) = &c.data_in {
        let allowed = data_in_allowed(cdb, block_size);
        assert!(
            data.len() as u64 <= allowed,
            "opcode {:#04x}: {} bytes of data-in, CDB allows {allowed}",
            cdb[0],
            data.len()
        );
    }
}

async fn check_medium(lun: &Lun, cdb: &[u8; 16], c: &Completion, given: &[u8]) {
    let Some((lba, blocks)) = rw_range(cdb) else { return };
    let bs = lun.block_size() as u64;
    if is_read(cdb[0]) {
        let len = (blocks * bs) as usize;
        let got = c.data_in.clone().unwrap_or_default();
        assert_eq!(got.len(), len, "GOOD READ returned {} of {len} bytes", got.len());
        if len > 0 {
            let medium = lun.backend().read(lba * bs, len).await.expect("range was checked");
            assert_eq!(got, medium, "READ data differs from the medium");
        }
    } else if is_write(cdb[0]) && !given.is_empty() {
        let medium = lun.backend().read(lba * bs, given.len()).await.expect("range was checked");
        assert_eq!(&medium[..], given, "WRITE did not store the data-out at LBA × block size");
    }
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.with(|rt| rt.block_on(run(data)));
});
