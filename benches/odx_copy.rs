//! ODX against a copy through the initiator (issue #14): one session per LUN on the in-process
//! server over loopback, two file LUNs in the temp folder. The initiator copy reads and writes
//! 1 MiB at a time (what `ddpt bpt=2048` does); the ODX copy is POPULATE TOKEN of up to 1 GiB
//! (the advertised MAXIMUM TOKEN TRANSFER SIZE), RECEIVE ROD TOKEN INFORMATION, WRITE USING
//! TOKEN. Reports time, MiB/s and the bytes each moved over iSCSI (Data-In + Data-Out payload
//! and parameter lists, plus a 48-byte BHS per command and response), and checks the copies.
//!
//! A second table isolates the server side: `Backend::copy_to` between two file backends
//! (copy_file_range) against reading and writing the same 8 MiB chunks through user space.
//!
//! `cargo bench --bench odx_copy` (ODX_BENCH_MIB overrides 1024, ODX_BENCH_ROUNDS 3).

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use initiator::cdb;
use initiator::connection::{Connection, Request};
use initiator::login::LoginOptions;
use initiator::url::IscsiUrl;
use palisade::backend::{Backend, CopyPath, FileBackend};
use palisade::config::{BackendConfig, LunConfig, DEFAULT_TARGET_NAME};

const MIB: u64 = 1 << 20;
const BS: u64 = 512;
const BHS: u64 = 48;

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Bytes over iSCSI: command/response headers plus payload.
#[derive(Default)]
struct Wire {
    commands: u64,
    payload: u64,
}

impl Wire {
    fn bytes(&self) -> u64 {
        self.payload + 2 * BHS * self.commands
    }
}

async fn connect(addr: SocketAddr, lun: u64, isid: u64) -> Connection {
    let url = IscsiUrl::parse(&format!("iscsi://{addr}/{DEFAULT_TARGET_NAME}/{lun}")).unwrap();
    let opts = LoginOptions::new("iqn.2026-11.io.palisade:odx-bench", isid);
    let mut conn = Connection::connect(&url, &opts).await.unwrap();
    conn.execute_past_unit_attentions(request(cdb::test_unit_ready(), Bytes::new(), 0)).await.unwrap();
    conn
}

fn request(cdb: [u8; 16], write_data: Bytes, read_len: u32) -> Request {
    Request { cdb, write_data, read_len, collect: read_len > 0, tag: 1 }
}

async fn run(conn: &mut Connection, req: Request, wire: &mut Wire) -> Bytes {
    wire.commands += 1;
    wire.payload += req.write_data.len() as u64;
    let done = conn.execute(req).await.unwrap();
    assert_eq!(done.status, cdb::GOOD, "{}", initiator::sense::describe_status(done.status, done.sense.as_deref()));
    wire.payload += done.received;
    done.data
}

/// THIRD-PARTY COPY OUT (83h) CDB of POPULATE TOKEN (10h) / WRITE USING TOKEN (11h).
fn token_cdb(service_action: u8, list_id: u32, param_len: usize) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[1] = service_action;
    c[6..10].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&(param_len as u32).to_be_bytes());
    c
}

