//! What the admin socket reports, as serde structs shared by the server (which builds them
//! from the live registry) and the CLI (which prints them). Read-only: nothing here can change
//! the server, and no CHAP user name or secret is ever part of a view.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::iscsi::login::SessionType;
use crate::iscsi::registry::{format_portal, Registry};
use crate::iscsi::session::Session;
use crate::pr::{PrType, RegistrantId, TargetPort};

/// One session in Full Feature Phase (RFC 7143 §4.2.7, negotiated keys per §13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub tsih: u16,
    /// "normal" or "discovery".
    pub session_type: String,
    pub initiator: String,
    /// "0x" and 12 hex digits.
    pub isid: String,
    /// "<initiator>,i,0x<ISID>" (RFC 7143 §4.2.7.1).
    pub initiator_port: String,
    pub target: Option<String>,
    /// "<target>,t,0x<TPGT>".
    pub target_port: Option<String>,
    pub peer: Option<String>,
    /// "address:port,tpgt" of the portal the connection arrived on.
    pub portal: Option<String>,
    pub tpgt: Option<u16>,
    pub cid: Option<u16>,
    /// RFC 3339, UTC.
    pub login_time: String,
    pub login_unix_secs: u64,
    pub commands_in_flight: usize,
    pub params: ParamsView,
}

/// Negotiated operational keys (RFC 7143 §13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamsView {
    /// "CRC32C" or "None" (§13.1).
    pub header_digest: String,
    pub data_digest: String,
    /// What the target accepts per PDU (§13.12, declared by the target).
    pub max_recv_data_segment_length_target: u32,
    /// What the initiator accepts per PDU (declared by the initiator).
    pub max_recv_data_segment_length_initiator: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    pub max_connections: u16,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
}

