//! `palisade::config::Config::from_toml_str` on arbitrary text (relative paths resolve
//! against a folder that does not exist, so file-backed LUNs without a size and secret files
//! are refused rather than read).
//!
//! Invariants:
//! - an error names at least one problem, each with a message; a TOML syntax error's line and
//!   column lie inside the text; Display does not panic;
//! - an accepted configuration satisfies what docs/configuration.md promises: portals and
//!   targets exist with unique names and non-zero unique TPGTs; every target has LUNs with
//!   unique ids ≤ 16383, block size 512 or 4096, memory sizes > 0, ≤ 64 GiB and whole
//!   blocks; target names are normalized iSCSI names; portal references resolve; ACL LUN
//!   masks name existing LUNs; mutual CHAP only with CHAP, and with another secret; session
//!   limits inside RFC 7143 §13 ranges with FirstBurstLength ≤ MaxBurstLength;
//! - parsing is deterministic, and the summary does not depend on any CHAP secret.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade::config::{normalize_iscsi_name, BackendConfig, Config, MAX_LUN_ID, MAX_MEMORY_LUN_SIZE};

fn check_config(config: &Config) {
    assert!(!config.portals.is_empty() && !config.targets.is_empty());
    let mut portal_names = HashSet::new();
    let mut tpgts = HashSet::new();
    for p in &config.portals {
        assert!(portal_names.insert(p.name.as_str()), "duplicate portal {}", p.name);
        assert!(p.tpgt != 0 && tpgts.insert(p.tpgt), "TPGT {} zero or reused", p.tpgt);
    }
    let mut target_names = HashSet::new();
    for t in &config.targets {
        assert!(target_names.insert(t.name.as_str()), "duplicate target {}", t.name);
        assert_eq!(normalize_iscsi_name(&t.name).as_deref(), Ok(t.name.as_str()), "name not normalized");
        assert!(t.portals.iter().all(|p| portal_names.contains(p.as_str())), "unknown portal in {}", t.name);
        assert!(!t.luns.is_empty(), "target {} without LUNs", t.name);
        let mut ids = HashSet::new();
        for lun in &t.luns {
            assert!(lun.id <= MAX_LUN_ID && ids.insert(lun.id), "LUN id {} out of range or reused", lun.id);
            assert!(matches!(lun.block_size, 512 | 4096), "block size {}", lun.block_size);
            if let BackendConfig::Memory { size } = lun.backend {
                assert!(
                    size > 0 && size <= MAX_MEMORY_LUN_SIZE && size % lun.block_size as u64 == 0,
                    "memory size {size}"
                );
            }
            if let Some(product) = &lun.product {
                assert!(product.len() <= 16 && product.is_ascii());
            }
        }
        for entry in t.acl.iter().flatten() {
            for id in entry.luns.iter().flatten() {
                assert!(ids.contains(id), "ACL masks unknown LUN {id}");
            }
        }
        assert!(t.mutual_chap.is_none() || t.chap.is_some(), "mutual CHAP without CHAP");
        if let (Some(chap), Some(mutual)) = (&t.chap, &t.mutual_chap) {
            assert_ne!(chap.secret, mutual.secret, "one secret for both directions");
        }
    }
    let d = &config.discovery;
    assert!(d.mutual_chap.is_none() || d.chap.is_some());
    let s = &config.session;
    for v in [s.max_recv_data_segment_length, s.max_burst_length, s.first_burst_length] {
        assert!((512..=16_777_215).contains(&v), "length {v} out of RFC 7143 range");
    }
    assert!(s.first_burst_length <= s.max_burst_length);
    assert!((1..=65_535).contains(&s.max_outstanding_r2t));
    assert!(s.max_cmdsn_window >= 1);

    // The summary must not depend on secrets: replacing each by another changes nothing.
    let mut blanked = config.clone();
    let chaps = blanked.targets.iter_mut().flat_map(|t| [&mut t.chap, &mut t.mutual_chap]);
    for chap in chaps.chain([&mut blanked.discovery.chap, &mut blanked.discovery.mutual_chap]).flatten() {
        chap.secret = format!("<{}>", chap.secret.len());
    }
    assert_eq!(config.summary(), blanked.summary(), "summary shows a secret");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let base = Path::new("/nonexistent/palisade-fuzz");
    let result = Config::from_toml_str(text, base);
    assert_eq!(result, Config::from_toml_str(text, base), "parsing is not deterministic");
    match &result {
        Ok(config) => check_config(config),
        Err(error) => {
            assert!(!error.problems.is_empty(), "error without problems");
            for p in &error.problems {
                assert!(!p.message.is_empty(), "problem without message: {p:?}");
                if let Some((line, column)) = p.line_column {
                    assert!(line >= 1 && column >= 1 && line <= text.lines().count().max(1) + 1, "{p:?}");
                }
            }
            let _ = error.to_string();
        }
    }
});
