//! One exchange at a time on a raw connection in Full Feature Phase: a SCSI command with its
//! R2Ts and Data-In (RFC 7143 §11.3-§11.8), task management (§11.5), NOP-Out (§11.18), Text and
//! SendTargets (§11.10, Appendix C), logout (§11.14). Nothing runs concurrently: what
//! arrives that does not belong to the exchange is an error the caller sees.

use bytes::Bytes;
use pdu::msg::scsi::attr;
use pdu::msg::{
    logout, DataOut, LogoutRequest, LogoutResponse, NopIn, NopOut, R2t, ScsiCommand, TargetPdu, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse,
};
use pdu::text::TextAccumulator;
use pdu::RESERVED_TAG;

use crate::cdb;
use crate::error::Error;
use crate::raw::{RawConnection, ANSWER_TIMEOUT};
use crate::sense::Sense;

/// Longest SendTargets answer we assemble from continued Text Responses.
const MAX_TEXT_ANSWER: usize = 1 << 20;

/// What a SCSI command ended with.
#[derive(Debug, Clone)]
pub struct ScsiOutcome {
    pub status: u8,
    /// iSCSI service response (RFC 7143 §11.4.3).
    pub response: u8,
    pub sense: Option<Bytes>,
    pub data: Vec<u8>,
}

impl ScsiOutcome {
    pub fn sense(&self) -> Option<Sense> {
        Sense::parse(self.sense.as_deref()?)
    }

    /// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
    pub fn sense_triple(&self) -> Option<(u8, u8, u8)> {
        self.sense().map(|s| s.triple())
    }
}

fn lun_field(lun: u64) -> Result<u64, Error> {
    cdb::lun_field(lun).ok_or_else(|| Error::new(format!("LUN {lun} is not a single-level LUN (SAM-5 §4.7)")))
}

impl RawConnection {
    /// A NOP-Out ping (RFC 7143 §11.18) that takes the next CmdSN (not sent).
    pub fn nop_out(&mut self, data: &[u8]) -> NopOut {
        NopOut {
            immediate: false,
            lun: 0,
            itt: self.new_itt(),
            ttt: RESERVED_TAG,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::copy_from_slice(data),
        }
    }

    /// The answer to a target's ping (NOP-In with a TTT): RFC 7143 §11.18.3, its TTT in an
    /// immediate NOP-Out with the reserved ITT (not sent).
    pub fn answer_to_ping(&self, ping: &NopIn) -> NopOut {
        NopOut {
            immediate: true,
            lun: ping.lun,
            itt: RESERVED_TAG,
            ttt: ping.ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::new(),
        }
    }

