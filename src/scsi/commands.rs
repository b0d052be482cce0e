//! The command table: one row per implemented opcode (and service action) carrying the
//! command's policy as data — CDB usage mask (SPC-4 §6.35.3, the same bits REPORT SUPPORTED
//! OPERATION CODES reports), how it fares under another nexus' reservation, whether it is
//! answered without a logical unit, where its LBA and transfer length sit — and the handler
//! that runs it, so adding a command touches one row (FreeBSD CTL's command table is the model).
//! Lookups go through a per-opcode index built at compile time.

use super::alua::AccessState;
use super::block::{be16, be32, be64};
use super::sense::{Sense, SenseReason};
use crate::pr::PrClass;

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
    ReportTargetPortGroups,
    ExtendedCopy,
    PopulateToken,
    WriteUsingToken,
    CopyOperationAbort,
    ReceiveCopyStatus,
    ReceiveCopyOperatingParameters,
    ReceiveRodTokenInformation,
    Reserve6,
    Release6,
    Reserve10,
    Release10,
    PersistentReserveIn,
    PersistentReserveOut,
}

/// How a command fares under a persistent reservation held by another I_T nexus (SPC-4
/// §5.13.1 Table 65, SBC-3 §4.17 Table 13), before the reservation type is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrPolicy {
    Allowed,
    Reads,
    Writes,
    /// SPC-2 RESERVE/RELEASE: decided by SPC-4 §5.13.3 (CRH = 1), not by the conflict table.
    Spc2,
    /// SBC-3 Table 13: START STOP UNIT with START=1 and no power condition is allowed, any
    /// other form is treated as a write.
    StartStop,
}

impl PrPolicy {
    fn class(self, cdb: &[u8]) -> PrClass {
        match self {
            PrPolicy::Allowed => PrClass::Allowed,
            PrPolicy::Reads => PrClass::Read,
            PrPolicy::Writes => PrClass::Write,
            PrPolicy::Spc2 => PrClass::Spc2,
            PrPolicy::StartStop if cdb[4] & 0x01 != 0 && cdb[4] >> 4 == 0 => PrClass::Allowed,
            PrPolicy::StartStop => PrClass::Write,
        }
    }
}

/// In which target port asymmetric access states a command is processed (SPC-4 §5.16.2.4).
/// Active/Optimized and Active/Non-optimized process every command (§5.16.2.4.2-3); the
/// others answer NOT READY with their own ASC/ASCQ to everything their list leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AluaAccess {
    /// Only in the active states.
    Active,
    /// Also in Standby: SPC-4 §5.16.2.4.4 lists INQUIRY, LOG SELECT/SENSE, MODE SELECT/SENSE,
    /// REPORT LUNS, RECEIVE/SEND DIAGNOSTIC, REPORT/SET TARGET PORT GROUPS, REQUEST SENSE,
    /// PERSISTENT RESERVE IN/OUT and the echo buffer modes of READ/WRITE BUFFER.
    Standby,
    /// In every state: the commands Standby (§5.16.2.4.4), Unavailable (§5.16.2.4.5) and
    /// Transitioning (§5.16.2.5) all still process — INQUIRY, REPORT LUNS, REPORT TARGET PORT
    /// GROUPS and REQUEST SENSE — so a host can always learn where else to go.
    Any,
}

impl AluaAccess {
    /// Whether a command of this class runs while the target port is in `state`.
    pub(crate) fn allows(self, state: AccessState) -> bool {
        match state {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => true,
            AccessState::Standby => self != AluaAccess::Active,
            AccessState::Unavailable | AccessState::Transitioning => self == AluaAccess::Any,
        }
    }
}

/// Where a block command keeps its LOGICAL BLOCK ADDRESS and TRANSFER LENGTH (SBC-3 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LbaLayout {
    NoLba,
    /// SBC-3 §5.9/§5.35: 21-bit LBA in bytes 1-3; transfer length byte 4, zero meaning 256.
    Lba6,
    /// 32-bit LBA in bytes 2-5, 16-bit length in bytes 7-8.
    Lba10,
    /// 32-bit LBA in bytes 2-5, 32-bit length in bytes 6-9.
    Lba12,
    /// 64-bit LBA in bytes 2-9, 32-bit length in bytes 10-13.
    Lba16,
    /// SBC-3 §5.2 COMPARE AND WRITE: 64-bit LBA, NUMBER OF LOGICAL BLOCKS in byte 13.
    Lba16Count8,
}

