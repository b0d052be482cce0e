//! One SCSI target device: its logical units and LUN masking, the synchronous `prepare` step
//! (lookup, CDB validation, unit attentions) and the asynchronous `execute` step.

use super::alua::{AccessState, Alua};
use super::block::{prepare_io, IoOp};
use super::commands::{check_usage, lookup, Command, CommandInfo};
use super::lun::{decode_lun, Lun};
use super::pr_out::PrOut;
use super::rod_token::TokenTable;
use super::sense::{Sense, SenseReason};
use super::task::{Completion, DataOut, ItNexus, ScsiTask};
use super::task_set::{Drain, NexusTasks, StatusSink};
use super::{copy_results, inquiry, mode, odx, reports, rtpg, xcopy};
use super::{pr_in, pr_out};
use crate::nexus::IscsiName;
use crate::pr::{self, PrClass, Spc2Outcome};
use bytes::Bytes;
use pdu::be::{be16, be32};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Which LUNs each initiator (by iSCSI name, normalised: RFC 7143 §4.2.7.1) may see;
/// initiators without an entry see all.
#[derive(Debug, Clone, Default)]
pub struct LunMasking {
    allowed: HashMap<IscsiName, BTreeSet<u64>>,
}

impl LunMasking {
    /// No masking: every initiator sees every LUN.
    pub fn allow_all() -> Self {
        LunMasking::default()
    }

    /// Restricts `initiator_name` to `luns`.
    pub fn restrict(mut self, initiator_name: &str, luns: impl IntoIterator<Item = u64>) -> Self {
        self.allowed.insert(IscsiName::new(initiator_name), luns.into_iter().collect());
        self
    }

    pub fn permits(&self, initiator_name: &IscsiName, lun: u64) -> bool {
        self.allowed.get(initiator_name).is_none_or(|set| set.contains(&lun))
    }
}

/// Initiator name → allowed LUN ids; initiators absent from the map see every LUN.
impl From<HashMap<String, Vec<u64>>> for LunMasking {
    fn from(map: HashMap<String, Vec<u64>>) -> Self {
        let allowed = map.into_iter().map(|(name, luns)| (IscsiName::new(&name), luns.into_iter().collect()));
        LunMasking { allowed: allowed.collect() }
    }
}

#[derive(Debug)]
pub struct ScsiTarget {
    name: String,
    luns: BTreeMap<u64, Arc<Lun>>,
    masking: LunMasking,
    /// The server's target port groups and the access state of its own (SPC-4 §5.16.2).
    alua: Arc<Alua>,
    /// TPGTs of the portal groups this target is served on (None: every portal group).
    portal_groups: Option<BTreeSet<u16>>,
    /// ROD tokens this target made (SBC-3 §4.30); honoured by no other target.
    tokens: TokenTable,
}

/// What `execute` has left to do.
#[derive(Debug)]
enum Op {
    /// Answer already computed during `prepare`.
    Respond(Option<Bytes>),
    Io(IoOp),
    /// RESERVATION CONFLICT status (SPC-2 §5.5.1), no sense data.
    Conflict,
    ModeSelect {
        ten: bool,
        param_len: usize,
    },
    PrIn {
        action: u8,
        allocation_length: usize,
    },
    PrOut(PrOut),
    /// SPC-4 §6.5: with the LUNs this nexus may access (the only ones a copy may touch).
    ExtendedCopy {
        param_len: usize,
        visible: Vec<Arc<Lun>>,
    },
    /// SBC-3 §5.8 POPULATE TOKEN.
    PopulateToken {
        list_id: u32,
        param_len: usize,
    },
    /// SBC-3 §5.45 WRITE USING TOKEN, with the LUNs this nexus may read through a token.
    WriteUsingToken {
        list_id: u32,
        param_len: usize,
        visible: Vec<Arc<Lun>>,
    },
}

/// A validated command, ready for its data-out and execution.
#[derive(Debug)]
pub struct Prepared {
    lun: Option<Arc<Lun>>,
    nexus: Arc<ItNexus>,
    d_sense: bool,
    data_out_len: u32,
    op: Op,
    /// SPC-4 §5.13.1 class, re-checked under the fencing gate at execution.
    pr_class: PrClass,
    /// The target's ROD token table, for POPULATE TOKEN and WRITE USING TOKEN.
    tokens: Option<TokenTable>,
}

