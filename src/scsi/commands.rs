//! The command table: every implemented opcode with its CDB usage mask (SPC-4 §6.35.3, the
//! same bits REPORT SUPPORTED OPERATION CODES reports), so CDB validation is generic.

use super::sense::{Sense, SenseReason};

/// Which handler runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    TestUnitReady,
    RequestSense,
    Read6,
    Write6,
    Inquiry,
    ModeSelect6,
    ModeSense6,
    StartStopUnit,
    ReadCapacity10,
    Read10,
    Write10,
    Verify10,
    SynchronizeCache10,
    WriteSame10,
    Unmap,
    ModeSelect10,
    ModeSense10,
    Read16,
    Write16,
    Verify16,
    SynchronizeCache16,
    WriteSame16,
    ReadCapacity16,
    ReportLuns,
    ReportSupportedOpcodes,
    Read12,
    Write12,
    Verify12,
    WriteVerify10,
    WriteVerify12,
    WriteVerify16,
    CompareAndWrite,
    OrWrite16,
    PreFetch10,
    PreFetch16,
    GetLbaStatus,
    ReadDefectData10,
    ReadDefectData12,
    ReportSupportedTmf,
    ExtendedCopy,
    ReceiveCopyStatus,
    ReceiveCopyOperatingParameters,
    Reserve6,
    Release6,
    Reserve10,
    Release10,
    PersistentReserveIn,
    PersistentReserveOut,
}

#[derive(Debug)]
pub(crate) struct CommandInfo {
    pub opcode: u8,
    /// Service action (CDB byte 1 bits 4..0) for commands that have one.
    pub service_action: Option<u8>,
    pub command: Command,
    /// CDB usage data: byte 0 is the opcode, every other byte the bits this target accepts.
    pub usage: &'static [u8],
}

/// INQUIRY (SPC-4 §6.6), REPORT LUNS (§6.33) and REQUEST SENSE (§6.39) are answered for any
/// LUN, present or not, and (SAM-5 §5.14) neither report nor clear unit attentions.
pub(crate) fn answers_without_lun(opcode: u8) -> bool {
    matches!(opcode, 0x12 | 0xA0 | 0x03)
}

/// SPC-2 §5.5.1 (reservations): commands another I_T nexus may still run while the logical
/// unit is reserved; RELEASE from a non-holder succeeds without effect (SPC-2 §7.17).
pub(crate) fn allowed_when_reserved(command: Command) -> bool {
    matches!(
        command,
        Command::Inquiry | Command::ReportLuns | Command::RequestSense | Command::Release6 | Command::Release10
    )
}

const fn cmd(opcode: u8, command: Command, usage: &'static [u8]) -> CommandInfo {
    CommandInfo { opcode, service_action: None, command, usage }
}

const fn cmd_sa(opcode: u8, sa: u8, command: Command, usage: &'static [u8]) -> CommandInfo {
    CommandInfo { opcode, service_action: Some(sa), command, usage }
}

use Command::*;