impl LbaLayout {
    /// (LBA, transfer length in blocks, CDB byte of the transfer length field).
    pub(crate) fn read(self, cdb: &[u8]) -> (u64, u64, usize) {
        match self {
            LbaLayout::NoLba => (0, 0, 0),
            LbaLayout::Lba6 => {
                let lba = (((cdb[1] & 0x1F) as u64) << 16) | be16(&cdb[2..4]);
                (lba, if cdb[4] == 0 { 256 } else { cdb[4] as u64 }, 4)
            }
            LbaLayout::Lba10 => (be32(&cdb[2..6]), be16(&cdb[7..9]), 7),
            LbaLayout::Lba12 => (be32(&cdb[2..6]), be32(&cdb[6..10]), 6),
            LbaLayout::Lba16 => (be64(&cdb[2..10]), be32(&cdb[10..14]), 10),
            LbaLayout::Lba16Count8 => (be64(&cdb[2..10]), cdb[13] as u64, 13),
        }
    }
}

#[derive(Debug)]
pub(crate) struct CommandInfo {
    pub opcode: u8,
    /// Service action (CDB byte 1 bits 4..0) for commands that have one.
    pub service_action: Option<u8>,
    /// The handler that runs it.
    pub command: Command,
    /// CDB usage data: byte 0 is the opcode, every other byte the bits this target accepts.
    pub usage: &'static [u8],
    pub pr: PrPolicy,
    pub layout: LbaLayout,
    /// INQUIRY (SPC-4 §6.6), REPORT LUNS (§6.33) and REQUEST SENSE (§6.39) are answered for any
    /// LUN, present or not, and (SAM-5 §5.14) neither report nor clear unit attentions.
    pub without_lun: bool,
    /// SPC-2 §5.5.1: runs while another I_T nexus holds an SPC-2 reservation; RELEASE from a
    /// non-holder succeeds without effect (SPC-2 §7.17).
    pub under_spc2_reservation: bool,
    /// SPC-4 §5.16.2.4: the asymmetric access states in which it is processed.
    pub alua: AluaAccess,
}

impl CommandInfo {
    /// SPC-4 §5.13.1 class of this CDB, re-checked under the fencing gate at execution.
    pub(crate) fn pr_class(&self, cdb: &[u8]) -> PrClass {
        self.pr.class(cdb)
    }
}

const fn row(opcode: u8, command: Command, pr: PrPolicy, layout: LbaLayout, usage: &'static [u8]) -> CommandInfo {
    CommandInfo {
        opcode,
        service_action: None,
        command,
        usage,
        pr,
        layout,
        without_lun: false,
        under_spc2_reservation: false,
        alua: AluaAccess::Active,
    }
}

impl CommandInfo {
    const fn service_action(mut self, sa: u8) -> Self {
        self.service_action = Some(sa);
        self
    }
    const fn without_lun(mut self) -> Self {
        self.without_lun = true;
        self
    }
    const fn under_spc2_reservation(mut self) -> Self {
        self.under_spc2_reservation = true;
        self
    }
    const fn alua(mut self, access: AluaAccess) -> Self {
        self.alua = access;
        self
    }
}

use AluaAccess::{Any, Standby};
use Command::*;
use LbaLayout::*;
use PrPolicy::*;

