//! Plain-text tables for the CLI: left-aligned columns two spaces apart.

use std::fmt::Write;

use super::view::{age_secs, LunReservations, LunView, SessionView};
use crate::config::format_size;

/// Renders `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from(indent);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `palisade pr show`: per LUN, the reservation and every registration.
pub fn reservations(luns: &[LunReservations]) -> String {
    if luns.is_empty() {
        return "no logical units\n".into();
    }
    let mut out = String::new();
    for l in luns {
        let _ = writeln!(
            out,
            "{} LUN {}: PRgeneration {}, APTPL {}, {} registration(s) of at most {}",
            l.target,
            l.lun,
            l.generation,
            if l.aptpl { "on" } else { "off" },
            l.registrants.len(),
            l.max_registrants
        );
        match &l.reservation {
            Some(r) if r.all_registrants => {
                let _ = writeln!(
                    out,
                    "  reservation: {} ({}, type {}, {}): every registrant holds it",
                    r.type_short, r.type_name, r.type_code, r.scope
                );
            }
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  reservation: {} ({}, type {}, {}) held by key {} via {} at {}",
                    r.type_short,
                    r.type_name,
                    r.type_code,
                    r.scope,
                    r.holder_key,
                    r.holder_initiator_port,
                    r.holder_target_port.as_deref().unwrap_or("every target port")
                );
            }
            None => out.push_str("  reservation: none\n"),
        }
        if let Some(holder) = &l.spc2_holder {
            let _ = writeln!(out, "  SPC-2 reservation held by {holder}");
        }
        if !l.registrants.is_empty() {
            let rows: Vec<Vec<String>> = l
                .registrants
                .iter()
                .map(|r| {
                    vec![
                        r.key.clone(),
                        if r.holder { "yes" } else { "" }.into(),
                        r.initiator_port.clone(),
                        r.target_port.clone().unwrap_or_else(|| "all (ALL_TG_PT)".into()),
                    ]
                })
                .collect();
            out.push_str(&table(&["KEY", "HOLDER", "INITIATOR PORT", "TARGET PORT"], &rows, "  "));
        }
    }
    out
}

/// `palisade sessions`.
pub fn sessions(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let p = &s.params;
            vec![
                s.tsih.to_string(),
                s.session_type.clone(),
                s.initiator.clone(),
                s.isid.clone(),
                s.target.clone().unwrap_or_else(|| "-".into()),
                s.peer.clone().unwrap_or_else(|| "-".into()),
                s.portal.clone().unwrap_or_else(|| "-".into()),
                format!("{} ({})", s.login_time, duration(age_secs(s.login_unix_secs))),
                format!("{}/{}", p.header_digest, p.data_digest),
                format!("{}/{}", p.max_recv_data_segment_length_target, p.max_recv_data_segment_length_initiator),
                format!("{}/{}", p.max_burst_length, p.first_burst_length),
                format!("{}/{}", yes_no(p.immediate_data), yes_no(p.initial_r2t)),
                p.max_outstanding_r2t.to_string(),
                s.commands_in_flight.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TSIH",
            "TYPE",
            "INITIATOR",
            "ISID",
            "TARGET",
            "PEER",
            "PORTAL",
            "LOGIN (UTC)",
            "DIGESTS H/D",
            "MRDSL T/I",
            "BURST MAX/FIRST",
            "IMMED/INITR2T",
            "MAXR2T",
            "IN FLIGHT",
        ],
        &rows,
        "",
    )
}

