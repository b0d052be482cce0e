//! Validation of `[session]`: the operational values the target offers at login.

use super::model::SessionConfig;
use super::raw::RawSession;
use super::size::SizeValue;
use super::validate::Validator;

/// RFC 7143 §13.12–§13.14: data segment and burst lengths range over 512..=2^24-1.
const DATA_LENGTH_RANGE: std::ops::RangeInclusive<i64> = 512..=16_777_215;
/// Seconds: an hour bounds every timer so a typo cannot park a connection for days.
const TIMER_RANGE_SECS: i64 = 3600;

impl Validator<'_> {
    pub(super) fn session(&mut self, raw: &RawSession) -> SessionConfig {
        let defaults = SessionConfig::default();
        let length = |v: &mut Self, key: &str, value: Option<SizeValue>, default: u32| -> u32 {
            match value {
                None => default,
                Some(SizeValue(bytes)) => {
                    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                    v.ranged(&format!("session.{key}"), bytes, DATA_LENGTH_RANGE).unwrap_or(default)
                }
            }
        };
        let max_recv_data_segment_length = length(
            self,
            "max_recv_data_segment_length",
            raw.max_recv_data_segment_length,
            defaults.max_recv_data_segment_length,
        );
        let max_burst_length = length(self, "max_burst_length", raw.max_burst_length, defaults.max_burst_length);
        let first_burst_length =
            length(self, "first_burst_length", raw.first_burst_length, defaults.first_burst_length);
        // RFC 7143 §13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        if first_burst_length > max_burst_length {
            self.problem(
                "session.first_burst_length",
                format!("{first_burst_length} exceeds max_burst_length {max_burst_length} (RFC 7143 §13.14)"),
            );
        }
        let number =
            |v: &mut Self, key: &str, value: Option<i64>, range: std::ops::RangeInclusive<i64>, default: u64| -> u64 {
                value.and_then(|n| v.ranged::<u64>(&format!("session.{key}"), n, range)).unwrap_or(default)
            };
        let nop_interval_secs =
            number(self, "nop_interval_secs", raw.nop_interval_secs, 0..=TIMER_RANGE_SECS, defaults.nop_interval_secs);
        let nop_timeout_secs =
            number(self, "nop_timeout_secs", raw.nop_timeout_secs, 1..=TIMER_RANGE_SECS, defaults.nop_timeout_secs);
        let login_timeout_secs = number(
            self,
            "login_timeout_secs",
            raw.login_timeout_secs,
            1..=TIMER_RANGE_SECS,
            defaults.login_timeout_secs,
        );
        // RFC 7143 §13.17: MaxOutstandingR2T is 1..=65535.
        let max_outstanding_r2t = number(
            self,
            "max_outstanding_r2t",
            raw.max_outstanding_r2t,
            1..=65535,
            defaults.max_outstanding_r2t.into(),
        ) as u32;
        // Each queued command may hold buffers; 4096 bounds memory per session.
        let max_cmdsn_window =
            number(self, "max_cmdsn_window", raw.max_cmdsn_window, 1..=4096, defaults.max_cmdsn_window.into()) as u32;
        SessionConfig {
            nop_interval_secs,
            nop_timeout_secs,
            max_recv_data_segment_length,
            max_burst_length,
            first_burst_length,
            max_outstanding_r2t,
            immediate_data: raw.immediate_data.unwrap_or(defaults.immediate_data),
            initial_r2t: raw.initial_r2t.unwrap_or(defaults.initial_r2t),
            max_cmdsn_window,
            login_timeout_secs,
        }
    }
}
