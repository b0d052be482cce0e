//! The whole I/O path in one process: the real server (`Server::bind` on 127.0.0.1:0 with a
//! 256 MiB memory LUN, its own 2-thread runtime) driven over loopback TCP by the bench client
//! (`initiator::connection`) on a single-thread runtime, like `palisade bench` would.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use initiator::cdb;
use initiator::connection::{Completion, Connection, Request};
use initiator::login::LoginOptions;
use initiator::url::IscsiUrl;
use palisade::bench::pattern::XorShift;
use palisade::config::DEFAULT_TARGET_NAME;

const LUN_BYTES: u64 = 256 << 20;
const BLOCK: u64 = 512;

async fn connect(addr: SocketAddr) -> Connection {
    let url = IscsiUrl::parse(&format!("iscsi://{addr}/{DEFAULT_TARGET_NAME}/0")).unwrap();
    let mut s =
        Connection::connect(&url, &LoginOptions::new("iqn.2026-11.io.palisade:loopback-bench", 7)).await.unwrap();
    // Take the power-on UNIT ATTENTION before measuring.
    s.clear_unit_attention().await.unwrap();
    s
}

/// Completes `count` I/Os of `size` bytes with `qd` in flight; returns the elapsed time.
async fn run(
    s: &mut Connection,
    count: u64,
    qd: usize,
    size: u64,
    write: bool,
    random: bool,
    rng: &mut XorShift,
) -> Duration {
    let units = LUN_BYTES / size;
    let payload = Bytes::from(vec![0x3cu8; size as usize]);
    let mut done: Vec<Completion> = Vec::with_capacity(qd);
    let (mut issued, mut completed, mut seq) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while completed < count {
        while issued < count && s.outstanding() < qd && s.can_submit() {
            let unit = if random { rng.below(units) } else { seq % units };
            seq += 1;
            let lba = unit * size / BLOCK;
            s.submit(Request {
                cdb: cdb::rw16(write, false, lba, (size / BLOCK) as u32),
                write_data: if write { payload.clone() } else { Bytes::new() },
                read_len: if write { 0 } else { size as u32 },
                collect: false,
                tag: issued,
            })
            .unwrap();
            issued += 1;
        }
        s.poll(&mut done).await.unwrap();
        for c in done.drain(..) {
            assert_eq!(c.status, cdb::GOOD);
            completed += 1;
        }
    }
    start.elapsed()
}

fn loopback(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = common::start_server(&server_rt, "loopback", 1, LUN_BYTES);
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut session = client_rt.block_on(connect(addr));
    let mut rng = XorShift::new(42);
    // Prefill: reading never-written memory would skip the backend's copy and flatter the target.
    client_rt.block_on(run(&mut session, LUN_BYTES >> 20, 8, 1 << 20, true, false, &mut rng));

    let mut g = c.benchmark_group("loopback");
    g.measurement_time(Duration::from_secs(5));
    let cases: [(&str, usize, u64, bool, bool); 5] = [
        ("4 KiB randread QD1", 1, 4096, false, true),
        ("4 KiB randwrite QD1", 1, 4096, true, true),
        ("4 KiB randread QD32", 32, 4096, false, true),
        ("256 KiB read QD8", 8, 256 << 10, false, false),
        ("256 KiB write QD8", 8, 256 << 10, true, false),
    ];
    for (name, qd, size, write, random) in cases {
        g.throughput(Throughput::Bytes(size));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| client_rt.block_on(run(&mut session, iters, qd, size, write, random, &mut rng)))
        });
    }
    g.finish();
    client_rt.block_on(session.logout()).unwrap();
}

criterion_group!(benches, loopback);
criterion_main!(benches);
