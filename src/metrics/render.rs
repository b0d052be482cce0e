//! Renders one scrape: per-LUN counters and reservation gauges, sessions, logins, Rejects.
//! The caller (the admin module) walks the live server and hands over plain samples.

use super::exposition::Exposition;
use super::lun::{ErrorKind, LunStats, OpKind, PrEvent, LATENCY_BUCKETS_MICROS};
use super::server::ServerCounters;

/// One logical unit as the scrape sees it.
pub struct LunSample<'a> {
    pub target: &'a str,
    pub lun: u64,
    pub stats: &'a LunStats,
    pub pr_registrants: usize,
    pub pr_reserved: bool,
    pub pr_generation: u32,
}

/// Live sessions of one target (None: discovery sessions) and type.
pub struct SessionCount {
    pub target: Option<String>,
    pub kind: &'static str,
    pub count: usize,
}

pub struct Scrape<'a> {
    pub luns: Vec<LunSample<'a>>,
    pub sessions: Vec<SessionCount>,
    pub server: &'a ServerCounters,
}

pub fn render(scrape: &Scrape) -> String {
    let mut e = Exposition::default();
    let counts: Vec<_> = scrape.luns.iter().map(|l| (l.target, l.lun.to_string(), l.stats.counts(), l)).collect();

    e.family("palisade_lun_commands_total", "counter", "SCSI commands ended, by kind (read, write, other).");
    for (target, lun, c, _) in &counts {
        for op in OpKind::ALL {
            e.sample(
                "palisade_lun_commands_total",
                &[("target", target), ("lun", lun), ("op", op.name())],
                c.commands[op as usize],
            );
        }
    }
    e.family("palisade_lun_bytes_total", "counter", "Bytes moved by reads and writes that ended GOOD.");
    for (target, lun, c, _) in &counts {
        for op in [OpKind::Read, OpKind::Write] {
            e.sample(
                "palisade_lun_bytes_total",
                &[("target", target), ("lun", lun), ("op", op.name())],
                c.bytes[op as usize],
            );
        }
    }
    e.family("palisade_lun_errors_total", "counter", "Commands that did not end GOOD, by status or sense key.");
    for (target, lun, c, _) in &counts {
        for kind in ErrorKind::ALL {
            e.sample(
                "palisade_lun_errors_total",
                &[("target", target), ("lun", lun), ("kind", kind.name())],
                c.errors[kind as usize],
            );
        }
    }
    e.family(
        "palisade_lun_latency_seconds",
        "histogram",
        "Time from command arrival to response, including data transfer and ordering waits.",
    );
    for (target, lun, c, _) in &counts {
        for op in OpKind::ALL {
            let buckets = &c.latency[op as usize];
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_MICROS.iter().enumerate() {
                cumulative += buckets[i];
                let le = format!("{}", *bound as f64 / 1e6);
                e.sample(
                    "palisade_lun_latency_seconds_bucket",
                    &[("target", target), ("lun", lun), ("op", op.name()), ("le", &le)],
                    cumulative,
                );
            }
            cumulative += buckets[LATENCY_BUCKETS_MICROS.len()];
            let labels = [("target", *target), ("lun", lun.as_str()), ("op", op.name())];
            e.sample(
                "palisade_lun_latency_seconds_bucket",
                &[labels[0], labels[1], labels[2], ("le", "+Inf")],
                cumulative,
            );
            e.sample("palisade_lun_latency_seconds_sum", &labels, c.latency_sum_micros[op as usize] as f64 / 1e6);
            e.sample("palisade_lun_latency_seconds_count", &labels, cumulative);
        }
    }
    e.family("palisade_lun_pr_events_total", "counter", "Reservation commands that ended GOOD, by service action.");
    for (target, lun, c, _) in &counts {
        for ev in PrEvent::ALL {
            e.sample(
                "palisade_lun_pr_events_total",
                &[("target", target), ("lun", lun), ("action", ev.name())],
                c.pr_events[ev as usize],
            );
        }
    }
    e.family("palisade_lun_pr_registrants", "gauge", "Persistent reservation registrations.");
    for (target, lun, _, l) in &counts {
        e.sample("palisade_lun_pr_registrants", &[("target", target), ("lun", lun)], l.pr_registrants);
    }
    e.family("palisade_lun_pr_reserved", "gauge", "1 while a persistent reservation is held.");
    for (target, lun, _, l) in &counts {
        e.sample("palisade_lun_pr_reserved", &[("target", target), ("lun", lun)], u8::from(l.pr_reserved));
    }
    e.family("palisade_lun_pr_generation", "gauge", "PRgeneration (SPC-4 §6.15.2).");
    for (target, lun, _, l) in &counts {
        e.sample("palisade_lun_pr_generation", &[("target", target), ("lun", lun)], l.pr_generation);
    }
    e.family("palisade_sessions", "gauge", "Sessions in Full Feature Phase.");
    for s in &scrape.sessions {
        e.sample("palisade_sessions", &[("target", s.target.as_deref().unwrap_or("")), ("type", s.kind)], s.count);
    }
    e.family("palisade_logins_total", "counter", "Login phases ended, by final status (RFC 7143 §11.13.5).");
    let logins = scrape.server.logins();
    if !logins.iter().any(|(name, _)| name == "success") {
        e.sample("palisade_logins_total", &[("status", "success")], 0);
    }
    for (name, n) in &logins {
        e.sample("palisade_logins_total", &[("status", name)], n);
    }
    e.family("palisade_rejects_total", "counter", "Reject PDUs sent, by reason (RFC 7143 §11.17.1).");
    for (name, n) in scrape.server.rejects() {
        e.sample("palisade_rejects_total", &[("reason", &name)], n);
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CommandProbe;
    use std::sync::Arc;

    #[test]
    fn a_scrape_renders_counts_histogram_and_server_counters() {
        let stats = Arc::new(LunStats::default());
        CommandProbe::start(Some(stats.clone()), &[0x2A; 10]).finish(0, None, 1024);
        let server = ServerCounters::default();
        server.login(2, 1);
        server.reject(9);
        let scrape = Scrape {
            luns: vec![LunSample {
                target: "iqn.t",
                lun: 3,
                stats: &stats,
                pr_registrants: 2,
                pr_reserved: true,
                pr_generation: 7,
            }],
            sessions: vec![SessionCount { target: Some("iqn.t".into()), kind: "normal", count: 2 }],
            server: &server,
        };
        let text = render(&scrape);
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        has("palisade_lun_commands_total{target=\"iqn.t\",lun=\"3\",op=\"write\"} 1");
        has("palisade_lun_bytes_total{target=\"iqn.t\",lun=\"3\",op=\"write\"} 1024");
        has("palisade_lun_latency_seconds_bucket{target=\"iqn.t\",lun=\"3\",op=\"write\",le=\"+Inf\"} 1");
        has("palisade_lun_latency_seconds_count{target=\"iqn.t\",lun=\"3\",op=\"write\"} 1");
        has("palisade_lun_latency_seconds_bucket{target=\"iqn.t\",lun=\"3\",op=\"read\",le=\"0.00005\"} 0");
        has("palisade_lun_pr_registrants{target=\"iqn.t\",lun=\"3\"} 2");
        has("palisade_lun_pr_reserved{target=\"iqn.t\",lun=\"3\"} 1");
        has("palisade_sessions{target=\"iqn.t\",type=\"normal\"} 2");
        has("palisade_logins_total{status=\"success\"} 0");
        has("palisade_logins_total{status=\"authentication_failure\"} 1");
        has("palisade_rejects_total{reason=\"invalid_pdu_field\"} 1");
        // Every family is declared exactly once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, 11);
    }
}
