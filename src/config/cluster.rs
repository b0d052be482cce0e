//! Validation of `[cluster]`: the etcd endpoints, this gateway's id and the lease timing of
//! cluster mode (docs/cluster.md). Absent, the server is a single node and contacts no etcd.

use super::raw::RawCluster;
use super::validate::Validator;
use std::time::Duration;

/// Key prefix of every record this cluster keeps in etcd unless `key_prefix` says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "/palisade/v1";
/// Membership lease TTL unless configured: long enough to ride out an etcd leader election
/// (about 1–3 s on default etcd timing), short enough that survivors wait little for a dead peer.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 5;
/// How long before the lease could expire this gateway stops submitting writes, unless
/// configured: covers the backing store's worst write latency (a write submitted just before the
/// deadline must land before any peer can act on the expired lease).
pub const DEFAULT_SELF_FENCE_MARGIN_MS: u64 = 1000;

/// Cluster mode (`[cluster]`): several gateways serve the same LUNs, coordinated through etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs, `http://host:port`.
    pub etcd_endpoints: Vec<String>,
    /// This gateway's id, unique in the cluster: it is also its ALUA target port group id, and
    /// its portals' relative target port ids are `gateway_id * 256 + TPGT` (SPC-4 §7.8.6.8).
    pub gateway_id: u16,
    /// TTL of this gateway's membership lease (etcd grants whole seconds).
    pub lease_ttl: Duration,
    /// Writes stop this long before the lease could expire on the etcd side.
    pub self_fence_margin: Duration,
    /// Prefix of every key, so several clusters (or test runs) can share one etcd.
    pub key_prefix: String,
}

impl ClusterConfig {
    /// Keepalives are sent every TTL/4, so two can be lost before the self-fence deadline.
    pub fn keepalive_interval(&self) -> Duration {
        self.lease_ttl / 4
    }
}

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: Option<&RawCluster>) -> Option<ClusterConfig> {
        let raw = raw?;
        let mut endpoints = Vec::new();
        if raw.etcd_endpoints.is_empty() {
            self.problem("cluster.etcd_endpoints", "at least one etcd endpoint is required");
        }
        for (index, text) in raw.etcd_endpoints.iter().enumerate() {
            match etcd_endpoint(text) {
                Ok(url) => endpoints.push(url),
                Err(why) => self.problem(format!("cluster.etcd_endpoints[{index}]"), why),
            }
        }
        // 0 is not a valid target port group (SPC-4 §6.37 reserves it); one byte because the
        // relative target port id is gateway_id * 256 + TPGT in 16 bits.
        let gateway_id = self.ranged::<u16>("cluster.gateway_id", raw.gateway_id, 1..=255);
        // etcd leases are whole seconds; below 2 s a single missed keepalive fences the gateway.
        let ttl_secs = self.ranged::<u64>(
            "cluster.lease_ttl_secs",
            raw.lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL_SECS as i64),
            2..=3600,
        );
        let margin_ms = raw.self_fence_margin_ms.unwrap_or(DEFAULT_SELF_FENCE_MARGIN_MS as i64);
        let margin = match ttl_secs {
            // Half the TTL at most: the deadline must leave room for a keepalive (TTL/4) or two.
            Some(ttl) => self.ranged::<u64>("cluster.self_fence_margin_ms", margin_ms, 1..=(ttl as i64 * 500)),
            None => None,
        };
        let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
        if !key_prefix.starts_with('/') || key_prefix.ends_with('/') || key_prefix.len() > 128 {
            self.problem(
                "cluster.key_prefix",
                format!("`{key_prefix}` must start with `/`, not end with `/`, and be at most 128 bytes"),
            );
        } else if key_prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.problem("cluster.key_prefix", "must not contain spaces or control characters");
        }
        Some(ClusterConfig {
            etcd_endpoints: endpoints,
            gateway_id: gateway_id?,
            lease_ttl: Duration::from_secs(ttl_secs?),
            self_fence_margin: Duration::from_millis(margin?),
            key_prefix,
        })
    }
}

