//! PDU opcodes (RFC 7143 §11.2.1.2). An open newtype so that unknown values survive decoding
//! and can be answered with a Reject instead of being lost.

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    // Initiator opcodes.
    pub const NOP_OUT: Opcode = Opcode(0x00);
    pub const SCSI_COMMAND: Opcode = Opcode(0x01);
    pub const TASK_MGMT_REQUEST: Opcode = Opcode(0x02);
    pub const LOGIN_REQUEST: Opcode = Opcode(0x03);
    pub const TEXT_REQUEST: Opcode = Opcode(0x04);
    pub const SCSI_DATA_OUT: Opcode = Opcode(0x05);
    pub const LOGOUT_REQUEST: Opcode = Opcode(0x06);
    pub const SNACK_REQUEST: Opcode = Opcode(0x10);
    // Target opcodes.
    pub const NOP_IN: Opcode = Opcode(0x20);
    pub const SCSI_RESPONSE: Opcode = Opcode(0x21);
    pub const TASK_MGMT_RESPONSE: Opcode = Opcode(0x22);
    pub const LOGIN_RESPONSE: Opcode = Opcode(0x23);
    pub const TEXT_RESPONSE: Opcode = Opcode(0x24);
    pub const SCSI_DATA_IN: Opcode = Opcode(0x25);
    pub const LOGOUT_RESPONSE: Opcode = Opcode(0x26);
    pub const R2T: Opcode = Opcode(0x31);
    pub const ASYNC_MESSAGE: Opcode = Opcode(0x32);
    pub const REJECT: Opcode = Opcode(0x3f);

    /// Opcodes an initiator sends (RFC 7143 §11.2.1.2: 0x00-0x1f are initiator opcodes).
    pub fn is_initiator(self) -> bool {
        self.0 < 0x20
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NOP_OUT => "NOP-Out",
            Self::SCSI_COMMAND => "SCSI-Command",
            Self::TASK_MGMT_REQUEST => "Task-Mgmt-Request",
            Self::LOGIN_REQUEST => "Login-Request",
            Self::TEXT_REQUEST => "Text-Request",
            Self::SCSI_DATA_OUT => "Data-Out",
            Self::LOGOUT_REQUEST => "Logout-Request",
            Self::SNACK_REQUEST => "SNACK-Request",
            Self::NOP_IN => "NOP-In",
            Self::SCSI_RESPONSE => "SCSI-Response",
            Self::TASK_MGMT_RESPONSE => "Task-Mgmt-Response",
            Self::LOGIN_RESPONSE => "Login-Response",
            Self::TEXT_RESPONSE => "Text-Response",
            Self::SCSI_DATA_IN => "Data-In",
            Self::LOGOUT_RESPONSE => "Logout-Response",
            Self::R2T => "R2T",
            Self::ASYNC_MESSAGE => "Async-Message",
            Self::REJECT => "Reject",
            _ => "Unknown",
        }
    }
}

impl std::fmt::Debug for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(0x{:02x})", self.name(), self.0)
    }
}