/// `palisade luns`.
pub fn luns(luns: &[LunView]) -> String {
    if luns.is_empty() {
        return "no logical units\n".into();
    }
    let rows: Vec<Vec<String>> = luns
        .iter()
        .map(|l| {
            vec![
                l.target.clone(),
                l.lun.to_string(),
                l.backend.clone(),
                format_size(l.size_bytes),
                l.block_size.to_string(),
                if l.read_only { "ro" } else { "rw" }.into(),
                l.serial.clone(),
                l.naa.clone(),
                l.path.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["TARGET", "LUN", "BACKEND", "SIZE", "BLOCK", "MODE", "SERIAL", "NAA", "PATH"], &rows, "")
}

/// `palisade cluster status`: this gateway's membership, then every gateway it has seen.
pub fn cluster(c: &crate::cluster::status::ClusterView) -> String {
    let state = serde_json::to_value(c.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let admitted = c.writes_admitted_for_ms.map_or("no (fenced)".to_string(), |ms| format!("for {ms} ms"));
    let mut out = format!(
        "gateway {} {state}, lease {:x} (TTL {} ms, self-fence margin {} ms), last keepalive acknowledged {} ms ago, writes admitted {admitted}, self-fence events {}\n",
        c.gateway_id, c.lease_id, c.lease_ttl_ms, c.self_fence_margin_ms, c.last_ack_age_ms, c.self_fence_events
    );
    let rows: Vec<Vec<String>> = c
        .gateways
        .iter()
        .map(|g| {
            let ports: Vec<String> = g.relative_ports.iter().map(|p| format!("{p:#06x}")).collect();
            vec![
                g.id.to_string(),
                if g.live { "live" } else { "gone" }.into(),
                g.pid.to_string(),
                g.portals.join(" "),
                ports.join(" "),
            ]
        })
        .collect();
    out += &table(&["GATEWAY", "STATE", "PID", "PORTALS", "RELATIVE PORTS"], &rows, "");
    if !c.reservations.is_empty() {
        // Per LU: the reservation state this gateway holds, and the revision each gateway has
        // applied and drained (a gateway behind the others holds PR OUT barriers up).
        let rows: Vec<Vec<String>> = c
            .reservations
            .iter()
            .map(|r| {
                let acks: Vec<String> = r.acknowledged.iter().map(|(g, rev)| format!("{g}:{rev}")).collect();
                vec![
                    r.target.clone(),
                    r.lun.to_string(),
                    r.applied_revision.to_string(),
                    r.generation.to_string(),
                    r.registrants.to_string(),
                    yes_no(r.reserved).into(),
                    acks.join(" "),
                ]
            })
            .collect();
        out += "\n";
        out += &table(
            &["TARGET", "LUN", "PR REVISION", "PRGENERATION", "REGISTRANTS", "RESERVED", "APPLIED BY GATEWAY"],
            &rows,
            "",
        );
        let pr = &c.pr_out;
        out += &format!(
            "PR OUT committed {}, lost races {}, failed {}; barrier waits {} ms total, {} ms longest\n",
            pr.committed, pr.lost_races, pr.failed, pr.barrier_ms_total, pr.barrier_ms_max
        );
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::{RegistrantView, ReservationView};
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]], "");
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }

    #[test]
    fn reservation_table_names_holder_type_and_ports() {
        let l = LunReservations {
            target: "iqn.t".into(),
            lun: 0,
            generation: 3,
            aptpl: false,
            registrants: vec![
                RegistrantView {
                    key: "0x0000000000000abc".into(),
                    initiator_port: "iqn.a,i,0x800000000001".into(),
                    target_port: Some("iqn.t,t,0x0001".into()),
                    all_tg_pt: false,
                    holder: true,
                },
                RegistrantView {
                    key: "0x0000000000000def".into(),
                    initiator_port: "iqn.b,i,0x800000000002".into(),
                    target_port: None,
                    all_tg_pt: true,
                    holder: false,
                },
            ],
            max_registrants: 4096,
            reservation: Some(ReservationView {
                type_code: 5,
                type_short: "WERO".into(),
                type_name: "Write Exclusive, Registrants Only".into(),
                scope: "LU_SCOPE".into(),
                all_registrants: false,
                holder_key: "0x0000000000000abc".into(),
                holder_initiator_port: "iqn.a,i,0x800000000001".into(),
                holder_target_port: Some("iqn.t,t,0x0001".into()),
            }),
            spc2_holder: None,
        };
        let text = reservations(&[l]);
        assert!(
            text.starts_with("iqn.t LUN 0: PRgeneration 3, APTPL off, 2 registration(s) of at most 4096\n"),
            "{text}"
        );
        assert!(text.contains("held by key 0x0000000000000abc via iqn.a,i,0x800000000001 at iqn.t,t,0x0001"), "{text}");
        assert!(text.contains("  0x0000000000000abc  yes     iqn.a,i,0x800000000001  iqn.t,t,0x0001\n"), "{text}");
        assert!(text.contains("  0x0000000000000def          iqn.b,i,0x800000000002  all (ALL_TG_PT)\n"), "{text}");
    }
}
