//! Durability against the real binary (docs/hardening.md "Durability"):
//! - kill -9 in the middle of a write stream that mixes plain writes, FUA writes and
//!   SYNCHRONIZE CACHE, for many rounds: after each restart every write acknowledged as durable
//!   (GOOD with FUA=1, or acknowledged before a SYNCHRONIZE CACHE that returned GOOD) is there,
//!   intact (each block carries round, sequence, LBA and a CRC32C);
//! - SIGTERM: the initiator is asked to log out (Async Message, RFC 7143 §11.9.1), the server
//!   drains, flushes and exits 0, and data written without FUA is in the file afterwards.

mod common;
mod hardening;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::raw_initiator::*;
use hardening::{free_port, stamp, target_toml, unique_dir, TargetProcess, IQN};
use pdu::msg::TargetPdu;

const INITIATOR: &str = "iqn.2026-11.test:durability";
const ROUNDS: u32 = 20;
/// Blocks per write (4 KiB) and the LBA span each round writes into (8 MiB).
const WRITE_BLOCKS: u32 = 8;
const ROUND_SPAN: u32 = 16384;

fn lun_toml() -> String {
    target_toml(
        "[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"256MiB\"\nwrite_cache = true\n",
        "",
    )
}

fn opts() -> LoginOptions {
    LoginOptions::normal(INITIATOR, IQN).isid([0x80, 0, 0, 0, 0x77, 1])
}

fn write_data(round: u32, seq: u32, lba: u32) -> Vec<u8> {
    (0..WRITE_BLOCKS).flat_map(|b| stamp(round, seq, lba + b)).collect()
}

/// One command to completion without panicking when the target dies: Ok(status) or Err.
fn try_exec(ini: &mut RawInitiator, cdb: &[u8], write: &[u8]) -> Result<u8, RecvError> {
    let cmd = ini.command(0, cdb, 0, write.len() as u32, &[]);
    ini.send(&cmd.encode());
    loop {
        let pdu = ini.recv(Duration::from_secs(10))?;
        match TargetPdu::decode(&pdu).map_err(|e| RecvError::Garbled(e.to_string()))? {
            TargetPdu::R2t(r) => ini.answer_r2t(&r, 0, write),
            TargetPdu::ScsiResponse(rsp) => return Ok(rsp.status),
            _ => {}
        }
    }
}

/// Writes until the connection dies; returns the (seq, lba) of every write acknowledged durable.
fn write_stream(portal: &str, round: u32) -> (Vec<(u32, u32)>, u32) {
    let mut ini = RawInitiator::login_ok(portal, &opts());
    ini.clear_unit_attention(0);
    let mut durable = Vec::new();
    let mut volatile = Vec::new();
    let mut seq = 0;
    while seq < ROUND_SPAN / WRITE_BLOCKS {
        let lba = round * ROUND_SPAN + seq * WRITE_BLOCKS;
        if seq % 8 == 7 {
            // SBC-3 §5.26 SYNCHRONIZE CACHE(10), whole LU: writes acknowledged before it are durable.
            let pending = std::mem::take(&mut volatile);
            match try_exec(&mut ini, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]) {
                Ok(GOOD) => durable.extend(pending),
                _ => break,
            }
        }
        let fua = seq % 3 == 0;
        let mut cdb = write10_cdb(lba, WRITE_BLOCKS as u16);
        if fua {
            cdb[1] |= 0x08; // SBC-3 §5.35 FUA
        }
        match try_exec(&mut ini, &cdb, &write_data(round, seq, lba)) {
            Ok(GOOD) if fua => durable.push((seq, lba)),
            Ok(GOOD) => volatile.push((seq, lba)),
            Ok(status) => panic!("write {seq} of round {round} failed with status {status:#x}"),
            Err(_) => break,
        }
        seq += 1;
    }
    (durable, seq)
}

