//! Runs a benchmark: logs every session in, learns each LUN's capacity, drives all sessions
//! concurrently until the time or byte budget is spent, then merges their statistics.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::args::{parse_lba_range, BenchArgs};
use super::error::BenchError;
use super::histogram::Histogram;
use super::pattern::{self, XorShift};
use super::report::{self, Cpu, MismatchRecord, Report, TargetInfo, VerifyReport};
use super::workload::{self, Generations, LunState, Pattern, Region};
use initiator::cdb::{self, Capacity};
use initiator::connection::{Connection, Request};
use initiator::login::LoginOptions;
use initiator::url::IscsiUrl;

const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Largest I/O the bench issues; above this targets refuse anyway (MAXIMUM TRANSFER LENGTH).
const MAX_BLOCK_SIZE: u64 = 64 << 20;

/// Counters every session bumps, read by the progress line.
#[derive(Default)]
struct Live {
    ios: AtomicU64,
    bytes: AtomicU64,
    latency_ns: AtomicU64,
}

struct RunContext {
    pattern: Pattern,
    read_pct: u8,
    fua: bool,
    block_size: u64,
    deadline: Option<Instant>,
    total_bytes: Option<u64>,
    claimed: AtomicU64,
    stop: AtomicBool,
    generations: Generations,
    live: Live,
}

