//! Sense data (SPC-4 §4.5): one reason enum, one (key, ASC, ASCQ) table, fixed or descriptor
//! encoding chosen by the control mode page D_SENSE bit.

use bytes::{BufMut, Bytes, BytesMut};
use std::io;

/// SPC-4 §4.5.6 sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const COPY_ABORTED: u8 = 0xA;
    pub const ABORTED_COMMAND: u8 = 0xB;
    pub const MISCOMPARE: u8 = 0xE;
}

/// Every condition this target reports, each with one fixed (key, ASC, ASCQ) (SPC-4 Table D.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseReason {
    NoSense,
    InvalidOpcode,
    LbaOutOfRange,
    InvalidFieldInCdb,
    LunNotSupported,
    InvalidFieldInParameterList,
    ParameterListLengthError,
    SavingParametersNotSupported,
    WriteProtected,
    SoftwareWriteProtected,
    SpaceAllocationFailedWriteProtect,
    UnrecoveredReadError,
    WriteError,
    MiscompareDuringVerify,
    InternalTargetFailure,
    PowerOnReset,
    BusDeviceResetFunction,
    ItNexusLoss,
    ModeParametersChanged,
    LogicalUnitNotReady,
    /// SPC-4 §5.16.2.5: the target port group is Transitioning (02/04/0A).
    AsymmetricAccessStateTransition,
    /// SPC-4 §5.16.2.4.4: LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (02/04/0B).
    TargetPortInStandbyState,
    /// SPC-4 §5.16.2.4.5: LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE (02/04/0C).
    TargetPortInUnavailableState,
    /// SPC-4 §5.16.2.5: a target port group's access state changed (06/2A/06).
    AsymmetricAccessStateChanged,
    /// RFC 7143 §11.4.7.2 / SPC-4: a data digest failed on the command's data.
    ProtocolServiceCrcError,
    /// SPC-4 Table D.1, ASC 4Bh: the iSCSI data sequence broke (DataSN, offset, TTT).
    DataPhaseError,
    InvalidTargetPortTransferTag,
    DataOffsetError,
    /// RFC 7143 §11.4.7.2: unsolicited data the negotiation did not allow.
    UnexpectedUnsolicitedData,
    /// RFC 7143 §11.4.7.2: more or less data than the rules allow.
    IncorrectAmountOfData,
    // Persistent reservations (SPC-4 §5.13, Annex D).
    ReservationsPreempted,
    ReservationsReleased,
    RegistrationsPreempted,
    InvalidReleaseOfPersistentReservation,
    InsufficientRegistrationResources,
    /// SPC-4 §6.4 EXTENDED COPY parameter list conditions (ASC 26h) and copy failures.
    TooManyTargetDescriptors,
    UnsupportedTargetDescriptorType,
    TooManySegmentDescriptors,
    UnsupportedSegmentDescriptorType,
    /// A command with the same list identifier is still running (SPC-4 §6.4.3.2).
    OperationInProgress,
    CopyAborted,
    CopyTargetDeviceNotReachable,
    /// SPC-4 Table D.1 ASC 23h INVALID TOKEN OPERATION (ROD tokens, SBC-3 §5.45 WRITE USING
    /// TOKEN): one reason per ASCQ this target reports.
    InvalidTokenCauseNotReportable,
    InvalidTokenUnsupportedType,
    InvalidTokenUnknown,
    InvalidTokenCorrupt,
    InvalidTokenRevoked,
    InvalidTokenExpired,
    InvalidTokenCancelled,
    InvalidTokenDeleted,
    InvalidTokenLength,
    /// SPC-4 Table D.1 55h/0Dh: the ROD token table is full (SBC-3 §5.8 POPULATE TOKEN).
    InsufficientResourcesToCreateRodToken,
}