#[test]
fn kill_9_never_loses_a_write_acknowledged_as_durable() {
    let dir = unique_dir("palisade-durability");
    let mut s = TargetProcess::start_config_at(&lun_toml(), free_port(), &dir);
    let started = Instant::now();
    let mut all_durable: Vec<(u32, u32, u32)> = Vec::new();
    let mut total_writes = 0;
    for round in 0..ROUNDS {
        let portal = s.portal();
        let writer = std::thread::spawn(move || write_stream(&portal, round));
        // Kill somewhere in the stream: 150..=750 ms after it began.
        std::thread::sleep(Duration::from_millis(150 + (round as u64 * 137) % 600));
        s.kill9();
        let (durable, attempted) = writer.join().expect("writer thread");
        total_writes += attempted;
        assert!(!durable.is_empty(), "round {round}: nothing was acknowledged before the kill");
        all_durable.extend(durable.iter().map(|&(seq, lba)| (round, seq, lba)));
        s.restart();

        // Every durable write of every round so far is there, intact.
        let mut ini = RawInitiator::login_ok(&s.portal(), &opts());
        ini.clear_unit_attention(0);
        let mut cache: Option<(u32, Vec<u8>)> = None;
        for &(r, seq, lba) in &all_durable {
            // Read each round's span in 1 MiB pieces and check the blocks from there.
            let piece = lba / 2048 * 2048;
            if cache.as_ref().is_none_or(|(p, _)| *p != piece) {
                cache = Some((piece, ini.read10(0, piece, 2048)));
            }
            let (_, data) = cache.as_ref().unwrap();
            let at = ((lba - piece) * 512) as usize;
            let got = &data[at..at + (WRITE_BLOCKS * 512) as usize];
            assert!(
                got == &write_data(r, seq, lba)[..],
                "round {round}: durable write (round {r}, seq {seq}, LBA {lba}) lost or torn after kill -9"
            );
        }
        ini.logout();
        println!(
            "round {round}: {attempted} writes acknowledged, {} of them durable; {} verified",
            durable.len(),
            all_durable.len()
        );
    }
    println!(
        "{ROUNDS} kill -9 rounds, {total_writes} writes acknowledged, {} durable writes verified after restarts, {:?}",
        all_durable.len(),
        started.elapsed()
    );
}

#[test]
fn sigterm_asks_for_logout_drains_flushes_and_keeps_unflushed_writes() {
    let dir = unique_dir("palisade-sigterm");
    let mut s = TargetProcess::start_config_at(&lun_toml(), free_port(), &dir);
    let mut ini = RawInitiator::login_ok(&s.portal(), &opts());
    ini.clear_unit_attention(0);
    // Plain writes (no FUA, no SYNCHRONIZE CACHE) into a LUN that reports a write cache.
    let data: Vec<u8> = (0..256).flat_map(|b| stamp(77, b, 4096 + b)).collect();
    ini.write10(0, 4096, &data);
    s.signal(libc::SIGTERM);
    // RFC 7143 §11.9.1 AsyncEvent 1: the target requests a logout.
    let asked = Instant::now();
    match ini.recv_msg(Duration::from_secs(5)) {
        TargetPdu::Async(m) => {
            assert_eq!(m.event, 1, "AsyncEvent 1: logout requested");
            println!(
                "Async Message: event {} parameter3 {} s, {:?} after SIGTERM",
                m.event,
                m.parameter3,
                asked.elapsed()
            );
        }
        other => panic!("expected an Async Message asking for logout, got {other:?}"),
    }
    ini.logout();
    let status = s.wait_exit(Duration::from_secs(15)).expect("server exited after SIGTERM");
    println!("exit {status} {:?} after SIGTERM", asked.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(s.log().contains("stopped"), "the server reports a clean stop:\n{}", s.log());
    let mut on_disk = vec![0u8; data.len()];
    std::fs::File::open(dir.join("lun0.img")).unwrap().read_exact_at(&mut on_disk, 4096 * 512).unwrap();
    assert!(on_disk == data, "unflushed writes missing from the file after SIGTERM");
}