fn range(lba: u64, blocks: u64) -> Vec<u8> {
    let mut d = lba.to_be_bytes().to_vec();
    d.extend_from_slice(&(blocks as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    d
}

async fn copy_by_initiator(src: &mut Connection, dst: &mut Connection, bytes: u64) -> Wire {
    let mut wire = Wire::default();
    let blocks = (MIB / BS) as u32;
    for i in 0..bytes / MIB {
        let lba = i * MIB / BS;
        let data = run(src, request(cdb::rw16(false, false, lba, blocks), Bytes::new(), MIB as u32), &mut wire).await;
        run(dst, request(cdb::rw16(true, false, lba, blocks), data, 0), &mut wire).await;
    }
    wire
}

async fn copy_by_odx(src: &mut Connection, dst: &mut Connection, bytes: u64) -> Wire {
    let mut wire = Wire::default();
    let per_token = (1 << 30).min(bytes);
    for i in 0..bytes.div_ceil(per_token) {
        let (lba, blocks) = (i * per_token / BS, per_token.min(bytes - i * per_token) / BS);
        let mut pt = vec![0u8; 16];
        pt[14..16].copy_from_slice(&16u16.to_be_bytes());
        pt.extend(range(lba, blocks));
        let len = (pt.len() - 2) as u16;
        pt[0..2].copy_from_slice(&len.to_be_bytes());
        run(src, request(token_cdb(0x10, 1, pt.len()), Bytes::from(pt), 0), &mut wire).await;
        let mut rrti = [0u8; 16];
        rrti[0] = 0x84;
        rrti[1] = 0x07;
        rrti[2..6].copy_from_slice(&1u32.to_be_bytes());
        rrti[10..14].copy_from_slice(&1024u32.to_be_bytes());
        let info = run(src, request(rrti, Bytes::new(), 1024), &mut wire).await;
        let token = &info[38..38 + 512];
        let mut wut = vec![0u8; 536];
        wut[2] = 0x02; // DEL_TKN: the token is done with after this write
        wut[16..528].copy_from_slice(token);
        wut[534..536].copy_from_slice(&16u16.to_be_bytes());
        wut.extend(range(lba, blocks));
        let len = (wut.len() - 2) as u16;
        wut[0..2].copy_from_slice(&len.to_be_bytes());
        run(dst, request(token_cdb(0x11, 2, wut.len()), Bytes::from(wut), 0), &mut wire).await;
    }
    wire
}

async fn checksum(conn: &mut Connection, bytes: u64) -> u64 {
    let mut wire = Wire::default();
    let mut sum = 0u64;
    for i in 0..bytes / MIB {
        let data = run(
            conn,
            request(cdb::rw16(false, false, i * MIB / BS, (MIB / BS) as u32), Bytes::new(), MIB as u32),
            &mut wire,
        )
        .await;
        sum = data.chunks(8).fold(sum, |s, c| s.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap()));
    }
    sum
}

fn main() {
    let mib = env("ODX_BENCH_MIB", 1024);
    let rounds = env("ODX_BENCH_ROUNDS", 3);
    let bytes = mib * MIB;
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = common::data_dir("odx");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |id: u64| {
        let path = dir.join(format!("lun{id}.img"));
        LunConfig::new(id, BackendConfig::File { path, size: Some(bytes), direct_io: false })
    };
    let addr = common::start_server_with(&server_rt, "odx", vec![file(0), file(1)]);
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    client.block_on(async {
        let mut src = connect(addr, 0, 1).await;
        let mut dst = connect(addr, 1, 2).await;
        // The source: a pattern over every MiB (written once, not measured).
        let mut fill = Wire::default();
        for i in 0..mib {
            let data: Vec<u8> = (0..MIB).map(|b| (b as u8) ^ (i as u8).wrapping_mul(31) ^ (b >> 9) as u8).collect();
            run(
                &mut src,
                request(cdb::rw16(true, false, i * MIB / BS, (MIB / BS) as u32), Bytes::from(data), 0),
                &mut fill,
            )
            .await;
        }
        let expected = checksum(&mut src, bytes).await;
        println!("odx_copy: {mib} MiB between two file LUNs in {}", dir.display());
        println!("| round | method | seconds | MiB/s | bytes over iSCSI | commands |");
        println!("|---|---|---|---|---|---|");
        for round in 1..=rounds {
            for odx in [false, true] {
                let t0 = Instant::now();
                let wire = if odx {
                    copy_by_odx(&mut src, &mut dst, bytes).await
                } else {
                    copy_by_initiator(&mut src, &mut dst, bytes).await
                };
                let secs = t0.elapsed().as_secs_f64();
                assert_eq!(checksum(&mut dst, bytes).await, expected, "the copy differs from the source");
                let method = if odx { "ODX (PT + RRTI + WUT)" } else { "initiator READ + WRITE" };
                println!(
                    "| {round} | {method} | {secs:.3} | {:.0} | {} | {} |",
                    mib as f64 / secs,
                    wire.bytes(),
                    wire.commands
                );
                // Start the next copy from a destination that differs again.
                run(
                    &mut dst,
                    request(cdb::rw16(true, false, 0, 1), Bytes::from(vec![0u8; 512]), 0),
                    &mut Wire::default(),
                )
                .await;
            }
        }
    });
    backend_paths(&client, &dir, bytes, rounds);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server-side copy alone: kernel (copy_file_range) against user-space read + write.
fn backend_paths(rt: &tokio::runtime::Runtime, dir: &std::path::Path, bytes: u64, rounds: u64) {
    const CHUNK: u64 = 8 << 20;
    let open = |name: &str| Backend::File(FileBackend::open(&dir.join(name), bytes, false).unwrap());
    let (from, to) = (open("lun0.img"), open("lun1.img"));
    println!("\nbackend copy of {} MiB, file to file, 8 MiB chunks, no fdatasync", bytes / MIB);
    println!("| round | path | seconds | MiB/s |");
    println!("|---|---|---|---|");
    rt.block_on(async {
        for round in 1..=rounds {
            for kernel in [false, true] {
                let t0 = Instant::now();
                for at in (0..bytes).step_by(CHUNK as usize) {
                    if kernel {
                        let path = from.copy_to(at, &to, at, CHUNK, false).await.unwrap();
                        assert_eq!(path, CopyPath::Kernel);
                    } else {
                        let data = from.read(at, CHUNK as usize).await.unwrap();
                        to.write(at, &[data], false).await.unwrap();
                    }
                }
                let secs = t0.elapsed().as_secs_f64();
                let path = if kernel { "copy_file_range" } else { "read + write" };
                println!("| {round} | {path} | {secs:.3} | {:.0} |", (bytes / MIB) as f64 / secs);
            }
        }
    });
}