/// Reservation state of one logical unit (SPC-4 §5.13, READ FULL STATUS material).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LunReservations {
    pub target: String,
    pub lun: u64,
    pub generation: u32,
    pub aptpl: bool,
    pub registrants: Vec<RegistrantView>,
    /// Registrations the LU accepts (`[limits] max_registrants_per_lun`); 0 from a server
    /// that predates the setting.
    #[serde(default)]
    pub max_registrants: usize,
    pub reservation: Option<ReservationView>,
    /// SPC-2 RESERVE holder (initiator port), if any.
    pub spc2_holder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrantView {
    /// Reservation key as "0x" and 16 hex digits (JSON numbers lose 64-bit precision).
    pub key: String,
    /// TransportID form (SPC-4 §7.6.4.6): "<name>,i,0x<ISID>", or the bare name for a
    /// registration of every port of an initiator device.
    pub initiator_port: String,
    /// "<target>,t,0x<TPGT>"; None when registered with ALL_TG_PT.
    pub target_port: Option<String>,
    pub all_tg_pt: bool,
    /// Holds the reservation (every registrant does for the all-registrants types).
    pub holder: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationView {
    /// SPC-4 Table 212 TYPE code.
    pub type_code: u8,
    /// E.g. "WERO".
    pub type_short: String,
    /// E.g. "Write Exclusive, Registrants Only".
    pub type_name: String,
    /// Only LU_SCOPE exists (SPC-4 §6.15.3.3).
    pub scope: String,
    pub all_registrants: bool,
    /// The registrant that holds (for all-registrants types: created) the reservation.
    pub holder_key: String,
    pub holder_initiator_port: String,
    pub holder_target_port: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LunView {
    pub target: String,
    pub lun: u64,
    /// "file", "file (O_DIRECT)", "memory" or "block".
    pub backend: String,
    pub path: Option<String>,
    pub size_bytes: u64,
    pub block_size: u32,
    pub blocks: u64,
    pub read_only: bool,
    pub serial: String,
    /// NAA designator (VPD 83h) as "0x" and 16 hex digits.
    pub naa: String,
    pub product: String,
}

/// Backend details the running LUN does not keep (file paths), taken from the configuration.
#[derive(Debug, Clone, Default)]
pub struct BackendNotes {
    /// (target, LUN) → (backend description, path).
    pub by_lun: HashMap<(String, u64), (String, Option<String>)>,
}

pub fn sessions(registry: &Registry) -> Vec<SessionView> {
    let mut all: Vec<SessionView> = registry.sessions.all().iter().map(|s| session_view(s)).collect();
    all.sort_by(|a, b| (&a.target, &a.initiator, &a.isid, a.tsih).cmp(&(&b.target, &b.initiator, &b.isid, b.tsih)));
    all
}

fn session_view(s: &Session) -> SessionView {
    let isid: String = s.isid.iter().map(|b| format!("{b:02x}")).collect();
    let origin = s.origin();
    let tpgt = s.nexus.as_ref().map(|n| n.target.tpgt).or(origin.map(|o| o.portal.tpgt));
    let p = &s.params;
    let digest = |on: bool| if on { "CRC32C" } else { "None" }.to_string();
    let login_unix_secs = s.login_time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SessionView {
        tsih: s.tsih,
        session_type: match s.kind {
            SessionType::Normal => "normal",
            SessionType::Discovery => "discovery",
        }
        .into(),
        initiator: s.initiator_name.clone(),
        isid: format!("0x{isid}"),
        initiator_port: crate::nexus::InitiatorPort::new(&s.initiator_name, s.isid).to_string(),
        target: s.target.as_ref().map(|t| t.name.clone()),
        target_port: s.nexus.as_ref().map(|n| n.target.to_string()),
        peer: origin.map(|o| o.peer.to_string()),
        portal: origin.map(|o| format_portal(&o.portal.addr, o.portal.tpgt)),
        tpgt,
        cid: origin.map(|o| o.cid),
        login_time: rfc3339(login_unix_secs),
        login_unix_secs,
        commands_in_flight: match (&s.target, &s.nexus) {
            (Some(target), Some(nexus)) => target.scsi.running_tasks(nexus),
            _ => 0,
        },
        params: ParamsView {
            header_digest: digest(p.header_digest),
            data_digest: digest(p.data_digest),
            max_recv_data_segment_length_target: p.max_recv_data_segment_length_target,
            max_recv_data_segment_length_initiator: p.max_recv_data_segment_length_initiator,
            max_burst_length: p.max_burst_length,
            first_burst_length: p.first_burst_length,
            immediate_data: p.immediate_data,
            initial_r2t: p.initial_r2t,
            max_outstanding_r2t: p.max_outstanding_r2t,
            max_connections: p.max_connections,
            error_recovery_level: p.error_recovery_level,
            default_time2wait: p.default_time2wait,
            default_time2retain: p.default_time2retain,
            data_pdu_in_order: p.data_pdu_in_order,
            data_sequence_in_order: p.data_sequence_in_order,
        },
    }
}

pub fn reservations(registry: &Registry) -> Vec<LunReservations> {
    let mut out = Vec::new();
    for target in sorted_targets(registry) {
        for lun in target.scsi.luns() {
            let state = lun.pr().snapshot();
            let registrants = state
                .registrants
                .iter()
                .map(|r| RegistrantView {
                    key: hex_key(r.key),
                    initiator_port: r.id.initiator.display_name(),
                    target_port: r.id.target.as_ref().map(target_port),
                    all_tg_pt: r.id.target.is_none(),
                    holder: state.holds(&r.id),
                })
                .collect();
            let reservation = state.reservation.as_ref().map(|res| {
                let holder_key = state.registrants.iter().find(|r| r.id == res.holder).map_or(0, |r| r.key);
                let (short, name) = type_names(res.kind);
                ReservationView {
                    type_code: res.kind.code(),
                    type_short: short.into(),
                    type_name: name.into(),
                    scope: "LU_SCOPE".into(),
                    all_registrants: res.kind.all_registrants(),
                    holder_key: hex_key(holder_key),
                    holder_initiator_port: res.holder.initiator.display_name(),
                    holder_target_port: holder_target(&res.holder),
                }
            });
            out.push(LunReservations {
                target: target.name.clone(),
                lun: lun.id(),
                generation: state.generation,
                aptpl: state.aptpl,
                registrants,
                max_registrants: lun.pr().max_registrants(),
                reservation,
                spc2_holder: lun.state().reservation.as_ref().map(ToString::to_string),
            });
        }
    }
    out
}

pub fn luns(registry: &Registry, notes: &BackendNotes) -> Vec<LunView> {
    let mut out = Vec::new();
    for target in sorted_targets(registry) {
        for lun in target.scsi.luns() {
            let kind = match lun.backend() {
                Backend::File(_) => "file",
                Backend::Memory(_) => "memory",
                Backend::BlockDevice(_) => "block",
            };
            let (backend, path) =
                notes.by_lun.get(&(target.name.clone(), lun.id())).cloned().unwrap_or_else(|| (kind.to_string(), None));
            let identity = lun.identity();
            out.push(LunView {
                target: target.name.clone(),
                lun: lun.id(),
                backend,
                path,
                size_bytes: lun.block_count() * lun.block_size() as u64,
                block_size: lun.block_size(),
                blocks: lun.block_count(),
                read_only: lun.read_only(),
                serial: identity.serial.clone(),
                naa: format!("0x{:016x}", identity.naa),
                product: identity.product.clone(),
            });
        }
    }
    out
}

pub(super) fn sorted_targets(registry: &Registry) -> Vec<std::sync::Arc<crate::iscsi::registry::TargetEntry>> {
    let mut targets: Vec<_> = registry.targets().collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    targets
}

fn hex_key(key: u64) -> String {
    format!("0x{key:016x}")
}

/// RFC 7143 §4.2.7.1 target port name.
fn target_port(t: &TargetPort) -> String {
    format!("{},t,0x{:04x}", t.name, t.tpgt)
}

fn holder_target(id: &RegistrantId) -> Option<String> {
    id.target.as_ref().map(target_port)
}

/// SPC-4 §6.15.3.4 Table 206.
fn type_names(t: PrType) -> (&'static str, &'static str) {
    match t {
        PrType::WriteExclusive => ("WE", "Write Exclusive"),
        PrType::ExclusiveAccess => ("EA", "Exclusive Access"),
        PrType::WriteExclusiveRegistrantsOnly => ("WERO", "Write Exclusive, Registrants Only"),
        PrType::ExclusiveAccessRegistrantsOnly => ("EARO", "Exclusive Access, Registrants Only"),
        PrType::WriteExclusiveAllRegistrants => ("WEAR", "Write Exclusive, All Registrants"),
        PrType::ExclusiveAccessAllRegistrants => ("EAAR", "Exclusive Access, All Registrants"),
    }
}

/// Seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (proleptic Gregorian, UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil-from-days (H. Hinnant): shift the era to start on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Seconds a session has been logged in, for tables.
pub fn age_secs(login_unix_secs: u64) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).saturating_sub(login_unix_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