fn truncate(mut data: Vec<u8>, allocation_length: usize) -> Option<Bytes> {
    data.truncate(allocation_length);
    Some(Bytes::from(data))
}

impl ScsiTarget {
    /// Builds a target; a later LUN with a duplicate id replaces an earlier one.
    /// Its only target port group is group 1, Active/Optimized, until `with_alua`.
    pub fn new(name: String, luns: Vec<Arc<Lun>>, masking: LunMasking) -> Self {
        let luns = luns.into_iter().map(|lun| (lun.id(), lun)).collect();
        let alua = Alua::single_node(1, Vec::new());
        ScsiTarget { name, luns, masking, alua, portal_groups: None, tokens: TokenTable::default() }
    }

    /// Reports `alua`'s target port groups and obeys its local access state (SPC-4 §5.16.2);
    /// `portal_groups` are the TPGTs this target is served on (REPORT TARGET PORT GROUPS lists
    /// only their ports). Every LUN is told of state changes (§5.16.2.5 unit attention).
    pub fn with_alua(mut self, alua: Arc<Alua>, portal_groups: impl IntoIterator<Item = u16>) -> Self {
        for lun in self.luns.values() {
            alua.attach(lun);
        }
        self.alua = alua;
        self.portal_groups = Some(portal_groups.into_iter().collect());
        self
    }

    /// The RELATIVE TARGET PORT IDENTIFIER (SPC-4 §7.8.6.7) of this server's portal group
    /// `tpgt`, for the nexus of a session that logs in through it.
    pub fn relative_port(&self, tpgt: u16) -> u16 {
        self.alua.relative_port(tpgt)
    }

    /// Whether relative port `port` (of any group) is a port of this target.
    fn serves_port(&self, port: u16) -> bool {
        self.portal_groups.as_ref().is_none_or(|tpgts| tpgts.contains(&self.alua.tpgt_of(port)))
    }