impl SenseReason {
    /// (sense key, ASC, ASCQ).
    pub fn code(self) -> (u8, u8, u8) {
        use key::*;
        use SenseReason::*;
        match self {
            NoSense => (NO_SENSE, 0x00, 0x00),
            InvalidOpcode => (ILLEGAL_REQUEST, 0x20, 0x00),
            LbaOutOfRange => (ILLEGAL_REQUEST, 0x21, 0x00),
            InvalidFieldInCdb => (ILLEGAL_REQUEST, 0x24, 0x00),
            LunNotSupported => (ILLEGAL_REQUEST, 0x25, 0x00),
            InvalidFieldInParameterList => (ILLEGAL_REQUEST, 0x26, 0x00),
            ParameterListLengthError => (ILLEGAL_REQUEST, 0x1A, 0x00),
            SavingParametersNotSupported => (ILLEGAL_REQUEST, 0x39, 0x00),
            WriteProtected => (DATA_PROTECT, 0x27, 0x00),
            SoftwareWriteProtected => (DATA_PROTECT, 0x27, 0x02),
            SpaceAllocationFailedWriteProtect => (DATA_PROTECT, 0x27, 0x07),
            UnrecoveredReadError => (MEDIUM_ERROR, 0x11, 0x00),
            WriteError => (MEDIUM_ERROR, 0x0C, 0x00),
            MiscompareDuringVerify => (MISCOMPARE, 0x1D, 0x00),
            InternalTargetFailure => (HARDWARE_ERROR, 0x44, 0x00),
            PowerOnReset => (UNIT_ATTENTION, 0x29, 0x00),
            BusDeviceResetFunction => (UNIT_ATTENTION, 0x29, 0x03),
            ItNexusLoss => (UNIT_ATTENTION, 0x29, 0x07),
            ModeParametersChanged => (UNIT_ATTENTION, 0x2A, 0x01),
            LogicalUnitNotReady => (NOT_READY, 0x04, 0x00),
            AsymmetricAccessStateTransition => (NOT_READY, 0x04, 0x0A),
            TargetPortInStandbyState => (NOT_READY, 0x04, 0x0B),
            TargetPortInUnavailableState => (NOT_READY, 0x04, 0x0C),
            AsymmetricAccessStateChanged => (UNIT_ATTENTION, 0x2A, 0x06),
            ProtocolServiceCrcError => (ABORTED_COMMAND, 0x47, 0x05),
            DataPhaseError => (ABORTED_COMMAND, 0x4B, 0x00),
            InvalidTargetPortTransferTag => (ABORTED_COMMAND, 0x4B, 0x01),
            DataOffsetError => (ABORTED_COMMAND, 0x4B, 0x05),
            UnexpectedUnsolicitedData => (ABORTED_COMMAND, 0x0C, 0x0C),
            IncorrectAmountOfData => (ABORTED_COMMAND, 0x0C, 0x0D),
            ReservationsPreempted => (UNIT_ATTENTION, 0x2A, 0x03),
            ReservationsReleased => (UNIT_ATTENTION, 0x2A, 0x04),
            RegistrationsPreempted => (UNIT_ATTENTION, 0x2A, 0x05),
            InvalidReleaseOfPersistentReservation => (ILLEGAL_REQUEST, 0x26, 0x04),
            InsufficientRegistrationResources => (ILLEGAL_REQUEST, 0x55, 0x04),
            TooManyTargetDescriptors => (ILLEGAL_REQUEST, 0x26, 0x06),
            UnsupportedTargetDescriptorType => (ILLEGAL_REQUEST, 0x26, 0x07),
            TooManySegmentDescriptors => (ILLEGAL_REQUEST, 0x26, 0x08),
            UnsupportedSegmentDescriptorType => (ILLEGAL_REQUEST, 0x26, 0x09),
            OperationInProgress => (ILLEGAL_REQUEST, 0x00, 0x16),
            CopyAborted => (COPY_ABORTED, 0x00, 0x00),
            CopyTargetDeviceNotReachable => (COPY_ABORTED, 0x0D, 0x02),
            InvalidTokenCauseNotReportable => (ILLEGAL_REQUEST, 0x23, 0x00),
            InvalidTokenUnsupportedType => (ILLEGAL_REQUEST, 0x23, 0x01),
            InvalidTokenUnknown => (ILLEGAL_REQUEST, 0x23, 0x04),
            InvalidTokenCorrupt => (ILLEGAL_REQUEST, 0x23, 0x05),
            InvalidTokenRevoked => (ILLEGAL_REQUEST, 0x23, 0x06),
            InvalidTokenExpired => (ILLEGAL_REQUEST, 0x23, 0x07),
            InvalidTokenCancelled => (ILLEGAL_REQUEST, 0x23, 0x08),
            InvalidTokenDeleted => (ILLEGAL_REQUEST, 0x23, 0x09),
            InvalidTokenLength => (ILLEGAL_REQUEST, 0x23, 0x0A),
            InsufficientResourcesToCreateRodToken => (ILLEGAL_REQUEST, 0x55, 0x0D),
        }
    }
}

/// SPC-4 §4.5.2.4.2 field pointer: which CDB (or parameter list) byte/bit was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

impl FieldPointer {
    fn encode(self) -> [u8; 3] {
        let mut first = 0x80; // SKSV
        if self.in_cdb {
            first |= 0x40; // C/D
        }
        if let Some(bit) = self.bit {
            first |= 0x08 | (bit & 0x07); // BPV + bit pointer
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [first, hi, lo]
    }
}

/// A sense condition with its optional INFORMATION and sense-key-specific fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub reason: SenseReason,
    pub information: Option<u64>,
    pub field: Option<FieldPointer>,
}

impl From<SenseReason> for Sense {
    fn from(reason: SenseReason) -> Self {
        Sense { reason, information: None, field: None }
    }
}

