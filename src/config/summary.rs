//! A human-readable description of a configuration for the startup log. Never shows secrets.

use super::model::*;
use super::size::format_size;
use std::fmt::Write;

impl Config {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "data dir: {}", self.data_dir.display());
        out.push_str("portals:\n");
        for portal in &self.portals {
            let _ = writeln!(out, "  {} {} (TPGT {})", portal.name, portal.listen, portal.tpgt);
        }
        out.push_str("targets:\n");
        for target in &self.targets {
            describe_target(&mut out, target);
        }
        let _ = writeln!(
            out,
            "discovery: {}; SendTargets {}",
            describe_auth(&self.discovery.chap, &self.discovery.mutual_chap),
            if self.discovery.acl_filter { "filtered by ACL" } else { "lists every target" }
        );
        let s = &self.session;
        let _ = writeln!(
            out,
            "session: MaxRecvDataSegmentLength {}, MaxBurstLength {}, FirstBurstLength {}, MaxOutstandingR2T {}, \
             ImmediateData {}, InitialR2T {}, CmdSN window {}, NOP-In every {}, login timeout {}s",
            s.max_recv_data_segment_length,
            s.max_burst_length,
            s.first_burst_length,
            s.max_outstanding_r2t,
            yes_no(s.immediate_data),
            yes_no(s.initial_r2t),
            s.max_cmdsn_window,
            if s.nop_interval_secs == 0 {
                "never".to_string()
            } else {
                format!("{}s (timeout {}s)", s.nop_interval_secs, s.nop_timeout_secs)
            },
            s.login_timeout_secs,
        );
        let _ = writeln!(
            out,
            "admin: socket {}; metrics {}",
            self.admin.socket.as_ref().map_or("disabled".to_string(), |p| p.display().to_string()),
            self.admin.metrics_listen.map_or("disabled".to_string(), |a| format!("http://{a}/metrics")),
        );
        let l = &self.limits;
        let _ = writeln!(
            out,
            "limits: {} sessions ({} per target), {} connections per address, login idle {}s, \
             {} data per session, {} send queue, send timeout {}s",
            l.max_sessions,
            l.max_sessions_per_target,
            l.max_connections_per_address,
            l.login_idle_timeout_secs,
            super::format_size(l.max_session_data_bytes),
            super::format_size(l.max_send_queue_bytes),
            l.send_timeout_secs,
        );
        // Only in cluster mode: a single node's summary is unchanged.
        if let Some(c) = &self.cluster {
            let _ = writeln!(
                out,
                "cluster: gateway {} via etcd {}, lease TTL {}s (keepalive every {} ms), self-fence margin {} ms, keys under {}",
                c.gateway_id,
                c.etcd_endpoints.join(", "),
                c.lease_ttl.as_secs(),
                c.keepalive_interval().as_millis(),
                c.self_fence_margin.as_millis(),
                c.key_prefix,
            );
        }
        out
    }
}

fn describe_target(out: &mut String, target: &TargetConfig) {
    let alias = target.alias.as_ref().map(|a| format!(" \"{a}\"")).unwrap_or_default();
    let _ = writeln!(out, "  {}{alias}", target.name);
    let _ = writeln!(out, "    portals: {}", target.portals.join(", "));
    let _ = writeln!(out, "    auth: {}", describe_auth(&target.chap, &target.mutual_chap));
    match &target.acl {
        None => out.push_str("    access: any initiator\n"),
        Some(entries) => {
            for entry in entries {
                let luns = match &entry.luns {
                    None => "all LUNs".to_string(),
                    Some(ids) => format!("LUNs {}", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
                };
                let _ = writeln!(out, "    access: {} ({luns})", entry.initiator);
            }
        }
    }
    for lun in &target.luns {
        let backend = match &lun.backend {
            BackendConfig::File { path, size, direct_io } => format!(
                "file {} ({}{})",
                path.display(),
                size.map(format_size).unwrap_or_else(|| "existing size".into()),
                if *direct_io { ", direct I/O" } else { "" }
            ),
            BackendConfig::Memory { size } => format!("memory ({})", format_size(*size)),
            BackendConfig::BlockDevice { path, direct_io } => {
                format!("block device {}{}", path.display(), if *direct_io { ", direct I/O" } else { "" })
            }
        };
        let _ = writeln!(
            out,
            "    LUN {}: {backend}, {}-byte blocks{}{}",
            lun.id,
            lun.block_size,
            if lun.read_only { ", read-only" } else { "" },
            if lun.write_cache { "" } else { ", write-through" }
        );
    }
}

fn describe_auth(chap: &Option<ChapConfig>, mutual: &Option<ChapConfig>) -> String {
    match (chap, mutual) {
        (None, _) => "none".into(),
        (Some(c), None) => format!("CHAP (user \"{}\")", c.user),
        (Some(c), Some(m)) => format!("mutual CHAP (initiator user \"{}\", target user \"{}\")", c.user, m.user),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "Yes"
    } else {
        "No"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn zero_config_summary_describes_the_default_lun() {
        let config = Config::zero_config(Config::default_listen(), PathBuf::from("/srv/pal"));
        let text = config.summary();
        assert!(text.contains("default 127.0.0.1:3260 (TPGT 1)"), "{text}");
        assert!(text.contains("iqn.2026-11.io.palisade:default"), "{text}");
        assert!(text.contains("LUN 0: file /srv/pal/lun0.img (1GiB), 512-byte blocks"), "{text}");
        assert!(text.contains("access: any initiator"), "{text}");
        assert!(text.contains("auth: none"), "{text}");
    }

    #[test]
    fn summary_never_prints_secrets() {
        let mut config = Config::zero_config(Config::default_listen(), PathBuf::from("d"));
        config.targets[0].chap = Some(ChapConfig { user: "alice".into(), secret: "supersecret123".into() });
        let text = config.summary();
        assert!(text.contains("CHAP (user \"alice\")"));
        assert!(!text.contains("supersecret123"));
        assert!(!format!("{:?}", config).contains("supersecret123"));
    }
}