impl RunContext {
    /// Reserves one I/O of the byte budget; false once the run is over.
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if matches!(self.deadline, Some(d) if Instant::now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return false;
        }
        if let Some(total) = self.total_bytes {
            let before = self.claimed.fetch_add(self.block_size, Ordering::Relaxed);
            if before + self.block_size > total {
                self.stop.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct SessionResult {
    read: Histogram,
    write: Histogram,
    read_bytes: u64,
    write_bytes: u64,
    errors: u64,
    error_samples: Vec<String>,
    written_blocks: u64,
    checked_blocks: u64,
    mismatch_count: u64,
    mismatches: Vec<MismatchRecord>,
    pings: u64,
    finished: Option<Instant>,
}

struct Inflight {
    unit: u64,
    write: bool,
    /// Write: the generation written. Read: the last generation known written before issue.
    generation: Option<u64>,
}

/// Runs the benchmark described by `args` and returns its report.
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let urls = args.urls.iter().map(|u| IscsiUrl::parse(u).map_err(BenchError)).collect::<Result<Vec<_>, _>>()?;
    if args.sessions == 0 || args.queue_depth == 0 || args.connections == 0 {
        return Err(BenchError::new("--sessions, --connections and --queue-depth must be at least 1"));
    }
    if args.queue_depth < args.connections {
        return Err(BenchError::new(
            "--queue-depth is per session and spread over its connections: it must be at least --connections",
        ));
    }
    if args.connections > u16::MAX as usize {
        return Err(BenchError::new("--connections must fit a 16-bit connection ID"));
    }
    if args.block_size == 0 || args.block_size > MAX_BLOCK_SIZE {
        return Err(BenchError(format!("--block-size must be between 1 and {MAX_BLOCK_SIZE} bytes")));
    }
    if args.pattern == Pattern::Prout && (args.verify || args.fua) {
        return Err(BenchError::new("--pattern prout writes no blocks: --verify and --fua do not apply"));
    }
    let lba_range = args.lba_range.as_deref().map(parse_lba_range).transpose().map_err(BenchError)?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut seeds = XorShift::new(seed);

    // Each session: its leading connection, then the added ones (MC/S), in CID order.
    let mut sessions: Vec<(usize, Vec<Connection>)> = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let url = &urls[i % urls.len()];
        let mut opts = LoginOptions::new(&args.initiator_name, seeds.next_u64());
        opts.header_digest = args.header_digest;
        opts.data_digest = args.data_digest;
        opts.max_connections = args.connections as u16;
        let mut leading = Connection::connect(url, &opts).await?;
        let allowed = leading.params().max_connections as usize;
        if allowed < args.connections {
            return Err(BenchError(format!(
                "{url}: the target allows {allowed} connection(s) per session (MaxConnections={allowed}); --connections {} needs more",
                args.connections
            )));
        }
        leading.clear_unit_attention().await.map_err(|e| BenchError(format!("{url}: {e}")))?;
        let mut connections = vec![leading];
        for cid in 1..args.connections {
            let added = connections[0].add_connection(url, &opts, cid as u16).await?;
            connections.push(added);
        }
        sessions.push((i % urls.len(), connections));
    }
    let mut luns = Vec::with_capacity(urls.len());
    let mut targets = Vec::with_capacity(urls.len());
    for (index, url) in urls.iter().enumerate() {
        let session = &mut sessions.iter_mut().find(|(u, _)| *u == index).expect("every URL has a session").1[0];
        let cap = read_capacity(session).await.map_err(|e| BenchError(format!("{url}: {e}")))?;
        let region = region_for(cap, args.block_size, lba_range).map_err(|e| BenchError(format!("{url}: {e}")))?;
        if args.verify && (region.units > workload::MAX_VERIFY_UNITS || cap.block_len < 512) {
            return Err(BenchError(format!(
                "{url}: --verify needs blocks of at least 512 B and at most {} I/O units",
                workload::MAX_VERIFY_UNITS
            )));
        }
        targets.push(TargetInfo {
            url: url.to_string(),
            block_len: cap.block_len,
            blocks: cap.blocks,
            first_lba: region.first_lba,
            units: region.units,
        });
        luns.push(Arc::new(LunState::new(region, cap.block_len, args.verify)));
    }

    let duration = match (args.duration, args.total_bytes) {
        (None, None) => Some(DEFAULT_DURATION),
        (d, _) => d,
    };
    let start = Instant::now();
    let ctx = Arc::new(RunContext {
        pattern: args.pattern,
        read_pct: args.read_pct,
        fua: args.fua,
        block_size: args.block_size,
        deadline: duration.map(|d| start + d),
        total_bytes: args.total_bytes,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        generations: Generations::new(seeds.next_u64() as u32),
        live: Live::default(),
    });
    let cpu_before = report::process_cpu();
    let mut tasks = tokio::task::JoinSet::new();
    let session_urls: Vec<String> = sessions.iter().map(|(u, _)| urls[*u].to_string()).collect();
    for (session_index, (url_index, connections)) in sessions.into_iter().enumerate() {
        let n = connections.len();
        for (i, connection) in connections.into_iter().enumerate() {
            let (ctx, lun, url) = (ctx.clone(), luns[url_index].clone(), urls[url_index].to_string());
            let seed = seeds.next_u64();
            // The session's queue depth, spread over its connections.
            let qd = args.queue_depth / n + usize::from(i < args.queue_depth % n);
            tasks.spawn(
                async move { drive(connection, qd, ctx, lun, url, seed).await.map(|(r, c)| (session_index, r, c)) },
            );
        }
    }
    let progress = std::io::stderr().is_terminal().then(|| tokio::spawn(progress_line(ctx.clone(), start)));
    let mut results = Vec::new();
    let mut first_error = None;
    // Each session's connections, still logged in, once their I/O is done.
    let mut finished: Vec<Vec<Connection>> = session_urls.iter().map(|_| Vec::new()).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((session_index, r, c))) => {
                results.push(r);
                finished[session_index].push(c);
            }
            Ok(Err(e)) => {
                // One broken session ends the run: the others stop issuing and drain.
                ctx.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                ctx.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(BenchError(format!("session task failed: {e}")));
            }
        }
    }
    let cpu_after = report::process_cpu();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    logout_all(finished, session_urls).await?;
    let end = results.iter().filter_map(|r| r.finished).max().unwrap_or_else(Instant::now);
    Ok(build_report(args, targets, results, end.duration_since(start).as_secs_f64(), cpu_before, cpu_after))
}

