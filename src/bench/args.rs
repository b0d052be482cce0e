//! Command-line options of `palisade bench`.

use std::time::Duration;

use super::workload::Pattern;

/// Load generator for any iSCSI target: logs in like an initiator and keeps a fixed number of
/// commands in flight per session.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Target LUNs as iscsi://[user%secret@]HOST[:PORT]/TARGET-IQN/LUN; sessions are spread over
    /// them round-robin.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Sessions in total.
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// TCP connections per session (MC/S, RFC 7143 §5.3); more than 1 needs a target that
    /// negotiates MaxConnections that high. The queue depth is spread over them.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Commands kept in flight per session.
    #[arg(long, visible_alias = "qd", default_value_t = 1)]
    pub queue_depth: usize,
    /// Bytes per command: 512, 4k, 256KiB, 1m… (a multiple of the LUN's block length).
    #[arg(long, default_value = "4k", value_parser = parse_bytes)]
    pub block_size: u64,
    #[arg(long, value_enum, default_value = "randread")]
    pub pattern: Pattern,
    /// Share of reads in --pattern mixed, in percent.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_pct: u8,
    /// Run time (10s, 500ms, 2m). Default 10s unless --total-bytes is given.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many bytes were transferred (e.g. 1GiB); with --duration, whichever first.
    #[arg(long, value_parser = parse_bytes)]
    pub total_bytes: Option<u64>,
    /// Logical blocks to use, START:END (END exclusive, empty = end of the LUN).
    #[arg(long, value_name = "START:END")]
    pub lba_range: Option<String>,
    /// Write self-checking blocks (LBA, generation, CRC32C) and verify every block read.
    #[arg(long)]
    pub verify: bool,
    /// Writes with FUA set (SBC-3 §5.40): each one durable before it completes.
    #[arg(long)]
    pub fua: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Client runtime threads (1 leaves the other cores to a target on the same machine).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Ask for CRC32C header digests (RFC 7143 §13.1).
    #[arg(long)]
    pub header_digest: bool,
    /// Ask for CRC32C data digests (RFC 7143 §13.1).
    #[arg(long)]
    pub data_digest: bool,
    #[arg(long, default_value = "iqn.2026-11.io.palisade:bench")]
    pub initiator_name: String,
    /// Seed of the random LBA choice (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Sizes: a byte count, k/m/g (binary), or any unit `palisade` config files accept (KiB, MB…).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    for (suffix, factor) in [("k", 1u64 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)] {
        if let Some(n) = lower.strip_suffix(suffix) {
            if let Ok(v) = n.trim().parse::<u64>() {
                return v.checked_mul(factor).ok_or_else(|| format!("`{text}` overflows"));
            }
        }
    }
    crate::config::parse_size(t)
}

/// Durations: 10, 10s, 500ms, 2m.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration (e.g. 10s, 500ms, 2m)");
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("`{text}`: the duration must be positive"));
    }
    Ok(d)
}

/// `START:END` in logical blocks; END may be empty (to the end of the LUN).
pub fn parse_lba_range(text: &str) -> Result<(u64, Option<u64>), String> {
    let (a, b) = text.split_once(':').ok_or_else(|| format!("--lba-range `{text}`: expected START:END"))?;
    let start = a.trim().parse::<u64>().map_err(|_| format!("--lba-range `{text}`: bad START"))?;
    let end = match b.trim() {
        "" => None,
        e => Some(e.parse::<u64>().map_err(|_| format!("--lba-range `{text}`: bad END"))?),
    };
    if matches!(end, Some(e) if e <= start) {
        return Err(format!("--lba-range `{text}`: END must be above START"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("256K"), Ok(262_144));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("4q").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn lba_ranges() {
        assert_eq!(parse_lba_range("0:2048"), Ok((0, Some(2048))));
        assert_eq!(parse_lba_range("100:"), Ok((100, None)));
        assert!(parse_lba_range("5:5").is_err());
        assert!(parse_lba_range("5").is_err());
    }
}