    /// The logical units, for operator tools (`palisade pr show`).
    pub fn luns(&self) -> impl Iterator<Item = &Arc<Lun>> {
        self.luns.values()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The LUN numbers of this target, ascending.
    pub fn lun_ids(&self) -> Vec<u64> {
        self.luns.keys().copied().collect()
    }

    /// Whether `lun_field` names a LUN this nexus may see (for task management).
    pub fn has_lun(&self, lun_field: u64, nexus: &ItNexus) -> bool {
        self.visible_lun(nexus, lun_field).is_some()
    }

    /// The LUN a command from this nexus addresses (for per-LUN metrics); None when absent or masked.
    pub fn addressed_lun(&self, nexus: &ItNexus, lun_field: u64) -> Option<&Arc<Lun>> {
        self.visible_lun(nexus, lun_field)
    }

    /// The task set of `nexus` on the logical unit it addresses with `lun_field` (None: no
    /// such LU for it); TASK ABORTED answers for its tasks go through `sink`.
    pub fn join_task_set(
        &self,
        nexus: &Arc<ItNexus>,
        lun_field: u64,
        sink: Arc<dyn StatusSink>,
    ) -> Option<Arc<NexusTasks>> {
        Some(self.visible_lun(nexus, lun_field)?.task_set().join(nexus.clone(), sink))
    }

    /// Tasks of `nexus` registered on any logical unit (operators' view).
    pub fn running_tasks(&self, nexus: &ItNexus) -> usize {
        self.luns.values().map(|l| l.task_set().running_of(nexus)).sum()
    }

    fn visible_lun(&self, nexus: &ItNexus, lun_field: u64) -> Option<&Arc<Lun>> {
        let id = decode_lun(lun_field)?;
        self.luns.get(&id).filter(|_| self.masking.permits(nexus.initiator_name(), id))
    }

    /// The answer to a command whose Data-Out could not be trusted (a digest failed, a
    /// sequence rule broke): CHECK CONDITION with `reason`, in the LUN's sense format.
    pub fn data_out_failed(&self, nexus: &ItNexus, lun_field: u64, reason: SenseReason) -> Completion {
        let d_sense = self.visible_lun(nexus, lun_field).is_some_and(|l| l.mode().d_sense);
        Completion::check_condition(Sense::from(reason).encode(d_sense))
    }

    /// LUN ids visible to this nexus, ascending.
    pub fn visible_luns(&self, nexus: &ItNexus) -> Vec<u64> {
        self.luns.keys().copied().filter(|&id| self.masking.permits(nexus.initiator_name(), id)).collect()
    }

    /// Validates a command without blocking. Errors come back as a finished `Completion`.
    pub fn prepare(&self, task: ScsiTask) -> Result<Prepared, Completion> {
        let lun = self.visible_lun(&task.nexus, task.lun).cloned();
        let d_sense = lun.as_ref().is_some_and(|l| l.mode().d_sense);
        let fail = |sense: Sense| Completion::check_condition(sense.encode(d_sense));
        if task.cdb_len > task.cdb.len() {
            // CDBs longer than 16 bytes (RFC 7143 §11.3.1 extended CDB AHS; SPC-4 §4.2.3
            // variable-length CDBs, opcode 7Fh) are not implemented.
            return Err(fail(SenseReason::InvalidOpcode.into()));
        }
        if task.cdb_len == 0 {
            return Err(fail(Sense::invalid_cdb_field(0, None)));
        }
        let cdb = &task.cdb[..task.cdb_len];
        let info = lookup(cdb);
        let answers_without_lun = info.as_ref().is_ok_and(|i| i.without_lun);
        if let Some(lun) = &lun {
            // SAM-5 §5.14: all other commands report (and so clear) the oldest unit attention.
            if !answers_without_lun {
                if let Some(ua) = lun.take_unit_attention(&task.nexus) {
                    return Err(fail(ua.into()));
                }
            }
        } else if !answers_without_lun {
            // SPC-4 Annex D 25h/00h: an absent or masked LUN.
            return Err(fail(SenseReason::LunNotSupported.into()));
        }
        let info = info.map_err(fail)?;
        if cdb.len() < info.usage.len() {
            return Err(fail(Sense::invalid_cdb_field(0, None)));
        }
        let cdb = &cdb[..info.usage.len()];
        check_usage(info, cdb).map_err(fail)?;
        // SPC-4 §5.16.2.4: outside the active states only the commands the state's list names
        // run; the rest get NOT READY with the state's ASC/ASCQ, so multipath tries another
        // path. One atomic load per command.
        let state = self.alua.local_state();
        if let Some(refusal) = state.refusal().filter(|_| !info.alua.allows(state)) {
            return Err(fail(refusal.into()));
        }
        if reservation_withheld(lun.as_deref(), info.command) {
            return Err(fail(SenseReason::InvalidOpcode.into()));
        }
        if let Some(lun) = &lun {
            // SPC-2 §5.5.1: a logical unit reserved by another I_T nexus answers RESERVATION
            // CONFLICT, without sense data, to everything but a few informational commands.
            if !info.under_spc2_reservation && lun.reserved_by_other(&task.nexus) {
                return Err(Completion::reservation_conflict());
            }
        }
        let class = info.pr_class(cdb);
        if let Some(lun) = &lun {
            // SPC-4 §5.13.1: checked on arrival, and for data commands again under the fencing
            // gate when they execute (the state may change while Data-Out is in flight).
            if class != PrClass::Spc2 && pr_conflict(&lun.pr().snapshot(), &task.nexus, class) {
                return Err(Completion::reservation_conflict());
            }
        }
        let op = self.prepare_command(info, cdb, lun.as_deref(), &task).map_err(fail)?;
        let data_out_len = match &op {
            Op::Conflict => return Err(Completion::reservation_conflict()),
            Op::Respond(_) => 0,
            Op::Io(io) => io.data_out_len(lun.as_ref().map_or(512, |l| l.block_size())),
            Op::ModeSelect { param_len, .. } => *param_len as u32,
            Op::PrIn { .. } => 0,
            Op::PrOut(p) => p.param_len as u32,
            Op::ExtendedCopy { param_len, .. } => *param_len as u32,
            Op::PopulateToken { param_len, .. } | Op::WriteUsingToken { param_len, .. } => *param_len as u32,
        };
        let tokens = matches!(op, Op::PopulateToken { .. } | Op::WriteUsingToken { .. }).then(|| self.tokens.clone());
        Ok(Prepared { lun, nexus: task.nexus, d_sense, data_out_len, op, pr_class: class, tokens })
    }

    fn prepare_command(&self, info: &CommandInfo, cdb: &[u8], lun: Option<&Lun>, task: &ScsiTask) -> Result<Op, Sense> {
        use Command::*;
        let command = info.command;
        let nexus = &task.nexus;
        let respond = |data: Vec<u8>, alloc: usize| Ok(Op::Respond(truncate(data, alloc)));
        // Commands below `works_without_lun` got a LUN or were rejected above.
        let need_lun = || lun.ok_or(Sense::from(SenseReason::LunNotSupported));
        match command {
            Inquiry => {
                let mut data = inquiry::inquiry(cdb, lun, nexus, self.alua.local_group())?;
                if lun.is_some() && self.alua.local_state() == AccessState::Unavailable {
                    // SPC-4 §5.16.2.4.5: through an unavailable port the PERIPHERAL QUALIFIER is 001b.
                    data[0] = (data[0] & 0x1F) | 0x20;
                }
                respond(data, be16(&cdb[3..5]) as usize)
            }
            ReportLuns => respond(reports::report_luns(cdb, &self.visible_luns(nexus))?, be32(&cdb[6..10]) as usize),
            RequestSense => respond(reports::request_sense(cdb, lun, nexus), cdb[4] as usize),
            TestUnitReady => Ok(Op::Respond(None)),
            // SBC-3 §5.25: a fixed, non-removable medium is always ready; LOEJ has nothing to eject.
            StartStopUnit => Ok(Op::Respond(None)),
            ReadCapacity10 => respond(reports::read_capacity10(cdb, need_lun()?)?, 8),
            ReadCapacity16 => respond(reports::read_capacity16(cdb, need_lun()?)?, be32(&cdb[10..14]) as usize),
            ReportSupportedOpcodes => {
                let offered = |c: &CommandInfo| !reservation_withheld(lun, c.command);
                respond(reports::report_supported_opcodes(cdb, offered)?, be32(&cdb[6..10]) as usize)
            }
            ReportSupportedTmf => respond(reports::report_supported_tmf(cdb), be32(&cdb[6..10]) as usize),
            ReportTargetPortGroups => {
                need_lun()?;
                let data = rtpg::report_target_port_groups(cdb, &self.alua, |p| self.serves_port(p));
                respond(data, be32(&cdb[6..10]) as usize)
            }
            ReadDefectData10 => respond(reports::read_defect_data(cdb, false), be16(&cdb[7..9]) as usize),
            ReadDefectData12 => respond(reports::read_defect_data(cdb, true), be32(&cdb[6..10]) as usize),
            ExtendedCopy
            | PopulateToken
            | WriteUsingToken
            | CopyOperationAbort
            | ReceiveRodTokenInformation
            | ReceiveCopyStatus
            | ReceiveCopyOperatingParameters => self.prepare_copy_command(command, cdb, lun, nexus),
            ModeSense6 => respond(mode::mode_sense(cdb, need_lun()?, false)?, cdb[4] as usize),
            ModeSense10 => respond(mode::mode_sense(cdb, need_lun()?, true)?, be16(&cdb[7..9]) as usize),
            Reserve6 | Reserve10 | Release6 | Release10 | PersistentReserveIn | PersistentReserveOut => {
                prepare_reservation_command(command, cdb, need_lun()?, nexus)
            }
            ModeSelect6 | ModeSelect10 => {
                let ten = command == ModeSelect10;
                let param_len = if ten { be16(&cdb[7..9]) as usize } else { cdb[4] as usize };
                // SPC-4 §6.11: PF zero means vendor-specific page format, which is not offered.
                if cdb[1] & 0x10 == 0 && param_len > 0 {
                    return Err(Sense::invalid_cdb_field(1, Some(4)));
                }
                Ok(Op::ModeSelect { ten, param_len })
            }
            _ => Ok(Op::Io(prepare_io(info, cdb, need_lun()?, task.expected_data_out_len)?)),
        }
    }

    /// The third-party copy commands (SPC-4 §6.5 EXTENDED COPY, SBC-3 §5.8/§5.45 ODX, and the
    /// RECEIVE COPY / ROD TOKEN service actions that report on them).
    fn prepare_copy_command(
        &self,
        command: Command,
        cdb: &[u8],
        lun: Option<&Lun>,
        nexus: &ItNexus,
    ) -> Result<Op, Sense> {
        use Command::*;
        let respond = |data: Vec<u8>, alloc: usize| Ok(Op::Respond(truncate(data, alloc)));
        let need_lun = || lun.ok_or(Sense::from(SenseReason::LunNotSupported));
        match command {
            ExtendedCopy => {
                let param_len = be32(&cdb[10..14]) as usize;
                xcopy::check_parameter_list_length(param_len)?;
                need_lun()?;
                Ok(Op::ExtendedCopy { param_len, visible: self.visible_lun_list(nexus) })
            }
            PopulateToken | WriteUsingToken => {
                let (list_id, param_len) = odx::cdb_fields(cdb);
                odx::check_parameter_list_length(cdb[1] & 0x1F, param_len)?;
                need_lun()?;
                if command == PopulateToken {
                    return Ok(Op::PopulateToken { list_id, param_len });
                }
                let visible = self.visible_lun_list(nexus);
                Ok(Op::WriteUsingToken { list_id, param_len, visible })
            }
            CopyOperationAbort => {
                need_lun()?.rod_operations().abort(nexus.initiator_port(), be32(&cdb[2..6]) as u32)?;
                Ok(Op::Respond(None))
            }
            ReceiveRodTokenInformation => {
                let lun = need_lun()?;
                let info =
                    lun.rod_operations().report(nexus.initiator_port(), be32(&cdb[2..6]) as u32, lun.mode().d_sense)?;
                respond(info, be32(&cdb[10..14]) as usize)
            }
            ReceiveCopyStatus => {
                let status = need_lun()?.copy_results().copy_status(nexus.initiator_port(), cdb[2])?;
                respond(status, be32(&cdb[10..14]) as usize)
            }
            ReceiveCopyOperatingParameters => {
                respond(copy_results::operating_parameters(need_lun()?.block_size()), be32(&cdb[10..14]) as usize)
            }
            // Only the copy commands are routed here.
            _ => Err(SenseReason::InvalidOpcode.into()),
        }
    }

    /// The ROD token table (tests age and count its tokens).
    #[cfg(test)]
    pub(crate) fn rod_tokens(&self) -> &TokenTable {
        &self.tokens
    }

    /// The logical units `nexus` may access (the only ones a copy on its behalf may touch).
    fn visible_lun_list(&self, nexus: &ItNexus) -> Vec<Arc<Lun>> {
        self.luns.values().filter(|l| self.masking.permits(nexus.initiator_name(), l.id())).cloned().collect()
    }

    /// SAM-5 §7.7 LOGICAL UNIT RESET: every task of the LU, from every I_T nexus, is aborted
    /// (other nexuses' tasks end with TASK ABORTED when the LU has TAS set, §5.6) and has ended
    /// before the LU is reset. False when the nexus addresses no such LUN.
    pub async fn logical_unit_reset(&self, lun_field: u64, by: &ItNexus) -> bool {
        let Some(lun) = self.visible_lun(by, lun_field) else { return false };
        lun.task_set().abort(|_| true, Some(by), lun.mode().tas).wait().await;
        lun.reset();
        true
    }

    /// SAM-5 §6.3 TARGET RESET (hard reset): every task of every logical unit is aborted and
    /// every LU reset. After a warm reset the other nexuses' connections stay, so TAS decides
    /// per LU whether their tasks are answered; a cold reset drops them next (RFC 7143 §11.5.1).
    pub async fn target_reset(&self, by: &ItNexus, warm: bool) {
        let mut drain = Drain::default();
        for lun in self.luns.values() {
            drain.merge(lun.task_set().abort(|_| true, Some(by), warm && lun.mode().tas));
        }
        drain.wait().await;
        for lun in self.luns.values() {
            lun.reset();
        }
    }

    /// SAM-5 §6.3.4 I_T nexus loss.
    pub fn nexus_lost(&self, nexus: &ItNexus) {
        for lun in self.luns.values() {
            lun.nexus_lost(nexus);
        }
        self.tokens.nexus_lost(nexus.initiator_port());
    }
}

impl Prepared {
    /// Bytes of data-out this command needs, derived from the CDB.
    pub fn data_out_len(&self) -> u32 {
        self.data_out_len
    }

