//! The floor under any target's CPU per 4 KiB read at queue depth 1 over loopback TCP: a server
//! that does nothing but what every iSCSI target must do per command — sleep until the 48-byte
//! command arrives, take it with one read, answer with one vectored write of a 48-byte header and
//! 4 KiB of data — with no protocol, no SCSI and no storage. What remains is the kernel's cost:
//! the wake-up, the loopback TCP send (which on loopback also runs the receiver's side and wakes
//! the initiator, charged to the sender) and the context switches. docs/performance.md compares
//! each target's CPU per GiB at QD1 with this floor.
//!
//! The client is a second process (as an initiator is), so the switches cross address spaces as
//! they do in the real benchmark. Run: `cargo bench --bench qd1_floor`. Knobs: FLOOR_SECONDS=5;
//! FLOOR_SERVER_CPUS / FLOOR_CLIENT_CPUS (e.g. "1" and "0": CPU lists the server and the client
//! are pinned to, as scripts/qd1-placement.sh pins the targets and the client). Prints IOPS, p50
//! and p99 µs, the server's CPU µs per I/O and CPU-s per GiB; with --tsv as one tab-separated line.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COMMAND: usize = 48;
const DATA: usize = 4096;

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Pins this process to the CPUs listed in `var` ("0", "0-1", "0,1"), if it is set.
fn pin(var: &str) {
    let Ok(list) = std::env::var(var) else { return };
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only read it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (first.trim().parse().expect(var), last.trim().parse().expect(var));
        for cpu in first..=last {
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    let pinned = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(pinned, 0, "{var}={list}: {}", std::io::Error::last_os_error());
}

/// The server: one blocking thread answering one connection until it closes; prints its CPU.
fn serve(listener: TcpListener) {
    let (mut socket, _) = listener.accept().expect("accept");
    socket.set_nodelay(true).expect("nodelay");
    let header = [0x25u8; COMMAND];
    let data = vec![0xa5u8; DATA];
    let mut command = [0u8; COMMAND];
    let (started, mut served) = (cpu_seconds(), 0u64);
    while socket.read_exact(&mut command).is_ok() {
        let mut sent = 0;
        while sent < COMMAND + DATA {
            let slices = if sent < COMMAND {
                [IoSlice::new(&header[sent..]), IoSlice::new(&data)]
            } else {
                [IoSlice::new(&data[sent - COMMAND..]), IoSlice::new(&[])]
            };
            match socket.write_vectored(&slices) {
                Ok(n) if n > 0 => sent += n,
                _ => return,
            }
        }
        served += 1;
    }
    println!("{served} {}", cpu_seconds() - started);
}

fn main() {
    if std::env::var_os("QD1_FLOOR_SERVER").is_some() {
        pin("FLOOR_SERVER_CPUS");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        std::io::stdout().flush().expect("stdout");
        serve(listener);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for a list of tests; there are none
    }
    pin("FLOOR_CLIENT_CPUS");
    let seconds: f64 = std::env::var("FLOOR_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let mut server = Command::new(std::env::current_exe().expect("exe"))
        .env("QD1_FLOOR_SERVER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let mut out = server.stdout.take().expect("stdout");
    let mut port = String::new();
    let mut byte = [0u8; 1];
    while out.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
        port.push(byte[0] as char);
    }
    let mut socket = TcpStream::connect(("127.0.0.1", port.trim().parse::<u16>().expect("port"))).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let (command, mut answer) = ([0x01u8; COMMAND], vec![0u8; COMMAND + DATA]);
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let t = Instant::now();
        socket.write_all(&command).expect("send");
        socket.read_exact(&mut answer).expect("receive");
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(socket);
    let mut report = String::new();
    out.read_to_string(&mut report).expect("report");
    server.wait().expect("server");
    let mut fields = report.split_whitespace();
    let served: f64 = fields.next().and_then(|s| s.parse().ok()).expect("served");
    let cpu: f64 = fields.next().and_then(|s| s.parse().ok()).expect("cpu");
    latencies.sort();
    let percentile = |p: usize| latencies[latencies.len() * p / 100].as_secs_f64() * 1e6;
    let (iops, p50, p99) = (served / elapsed, percentile(50), percentile(99));
    let (us_per_io, per_gib) = (cpu / served * 1e6, cpu / (served * DATA as f64 / (1u64 << 30) as f64));
    if std::env::args().any(|a| a == "--tsv") {
        println!("{iops:.0}\t{p50:.1}\t{p99:.1}\t{us_per_io:.2}\t{per_gib:.3}");
    } else {
        println!(
            "qd1 floor: {iops:.0} IOPS, p50 {p50:.0} us, p99 {p99:.0} us, server CPU {us_per_io:.1} us per I/O, {per_gib:.2} CPU-s per GiB"
        );
    }
}
