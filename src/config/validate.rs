//! The validation pass: raw file structs in, typed `Config` out, every problem named by path.

use super::error::{ConfigError, ConfigProblem};
use super::model::*;
use super::names::normalize_iscsi_name;
use super::raw::{RawConfig, RawPortal, RawTarget};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// Collects problems and warnings while converting; files are resolved against `base_dir`.
pub(super) struct Validator<'a> {
    pub(super) base_dir: &'a Path,
    pub(super) problems: Vec<ConfigProblem>,
    pub(super) warnings: Vec<String>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(base_dir: &'a Path) -> Self {
        Validator { base_dir, problems: Vec::new(), warnings: Vec::new() }
    }

    pub(super) fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem { field: field.into(), line_column: None, message: message.into() });
    }

    /// Checks `value` lies in `range`, converting it to the target integer type.
    pub(super) fn ranged<T: TryFrom<i64>>(&mut self, field: &str, value: i64, range: RangeInclusive<i64>) -> Option<T> {
        if !range.contains(&value) {
            self.problem(field, format!("must be in {}..={}, got {value}", range.start(), range.end()));
            return None;
        }
        T::try_from(value).ok()
    }

    pub(super) fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Validates an iSCSI name, warning when case normalization changed it.
    pub(super) fn iscsi_name(&mut self, field: &str, raw: &str) -> Option<String> {
        match normalize_iscsi_name(raw) {
            Ok(name) => {
                if name != raw {
                    self.warnings
                        .push(format!("{field}: iSCSI names are case-insensitive (RFC 7143 §4.2.7); using `{name}`"));
                }
                Some(name)
            }
            Err(why) => {
                self.problem(field, why);
                None
            }
        }
    }

    pub(super) fn finish(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let config = self.config(raw);
        if self.problems.is_empty() {
            Ok(Config { warnings: self.warnings, ..config })
        } else {
            Err(ConfigError { file: None, problems: self.problems })
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let portals = self.portals(&raw.portals);
        let portal_names: Vec<String> = portals.iter().map(|p| p.name.clone()).collect();
        if raw.targets.is_empty() {
            self.problem("targets", "at least one [[targets]] entry is required");
        }
        let mut targets = Vec::new();
        let mut seen_targets: HashMap<String, usize> = HashMap::new();
        for (index, raw_target) in raw.targets.iter().enumerate() {
            let field = format!("targets[{index}]");
            if let Some(target) = self.target(&field, raw_target, &portal_names) {
                if let Some(first) = seen_targets.insert(target.name.clone(), index) {
                    self.problem(
                        format!("{field}.name"),
                        format!("`{}` is already used by targets[{first}]", target.name),
                    );
                }
                targets.push(target);
            }
        }
        self.unique_backend_paths(&targets);
        let discovery = self.discovery(&raw.discovery);
        self.check_secret_roles(&targets, &discovery);
        let session = self.session(&raw.session);
        let limits = self.limits(&raw.limits);
        let data_dir = self.resolve(raw.data_dir.as_deref().unwrap_or(Path::new(DEFAULT_DATA_DIR)));
        let admin = self.admin(&raw.admin, &data_dir);
        let cluster = self.cluster(raw.cluster.as_ref());
        if cluster.is_some() {
            self.cluster_constraints(&portals, &targets);
        }
        Config { portals, targets, discovery, session, admin, limits, cluster, data_dir, warnings: Vec::new() }
    }

    fn portals(&mut self, raw: &[RawPortal]) -> Vec<Portal> {
        if raw.is_empty() {
            self.problem("portals", "at least one [[portals]] entry is required");
        }
        let mut portals: Vec<Portal> = Vec::new();
        for (index, raw_portal) in raw.iter().enumerate() {
            let field = format!("portals[{index}]");
            let name = raw_portal.name.clone().unwrap_or_else(|| format!("portal{index}"));
            if name.trim().is_empty() {
                self.problem(format!("{field}.name"), "must not be empty");
            }
            let listen = match parse_listen_addr(&raw_portal.listen) {
                Ok(addr) => addr,
                Err(why) => {
                    self.problem(format!("{field}.listen"), why);
                    continue;
                }
            };
            // RFC 7143 §13.9: TargetPortalGroupTag is a 16-bit value; 0 is avoided because
            // several initiators treat it as "unset".
            let default_tpgt = i64::try_from(index + 1).unwrap_or(i64::MAX);
            let Some(tpgt) =
                self.ranged::<u16>(&format!("{field}.tpgt"), raw_portal.tpgt.unwrap_or(default_tpgt), 1..=65535)
            else {
                continue;
            };
            for (other_index, other) in portals.iter().enumerate() {
                if other.name == name {
                    self.problem(
                        format!("{field}.name"),
                        format!("`{name}` is already used by portals[{other_index}]"),
                    );
                }
                if listen_overlaps(other.listen, listen) {
                    self.problem(
                        format!("{field}.listen"),
                        format!("{listen} overlaps portals[{other_index}] ({})", other.listen),
                    );
                }
                if other.tpgt == tpgt {
                    self.problem(
                        format!("{field}.tpgt"),
                        format!("TPGT {tpgt} is already used by portals[{other_index}]"),
                    );
                }
            }
            portals.push(Portal { name, listen, tpgt });
        }
        portals
    }

    fn target(&mut self, field: &str, raw: &RawTarget, portal_names: &[String]) -> Option<TargetConfig> {
        let name = self.iscsi_name(&format!("{field}.name"), &raw.name);
        let alias = raw.alias.as_ref().and_then(|alias| {
            // RFC 7143 §13.6: TargetAlias is a UTF-8 text value of at most 255 bytes.
            let problem = if alias.is_empty() || alias.len() > 255 {
                Some(format!("must be 1..=255 bytes, got {}", alias.len()))
            } else if alias.chars().any(char::is_control) {
                Some("must not contain control characters".to_string())
            } else {
                None
            };
            match problem {
                Some(why) => {
                    self.problem(format!("{field}.alias"), why);
                    None
                }
                None => Some(alias.clone()),
            }
        });
        let portals = self.target_portals(field, raw.portals.as_deref(), portal_names);
        let luns = self.luns(field, &raw.luns);
        // Masking is checked against every LUN id written, so a LUN rejected for another
        // reason (say its backend) does not also produce "no such LUN" noise.
        let lun_ids: Vec<u64> = raw.luns.iter().filter_map(|lun| u64::try_from(lun.id).ok()).collect();
        let acl = raw.acl.as_ref().map(|entries| self.acl(&format!("{field}.acl"), entries, &lun_ids));
        let (chap, mutual_chap) = self.chap_pair(field, raw.chap.as_ref(), raw.mutual_chap.as_ref());
        Some(TargetConfig { name: name?, alias, portals, luns, acl, chap, mutual_chap })
    }

    fn target_portals(&mut self, field: &str, requested: Option<&[String]>, portal_names: &[String]) -> Vec<String> {
        let Some(requested) = requested else {
            return portal_names.to_vec();
        };
        let field = format!("{field}.portals");
        if requested.is_empty() {
            self.problem(&field, "must name at least one portal (omit the key to use all portals)");
        }
        let mut chosen = Vec::new();
        for (index, name) in requested.iter().enumerate() {
            if !portal_names.contains(name) {
                self.problem(
                    format!("{field}[{index}]"),
                    format!("no portal named `{name}` (known: {})", portal_names.join(", ")),
                );
            } else if chosen.contains(name) {
                self.problem(format!("{field}[{index}]"), format!("`{name}` is listed twice"));
            } else {
                chosen.push(name.clone());
            }
        }
        chosen
    }

    /// Two LUNs writing one file or device would corrupt each other.
    fn unique_backend_paths(&mut self, targets: &[TargetConfig]) {
        let mut owners: HashMap<PathBuf, String> = HashMap::new();
        let mut clashes = Vec::new();
        for (target_index, target) in targets.iter().enumerate() {
            for (lun_index, lun) in target.luns.iter().enumerate() {
                let path = match &lun.backend {
                    BackendConfig::File { path, .. } | BackendConfig::BlockDevice { path, .. } => path,
                    BackendConfig::Memory { .. } => continue,
                };
                let field = format!("targets[{target_index}].luns[{lun_index}].path");
                if let Some(first) = owners.get(path) {
                    clashes.push((field, format!("{} is already used by {first}", path.display())));
                } else {
                    owners.insert(path.clone(), field);
                }
            }
        }
        for (field, message) in clashes {
            self.problem(field, message);
        }
    }
}

