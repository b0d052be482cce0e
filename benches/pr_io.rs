//! Per-I/O cost of persistent reservations at scale (issue #15): 4 KiB random reads and writes
//! at QD1 from a registered I_T nexus under a Write Exclusive – All Registrants (type 7)
//! reservation, on a LUN with 4,096 registrants and on one with 2, in the same process and
//! run. Every command's reservation check looks the nexus up by index, so the two must be
//! within noise. The LUNs are measured in back-to-back pairs, alternating which goes first
//! (A B, B A, A B ...), so drift on a shared machine hits both; the report gives every pair,
//! the median of the per-pair ratios and the ratio of the medians.
//!
//! `cargo bench --bench pr_io` (PR_IO_REGISTRANTS, PR_IO_ROUNDS and PR_IO_MILLIS override
//! 4096, 31 and 400).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use initiator::cdb;
use initiator::connection::{Completion, Connection, Request};
use initiator::login::LoginOptions;
use initiator::registrations::{register_all, Registration};
use initiator::url::IscsiUrl;
use palisade::bench::pattern::XorShift;
use palisade::config::DEFAULT_TARGET_NAME;

const LUN_BYTES: u64 = 64 << 20;
const IO: u64 = 4096;
const BENCH_INITIATOR: &str = "iqn.2026-11.io.palisade:pr-io-bench";
/// SPC-4 §6.16.2 Table 213 RESERVE; Table 206 type 7.
const RESERVE: u8 = 0x01;
const WRITE_EXCLUSIVE_ALL_REGISTRANTS: u8 = 0x07;

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn url(addr: SocketAddr, lun: u64) -> IscsiUrl {
    IscsiUrl::parse(&format!("iscsi://{addr}/{DEFAULT_TARGET_NAME}/{lun}")).unwrap()
}

/// Registers `others` other nexuses on `lun`, then logs the bench nexus in, registers it and
/// reserves type 7; returns its connection, ready to measure.
async fn prepare(addr: SocketAddr, lun: u64, others: usize) -> Connection {
    let crowd = (0..others)
        .map(|i| Registration {
            initiator: format!("iqn.1991-05.com.microsoft:node-{i:04}.cluster.example.com"),
            isid: [0x40, 0, 0x01, 0x37, 0, lun as u8],
            key: 0x1000 + i as u64,
        })
        .collect();
    register_all(&url(addr, lun), crowd, false, 8).await.expect("register the crowd");
    let mut opts = LoginOptions::new(BENCH_INITIATOR, 0);
    opts.isid = [0x80, 0, 0, 0, 0x10, lun as u8];
    let mut conn = Connection::connect(&url(addr, lun), &opts).await.unwrap();
    let key = 0xBE7C_0000 + lun;
    let register = (0x06, 0, cdb::pr_out_param(0, key, 0));
    let reserve = (RESERVE, WRITE_EXCLUSIVE_ALL_REGISTRANTS, cdb::pr_out_param(key, 0, 0));
    for (action, kind, param) in [register, reserve] {
        let request = Request {
            cdb: cdb::pr_out(action, kind, param.len() as u32),
            write_data: Bytes::from(param),
            read_len: 0,
            collect: false,
            tag: action as u64,
        };
        conn.execute_past_unit_attentions(request).await.expect("REGISTER and RESERVE");
    }
    // Prefill: reading never-written memory would skip the backend's copy.
    let fill = Bytes::from(vec![0x5au8; 1 << 20]);
    for mib in 0..LUN_BYTES >> 20 {
        let request = Request {
            cdb: cdb::rw16(true, false, mib * 2048, 2048),
            write_data: fill.clone(),
            read_len: 0,
            collect: false,
            tag: 9,
        };
        let done = conn.execute(request).await.unwrap();
        assert_eq!(done.status, cdb::GOOD);
    }
    conn
}

/// 4 KiB random I/O at QD1 for `millis`; returns IOPS.
async fn iops(conn: &mut Connection, write: bool, millis: u64, rng: &mut XorShift) -> f64 {
    let payload = Bytes::from(vec![0x3cu8; IO as usize]);
    let mut done: Vec<Completion> = Vec::with_capacity(1);
    let (start, mut completed) = (Instant::now(), 0u64);
    let until = start + Duration::from_millis(millis);
    while Instant::now() < until {
        let lba = rng.below(LUN_BYTES / IO) * (IO / 512);
        conn.submit(Request {
            cdb: cdb::rw16(write, false, lba, (IO / 512) as u32),
            write_data: if write { payload.clone() } else { Bytes::new() },
            read_len: if write { 0 } else { IO as u32 },
            collect: false,
            tag: completed,
        })
        .unwrap();
        while done.is_empty() {
            conn.poll(&mut done).await.unwrap();
        }
        for c in done.drain(..) {
            assert_eq!(c.status, cdb::GOOD, "I/O of a registrant under type 7 must pass");
            completed += 1;
        }
    }
    completed as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let registrants = env("PR_IO_REGISTRANTS", 4096) as usize;
    let rounds = env("PR_IO_ROUNDS", 31);
    let millis = env("PR_IO_MILLIS", 400);
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = common::start_server(&server_rt, "pr-io", 2, LUN_BYTES);
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let setup = Instant::now();
    let mut few = client_rt.block_on(prepare(addr, 0, 1));
    let mut many = client_rt.block_on(prepare(addr, 1, registrants - 1));
    println!("setup: 2 registrants on LUN 0, {registrants} on LUN 1, type 7 on both ({:?})", setup.elapsed());
    let mut rng = XorShift::new(15);
    for (name, write) in [("4 KiB randread QD1", false), ("4 KiB randwrite QD1", true)] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut measure = |conn: &mut Connection| client_rt.block_on(iops(conn, write, millis, &mut rng));
            if round % 2 == 0 {
                a.push(measure(&mut few));
                b.push(measure(&mut many));
            } else {
                b.push(measure(&mut many));
                a.push(measure(&mut few));
            }
        }
        let pairs: Vec<String> = a.iter().zip(&b).map(|(x, y)| format!("{x:.0}/{y:.0}")).collect();
        let mut ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y / x).collect();
        let (ma, mb, mr) = (median(&mut a), median(&mut b), median(&mut ratios));
        println!("{name}: pairs (2 / {registrants} registrants) {}", pairs.join(" "));
        println!(
            "{name}: median IOPS 2 registrants {ma:.0}, {registrants} registrants {mb:.0}; ratio of medians {:.3}; \
             median pair ratio {mr:.3} (min {:.3}, max {:.3})",
            mb / ma,
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    client_rt.block_on(few.logout()).unwrap();
    client_rt.block_on(many.logout()).unwrap();
}