/// Sorted by opcode then service action; REPORT SUPPORTED OPERATION CODES lists it as is.
/// Usage masks: DPO|FUA = 0x18 in READ/WRITE byte 1; group number bits accepted and ignored;
/// protection fields (RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT) rejected since no protection is
/// offered; ANCHOR (WRITE SAME, UNMAP) rejected since ANC_SUP is zero (SBC-3 §6.6.4).
pub(crate) static COMMANDS: &[CommandInfo] = &[
    row(0x00, TestUnitReady, Allowed, NoLba, &[0x00, 0, 0, 0, 0, 0]),
    row(0x03, RequestSense, Allowed, NoLba, &[0x03, 0x01, 0, 0, 0xFF, 0])
        .without_lun()
        .under_spc2_reservation()
        .alua(Any),
    row(0x08, Read6, Reads, Lba6, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    row(0x0A, Write6, Writes, Lba6, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    row(0x12, Inquiry, Allowed, NoLba, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0])
        .without_lun()
        .under_spc2_reservation()
        .alua(Any),
    row(0x15, ModeSelect6, Writes, NoLba, &[0x15, 0x10, 0, 0, 0xFF, 0]).alua(Standby),
    row(0x16, Reserve6, Spc2, NoLba, &[0x16, 0, 0, 0, 0, 0]),
    row(0x17, Release6, Spc2, NoLba, &[0x17, 0, 0, 0, 0, 0]).under_spc2_reservation(),
    row(0x1A, ModeSense6, Reads, NoLba, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0]).alua(Standby),
    row(0x1B, StartStopUnit, StartStop, NoLba, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0]),
    row(0x25, ReadCapacity10, Allowed, NoLba, &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0]),
    row(0x28, Read10, Reads, Lba10, &[0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x2A, Write10, Writes, Lba10, &[0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x2E, WriteVerify10, Writes, Lba10, &[0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x2F, Verify10, Reads, Lba10, &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x34, PreFetch10, Reads, Lba10, &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x35, SynchronizeCache10, Writes, Lba10, &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x37, ReadDefectData10, Reads, NoLba, &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    row(0x41, WriteSame10, Writes, Lba10, &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    row(0x42, Unmap, Writes, NoLba, &[0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0]),
    row(0x55, ModeSelect10, Writes, NoLba, &[0x55, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]).alua(Standby),
    row(0x56, Reserve10, Spc2, NoLba, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    row(0x57, Release10, Spc2, NoLba, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]).under_spc2_reservation(),
    row(0x5A, ModeSense10, Reads, NoLba, &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0]).alua(Standby),
    // SPC-4 §6.15 PERSISTENT RESERVE IN: READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
    // READ FULL STATUS. §6.16 PERSISTENT RESERVE OUT: service actions 0-7, SCOPE/TYPE byte 2;
    // its service actions decide their own conflicts (SPC-4 §5.13.1, pr/apply.rs).
    row(0x5E, PersistentReserveIn, Allowed, NoLba, PRIN_USAGE).service_action(0x00).alua(Standby),
    row(0x5E, PersistentReserveIn, Allowed, NoLba, PRIN_USAGE).service_action(0x01).alua(Standby),
    row(0x5E, PersistentReserveIn, Allowed, NoLba, PRIN_USAGE).service_action(0x02).alua(Standby),
    row(0x5E, PersistentReserveIn, Allowed, NoLba, PRIN_USAGE).service_action(0x03).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x00).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x01).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x02).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x03).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x04).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x05).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x06).alua(Standby),
    row(0x5F, PersistentReserveOut, Allowed, NoLba, PROUT_USAGE).service_action(0x07).alua(Standby),
    // EXTENDED COPY is judged as a write here and again for each LU it touches.
    row(0x83, ExtendedCopy, Writes, NoLba, &[0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
        .service_action(0x00),
    // SBC-3 §5.8 POPULATE TOKEN reads the source ranges (SBC-3 §4.17 Table 13: a read);
    // §5.45 WRITE USING TOKEN writes the destination ranges; the token's source is judged
    // again, for the writing nexus, when the copy reads it (odx.rs).
    row(0x83, PopulateToken, Reads, NoLba, TOKEN_USAGE).service_action(0x10),
    row(0x83, WriteUsingToken, Writes, NoLba, TOKEN_USAGE).service_action(0x11),
    // SPC-4 §6.3 COPY OPERATION ABORT: LIST IDENTIFIER in bytes 2-5; it only stops what this
    // nexus started.
    row(0x83, CopyOperationAbort, Allowed, NoLba, &[0x83, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .service_action(0x1C),
    // SPC-4 Table 66: RECEIVE COPY RESULTS reads the copy manager's state of this LU.
    row(0x84, ReceiveCopyStatus, Reads, NoLba, &[0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
        .service_action(0x00),
    row(
        0x84,
        ReceiveCopyOperatingParameters,
        Reads,
        NoLba,
        &[0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    )
    .service_action(0x03),
    // SPC-4 §6.28 RECEIVE ROD TOKEN INFORMATION: LIST IDENTIFIER bytes 2-5, ALLOCATION LENGTH
    // bytes 10-13.
    row(
        0x84,
        ReceiveRodTokenInformation,
        Reads,
        NoLba,
        &[0x84, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    )
    .service_action(0x07),
    row(
        0x88,
        Read16,
        Reads,
        Lba16,
        &[0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x89,
        CompareAndWrite,
        Writes,
        Lba16Count8,
        &[0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0],
    ),
    row(
        0x8A,
        Write16,
        Writes,
        Lba16,
        &[0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x8B,
        OrWrite16,
        Writes,
        Lba16,
        &[0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x8E,
        WriteVerify16,
        Writes,
        Lba16,
        &[0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x8F,
        Verify16,
        Reads,
        Lba16,
        &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x90,
        PreFetch16,
        Reads,
        Lba16,
        &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x91,
        SynchronizeCache16,
        Writes,
        Lba16,
        &[0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x93,
        WriteSame16,
        Writes,
        Lba16,
        &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0],
    ),
    row(
        0x9E,
        ReadCapacity16,
        Allowed,
        NoLba,
        &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0],
    )
    .service_action(0x10),
    row(
        0x9E,
        GetLbaStatus,
        Reads,
        Lba16,
        &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    )
    .service_action(0x12),
    row(0xA0, ReportLuns, Allowed, NoLba, &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
        .without_lun()
        .under_spc2_reservation()
        .alua(Any),
    // SPC-4 §6.37 REPORT TARGET PORT GROUPS (MAINTENANCE IN 0Ah): PARAMETER DATA FORMAT 000b
    // or 001b in byte 1 bits 7-5 (bit 5 only); allowed under every reservation (§5.13.1
    // Table 66). SET TARGET PORT GROUPS (MAINTENANCE OUT A4h/0Ah) has no row: with TPGS = 01b
    // (implicit ALUA only, §6.6.2) it is not supported (§6.45, §5.16.2.7), so opcode A4h is
    // answered INVALID COMMAND OPERATION CODE like any other unsupported command.
    row(0xA3, ReportTargetPortGroups, Allowed, NoLba, &[0xA3, 0x3F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
        .service_action(0x0A)
        .alua(Any),
    row(
        0xA3,
        ReportSupportedOpcodes,
        Allowed,
        NoLba,
        &[0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    )
    .service_action(0x0C),
    row(0xA3, ReportSupportedTmf, Allowed, NoLba, &[0xA3, 0x1F, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
        .service_action(0x0D),
    row(0xA8, Read12, Reads, Lba12, &[0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    row(0xAA, Write12, Writes, Lba12, &[0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    row(0xAE, WriteVerify12, Writes, Lba12, &[0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    row(0xAF, Verify12, Reads, Lba12, &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    row(0xB7, ReadDefectData12, Reads, NoLba, &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
];

/// POPULATE TOKEN / WRITE USING TOKEN: LIST IDENTIFIER bytes 6-9, PARAMETER LIST LENGTH
/// bytes 10-13, GROUP NUMBER byte 14 (accepted and ignored).
const TOKEN_USAGE: &[u8] = &[0x83, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0];
const PRIN_USAGE: &[u8] = &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0];
const PROUT_USAGE: &[u8] = &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0];

/// For each opcode, 1 + the index of its first row in COMMANDS (0: not implemented).
static FIRST_ROW: [u8; 256] = {
    let mut index = [0u8; 256];
    let mut i = COMMANDS.len();
    while i > 0 {
        i -= 1;
        index[COMMANDS[i].opcode as usize] = i as u8 + 1;
    }
    index
};

/// The rows of one opcode (several when it has service actions).
pub(crate) fn rows_of(opcode: u8) -> &'static [CommandInfo] {
    match FIRST_ROW[opcode as usize] {
        0 => &[],
        first => {
            let rows = &COMMANDS[first as usize - 1..];
            let n = rows.iter().take_while(|c| c.opcode == opcode).count();
            &rows[..n]
        }
    }
}

/// Looks the CDB up: unknown opcode → INVALID COMMAND OPERATION CODE (SPC-4 Annex D),
/// unknown service action → INVALID FIELD IN CDB on the service action field.
pub(crate) fn lookup(cdb: &[u8]) -> Result<&'static CommandInfo, Sense> {
    match rows_of(cdb[0]) {
        [] => Err(SenseReason::InvalidOpcode.into()),
        [only] if only.service_action.is_none() => Ok(only),
        rows => {
            let sa = cdb[1] & 0x1F;
            rows.iter().find(|c| c.service_action == Some(sa)).ok_or(Sense::invalid_cdb_field(1, Some(4)))
        }
    }
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
    fn every_row_is_found_through_the_opcode_index() {
        for c in COMMANDS {
            let mut cdb = c.usage.to_vec();
            cdb[1] = c.service_action.unwrap_or(0);
            assert!(std::ptr::eq(lookup(&cdb).unwrap(), c), "{:?}", c.command);
        }
        let implemented = (0..=255u8).filter(|&op| !rows_of(op).is_empty()).count();
        let mut opcodes: Vec<u8> = COMMANDS.iter().map(|c| c.opcode).collect();
        opcodes.dedup();
        assert_eq!(implemented, opcodes.len());
    }

    #[test]
    fn policy_columns() {
        let info = |cdb: &[u8]| lookup(cdb).unwrap();
        assert_eq!(info(&[0x28, 0]).pr_class(&[0x28; 10]), PrClass::Read);
        assert_eq!(info(&[0x2A, 0]).pr_class(&[0x2A; 10]), PrClass::Write);
        assert_eq!(info(&[0x16, 0]).pr_class(&[0x16; 6]), PrClass::Spc2);
        // START STOP UNIT: START=1 without a power condition is allowed, STOP is a write.
        assert_eq!(info(&[0x1B, 0]).pr_class(&[0x1B, 0, 0, 0, 0x01, 0]), PrClass::Allowed);
        assert_eq!(info(&[0x1B, 0]).pr_class(&[0x1B, 0, 0, 0, 0x00, 0]), PrClass::Write);
        assert!(info(&[0x12, 0]).without_lun && info(&[0x12, 0]).under_spc2_reservation);
        assert!(!info(&[0x16, 0]).under_spc2_reservation && info(&[0x17, 0]).under_spc2_reservation);
        // READ(6) transfer length 0 means 256 blocks; COMPARE AND WRITE counts in byte 13.
        assert_eq!(info(&[0x08, 0]).layout.read(&[0x08, 0x01, 0x02, 0x03, 0, 0]), (0x010203, 256, 4));
        let mut caw = [0u8; 16];
        caw[9] = 7;
        caw[13] = 2;
        assert_eq!(info(&[0x89, 0]).layout.read(&caw), (7, 2, 13));
    }

    #[test]
    fn alua_column_follows_spc4_5_15_2_4() {
        use AccessState::*;
        let info = |cdb: &[u8]| lookup(cdb).unwrap().alua;
        let everywhere = [&[0x12u8, 0][..], &[0x03, 0], &[0xA0, 0], &[0xA3, 0x0A]];
        let standby_too = [&[0x1Au8, 0][..], &[0x5A, 0], &[0x15, 0], &[0x55, 0], &[0x5E, 0x03], &[0x5F, 0x01]];
        let active_only = [&[0x00u8, 0][..], &[0x28, 0], &[0x2A, 0], &[0x25, 0], &[0x9E, 0x10], &[0xA3, 0x0C]];
        for cdb in everywhere {
            assert!([ActiveOptimized, ActiveNonOptimized, Standby, Unavailable, Transitioning]
                .into_iter()
                .all(|s| info(cdb).allows(s)));
        }
        for cdb in standby_too {
            assert!(info(cdb).allows(Standby) && info(cdb).allows(ActiveNonOptimized), "{cdb:02x?}");
            assert!(!info(cdb).allows(Unavailable) && !info(cdb).allows(Transitioning), "{cdb:02x?}");
        }
        for cdb in active_only {
            assert!(info(cdb).allows(ActiveOptimized) && info(cdb).allows(ActiveNonOptimized), "{cdb:02x?}");
            assert!(!info(cdb).allows(Standby) && !info(cdb).allows(Unavailable), "{cdb:02x?}");
            assert!(!info(cdb).allows(Transitioning), "{cdb:02x?}");
        }
        // Every row sits in one of the three lists' classes, and only the four informational
        // commands run in every state.
        let anywhere: Vec<Command> = COMMANDS.iter().filter(|c| c.alua == AluaAccess::Any).map(|c| c.command).collect();
        assert_eq!(anywhere, vec![RequestSense, Inquiry, ReportLuns, ReportTargetPortGroups]);
    }

    #[test]
    fn set_target_port_groups_is_not_supported_with_implicit_alua() {
        // SPC-4 §6.45 with TPGS = 01b: MAINTENANCE OUT / SET TARGET PORT GROUPS is unsupported.
        assert_eq!(lookup(&[0xA4, 0x0A]).unwrap_err().reason, SenseReason::InvalidOpcode);
        assert_eq!(lookup(&[0xA3, 0x0A]).unwrap().command, Command::ReportTargetPortGroups);
    }

    #[test]
    fn lookup_and_usage_checks() {
        assert_eq!(lookup(&[0x5D, 0]).unwrap_err().reason, SenseReason::InvalidOpcode);
        // SPC-4 §6.15.1: an unknown PR IN service action is an invalid CDB field.
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