impl Validator<'_> {
    /// What cluster mode asks of the rest of the file (docs/cluster.md).
    fn cluster_constraints(&mut self, portals: &[Portal], targets: &[TargetConfig]) {
        for (index, portal) in portals.iter().enumerate() {
            // Relative target port id = gateway_id * 256 + TPGT (SPC-4 §7.8.6.8: unique across
            // the SCSI target device, i.e. the whole cluster).
            if portal.tpgt > 255 {
                self.problem(
                    format!("portals[{index}].tpgt"),
                    format!(
                        "must be at most 255 in cluster mode (relative port id = gateway_id * 256 + TPGT), got {}",
                        portal.tpgt
                    ),
                );
            }
        }
        for (t, target) in targets.iter().enumerate() {
            for (l, lun) in target.luns.iter().enumerate() {
                match lun.backend {
                    BackendConfig::Memory { .. } => self.problem(
                        format!("targets[{t}].luns[{l}].backend"),
                        "a memory LUN cannot be shared by the gateways of a cluster; use a file or block device on shared storage",
                    ),
                    BackendConfig::File { direct_io: false, .. } | BackendConfig::BlockDevice { direct_io: false, .. } => self.warnings.push(format!(
                        "targets[{t}].luns[{l}]: without direct_io = true, gateways on different hosts can read stale data from their page cache"
                    )),
                    _ => {}
                }
            }
        }
    }
}

/// Parses "host:port", "[v6]:port", or a bare address (port 3260, as RFC 7143 §13.8 assumes).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(trimmed);
    bare.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DEFAULT_ISCSI_PORT)).map_err(|_| {
        format!("`{text}` is not an IP address with optional port, e.g. \"0.0.0.0:3260\" or \"[::1]:3260\"")
    })
}

/// Same address, or the same port where one side is the wildcard of the same family:
/// binding both would fail with EADDRINUSE.
fn listen_overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

/// Unique-name check shared by ACL and LUN lists.
pub(super) fn first_duplicate<T: Eq + std::hash::Hash + Clone>(items: impl IntoIterator<Item = T>) -> Option<T> {
    let mut seen = HashSet::new();
    items.into_iter().find(|item| !seen.insert(item.clone()))
}
