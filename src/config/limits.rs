//! Validation of `[limits]`: how much one host, target, session or stalled peer may hold.

use super::model::LimitsConfig;
use super::raw::RawLimits;
use super::size::SizeValue;
use super::validate::Validator;

/// Seconds: an hour bounds every timer so a typo cannot park a connection for days.
const TIMER_RANGE_SECS: std::ops::RangeInclusive<i64> = 1..=3600;
/// Counts of sessions and connections: at least one, at most what TSIHs can name (16 bits).
const COUNT_RANGE: std::ops::RangeInclusive<i64> = 1..=65_534;
/// A session's data budget must fit one full MaxBurstLength-sized write at least (64 KiB is
/// far below any useful value); 16 GiB keeps a typo from disabling the bound.
const SESSION_DATA_RANGE: std::ops::RangeInclusive<i64> = (64 << 10)..=(16 << 30);
/// Registrations per LU: at least one, at most what the APTPL record can count.
const REGISTRANTS_RANGE: std::ops::RangeInclusive<i64> = 1..=crate::pr::HARD_MAX_REGISTRANTS as i64;
/// The send queue must hold one large PDU (16 MiB segments are the RFC's ceiling).
const SEND_QUEUE_RANGE: std::ops::RangeInclusive<i64> = (64 << 10)..=(1 << 30);

impl Validator<'_> {
    pub(super) fn limits(&mut self, raw: &RawLimits) -> LimitsConfig {
        let d = LimitsConfig::default();
        let count = |v: &mut Self, key: &str, value: Option<i64>, default: u32| -> u32 {
            value.and_then(|n| v.ranged::<u32>(&format!("limits.{key}"), n, COUNT_RANGE)).unwrap_or(default)
        };
        let secs = |v: &mut Self, key: &str, value: Option<i64>, default: u64| -> u64 {
            value.and_then(|n| v.ranged::<u64>(&format!("limits.{key}"), n, TIMER_RANGE_SECS)).unwrap_or(default)
        };
        let bytes = |v: &mut Self,
                     key: &str,
                     value: Option<SizeValue>,
                     range: std::ops::RangeInclusive<i64>,
                     default: u64|
         -> u64 {
            value
                .and_then(|SizeValue(b)| {
                    let b = i64::try_from(b).unwrap_or(i64::MAX);
                    v.ranged::<u64>(&format!("limits.{key}"), b, range)
                })
                .unwrap_or(default)
        };
        let max_sessions = count(self, "max_sessions", raw.max_sessions, d.max_sessions);
        let max_sessions_per_target =
            count(self, "max_sessions_per_target", raw.max_sessions_per_target, d.max_sessions_per_target);
        let max_connections_per_address =
            count(self, "max_connections_per_address", raw.max_connections_per_address, d.max_connections_per_address);
        let login_idle_timeout_secs =
            secs(self, "login_idle_timeout_secs", raw.login_idle_timeout_secs, d.login_idle_timeout_secs);
        let max_session_data_bytes = bytes(
            self,
            "max_session_data_bytes",
            raw.max_session_data_bytes,
            SESSION_DATA_RANGE,
            d.max_session_data_bytes,
        );
        let max_send_queue_bytes =
            bytes(self, "max_send_queue_bytes", raw.max_send_queue_bytes, SEND_QUEUE_RANGE, d.max_send_queue_bytes);
        let send_timeout_secs = secs(self, "send_timeout_secs", raw.send_timeout_secs, d.send_timeout_secs);
        let max_registrants_per_lun = raw
            .max_registrants_per_lun
            .and_then(|n| self.ranged::<u32>("limits.max_registrants_per_lun", n, REGISTRANTS_RANGE))
            .unwrap_or(d.max_registrants_per_lun);
        LimitsConfig {
            max_sessions,
            max_sessions_per_target,
            max_connections_per_address,
            login_idle_timeout_secs,
            max_session_data_bytes,
            max_send_queue_bytes,
            send_timeout_secs,
            max_registrants_per_lun,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LimitsConfig};
    use std::path::Path;

    const BASE: &str = "[[portals]]\nlisten = \"127.0.0.1:3260\"\n[[targets]]\nname = \"iqn.2026-11.io.palisade:t\"\n\
                        [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n";

    #[test]
    fn absent_table_gives_defaults() {
        let c = Config::from_toml_str(BASE, Path::new("/")).unwrap();
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.max_registrants_per_lun, 4096);
    }

    #[test]
    fn values_and_sizes_are_read() {
        let text = format!(
            "{BASE}[limits]\nmax_sessions = 10\nmax_sessions_per_target = 3\nmax_connections_per_address = 4\n\
             login_idle_timeout_secs = 2\nmax_session_data_bytes = \"8MiB\"\nmax_send_queue_bytes = \"1MiB\"\n\
             send_timeout_secs = 7\nmax_registrants_per_lun = 256\n"
        );
        let l = Config::from_toml_str(&text, Path::new("/")).unwrap().limits;
        assert_eq!(
            l,
            LimitsConfig {
                max_sessions: 10,
                max_sessions_per_target: 3,
                max_connections_per_address: 4,
                login_idle_timeout_secs: 2,
                max_session_data_bytes: 8 << 20,
                max_send_queue_bytes: 1 << 20,
                send_timeout_secs: 7,
                max_registrants_per_lun: 256,
            }
        );
    }

    #[test]
    fn out_of_range_and_unknown_keys_are_named() {
        let text = format!(
            "{BASE}[limits]\nmax_sessions = 0\nmax_session_data_bytes = 100\nsend_timeout_secs = 0\n\
             max_registrants_per_lun = 65536\n"
        );
        let err = Config::from_toml_str(&text, Path::new("/")).unwrap_err().to_string();
        for field in [
            "limits.max_sessions",
            "limits.max_session_data_bytes",
            "limits.send_timeout_secs",
            "limits.max_registrants_per_lun",
        ] {
            assert!(err.contains(field), "{field} not reported in: {err}");
        }
        let text = format!("{BASE}[limits]\nmax_session = 3\n");
        assert!(Config::from_toml_str(&text, Path::new("/")).is_err(), "a typo must not fall back to a default");
    }
}