    /// Runs the command; `data` holds min(data_out_len, what the transport received) bytes.
    pub async fn execute(self, data: DataOut) -> Completion {
        let d_sense = self.d_sense;
        let result = match self.op {
            Op::Respond(data_in) => Ok(data_in),
            Op::Conflict => return Completion::reservation_conflict(),
            Op::Io(io) => match self.lun {
                Some(lun) => {
                    // The fencing gate (docs/reservations.md): the read guard is held from the
                    // re-check through the backend I/O, so a PR OUT that preempts this nexus
                    // either waits for this I/O to finish or is seen by the re-check.
                    let gate = lun.pr().read().await;
                    if pr_conflict(&gate, &self.nexus, self.pr_class) || lun.reserved_by_other(&self.nexus) {
                        return Completion::reservation_conflict();
                    }
                    // SPC-4 §5.16.2.4: data commands run only in the active states (the
                    // `alua` column); a port that left them while this command waited for
                    // its Data-Out or its turn answers NOT READY and touches nothing, so the
                    // host retries on another path.
                    if let Some(refusal) = lun.access_state().refusal() {
                        return Completion::check_condition(Sense::from(refusal).encode(d_sense));
                    }
                    let result = io.execute(lun.clone(), data).await;
                    drop(gate);
                    result
                }
                None => Err(SenseReason::LunNotSupported.into()),
            },
            Op::PrIn { action, allocation_length } => match self.lun {
                Some(lun) => pr_in::execute(&lun, action, allocation_length).await,
                None => Err(SenseReason::LunNotSupported.into()),
            },
            Op::PrOut(op) => {
                return match self.lun {
                    Some(lun) => op.execute(&lun, &self.nexus, &data, d_sense).await,
                    None => Completion::check_condition(Sense::from(SenseReason::LunNotSupported).encode(d_sense)),
                }
            }
            Op::ExtendedCopy { param_len, visible } => match self.lun {
                Some(lun) => match lun.access_state().refusal() {
                    // SPC-4 §5.16.2.4: re-checked at execution, as for data commands above.
                    Some(refusal) => Err(refusal.into()),
                    None => {
                        xcopy::extended_copy(&lun, &self.nexus, &visible, &data.to_vec(param_len)).await.map(|_| None)
                    }
                },
                None => Err(SenseReason::LunNotSupported.into()),
            },
            // SBC-3 §5.8.1/§5.45.1: a parameter list shorter than PARAMETER LIST LENGTH.
            Op::PopulateToken { param_len, .. } | Op::WriteUsingToken { param_len, .. } if data.len() < param_len => {
                Err(SenseReason::ParameterListLengthError.into())
            }
            Op::PopulateToken { list_id, param_len } => {
                let (Some(lun), Some(tokens)) = (self.lun, self.tokens) else {
                    return Completion::check_condition(Sense::from(SenseReason::LunNotSupported).encode(d_sense));
                };
                // SPC-4 §5.16.2.4: re-checked at execution, as for data commands.
                if let Some(refusal) = lun.access_state().refusal() {
                    return Completion::check_condition(Sense::from(refusal).encode(d_sense));
                }
                let param = data.to_vec(param_len);
                return refusal(odx::populate_token(&lun, &self.nexus, &tokens, list_id, &param).await, d_sense);
            }
            Op::WriteUsingToken { list_id, param_len, visible } => {
                let (Some(lun), Some(tokens)) = (self.lun, self.tokens) else {
                    return Completion::check_condition(Sense::from(SenseReason::LunNotSupported).encode(d_sense));
                };
                if let Some(refusal) = lun.access_state().refusal() {
                    return Completion::check_condition(Sense::from(refusal).encode(d_sense));
                }
                let param = data.to_vec(param_len);
                let done = odx::write_using_token(&lun, &self.nexus, &tokens, &visible, list_id, &param).await;
                return refusal(done, d_sense);
            }
            Op::ModeSelect { ten, param_len } => match self.lun {
                Some(lun) => mode_select(&lun, &self.nexus, &data, ten, param_len),
                None => Err(SenseReason::LunNotSupported.into()),
            },
        };
        match result {
            Ok(Some(data)) => Completion::good_with_data(data),
            Ok(None) => Completion::good(),
            Err(sense) => Completion::check_condition(sense.encode(d_sense)),
        }
    }
}

/// The answer to an offloaded data transfer command.
fn refusal(done: Result<(), odx::Refusal>, d_sense: bool) -> Completion {
    match done {
        Ok(()) => Completion::good(),
        Err(odx::Refusal::Conflict) => Completion::reservation_conflict(),
        Err(odx::Refusal::Sense(sense)) => Completion::check_condition(sense.encode(d_sense)),
    }
}

/// SPC-4 §5.13.1: whether `class` from `nexus` conflicts with the persistent reservation
/// (cheap when nothing is reserved, the common case).
pub(crate) fn pr_conflict(state: &pr::State, nexus: &ItNexus, class: PrClass) -> bool {
    state.reservation.is_some() && pr::conflicts(state, nexus, class)
}

fn mode_select(
    lun: &Lun,
    nexus: &ItNexus,
    data: &DataOut,
    ten: bool,
    param_len: usize,
) -> Result<Option<Bytes>, Sense> {
    // SPC-4 §6.11: a zero parameter list length transfers nothing and is not an error.
    if param_len == 0 {
        return Ok(None);
    }
    if data.len() < param_len {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    if mode::mode_select(lun, &data.to_vec(param_len), ten)? {
        // SPC-4 §6.11: other I_T nexuses learn of the change through a unit attention.
        lun.establish_unit_attention(SenseReason::ModeParametersChanged, Some(nexus));
    }
    Ok(None)
}

/// Whether a cluster gateway withholds this reservation command on `lun` (docs/cluster.md):
/// persistent reservations are cluster-wide there, but only once the LU's shared state is
/// loaded; SPC-2 RESERVE/RELEASE are not shared at all. A reservation one gateway kept alone
/// would not hold through the others, so the gateway offers none rather than fencing that does
/// not hold (05/20/00; SPC-4 §6.35: REPORT SUPPORTED OPERATION CODES leaves them out too).
fn reservation_withheld(lun: Option<&Lun>, command: Command) -> bool {
    use Command::*;
    let Some(lun) = lun.filter(|l| l.shared_across_gateways()) else { return false };
    match command {
        Reserve6 | Release6 | Reserve10 | Release10 => true,
        PersistentReserveIn | PersistentReserveOut => lun.shared_reservations().is_none(),
        _ => false,
    }
}

/// SPC-2 RESERVE/RELEASE and PERSISTENT RESERVE IN/OUT at admission.
fn prepare_reservation_command(command: Command, cdb: &[u8], lun: &Lun, nexus: &ItNexus) -> Result<Op, Sense> {
    use Command::*;
    match command {
        // SPC-4 §5.13.3 (CRH = 1): how SPC-2 RESERVE/RELEASE meet persistent reservations.
        Reserve6 | Reserve10 => Ok(match pr::spc2_outcome(&lun.pr().snapshot(), nexus, true) {
            Spc2Outcome::NoOp => Op::Respond(None),
            Spc2Outcome::Conflict => Op::Conflict,
            Spc2Outcome::Process if lun.reserve(nexus) => Op::Respond(None),
            Spc2Outcome::Process => Op::Conflict,
        }),
        Release6 | Release10 => {
            if pr::spc2_outcome(&lun.pr().snapshot(), nexus, false) == Spc2Outcome::Process {
                lun.release(nexus);
            }
            Ok(Op::Respond(None))
        }
        PersistentReserveIn => Ok(Op::PrIn { action: cdb[1] & 0x1F, allocation_length: be16(&cdb[7..9]) as usize }),
        PersistentReserveOut => Ok(Op::PrOut(pr_out::prepare(cdb)?)),
        // Only the reservation commands are routed here.
        _ => Err(SenseReason::InvalidOpcode.into()),
    }
}