/// Sorted by opcode then service action; REPORT SUPPORTED OPERATION CODES lists it as is.
/// Usage masks: DPO|FUA = 0x18 in READ/WRITE byte 1; group number bits accepted and ignored;
/// protection fields (RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT) rejected since no protection is
/// offered; ANCHOR (WRITE SAME, UNMAP) rejected since ANC_SUP is zero (SBC-3 §6.6.4).
pub(crate) static COMMANDS: &[CommandInfo] = &[
    cmd(0x00, TestUnitReady, &[0x00, 0, 0, 0, 0, 0]),
    cmd(0x03, RequestSense, &[0x03, 0x01, 0, 0, 0xFF, 0]),
    cmd(0x08, Read6, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    cmd(0x0A, Write6, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    cmd(0x12, Inquiry, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0]),
    cmd(0x15, ModeSelect6, &[0x15, 0x10, 0, 0, 0xFF, 0]),
    cmd(0x16, Reserve6, &[0x16, 0, 0, 0, 0, 0]),
    cmd(0x17, Release6, &[0x17, 0, 0, 0, 0, 0]),
    cmd(0x1A, ModeSense6, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0]),
    cmd(0x1B, StartStopUnit, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0]),
    cmd(0x25, ReadCapacity10, &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0]),
    cmd(0x28, Read10, &[0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x2A, Write10, &[0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x2E, WriteVerify10, &[0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x2F, Verify10, &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x34, PreFetch10, &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x35, SynchronizeCache10, &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x37, ReadDefectData10, &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    cmd(0x41, WriteSame10, &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x42, Unmap, &[0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0]),
    cmd(0x55, ModeSelect10, &[0x55, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    cmd(0x56, Reserve10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd(0x57, Release10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd(0x5A, ModeSense10, &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0]),
    // SPC-4 §6.14 PERSISTENT RESERVE IN: READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
    // READ FULL STATUS. §6.15 PERSISTENT RESERVE OUT: service actions 0-7, SCOPE/TYPE byte 2.
    cmd_sa(0x5E, 0x00, PersistentReserveIn, PRIN_USAGE),
    cmd_sa(0x5E, 0x01, PersistentReserveIn, PRIN_USAGE),
    cmd_sa(0x5E, 0x02, PersistentReserveIn, PRIN_USAGE),
    cmd_sa(0x5E, 0x03, PersistentReserveIn, PRIN_USAGE),
    cmd_sa(0x5F, 0x00, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x01, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x02, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x03, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x04, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x05, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x06, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x5F, 0x07, PersistentReserveOut, PROUT_USAGE),
    cmd_sa(0x83, 0x00, ExtendedCopy, &[0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    cmd_sa(0x84, 0x00, ReceiveCopyStatus, &[0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    cmd_sa(
        0x84,
        0x03,
        ReceiveCopyOperatingParameters,
        &[0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    ),
    cmd(0x88, Read16, &[0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(0x89, CompareAndWrite, &[0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0]),
    cmd(0x8A, Write16, &[0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(
        0x8B,
        OrWrite16,
        &[0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    cmd(
        0x8E,
        WriteVerify16,
        &[0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    cmd(0x8F, Verify16, &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(
        0x90,
        PreFetch16,
        &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    cmd(
        0x91,
        SynchronizeCache16,
        &[0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    cmd(
        0x93,
        WriteSame16,
        &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    cmd_sa(
        0x9E,
        0x10,
        ReadCapacity16,
        &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0],
    ),
    cmd_sa(
        0x9E,
        0x12,
        GetLbaStatus,
        &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    ),
    cmd(0xA0, ReportLuns, &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    cmd_sa(0xA3, 0x0C, ReportSupportedOpcodes, &[0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    cmd_sa(0xA3, 0x0D, ReportSupportedTmf, &[0xA3, 0x1F, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    cmd(0xA8, Read12, &[0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(0xAA, Write12, &[0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(0xAE, WriteVerify12, &[0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(0xAF, Verify12, &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    cmd(0xB7, ReadDefectData12, &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
];

const PRIN_USAGE: &[u8] = &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0];
const PROUT_USAGE: &[u8] = &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0];

/// How each command fares under a persistent reservation held by another I_T nexus (SPC-4
/// §5.13.1 Table 66, SBC-3 §4.17 Table 13). Exhaustive on purpose: a new command must be
/// classified before it compiles.
pub(crate) fn pr_class(command: Command, cdb: &[u8]) -> crate::pr::PrClass {
    use crate::pr::PrClass::*;
    match command {
        Inquiry
        | ReportLuns
        | RequestSense
        | TestUnitReady
        | ReadCapacity10
        | ReadCapacity16
        | ReportSupportedOpcodes
        | ReportSupportedTmf
        | PersistentReserveIn => Allowed,
        // PR OUT service actions decide their own conflicts (SPC-4 §5.13.2, apply.rs).
        PersistentReserveOut => Allowed,
        // SBC-3 Table 13: START STOP UNIT with START=1 and no power condition is allowed.
        StartStopUnit if cdb[4] & 0x01 != 0 && cdb[4] >> 4 == 0 => Allowed,
        Read6 | Read10 | Read12 | Read16 | Verify10 | Verify12 | Verify16 | ModeSense6 | ModeSense10 | PreFetch10
        | PreFetch16 | GetLbaStatus | ReadDefectData10 | ReadDefectData12 => Read,
        // SPC-4 Table 66: RECEIVE COPY RESULTS reads the copy manager's state of this LU.
        ReceiveCopyStatus | ReceiveCopyOperatingParameters => Read,
        Write6 | Write10 | Write12 | Write16 | WriteSame10 | WriteSame16 | Unmap | SynchronizeCache10
        | SynchronizeCache16 | ModeSelect6 | ModeSelect10 | StartStopUnit => Write,
        // Every command that may modify the medium (SBC-3 Table 13); EXTENDED COPY is judged as
        // a write here and again for each LU it touches.
        WriteVerify10 | WriteVerify12 | WriteVerify16 | CompareAndWrite | OrWrite16 | ExtendedCopy => Write,
        Reserve6 | Reserve10 | Release6 | Release10 => Spc2,
    }
}

/// True when some entry for `opcode` is selected by a service action.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    COMMANDS.iter().any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// Looks the CDB up: unknown opcode → INVALID COMMAND OPERATION CODE (SPC-4 Annex D),
/// unknown service action → INVALID FIELD IN CDB on the service action field.
pub(crate) fn lookup(cdb: &[u8]) -> Result<&'static CommandInfo, Sense> {
    let opcode = cdb[0];
    if has_service_actions(opcode) {
        let sa = cdb[1] & 0x1F;
        return COMMANDS
            .iter()
            .find(|c| c.opcode == opcode && c.service_action == Some(sa))
            .ok_or(Sense::invalid_cdb_field(1, Some(4)));
    }
    COMMANDS.iter().find(|c| c.opcode == opcode).ok_or(SenseReason::InvalidOpcode.into())
}

/// Rejects any CDB bit outside the usage mask (SPC-4 §6.35.3: a set bit the device server does
/// not support → INVALID FIELD IN CDB with a field pointer to the highest offending bit).
pub(crate) fn check_usage(info: &CommandInfo, cdb: &[u8]) -> Result<(), Sense> {
    for (i, (&byte, &allowed)) in cdb.iter().zip(info.usage).enumerate().skip(1) {
        let bad = byte & !allowed;
        if bad != 0 {
            return Err(Sense::invalid_cdb_field(i, Some(7 - bad.leading_zeros() as u8)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_usage_starts_with_opcode() {
        for pair in COMMANDS.windows(2) {
            assert!((pair[0].opcode, pair[0].service_action) < (pair[1].opcode, pair[1].service_action));
        }
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode);
            assert!(matches!(c.usage.len(), 6 | 10 | 12 | 16));
        }
    }

    #[test]
    fn lookup_and_usage_checks() {
        assert_eq!(lookup(&[0x5D, 0]).unwrap_err().reason, SenseReason::InvalidOpcode);
        // SPC-4 §6.14.1: an unknown PR IN service action is an invalid CDB field.
        assert_eq!(lookup(&[0x5E, 0x04]).unwrap_err(), Sense::invalid_cdb_field(1, Some(4)));
        assert_eq!(lookup(&[0x5F, 0x07]).unwrap().command, Command::PersistentReserveOut);
        assert_eq!(lookup(&[0x9E, 0x11]).unwrap_err(), Sense::invalid_cdb_field(1, Some(4)));
        let read10 = lookup(&[0x28]).unwrap();
        assert_eq!(read10.command, Command::Read10);
        let mut cdb = [0x28, 0x18, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(check_usage(read10, &cdb).is_ok());
        cdb[1] = 0x20; // RDPROTECT
        assert_eq!(check_usage(read10, &cdb).unwrap_err(), Sense::invalid_cdb_field(1, Some(5)));
        cdb[1] = 0;
        cdb[9] = 0x04; // NACA
        assert_eq!(check_usage(read10, &cdb).unwrap_err(), Sense::invalid_cdb_field(9, Some(2)));
    }
}