/// `host:port` or `http://host:port`; TLS endpoints are refused because the client is built
/// without TLS (docs/cluster.md: run etcd on a trusted network or loopback).
fn etcd_endpoint(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("https://") {
        return Err(format!("`{text}`: TLS to etcd is not supported yet; use http:// on a trusted network"));
    }
    let host_port = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let (host, port) =
        host_port.rsplit_once(':').ok_or_else(|| format!("`{text}` needs a port, e.g. \"http://127.0.0.1:2379\""))?;
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{text}` is not host:port or http://host:port"));
    }
    Ok(format!("http://{host_port}"))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    fn load(cluster: &str, tpgt: u32) -> Result<Config, String> {
        let text = format!(
            "[[portals]]\nlisten = \"127.0.0.1:3260\"\ntpgt = {tpgt}\n[[targets]]\nname = \"iqn.2026-11.io.palisade:t\"\n\
             [[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"/srv/lun0.img\"\nsize = \"1MiB\"\n\n[cluster]\n{cluster}"
        );
        Config::from_toml_str(&text, Path::new("/etc/palisade")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_normalised_endpoints() {
        let c = load("etcd_endpoints = [\"127.0.0.1:2379\", \"http://[::1]:2380\"]\ngateway_id = 3", 1).unwrap();
        let cluster = c.cluster.expect("cluster mode");
        assert_eq!(cluster.etcd_endpoints, vec!["http://127.0.0.1:2379", "http://[::1]:2380"]);
        assert_eq!(cluster.gateway_id, 3);
        assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
        assert_eq!(cluster.self_fence_margin, Duration::from_secs(1));
        assert_eq!(cluster.keepalive_interval(), Duration::from_millis(1250));
        assert_eq!(cluster.key_prefix, "/palisade/v1");
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = load("etcd_endpoints = []\ngateway_id = 0\nlease_ttl_secs = 1", 1).unwrap_err();
        for field in ["cluster.etcd_endpoints", "cluster.gateway_id", "cluster.lease_ttl_secs"] {
            assert!(e.contains(field), "{field} missing from: {e}");
        }
        let e = load("etcd_endpoints = [\"https://e:2379\", \"e\"]\ngateway_id = 256", 1).unwrap_err();
        assert!(e.contains("etcd_endpoints[0]") && e.contains("TLS"), "{e}");
        assert!(e.contains("etcd_endpoints[1]") && e.contains("needs a port"), "{e}");
        assert!(e.contains("cluster.gateway_id: must be in 1..=255"), "{e}");
        let e = load("etcd_endpoints = [\"e:1\"]\ngateway_id = 1\nlease_ttl_secs = 2\nself_fence_margin_ms = 1001", 1)
            .unwrap_err();
        assert!(e.contains("cluster.self_fence_margin_ms: must be in 1..=1000"), "{e}");
        let e = load("etcd_endpoints = [\"e:1\"]\ngateway_id = 1\nkey_prefix = \"pal/\"", 1).unwrap_err();
        assert!(e.contains("cluster.key_prefix"), "{e}");
        assert!(load("etcd_endpoints = [\"e:1\"]\ngateway_id = 1\nbogus = 1", 1).unwrap_err().contains("bogus"));
    }

    #[test]
    fn cluster_mode_needs_one_byte_tpgts_and_shared_storage() {
        let e = load("etcd_endpoints = [\"e:1\"]\ngateway_id = 1", 256).unwrap_err();
        assert!(e.contains("portals[0].tpgt") && e.contains("255"), "{e}");
        let text = "[[portals]]\nlisten = \"127.0.0.1:3260\"\n[[targets]]\nname = \"iqn.2026-11.io.palisade:t\"\n\
                    [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n\n\
                    [cluster]\netcd_endpoints = [\"e:1\"]\ngateway_id = 1\n";
        let e = Config::from_toml_str(text, Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("targets[0].luns[0].backend") && e.contains("shared"), "{e}");
    }

    #[test]
    fn without_the_table_the_server_is_single_node() {
        let text = "[[portals]]\nlisten = \"127.0.0.1:3260\"\n[[targets]]\nname = \"iqn.2026-11.io.palisade:t\"\n\
                    [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n";
        assert_eq!(Config::from_toml_str(text, Path::new("/")).unwrap().cluster, None);
        let zero = Config::zero_config("127.0.0.1:3260".parse().unwrap(), "/d".into());
        assert_eq!(zero.cluster, None);
    }
}
