//! The final report: what was run, throughput, latency percentiles, client CPU, errors and
//! verification results, as text for people and JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Histogram;
use super::workload::Pattern;

#[derive(Serialize, Debug, Clone)]
pub struct TargetInfo {
    pub url: String,
    pub block_len: u32,
    pub blocks: u64,
    pub first_lba: u64,
    /// I/O-sized units in the region used.
    pub units: u64,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Latency {
    pub mean_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            mean_us: h.mean() / 1000.0,
            min_us: us(h.min()),
            p50_us: us(h.quantile(0.5)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Direction {
    pub ios: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mib_per_s: f64,
    pub latency: Latency,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Cpu {
    pub user_s: f64,
    pub system_s: f64,
    pub total_s: f64,
    /// Client CPU seconds per GiB moved.
    pub s_per_gib: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct MismatchRecord {
    pub url: String,
    pub lba: u64,
    pub problem: String,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct VerifyReport {
    pub written_blocks: u64,
    pub checked_blocks: u64,
    pub mismatch_count: u64,
    /// The first mismatches (at most 100).
    pub mismatches: Vec<MismatchRecord>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub targets: Vec<TargetInfo>,
    pub pattern: Pattern,
    pub read_pct: Option<u8>,
    pub block_size: u64,
    pub queue_depth: usize,
    pub sessions: usize,
    pub connections_per_session: usize,
    pub seconds: f64,
    pub ios: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mib_per_s: f64,
    pub latency: Latency,
    pub read: Direction,
    pub write: Direction,
    pub client_cpu: Cpu,
    pub errors: u64,
    /// The first SCSI errors seen (at most 10).
    pub error_samples: Vec<String>,
    pub verify: Option<VerifyReport>,
    pub pings_answered: u64,
}

pub const MAX_MISMATCHES_LISTED: usize = 100;
pub const MAX_ERRORS_LISTED: usize = 10;

pub fn direction(h: &Histogram, bytes: u64, seconds: f64) -> Direction {
    let ios = h.count();
    Direction {
        ios,
        bytes,
        iops: per_second(ios as f64, seconds),
        mib_per_s: per_second(bytes as f64 / (1 << 20) as f64, seconds),
        latency: Latency::of(h),
    }
}

pub fn per_second(v: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        v / seconds
    } else {
        0.0
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mix = self.read_pct.map(|p| format!(" ({p}% reads)")).unwrap_or_default();
        let _ = writeln!(
            s,
            "palisade bench: {}{mix}, {} per I/O, QD{} x {} session(s){}, {:.1} s",
            self.pattern.name(),
            human_bytes(self.block_size),
            self.queue_depth,
            self.sessions,
            if self.connections_per_session > 1 {
                format!(" of {} connections", self.connections_per_session)
            } else {
                String::new()
            },
            self.seconds
        );
        for t in &self.targets {
            let _ = writeln!(
                s,
                "  target {}: {} blocks of {} B, {} units from LBA {}",
                t.url, t.blocks, t.block_len, t.units, t.first_lba
            );
        }
        let _ = writeln!(s, "  total  {:>10.0} IOPS {:>9.1} MiB/s  {} I/Os", self.iops, self.mib_per_s, self.ios);
        for (name, d) in [("read", &self.read), ("write", &self.write)] {
            if d.ios > 0 {
                let l = &d.latency;
                let _ = writeln!(
                    s,
                    "  {name:<6} {:>10.0} IOPS {:>9.1} MiB/s  latency us: mean {:.0} p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0}",
                    d.iops, d.mib_per_s, l.mean_us, l.p50_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        }
        let c = &self.client_cpu;
        let _ = writeln!(
            s,
            "  client CPU {:.2} s (user {:.2}, system {:.2}) = {:.2} cores, {:.2} s per GiB",
            c.total_s,
            c.user_s,
            c.system_s,
            per_second(c.total_s, self.seconds),
            c.s_per_gib
        );
        if self.pings_answered > 0 {
            let _ = writeln!(s, "  NOP-In pings answered: {}", self.pings_answered);
        }
        let _ = writeln!(s, "  SCSI errors: {}", self.errors);
        for e in &self.error_samples {
            let _ = writeln!(s, "    {e}");
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "  verify: {} blocks written, {} blocks checked, {} mismatches",
                v.written_blocks, v.checked_blocks, v.mismatch_count
            );
            for m in &v.mismatches {
                let _ = writeln!(s, "    LBA {} of {}: {}", m.lba, m.url, m.problem);
            }
        }
        s
    }
}

/// CPU time this process used so far (user, system), from getrusage(2).
pub fn process_cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime), secs(u.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_rates() {
        let mut h = Histogram::default();
        for _ in 0..1000 {
            h.record(100_000);
        }
        let d = direction(&h, 1000 * 4096, 2.0);
        assert_eq!(d.iops, 500.0);
        assert!((d.mib_per_s - 1000.0 * 4096.0 / 1048576.0 / 2.0).abs() < 1e-9);
        assert_eq!(d.latency.p50_us, 100.0);
    }

    #[test]
    fn cpu_time_moves_forward() {
        let (u0, s0) = process_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (u1, s1) = process_cpu();
        assert!(u1 + s1 > u0 + s0);
    }
}
