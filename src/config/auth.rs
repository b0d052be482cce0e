//! Validation of CHAP credentials, ACLs with LUN masking, and discovery settings.

use super::model::*;
use super::raw::{RawAclEntry, RawChap, RawDiscovery};
use super::validate::{first_duplicate, Validator};

/// RFC 7143 §9.2.1: CHAP secrets shorter than 96 bits (12 bytes) are refused unless IPsec
/// protects the link; this server has no IPsec, so 12 bytes is the floor.
pub const MIN_CHAP_SECRET_BYTES: usize = 12;
/// RFC 7143 §6.1: a text value is at most 255 bytes; a sane ceiling for secrets too.
pub const MAX_CHAP_SECRET_BYTES: usize = 255;
/// Microsoft's initiator rejects secrets longer than 16 bytes.
const WINDOWS_MAX_SECRET_BYTES: usize = 16;

impl Validator<'_> {
    /// `chap` authenticates the initiator; `mutual_chap` authenticates the target to it.
    pub(super) fn chap_pair(
        &mut self,
        field: &str,
        chap: Option<&RawChap>,
        mutual: Option<&RawChap>,
    ) -> (Option<ChapConfig>, Option<ChapConfig>) {
        let chap = chap.and_then(|raw| self.chap(&format!("{field}.chap"), raw));
        let mutual_field = format!("{field}.mutual_chap");
        let mutual = mutual.and_then(|raw| self.chap(&mutual_field, raw));
        if let Some(mutual_credentials) = &mutual {
            match &chap {
                None => self.problem(&mutual_field, "mutual CHAP needs `chap` too: the initiator authenticates first"),
                // RFC 7143 §9.2.1: a secret used to authenticate initiators MUST NOT be
                // configured for authenticating targets.
                Some(initiator) if initiator.secret == mutual_credentials.secret => self
                    .problem(format!("{mutual_field}.secret"), "must differ from the `chap` secret (RFC 7143 §9.2.1)"),
                Some(_) => {}
            }
        }
        (chap, mutual)
    }

    fn chap(&mut self, field: &str, raw: &RawChap) -> Option<ChapConfig> {
        let user = &raw.user;
        let user_ok = if user.is_empty() || user.len() > 255 {
            self.problem(format!("{field}.user"), format!("must be 1..=255 bytes (RFC 7143 §6.1), got {}", user.len()));
            false
        } else if user.chars().any(char::is_control) {
            self.problem(format!("{field}.user"), "must not contain control characters");
            false
        } else {
            true
        };
        let secret = match (&raw.secret, &raw.secret_file) {
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(path)) => {
                let resolved = self.resolve(path);
                match read_bounded(&resolved) {
                    // Editors add a final newline; it is never part of the secret.
                    Ok(text) => Some(
                        text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string(),
                    ),
                    Err(error) => {
                        self.problem(
                            format!("{field}.secret_file"),
                            format!("cannot read {}: {error}", resolved.display()),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.problem(format!("{field}.secret"), "give `secret` or `secret_file`, not both");
                None
            }
            (None, None) => {
                self.problem(format!("{field}.secret"), "missing: give `secret` or `secret_file`");
                None
            }
        }?;
        let secret_field = if raw.secret.is_some() { "secret" } else { "secret_file" };
        if !(MIN_CHAP_SECRET_BYTES..=MAX_CHAP_SECRET_BYTES).contains(&secret.len()) {
            self.problem(
                format!("{field}.{secret_field}"),
                format!(
                    "secret must be {MIN_CHAP_SECRET_BYTES}..={MAX_CHAP_SECRET_BYTES} bytes (RFC 7143 §9.2.1), got {}",
                    secret.len()
                ),
            );
            return None;
        }
        if secret.len() > WINDOWS_MAX_SECRET_BYTES {
            self.warnings.push(format!(
                "{field}.{secret_field}: {} bytes; the Microsoft initiator accepts at most {WINDOWS_MAX_SECRET_BYTES}",
                secret.len()
            ));
        }
        user_ok.then(|| ChapConfig { user: user.clone(), secret })
    }

    pub(super) fn acl(&mut self, field: &str, raw: &[RawAclEntry], lun_ids: &[u64]) -> Vec<AclEntry> {
        if raw.is_empty() {
            self.problem(field, "an empty ACL admits nobody; omit `acl` to admit every initiator");
        }
        let mut entries: Vec<AclEntry> = Vec::new();
        for (index, raw_entry) in raw.iter().enumerate() {
            let entry_field = format!("{field}[{index}]");
            let Some(initiator) = self.iscsi_name(&format!("{entry_field}.initiator"), &raw_entry.initiator) else {
                continue;
            };
            if let Some(other) = entries.iter().position(|e| e.initiator == initiator) {
                self.problem(
                    format!("{entry_field}.initiator"),
                    format!("`{initiator}` is already listed in acl[{other}]"),
                );
                continue;
            }
            let luns =
                raw_entry.luns.as_ref().map(|masked| self.masking(&format!("{entry_field}.luns"), masked, lun_ids));
            entries.push(AclEntry { initiator, luns });
        }
        entries
    }

    /// LUN masking list: each id must name one of the target's LUNs, once.
    fn masking(&mut self, field: &str, masked: &[i64], lun_ids: &[u64]) -> Vec<u64> {
        if masked.is_empty() {
            self.problem(field, "an empty list hides every LUN; remove the initiator or list LUN ids");
        }
        if let Some(duplicate) = first_duplicate(masked.iter().copied()) {
            self.problem(field, format!("LUN {duplicate} is listed twice"));
        }
        let mut visible = Vec::new();
        for (index, &id) in masked.iter().enumerate() {
            match u64::try_from(id).ok().filter(|id| lun_ids.contains(id)) {
                Some(id) if !visible.contains(&id) => visible.push(id),
                Some(_) => {}
                None => self.problem(format!("{field}[{index}]"), format!("the target has no LUN {id}")),
            }
        }
        visible
    }

    pub(super) fn discovery(&mut self, raw: &RawDiscovery) -> DiscoveryConfig {
        let (chap, mutual_chap) = self.chap_pair("discovery", raw.chap.as_ref(), raw.mutual_chap.as_ref());
        DiscoveryConfig { chap, mutual_chap, acl_filter: raw.acl_filter.unwrap_or(true) }
    }

    /// RFC 7143 §9.2.1: any secret that authenticates initiators MUST NOT also authenticate
    /// a target, anywhere in the configuration.
    pub(super) fn check_secret_roles(&mut self, targets: &[TargetConfig], discovery: &DiscoveryConfig) {
        let mut owners: Vec<(String, &Option<ChapConfig>, &Option<ChapConfig>)> =
            vec![("discovery".into(), &discovery.chap, &discovery.mutual_chap)];
        for (index, target) in targets.iter().enumerate() {
            owners.push((format!("targets[{index}]"), &target.chap, &target.mutual_chap));
        }
        let mut initiator_secrets: Vec<(String, &str)> = Vec::new();
        let mut target_secrets: Vec<(String, &str)> = Vec::new();
        for (field, chap, mutual) in &owners {
            if let Some(c) = chap {
                initiator_secrets.push((format!("{field}.chap"), c.secret.as_str()));
            }
            if let Some(m) = mutual {
                target_secrets.push((format!("{field}.mutual_chap"), m.secret.as_str()));
            }
        }
        let mut clashes = Vec::new();
        for (target_field, target_secret) in &target_secrets {
            for (initiator_field, initiator_secret) in &initiator_secrets {
                let same_pair = target_field.strip_suffix(".mutual_chap") == initiator_field.strip_suffix(".chap");
                // The same-entry clash is already reported by chap_pair.
                if target_secret == initiator_secret && !same_pair {
                    clashes.push((
                        format!("{target_field}.secret"),
                        format!("equals the initiator secret of {initiator_field} (RFC 7143 §9.2.1)"),
                    ));
                }
            }
        }
        for (field, message) in clashes {
            self.problem(field, message);
        }
    }
}

/// Reads a secret file, refusing anything much longer than a CHAP secret can be, so a
/// misconfigured path (a device, a log file) cannot hang startup or exhaust memory.
fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = (MAX_CHAP_SECRET_BYTES + 2) as u64;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MAX_CHAP_SECRET_BYTES} bytes"),
        ));
    }
    Ok(text)
}
