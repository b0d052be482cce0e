//! Command ordering on one connection (RFC 7143 §4.2.2.1): non-immediate PDUs ahead of ExpCmdSN
//! wait here until the gap fills, and CmdSNs that ABORT TASK declared received (§11.5.1) are
//! stepped over. The window's numbers themselves (ExpCmdSN, MaxCmdSN) are the session's
//! `SeqState`, shared with the command tasks that reopen slots.

use std::collections::{BTreeMap, BTreeSet};

use pdu::msg::InitiatorPdu;
use pdu::Pdu;

use super::session::SeqState;

#[derive(Default)]
pub struct CmdWindow {
    /// Non-immediate PDUs ahead of ExpCmdSN, waiting for the gap to fill.
    held: BTreeMap<u32, (Pdu, InitiatorPdu)>,
    /// CmdSNs that never arrived but count as received (ABORT TASK, §11.5.1).
    plugged: BTreeSet<u32>,
}

impl CmdWindow {
    /// Keeps a PDU that arrived ahead of ExpCmdSN.
    pub fn hold(&mut self, cmd_sn: u32, pdu: Pdu, msg: InitiatorPdu) {
        self.held.insert(cmd_sn, (pdu, msg));
    }

    /// The held PDU that is next in line now, stepping over plugged CmdSNs.
    pub fn next_in_line(&mut self, seq: &SeqState) -> Option<(Pdu, InitiatorPdu)> {
        loop {
            let (exp, _) = seq.get();
            if self.plugged.remove(&exp) {
                // Considered received: a late copy of it is a duplicate (§4.2.2.1).
                self.held.remove(&exp);
                seq.accept_other();
                continue;
            }
            return self.held.remove(&exp);
        }
    }

    /// RFC 7143 §11.5.1: ABORT TASK of a task not found whose RefCmdSN is in the window and
    /// before the TMF: the target considers that CmdSN received, which plugs the gap (§7.2.1).
    /// A command with that CmdSN and ITT still held behind a gap is dropped as aborted.
    pub fn consider_received(&mut self, cmd_sn: u32, itt: u32) {
        match self.held.get(&cmd_sn) {
            Some((_, InitiatorPdu::ScsiCommand(c))) if c.itt == itt => {
                self.held.remove(&cmd_sn);
            }
            // Something else arrived with that CmdSN: it is received already.
            Some(_) => return,
            None => {}
        }
        self.plugged.insert(cmd_sn);
    }
}