    /// A SCSI Command PDU (SIMPLE task) taking the next CmdSN (not sent).
    pub fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        read_len: u32,
        write_len: u32,
        immediate_data: &[u8],
    ) -> Result<ScsiCommand, Error> {
        if cdb.len() > 16 {
            return Err(Error::new("CDBs over 16 bytes need an AHS; build that PDU by hand"));
        }
        let mut full = [0u8; 16];
        full[..cdb.len()].copy_from_slice(cdb);
        Ok(ScsiCommand {
            immediate: false,
            final_bit: true,
            read: read_len > 0,
            write: write_len > 0,
            attr: attr::SIMPLE,
            lun: lun_field(lun)?,
            itt: self.new_itt(),
            expected_data_transfer_length: read_len.max(write_len),
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            cdb: full,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: Bytes::copy_from_slice(immediate_data),
        })
    }

    /// Collects the Data-In and SCSI Response of command `itt`, answering R2Ts from `write`
    /// and the target's NOP-In pings (a long command leaves the connection idle).
    pub async fn complete(&mut self, itt: u32, lun: u64, write: &[u8]) -> Result<ScsiOutcome, Error> {
        let mut data = Vec::new();
        loop {
            match self.recv_msg(self.answer_timeout).await? {
                TargetPdu::DataIn(d) if d.itt == itt => {
                    // §13.18: DataPDUInOrder=Yes (the default, and what we offer), so offsets follow on.
                    if d.buffer_offset as usize != data.len() {
                        return Err(Error::new(format!(
                            "Data-In at offset {} after {} bytes",
                            d.buffer_offset,
                            data.len()
                        )));
                    }
                    data.extend_from_slice(&d.data);
                    if let Some(status) = d.status {
                        return Ok(ScsiOutcome { status, response: 0, sense: None, data });
                    }
                }
                TargetPdu::R2t(r) if r.itt == itt => self.answer_r2t(&r, lun, write).await?,
                TargetPdu::ScsiResponse(rsp) if rsp.itt == itt => {
                    return Ok(ScsiOutcome { status: rsp.status, response: rsp.response, sense: rsp.sense(), data });
                }
                TargetPdu::NopIn(ping) if ping.ttt != RESERVED_TAG => {
                    let answer = self.answer_to_ping(&ping);
                    self.send(&answer.encode()).await?;
                }
                other => return Err(Error::new(format!("unexpected PDU while waiting for task {itt:#x}: {other:?}"))),
            }
        }
    }

    /// Sends the solicited Data-Out answering `r2t` (§11.8), in PDUs the target can take.
    pub async fn answer_r2t(&mut self, r2t: &R2t, lun: u64, write: &[u8]) -> Result<(), Error> {
        let end = r2t.buffer_offset as usize + r2t.desired_data_transfer_length as usize;
        if end > write.len() {
            return Err(Error::new(format!("R2T for bytes up to {end} of a {}-byte write", write.len())));
        }
        let mut offset = r2t.buffer_offset as usize;
        let mut data_sn = 0;
        let step = self.target_max_recv.max(512) as usize;
        while offset < end {
            let len = (end - offset).min(step);
            let d = DataOut {
                final_bit: offset + len == end,
                lun: lun_field(lun)?,
                itt: r2t.itt,
                ttt: r2t.ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: offset as u32,
                data: Bytes::copy_from_slice(&write[offset..offset + len]),
            };
            self.send(&d.encode()).await?;
            offset += len;
            data_sn += 1;
        }
        Ok(())
    }

    /// Runs a command to completion; write data goes in answer to R2Ts.
    pub async fn exec(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> Result<ScsiOutcome, Error> {
        let cmd = self.command(lun, cdb, read_len, write.len() as u32, &[])?;
        self.send(&cmd.encode()).await?;
        self.complete(cmd.itt, lun, write).await
    }

    /// Task management request (RFC 7143 §11.5), immediate; returns the response.
    pub async fn task_mgmt(
        &mut self,
        function: u8,
        lun: u64,
        referenced_itt: u32,
        ref_cmd_sn: u32,
    ) -> Result<TaskMgmtResponse, Error> {
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: lun_field(lun)?,
            itt: self.new_itt(),
            referenced_task_tag: referenced_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        };
        self.send(&req.encode()).await?;
        match self.recv_msg(ANSWER_TIMEOUT).await? {
            TargetPdu::TaskMgmt(rsp) if rsp.itt == req.itt => Ok(rsp),
            other => Err(Error::new(format!("expected the Task Management Response, got {other:?}"))),
        }
    }

    /// One Text Request (RFC 7143 §11.10) and its Text Response, continued or not.
    pub async fn text_round(&mut self, itt: u32, ttt: u32, keys: &[(&str, &str)]) -> Result<TextResponse, Error> {
        let req = TextRequest {
            immediate: false,
            final_bit: true,
            cont: false,
            lun: 0,
            itt,
            ttt,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            data: pdu::text::encode(keys),
        };
        self.send(&req.encode()).await?;
        match self.recv_msg(ANSWER_TIMEOUT).await? {
            TargetPdu::Text(rsp) if rsp.itt == itt => Ok(rsp),
            other => Err(Error::new(format!("expected a Text Response, got {other:?}"))),
        }
    }

    /// A Text exchange, following continued responses (§11.10.2: an empty request with the
    /// target's TTT asks for more) until the final one; returns every key of the answer.
    pub async fn text(&mut self, keys: &[(&str, &str)]) -> Result<Vec<(String, String)>, Error> {
        let itt = self.new_itt();
        let mut acc = TextAccumulator::default();
        let mut rsp = self.text_round(itt, RESERVED_TAG, keys).await?;
        let mut total = 0;
        loop {
            total += rsp.data.len();
            if total > MAX_TEXT_ANSWER {
                return Err(Error::new("Text Response longer than 1 MiB"));
            }
            if let Some(keys) = acc.push(&rsp.data, rsp.cont)? {
                if rsp.final_bit {
                    return Ok(keys);
                }
                return Err(Error::new("Text Response neither final nor continued"));
            }
            rsp = self.text_round(itt, rsp.ttt, &[]).await?;
        }
    }

    /// SendTargets (RFC 7143 Appendix C; `All` in a Discovery session, or a target name):
    /// the (TargetName, [TargetAddress…]) records of the answer.
    pub async fn send_targets(&mut self, which: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
        let mut targets: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in self.text(&[("SendTargets", which)]).await? {
            match (k.as_str(), targets.last_mut()) {
                ("TargetName", _) => targets.push((v, Vec::new())),
                ("TargetAddress", Some(last)) => last.1.push(v),
                _ => return Err(Error::new(format!("unexpected key {k}={v} in a SendTargets answer"))),
            }
        }
        Ok(targets)
    }

    /// Logout Request (RFC 7143 §11.14) closing the session (from any connection) or only
    /// connection `cid`; returns the Logout Response.
    pub async fn logout(&mut self, close_session: bool, cid: u16) -> Result<LogoutResponse, Error> {
        let reason = if close_session { logout::reason::CLOSE_SESSION } else { logout::reason::CLOSE_CONNECTION };
        let req = LogoutRequest {
            immediate: true,
            reason,
            itt: self.new_itt(),
            cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(&req.encode()).await?;
        match self.recv_msg(ANSWER_TIMEOUT).await? {
            TargetPdu::Logout(rsp) if rsp.itt == req.itt => Ok(rsp),
            other => Err(Error::new(format!("expected a Logout Response, got {other:?}"))),
        }
    }
}
