//! The initiator of the block-command tests (libiscsi-bin has no generic "send this CDB" tool):
//! `palisade-initiator` through the blocking raw initiator, logged in with InitialR2T=Yes and ImmediateData=No, so every write goes
//! through R2T / Data-Out, with a patient per-PDU timeout for slow commands (large UNMAP, XCOPY).
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use initiator::sense::Sense;

use super::raw_initiator::{LoginOptions, RawInitiator};

/// The outcome of one command.
#[derive(Debug, Clone)]
pub struct CmdResult {
    pub status: u8,
    pub sense: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

impl CmdResult {
    pub fn is_good(&self) -> bool {
        self.status == 0
    }

    fn parsed_sense(&self) -> Option<Sense> {
        Sense::parse(self.sense.as_deref()?)
    }

    /// (sense key, ASC, ASCQ) from fixed or descriptor sense; panics without sense data.
    pub fn sense_code(&self) -> (u8, u8, u8) {
        let s = self.parsed_sense().unwrap_or_else(|| panic!("no usable sense data: {self:?}"));
        s.triple()
    }

    /// The INFORMATION field when VALID is set (SPC-4 §4.5.3; §4.5.2.2 in descriptor format).
    pub fn information(&self) -> Option<u32> {
        self.parsed_sense()?.information.map(|i| u32::try_from(i).expect("INFORMATION fits 32 bits"))
    }
}

pub struct BlockInitiator {
    raw: RawInitiator,
}

impl BlockInitiator {
    /// Logs in to `target` at `portal` ("host:port") as `initiator`; `isid_tail` makes the
    /// session (I_T nexus) distinct.
    pub fn connect(portal: &str, target: &str, initiator: &str, isid_tail: u8) -> BlockInitiator {
        let opts = LoginOptions::normal(initiator, target)
            .isid([0x80, 0x00, 0x00, 0x00, 0x42, isid_tail])
            .key("InitialR2T", "Yes")
            .key("ImmediateData", "No")
            .key("MaxBurstLength", "1048576")
            .key("FirstBurstLength", "262144");
        let mut raw = RawInitiator::login_ok(portal, &opts);
        raw.answer_timeout = Duration::from_secs(60);
        BlockInitiator { raw }
    }

    /// Sends one CDB to `lun` with `data_out` (may be empty) expecting up to `data_in_len`
    /// bytes back; returns when the status arrives.
    pub fn command(&mut self, lun: u64, cdb: &[u8], data_out: &[u8], data_in_len: u32) -> CmdResult {
        let out = self.raw.exec(lun, cdb, data_in_len, data_out);
        assert_eq!(out.response, 0, "iSCSI service response (RFC 7143 §11.4.3) for CDB {cdb:02x?}");
        CmdResult { status: out.status, sense: out.sense.map(|s| s.to_vec()), data: out.data }
    }

    /// `command` as an initiator runs it: a CHECK CONDITION with UNIT ATTENTION (a state change
    /// announced before the command's own answer, e.g. ASYMMETRIC ACCESS STATE CHANGED,
    /// SPC-4 §5.16.2.5) is taken and the command sent again, up to 8 times.
    pub fn command_past_unit_attentions(
        &mut self,
        lun: u64,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: u32,
    ) -> CmdResult {
        for _ in 0..8 {
            let result = self.command(lun, cdb, data_out, data_in_len);
            if result.status != 0x02 || result.sense_code().0 != initiator::sense::UNIT_ATTENTION {
                return result;
            }
        }
        panic!("still a unit attention after 8 tries of {cdb:02x?}");
    }

    /// Shorthand: the command must succeed; returns its data-in.
    pub fn ok(&mut self, lun: u64, cdb: &[u8], data_out: &[u8], data_in_len: u32) -> Vec<u8> {
        let result = self.command(lun, cdb, data_out, data_in_len);
        assert!(result.is_good(), "CDB {cdb:02x?} failed: {result:?}");
        result.data
    }

    /// TEST UNIT READY until the power-on / reset unit attention is consumed.
    pub fn clear_unit_attention(&mut self, lun: u64) {
        self.raw.clear_unit_attention(lun);
    }
}