impl Sense {
    /// INVALID FIELD IN CDB pointing at `byte` (and `bit` when one bit is at fault).
    pub fn invalid_cdb_field(byte: usize, bit: Option<u8>) -> Self {
        Sense {
            reason: SenseReason::InvalidFieldInCdb,
            information: None,
            field: Some(FieldPointer { in_cdb: true, byte: byte as u16, bit }),
        }
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` of the parameter data.
    pub fn invalid_param_field(byte: usize, bit: Option<u8>) -> Self {
        Sense {
            reason: SenseReason::InvalidFieldInParameterList,
            information: None,
            field: Some(FieldPointer { in_cdb: false, byte: byte as u16, bit }),
        }
    }

    /// COPY ABORTED with a segment pointer (SPC-4 §4.5.2.4.5, SD zero) at `byte` of the
    /// EXTENDED COPY parameter list.
    pub fn copy_aborted_at(byte: usize) -> Self {
        Sense {
            reason: SenseReason::CopyAborted,
            information: None,
            field: Some(FieldPointer { in_cdb: false, byte: byte as u16, bit: None }),
        }
    }

    pub fn with_information(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// Encodes as descriptor format (0x72, SPC-4 §4.5.2) or fixed format (0x70, SPC-4 §4.5.3).
    pub fn encode(&self, descriptor: bool) -> Bytes {
        if descriptor {
            self.encode_descriptor()
        } else {
            self.encode_fixed()
        }
    }

    fn encode_fixed(&self) -> Bytes {
        let (key, asc, ascq) = self.reason.code();
        let mut buf = [0u8; 18];
        buf[0] = 0x70;
        buf[2] = key;
        if let Some(info) = self.information {
            // Fixed format INFORMATION is 4 bytes; VALID only when the value fits (§4.5.3).
            if let Ok(info) = u32::try_from(info) {
                buf[0] |= 0x80;
                buf[3..7].copy_from_slice(&info.to_be_bytes());
            }
        }
        buf[7] = 10;
        buf[12] = asc;
        buf[13] = ascq;
        if let Some(field) = self.field {
            buf[15..18].copy_from_slice(&field.encode());
        }
        Bytes::copy_from_slice(&buf)
    }

    fn encode_descriptor(&self) -> Bytes {
        let (key, asc, ascq) = self.reason.code();
        let mut buf = BytesMut::with_capacity(8 + 12 + 8);
        buf.put_slice(&[0x72, key, asc, ascq, 0, 0, 0, 0]);
        if let Some(info) = self.information {
            // §4.5.2.2 information descriptor: type 0, length 0Ah, VALID.
            buf.put_slice(&[0x00, 0x0A, 0x80, 0x00]);
            buf.put_u64(info);
        }
        if let Some(field) = self.field {
            // §4.5.2.3 sense key specific descriptor: type 2, length 6.
            buf.put_slice(&[0x02, 0x06, 0x00, 0x00]);
            buf.put_slice(&field.encode());
            buf.put_u8(0);
        }
        buf[7] = (buf.len() - 8) as u8;
        buf.freeze()
    }

    /// The one place backend errors become sense (SBC-3 §4.18 error reporting).
    pub fn from_io(err: &io::Error, writing: bool) -> Self {
        let reason = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => SenseReason::SpaceAllocationFailedWriteProtect,
            Some(libc::EROFS) => SenseReason::WriteProtected,
            Some(libc::EIO) if writing => SenseReason::WriteError,
            Some(libc::EIO) => SenseReason::UnrecoveredReadError,
            _ if err.kind() == io::ErrorKind::UnexpectedEof => SenseReason::UnrecoveredReadError,
            _ => SenseReason::InternalTargetFailure,
        };
        Sense::from(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_invalid_field_in_cdb_with_bit_pointer() {
        let sense = Sense::invalid_cdb_field(1, Some(3)).encode(false);
        assert_eq!(&sense[..], &[0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xC8 | 3, 0x00, 0x01]);
    }

    #[test]
    fn descriptor_format_carries_information_and_field_pointer() {
        let sense = Sense::from(SenseReason::MiscompareDuringVerify).with_information(0x1_0000_0005);
        let bytes = sense.encode(true);
        assert_eq!(&bytes[..8], &[0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12]);
        assert_eq!(&bytes[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(&bytes[12..20], &0x1_0000_0005u64.to_be_bytes());

        let bytes = Sense::invalid_param_field(7, None).encode(true);
        assert_eq!(&bytes[..], &[0x72, 5, 0x26, 0, 0, 0, 0, 8, 2, 6, 0, 0, 0x80, 0, 7, 0]);
    }

    #[test]
    fn fixed_information_only_valid_when_it_fits() {
        let small = Sense::from(SenseReason::MiscompareDuringVerify).with_information(513).encode(false);
        assert_eq!(small[0], 0xF0);
        assert_eq!(&small[3..7], &513u32.to_be_bytes());
        let big = Sense::from(SenseReason::MiscompareDuringVerify).with_information(1 << 40).encode(false);
        assert_eq!(big[0], 0x70);
    }

    #[test]
    fn io_errors_map_to_medium_and_space_errors() {
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(Sense::from_io(&eio, false).reason.code(), (3, 0x11, 0));
        assert_eq!(Sense::from_io(&eio, true).reason.code(), (3, 0x0C, 0));
        let nospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Sense::from_io(&nospc, true).reason.code(), (7, 0x27, 0x07));
    }
}