/// Logs every session out: added connections first (each closes itself), then the leading one
/// (CID 0) closes the session (RFC 7143 §11.14.1). Sessions log out concurrently.
async fn logout_all(sessions: Vec<Vec<Connection>>, urls: Vec<String>) -> Result<(), BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (mut connections, url) in sessions.into_iter().zip(urls) {
        connections.sort_by_key(|c| std::cmp::Reverse(c.cid()));
        tasks.spawn(async move {
            for c in connections {
                c.logout().await.map_err(|e| BenchError(format!("{url}: logout: {e}")))?;
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError(format!("logout task failed: {e}")))??;
    }
    Ok(())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        ^ std::process::id() as u64
}

async fn read_capacity(s: &mut Connection) -> Result<Capacity, BenchError> {
    let c = s
        .execute(Request {
            cdb: cdb::read_capacity16(32),
            write_data: Bytes::new(),
            read_len: 32,
            collect: true,
            tag: 0,
        })
        .await?;
    if c.status == cdb::GOOD {
        return cdb::parse_capacity16(&c.data).ok_or_else(|| BenchError::new("short READ CAPACITY (16) data"));
    }
    let c = s
        .execute(Request { cdb: cdb::read_capacity10(), write_data: Bytes::new(), read_len: 8, collect: true, tag: 0 })
        .await?;
    if c.status != cdb::GOOD {
        return Err(BenchError(format!(
            "READ CAPACITY: {}",
            initiator::sense::describe_status(c.status, c.sense.as_deref())
        )));
    }
    cdb::parse_capacity10(&c.data).ok_or_else(|| BenchError::new("short READ CAPACITY (10) data"))
}

fn region_for(cap: Capacity, block_size: u64, range: Option<(u64, Option<u64>)>) -> Result<Region, String> {
    if cap.block_len == 0 || !block_size.is_multiple_of(cap.block_len as u64) {
        return Err(format!("--block-size {block_size} is not a multiple of the LUN's {}-byte blocks", cap.block_len));
    }
    let io_blocks = block_size / cap.block_len as u64;
    let (first, end) = match range {
        Some((s, e)) => (s, e.unwrap_or(cap.blocks)),
        None => (0, cap.blocks),
    };
    if end > cap.blocks || first >= end {
        return Err(format!("--lba-range {first}:{end} is outside the LUN's {} blocks", cap.blocks));
    }
    let units = (end - first) / io_blocks;
    if units == 0 {
        return Err(format!("the LBA range {first}:{end} is smaller than one {block_size}-byte I/O"));
    }
    Ok(Region { first_lba: first, io_blocks, units })
}

/// Keeps `queue_depth` commands in flight on one connection until the run ends; returns the
/// connection (still logged in) with its statistics.
async fn drive(
    mut s: Connection,
    queue_depth: usize,
    ctx: Arc<RunContext>,
    lun: Arc<LunState>,
    url: String,
    seed: u64,
) -> Result<(SessionResult, Connection), BenchError> {
    let mut rng = XorShift::new(seed);
    let io_bytes = ctx.block_size;
    let region = lun.region;
    let block_len = lun.block_len as usize;
    // Without --verify every write sends the same random buffer: no per-I/O allocation or copy.
    let payload = if lun.verify.is_none() && ctx.pattern != Pattern::Read && ctx.pattern != Pattern::Randread {
        let mut v = vec![0u8; io_bytes as usize];
        v.chunks_mut(8).for_each(|c| c.copy_from_slice(&rng.next_u64().to_le_bytes()[..c.len()]));
        Bytes::from(v)
    } else {
        Bytes::new()
    };
    let mut inflight: Vec<Option<Inflight>> = (0..queue_depth).map(|_| None).collect();
    let mut free: Vec<usize> = (0..queue_depth).rev().collect();
    let mut done = Vec::with_capacity(queue_depth);
    let mut res = SessionResult::default();
    let mut issuing = true;
    loop {
        while issuing && !free.is_empty() && s.can_submit() {
            let Some(unit) = lun.next_unit(ctx.pattern, &mut rng) else { break };
            if !ctx.claim() {
                if let Some(v) = &lun.verify {
                    v.release(unit);
                }
                issuing = false;
                break;
            }
            let write = workload::is_write(ctx.pattern, ctx.read_pct, &mut rng);
            let lba = region.lba_of(unit);
            let (data, generation) = match (&lun.verify, write) {
                (Some(_), true) => {
                    let g = ctx.generations.next();
                    (pattern::blocks(lba, region.io_blocks, block_len, g), Some(g))
                }
                (Some(v), false) => (Bytes::new(), v.expected(unit)),
                (None, true) => (payload.clone(), None),
                (None, false) => (Bytes::new(), None),
            };
            let slot = free.pop().expect("checked non-empty");
            inflight[slot] = Some(Inflight { unit, write, generation });
            let (cdb, data) = match ctx.pattern {
                // REGISTER AND IGNORE EXISTING KEY (SPC-4 §6.16.2, service action 06h): a new key.
                Pattern::Prout => {
                    let key = rng.next_u64() | 1;
                    (cdb::pr_out(0x06, 0, 24), Bytes::from(cdb::pr_out_param(0, key, 0)))
                }
                _ => (cdb::rw16(write, write && ctx.fua, lba, region.io_blocks as u32), data),
            };
            s.submit(Request {
                cdb,
                write_data: data,
                read_len: if write { 0 } else { io_bytes as u32 },
                collect: !write && lun.verify.is_some(),
                tag: slot as u64,
            })?;
        }
        if s.outstanding() == 0 {
            if !issuing || ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            // Verification: every unit tried is in flight in another session; let them finish.
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        s.poll(&mut done).await.map_err(|e| BenchError(format!("{url}: {e}")))?;
        let now = Instant::now();
        for c in done.drain(..) {
            let slot = c.tag as usize;
            let io = inflight[slot].take().expect("completion for an issued slot");
            free.push(slot);
            let latency = now.duration_since(c.started).as_nanos() as u64;
            let good = c.status == cdb::GOOD;
            if !good {
                res.errors += 1;
                if res.error_samples.len() < report::MAX_ERRORS_LISTED {
                    let what = if io.write { "WRITE" } else { "READ" };
                    res.error_samples.push(format!(
                        "{what} LBA {}: {}",
                        region.lba_of(io.unit),
                        initiator::sense::describe_status(c.status, c.sense.as_deref())
                    ));
                }
            } else if io.write {
                res.write.record(latency);
                res.write_bytes += io_bytes;
            } else {
                res.read.record(latency);
                res.read_bytes += c.received;
            }
            if let Some(v) = &lun.verify {
                if good && io.write {
                    v.written(io.unit, io.generation.expect("verify writes carry a generation"));
                    res.written_blocks += region.io_blocks;
                } else if good {
                    check_read(
                        &mut res,
                        &url,
                        region.lba_of(io.unit),
                        block_len,
                        region.io_blocks,
                        &c.data,
                        io.generation,
                    );
                }
                v.release(io.unit);
            }
            if good {
                ctx.live.ios.fetch_add(1, Ordering::Relaxed);
                ctx.live.bytes.fetch_add(io_bytes, Ordering::Relaxed);
                ctx.live.latency_ns.fetch_add(latency, Ordering::Relaxed);
            }
        }
    }
    res.finished = Some(Instant::now());
    res.pings = s.pings_answered;
    Ok((res, s))
}

fn check_read(
    res: &mut SessionResult,
    url: &str,
    lba: u64,
    block_len: usize,
    blocks: u64,
    data: &[u8],
    expected: Option<u64>,
) {
    let record = |res: &mut SessionResult, lba: u64, problem: String| {
        res.mismatch_count += 1;
        if res.mismatches.len() < report::MAX_MISMATCHES_LISTED {
            res.mismatches.push(MismatchRecord { url: url.to_string(), lba, problem });
        }
    };
    if data.len() != blocks as usize * block_len {
        record(res, lba, format!("short read: {} of {} bytes", data.len(), blocks as usize * block_len));
        return;
    }
    for (i, block) in data.chunks(block_len).enumerate() {
        res.checked_blocks += 1;
        if let Err(m) = pattern::check(block, lba + i as u64, expected) {
            record(res, lba + i as u64, m.to_string());
        }
    }
}

async fn progress_line(ctx: Arc<RunContext>, start: Instant) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    let (mut ios0, mut bytes0, mut lat0) = (0, 0, 0);
    loop {
        tick.tick().await;
        let ios = ctx.live.ios.load(Ordering::Relaxed);
        let bytes = ctx.live.bytes.load(Ordering::Relaxed);
        let lat = ctx.live.latency_ns.load(Ordering::Relaxed);
        let (d_ios, d_bytes, d_lat) = (ios - ios0, bytes - bytes0, lat - lat0);
        let mean_us = if d_ios > 0 { d_lat as f64 / d_ios as f64 / 1000.0 } else { 0.0 };
        eprint!(
            "\r{:>5.0}s {:>9} IOPS {:>9.1} MiB/s  mean latency {:>8.1} us   ",
            start.elapsed().as_secs_f64(),
            d_ios,
            d_bytes as f64 / (1 << 20) as f64,
            mean_us
        );
        let _ = std::io::stderr().flush();
        (ios0, bytes0, lat0) = (ios, bytes, lat);
    }
}

fn build_report(
    args: &BenchArgs,
    targets: Vec<TargetInfo>,
    results: Vec<SessionResult>,
    seconds: f64,
    before: (f64, f64),
    after: (f64, f64),
) -> Report {
    let mut read = Histogram::default();
    let mut write = Histogram::default();
    let (mut read_bytes, mut write_bytes, mut errors, mut pings) = (0, 0, 0, 0);
    let mut error_samples = Vec::new();
    let mut verify = VerifyReport::default();
    for r in results {
        read.merge(&r.read);
        write.merge(&r.write);
        read_bytes += r.read_bytes;
        write_bytes += r.write_bytes;
        errors += r.errors;
        pings += r.pings;
        error_samples.extend(r.error_samples);
        verify.written_blocks += r.written_blocks;
        verify.checked_blocks += r.checked_blocks;
        verify.mismatch_count += r.mismatch_count;
        verify.mismatches.extend(r.mismatches);
    }
    error_samples.truncate(report::MAX_ERRORS_LISTED);
    verify.mismatches.sort_by_key(|m| m.lba);
    verify.mismatches.truncate(report::MAX_MISMATCHES_LISTED);
    let mut all = read.clone();
    all.merge(&write);
    let bytes = read_bytes + write_bytes;
    let (user_s, system_s) = (after.0 - before.0, after.1 - before.1);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Report {
        targets,
        pattern: args.pattern,
        read_pct: (args.pattern == Pattern::Mixed).then_some(args.read_pct),
        block_size: args.block_size,
        queue_depth: args.queue_depth,
        sessions: args.sessions,
        connections_per_session: args.connections,
        seconds,
        ios: all.count(),
        bytes,
        iops: report::per_second(all.count() as f64, seconds),
        mib_per_s: report::per_second(bytes as f64 / (1 << 20) as f64, seconds),
        latency: report::Latency::of(&all),
        read: report::direction(&read, read_bytes, seconds),
        write: report::direction(&write, write_bytes, seconds),
        client_cpu: Cpu {
            user_s,
            system_s,
            total_s: user_s + system_s,
            s_per_gib: if gib > 0.0 { (user_s + system_s) / gib } else { 0.0 },
        },
        errors,
        error_samples,
        verify: args.verify.then_some(verify),
        pings_answered: pings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_align_to_io_size() {
        let cap = Capacity { block_len: 512, blocks: 2048 };
        assert_eq!(region_for(cap, 4096, None), Ok(Region { first_lba: 0, io_blocks: 8, units: 256 }));
        assert_eq!(
            region_for(cap, 4096, Some((100, Some(117)))),
            Ok(Region { first_lba: 100, io_blocks: 8, units: 2 })
        );
        assert!(region_for(cap, 1000, None).is_err(), "not a multiple of 512");
        assert!(region_for(cap, 4096, Some((0, Some(4096)))).is_err(), "beyond the LUN");
        assert!(region_for(cap, 4096, Some((0, Some(4)))).is_err(), "smaller than one I/O");
    }

    #[test]
    fn byte_budget_stops_issuing() {
        let ctx = RunContext {
            pattern: Pattern::Write,
            read_pct: 0,
            fua: false,
            block_size: 4096,
            deadline: None,
            total_bytes: Some(10_000),
            claimed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            generations: Generations::new(1),
            live: Live::default(),
        };
        assert!(ctx.claim() && ctx.claim());
        assert!(!ctx.claim(), "a third 4 KiB I/O would pass 10000 bytes");
        assert!(!ctx.claim());
    }
}
