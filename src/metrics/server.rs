//! Server-wide counters: login outcomes by status (RFC 7143 §11.13.5) and Reject PDUs by
//! reason (§11.17.1). Bumped once per login or Reject, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Status-Class 0..=3 × Status-Detail 0..=15 (larger details share the last slot).
const LOGIN_SLOTS: usize = 4 * 16;
/// Reject reasons 0x00..=0x0f; reason 0 (reserved) also collects anything out of range.
const REJECT_SLOTS: usize = 16;

#[derive(Debug)]
pub struct ServerCounters {
    logins: [AtomicU64; LOGIN_SLOTS],
    rejects: [AtomicU64; REJECT_SLOTS],
}

impl Default for ServerCounters {
    fn default() -> Self {
        ServerCounters {
            logins: std::array::from_fn(|_| AtomicU64::new(0)),
            rejects: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ServerCounters {
    /// A login phase ended with this final Login Response status.
    pub fn login(&self, class: u8, detail: u8) {
        self.logins[login_slot(class, detail)].fetch_add(1, Relaxed);
    }

    /// A Reject PDU was sent.
    pub fn reject(&self, reason: u8) {
        let slot = if (reason as usize) < REJECT_SLOTS { reason as usize } else { 0 };
        self.rejects[slot].fetch_add(1, Relaxed);
    }

    /// Non-zero login counts as (status name, count).
    pub fn logins(&self) -> Vec<(String, u64)> {
        (0..LOGIN_SLOTS)
            .filter_map(|slot| {
                let n = self.logins[slot].load(Relaxed);
                (n > 0).then(|| (login_status_name((slot / 16) as u8, (slot % 16) as u8), n))
            })
            .collect()
    }

    /// Non-zero Reject counts as (reason name, count).
    pub fn rejects(&self) -> Vec<(String, u64)> {
        (0..REJECT_SLOTS)
            .filter_map(|slot| {
                let n = self.rejects[slot].load(Relaxed);
                (n > 0).then(|| (reject_reason_name(slot as u8), n))
            })
            .collect()
    }
}

fn login_slot(class: u8, detail: u8) -> usize {
    (class.min(3) as usize) * 16 + detail.min(15) as usize
}

/// RFC 7143 §11.13.5 status names, snake_case for metric labels.
pub fn login_status_name(class: u8, detail: u8) -> String {
    let name = match (class, detail) {
        (0, 0) => "success",
        (1, 1) => "target_moved_temporarily",
        (1, 2) => "target_moved_permanently",
        (2, 0) => "initiator_error",
        (2, 1) => "authentication_failure",
        (2, 2) => "authorization_failure",
        (2, 3) => "not_found",
        (2, 4) => "target_removed",
        (2, 5) => "unsupported_version",
        (2, 6) => "too_many_connections",
        (2, 7) => "missing_parameter",
        (2, 8) => "cant_include_in_session",
        (2, 9) => "session_type_not_supported",
        (2, 10) => "session_does_not_exist",
        (2, 11) => "invalid_during_login",
        (3, 0) => "target_error",
        (3, 1) => "service_unavailable",
        (3, 2) => "out_of_resources",
        _ => return format!("class{class}_detail{detail:02x}"),
    };
    name.to_string()
}

/// RFC 7143 §11.17.1 Reject reason names.
pub fn reject_reason_name(reason: u8) -> String {
    let name = match reason {
        0x02 => "data_digest_error",
        0x03 => "snack_reject",
        0x04 => "protocol_error",
        0x05 => "command_not_supported",
        0x06 => "immediate_command_rejected",
        0x07 => "task_in_progress",
        0x08 => "invalid_data_ack",
        0x09 => "invalid_pdu_field",
        0x0a => "long_operation_reject",
        0x0b => "negotiation_reset",
        0x0c => "waiting_for_logout",
        _ => return format!("reason_{reason:02x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_rejects_are_counted_by_name() {
        let c = ServerCounters::default();
        c.login(0, 0);
        c.login(0, 0);
        c.login(2, 1);
        c.login(2, 0x40);
        c.reject(0x04);
        c.reject(0x99);
        assert_eq!(
            c.logins(),
            vec![
                ("success".to_string(), 2),
                ("authentication_failure".to_string(), 1),
                ("class2_detail0f".to_string(), 1)
            ]
        );
        assert_eq!(c.rejects(), vec![("reason_00".to_string(), 1), ("protocol_error".to_string(), 1)]);
    }
}
