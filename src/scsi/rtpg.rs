//! REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.37): every target port group of the
//! server with its access state, the states it can take, its status code and its ports.

use super::alua::Alua;

/// SPC-4 §6.37 table 355 PARAMETER DATA FORMAT (CDB byte 1 bits 7-5) 001b.
const EXTENDED_HEADER: u8 = 0x01;

/// Supported-state bits of a target port group descriptor (SPC-4 §6.37 target port group descriptor): T_SUP,
/// U_SUP, S_SUP, AN_SUP and AO_SUP, since the SCSI layer honours each of those states
/// (`commands::AluaAccess`); no Offline (O_SUP) or logical block dependent (LBD_SUP) state.
const SUPPORTED_STATES: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

/// The parameter data, untruncated (the caller cuts it at the ALLOCATION LENGTH, SPC-4
/// §4.2.5.6). `on_this_target` picks the relative ports that belong to the addressed SCSI
/// target device (its portal groups), so a target limited to some portals lists only those.
pub(crate) fn report_target_port_groups(cdb: &[u8], alua: &Alua, on_this_target: impl Fn(u16) -> bool) -> Vec<u8> {
    let extended = cdb[1] >> 5 == EXTENDED_HEADER;
    let mut out = vec![0u8; 4];
    if extended {
        // FORMAT TYPE 001b (bits 6-4), IMPLICIT TRANSITION TIME, two reserved bytes.
        out.extend_from_slice(&[0x10, alua.implicit_transition_secs(), 0, 0]);
    }
    for report in alua.reports() {
        let ports: Vec<u16> = report.group.relative_ports.iter().copied().filter(|&p| on_this_target(p)).collect();
        // §6.37: every target port group contains at least one target port; a group with none
        // of this target's ports is not one of its groups.
        if ports.is_empty() {
            continue;
        }
        // PREF = 0: no group is preferred over another.
        out.push(report.group.state.code());
        out.push(SUPPORTED_STATES);
        out.extend_from_slice(&report.group.id.to_be_bytes());
        out.push(0);
        out.push(report.status as u8);
        out.push(0); // vendor specific
        out.push(ports.len().min(255) as u8);
        for port in ports.iter().take(255) {
            // Target port descriptor: two obsolete bytes, RELATIVE TARGET PORT IDENTIFIER.
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    // RETURN DATA LENGTH: the bytes after itself, extended header included (§6.37).
    let length = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&length.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::alua::{AccessState, PortGroup};

    fn cdb(format: u8) -> [u8; 12] {
        [0xA3, (format << 5) | 0x0A, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
    }

    #[test]
    fn single_node_length_only_header() {
        let alua = Alua::single_node(1, vec![1, 2]);
        let data = report_target_port_groups(&cdb(0), &alua, |_| true);
        assert_eq!(
            data,
            vec![
                0, 0, 0, 16, // RETURN DATA LENGTH
                0x00, 0x8F, 0, 1, 0, 0x00, 0, 2, // AO, T/U/S/AN/AO supported, group 1, no status, 2 ports
                0, 0, 0, 1, 0, 0, 0, 2, // relative ports 1 and 2
            ]
        );
        // A target that has only portal group 2 lists only that port.
        let data = report_target_port_groups(&cdb(0), &alua, |p| p == 2);
        assert_eq!(&data[..4], &[0, 0, 0, 12]);
        assert_eq!(&data[11..], &[1, 0, 0, 0, 2]);
        // No port of this target in any group: no group to report.
        assert_eq!(report_target_port_groups(&cdb(0), &alua, |_| false), vec![0, 0, 0, 0]);
    }

    #[test]
    fn cluster_extended_header_states_and_status_codes() {
        let alua = Alua::gateway(1, &[1]);
        alua.set_implicit_transition_secs(30);
        let peer = PortGroup { id: 2, state: AccessState::ActiveOptimized, relative_ports: vec![0x201] };
        alua.set_groups(vec![alua.groups()[0].clone(), peer]);
        alua.set_local_state(AccessState::Transitioning);
        let data = report_target_port_groups(&cdb(1), &alua, |_| true);
        assert_eq!(&data[..8], &[0, 0, 0, 28, 0x10, 30, 0, 0]);
        assert_eq!(u32::from_be_bytes(data[..4].try_into().unwrap()) as usize, data.len() - 4);
        // Own group: Transitioning, altered implicitly, port 0x0101.
        assert_eq!(&data[8..20], &[0x0F, 0x8F, 0, 1, 0, 0x02, 0, 1, 0, 0, 0x01, 0x01]);
        // Gateway 2: Active/Optimized, appeared implicitly, port 0x0201.
        assert_eq!(&data[20..32], &[0x00, 0x8F, 0, 2, 0, 0x02, 0, 1, 0, 0, 0x02, 0x01]);
    }
}
