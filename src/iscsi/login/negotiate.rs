//! Table-driven operational parameter negotiation (RFC 7143 §6.2, §13).

use std::collections::HashMap;

use super::text::{bool_text, list_items, parse_bool, parse_number};
use super::{LoginStatus, SessionType, TargetLimits};

/// Typed outcome of operational negotiation. `Default` gives the RFC 7143 §13 defaults,
/// which stand for every key nobody negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// CRC32C when true, None otherwise (RFC 7143 §13.1).
    pub header_digest: bool,
    pub data_digest: bool,
    /// What we accept in one PDU: what we declared, 8192 if we never could (RFC 7143 §13.12).
    pub max_recv_data_segment_length_target: u32,
    /// What the initiator accepts = our maximum send size (default 8192, RFC 7143 §13.12).
    pub max_recv_data_segment_length_initiator: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub max_connections: u16,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length_target: 8192,
            max_recv_data_segment_length_initiator: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// Parameters whose value lands in [`Negotiated`] (plus the accepted-but-fixed ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Param {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    InitialR2T,
    ImmediateData,
    InitiatorRecvLength,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPduInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
    /// Markers and iSER: we only ever answer No (RFC 7143 §13.25, RFC 7145 §6.3.1).
    FixedNo,
    TaskReporter,
    None,
}

/// How a key's result is computed (RFC 7143 §6.2).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// List of None/CRC32C; we pick the first acceptable in the offerer's order (§6.2.1).
    Digest,
    /// Numerical, result is the minimum of both values (§6.2.2).
    Min { lo: u64, hi: u64 },
    /// Numerical, result is the maximum of both values (§6.2.2).
    Max { lo: u64, hi: u64 },
    /// Boolean, result is AND (§6.2.2).
    And,
    /// Boolean, result is OR (§6.2.2).
    Or,
    /// Declared by the initiator; no answer unless invalid (§6.2).
    Declared { lo: u64, hi: u64 },
    /// TaskReporter list; we only implement the RFC3720 behaviour (§13.23).
    TaskReporterList,
    /// Answered with the fixed value `Reject` (obsoleted marker intervals, §13.25).
    AlwaysReject,
    /// Only meaningful with iSER, which we do not offer (RFC 7145 §6.3).
    AlwaysIrrelevant,
    /// Sent only by targets (TargetAlias §13.6, TargetAddress §13.8, TargetPortalGroupTag §13.9).
    TargetOnly,
}

struct Rule {
    key: &'static str,
    param: Param,
    kind: Kind,
    /// RFC 7143 §13: "Irrelevant when: SessionType=Discovery".
    irrelevant_in_discovery: bool,
}

const LEN_RANGE: (u64, u64) = (512, 16_777_215); // RFC 7143 §13.12–§13.14: 512 to 2^24-1
const TIME_RANGE: (u64, u64) = (0, 3600); // RFC 7143 §13.15, §13.16

#[rustfmt::skip]
const RULES: &[Rule] = &[
    Rule { key: "HeaderDigest", param: Param::HeaderDigest, kind: Kind::Digest, irrelevant_in_discovery: false },
    Rule { key: "DataDigest", param: Param::DataDigest, kind: Kind::Digest, irrelevant_in_discovery: false },
    Rule { key: "MaxConnections", param: Param::MaxConnections, kind: Kind::Min { lo: 1, hi: 65_535 }, irrelevant_in_discovery: true },
    Rule { key: "InitialR2T", param: Param::InitialR2T, kind: Kind::Or, irrelevant_in_discovery: true },
    Rule { key: "ImmediateData", param: Param::ImmediateData, kind: Kind::And, irrelevant_in_discovery: true },
    Rule { key: "MaxRecvDataSegmentLength", param: Param::InitiatorRecvLength, kind: Kind::Declared { lo: LEN_RANGE.0, hi: LEN_RANGE.1 }, irrelevant_in_discovery: false },
    Rule { key: "MaxBurstLength", param: Param::MaxBurstLength, kind: Kind::Min { lo: LEN_RANGE.0, hi: LEN_RANGE.1 }, irrelevant_in_discovery: true },
    Rule { key: "FirstBurstLength", param: Param::FirstBurstLength, kind: Kind::Min { lo: LEN_RANGE.0, hi: LEN_RANGE.1 }, irrelevant_in_discovery: true },
    Rule { key: "DefaultTime2Wait", param: Param::DefaultTime2Wait, kind: Kind::Max { lo: TIME_RANGE.0, hi: TIME_RANGE.1 }, irrelevant_in_discovery: false },
    Rule { key: "DefaultTime2Retain", param: Param::DefaultTime2Retain, kind: Kind::Min { lo: TIME_RANGE.0, hi: TIME_RANGE.1 }, irrelevant_in_discovery: false },
    Rule { key: "MaxOutstandingR2T", param: Param::MaxOutstandingR2T, kind: Kind::Min { lo: 1, hi: 65_535 }, irrelevant_in_discovery: true },
    Rule { key: "DataPDUInOrder", param: Param::DataPduInOrder, kind: Kind::Or, irrelevant_in_discovery: true },
    Rule { key: "DataSequenceInOrder", param: Param::DataSequenceInOrder, kind: Kind::Or, irrelevant_in_discovery: true },
    Rule { key: "ErrorRecoveryLevel", param: Param::ErrorRecoveryLevel, kind: Kind::Min { lo: 0, hi: 2 }, irrelevant_in_discovery: false },
    Rule { key: "TaskReporter", param: Param::TaskReporter, kind: Kind::TaskReporterList, irrelevant_in_discovery: true },
    Rule { key: "IFMarker", param: Param::FixedNo, kind: Kind::And, irrelevant_in_discovery: false },
    Rule { key: "OFMarker", param: Param::FixedNo, kind: Kind::And, irrelevant_in_discovery: false },
    Rule { key: "IFMarkInt", param: Param::None, kind: Kind::AlwaysReject, irrelevant_in_discovery: false },
    Rule { key: "OFMarkInt", param: Param::None, kind: Kind::AlwaysReject, irrelevant_in_discovery: false },
    Rule { key: "RDMAExtensions", param: Param::FixedNo, kind: Kind::And, irrelevant_in_discovery: false },
    Rule { key: "InitiatorRecvDataSegmentLength", param: Param::None, kind: Kind::AlwaysIrrelevant, irrelevant_in_discovery: false },
    Rule { key: "TargetRecvDataSegmentLength", param: Param::None, kind: Kind::AlwaysIrrelevant, irrelevant_in_discovery: false },
    Rule { key: "TargetAlias", param: Param::None, kind: Kind::TargetOnly, irrelevant_in_discovery: false },
    Rule { key: "TargetAddress", param: Param::None, kind: Kind::TargetOnly, irrelevant_in_discovery: false },
    Rule { key: "TargetPortalGroupTag", param: Param::None, kind: Kind::TargetOnly, irrelevant_in_discovery: false },
];

/// Keys we may offer ourselves when the initiator left them at a default we cannot live with
/// or do not prefer (RFC 7143 §6.2: either side may originate an offer).
const OFFERABLE: &[&str] = &[
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
];

fn rule(key: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.key == key)
}

/// True for the keys this module negotiates.
pub fn is_operational_key(key: &str) -> bool {
    rule(key).is_some()
}

pub struct Negotiator {
    limits: TargetLimits,
    session_type: SessionType,
    result: Negotiated,
    /// Our own offers awaiting the initiator's answer: key → value we offered.
    pending: HashMap<&'static str, u64>,
    offers_made: bool,
    declared: bool,
}

impl Negotiator {
    pub fn new(limits: TargetLimits, session_type: SessionType) -> Self {
        Negotiator {
            limits,
            session_type,
            result: Negotiated::default(),
            pending: HashMap::new(),
            offers_made: false,
            declared: false,
        }
    }

    pub fn is_pending_answer(&self, key: &str) -> bool {
        self.pending.contains_key(key)
    }

    /// Answer the initiator's operational keys of one request. FirstBurstLength is handled
    /// after MaxBurstLength so its answer can respect "FirstBurstLength MUST NOT exceed
    /// MaxBurstLength" (RFC 7143 §13.14).
    pub fn respond(&mut self, keys: &[(&str, &str)], out: &mut Vec<(String, String)>) -> Result<(), LoginStatus> {
        let (first_burst, others): (Vec<_>, Vec<_>) = keys.iter().partition(|(k, _)| *k == "FirstBurstLength");
        for (key, value) in others.into_iter().chain(first_burst) {
            self.respond_one(key, value, out)?;
        }
        Ok(())
    }

    fn respond_one(&mut self, key: &str, value: &str, out: &mut Vec<(String, String)>) -> Result<(), LoginStatus> {
        let rule = rule(key).expect("caller passes operational keys only");
        if let Some(offered) = self.pending.remove(rule.key) {
            return self.take_answer(rule, offered, value);
        }
        let mut reply = |v: String| out.push((rule.key.to_string(), v));
        if rule.irrelevant_in_discovery && self.session_type == SessionType::Discovery {
            reply("Irrelevant".into());
            return Ok(());
        }
        match rule.kind {
            Kind::Digest => {
                let allow_crc = match rule.param {
                    Param::HeaderDigest => self.limits.header_digest_crc32c,
                    _ => self.limits.data_digest_crc32c,
                };
                // §6.2.1: the responder picks the first value it supports, in offer order.
                let pick = list_items(value).find(|v| *v == "None" || (*v == "CRC32C" && allow_crc));
                match pick {
                    Some(choice) => {
                        self.set_bool(rule.param, choice == "CRC32C");
                        reply(choice.to_string());
                    }
                    None => reply("Reject".into()),
                }
            }
            Kind::Min { lo, hi } | Kind::Max { lo, hi } => match parse_number(value) {
                // §6.2.2: out-of-range or malformed numbers are answered Reject.
                Some(n) if (lo..=hi).contains(&n) => {
                    let ours = self.our_number(rule.param);
                    // Clamped so a misconfigured limit never yields an out-of-range answer.
                    let answer = match rule.kind {
                        Kind::Min { .. } => n.min(ours),
                        _ => n.max(ours),
                    }
                    .clamp(lo, hi);
                    self.set_number(rule.param, answer);
                    reply(answer.to_string());
                }
                _ => reply("Reject".into()),
            },
            Kind::And | Kind::Or => match parse_bool(value) {
                Some(b) => {
                    let ours = self.our_bool(rule.param);
                    let answer = if matches!(rule.kind, Kind::And) { b && ours } else { b || ours };
                    self.set_bool(rule.param, answer);
                    reply(bool_text(answer).into());
                }
                None => reply("Reject".into()),
            },
            Kind::Declared { lo, hi } => match parse_number(value) {
                Some(n) if (lo..=hi).contains(&n) => self.set_number(rule.param, n),
                _ => reply("Reject".into()),
            },
            Kind::TaskReporterList => {
                let ok = list_items(value).any(|v| v == "RFC3720");
                reply(if ok { "RFC3720" } else { "Reject" }.into());
            }
            Kind::AlwaysReject => reply("Reject".into()),
            // Only targets send these (§13.6, §13.8, §13.9); an initiator sending one is
            // confused about its role, and a Reject would collide with our own declaration.
            Kind::TargetOnly => return Err(LoginStatus::INITIATOR_ERROR),
            Kind::AlwaysIrrelevant => reply("Irrelevant".into()),
        }
        Ok(())
    }

    /// The initiator's answer to a key we offered (RFC 7143 §6.2.2).
    fn take_answer(&mut self, rule: &Rule, offered: u64, value: &str) -> Result<(), LoginStatus> {
        if matches!(value, "Reject" | "NotUnderstood" | "Irrelevant") {
            // The default stays; acceptable only where it is a preference, not a limit.
            return match rule.kind {
                Kind::Or | Kind::Max { .. } => Ok(()),
                _ => Err(LoginStatus::INITIATOR_ERROR),
            };
        }
        match rule.kind {
            Kind::Min { lo, hi } | Kind::Max { lo, hi } => {
                let n = parse_number(value).ok_or(LoginStatus::INITIATOR_ERROR)?;
                let legal = match rule.kind {
                    Kind::Min { .. } => n <= offered,
                    _ => n >= offered,
                };
                if !(lo..=hi).contains(&n) || !legal {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                self.set_number(rule.param, n);
            }
            Kind::And | Kind::Or => {
                let b = parse_bool(value).ok_or(LoginStatus::INITIATOR_ERROR)?;
                let ours = offered != 0;
                let result = if matches!(rule.kind, Kind::And) { b && ours } else { b || ours };
                self.set_bool(rule.param, result);
            }
            _ => return Err(LoginStatus::INITIATOR_ERROR),
        }
        Ok(())
    }

    /// Our declarations, sent once in the first Operational-stage response:
    /// MaxRecvDataSegmentLength is declarative per direction (RFC 7143 §13.12).
    pub fn declarations(&mut self, out: &mut Vec<(String, String)>) {
        if self.declared {
            return;
        }
        self.declared = true;
        // Our Reject of a malformed initiator declaration already names the key in this
        // response; a second MaxRecvDataSegmentLength would be ambiguous (RFC 7143 §6.2: a key
        // once per negotiation), so ours is not sent and the default 8192 holds (§13.12).
        if out.iter().any(|(k, _)| k == "MaxRecvDataSegmentLength") {
            return;
        }
        let mrdsl = self.limits.max_recv_data_segment_length.clamp(512, 16_777_215);
        self.result.max_recv_data_segment_length_target = mrdsl;
        out.push(("MaxRecvDataSegmentLength".into(), mrdsl.to_string()));
    }

    /// Offer keys the initiator never offered when the default differs from what we want.
    /// Called once, when the initiator first asks to leave the Operational stage; returns
    /// true when offers were added (the reply must then keep T=0, RFC 7143 §6.2).
    pub fn make_offers(&mut self, settled: &dyn Fn(&str) -> bool, out: &mut Vec<(String, String)>) -> bool {
        if self.offers_made {
            return false;
        }
        self.offers_made = true;
        let defaults = Negotiator::new(self.limits.clone(), self.session_type);
        for key in OFFERABLE {
            let rule = rule(key).expect("offerable keys are in the table");
            if settled(key) || (rule.irrelevant_in_discovery && self.session_type == SessionType::Discovery) {
                continue;
            }
            let offer = match rule.kind {
                Kind::Min { .. } => {
                    let (ours, default) = (self.our_number(rule.param), defaults.current_number(rule.param));
                    (ours < default).then(|| (ours, ours.to_string()))
                }
                Kind::Max { .. } => {
                    let (ours, default) = (self.our_number(rule.param), defaults.current_number(rule.param));
                    (ours > default).then(|| (ours, ours.to_string()))
                }
                Kind::And | Kind::Or => {
                    let (ours, default) = (self.our_bool(rule.param), defaults.current_bool(rule.param));
                    (ours != default).then(|| (u64::from(ours), bool_text(ours).to_string()))
                }
                _ => None,
            };
            if let Some((value, text)) = offer {
                self.pending.insert(rule.key, value);
                out.push((rule.key.to_string(), text));
            }
        }
        !self.pending.is_empty()
    }

    pub fn has_pending_offers(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The final parameters, checked for cross-key consistency.
    pub fn finish(&self) -> Result<Negotiated, LoginStatus> {
        // RFC 7143 §13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        if self.result.first_burst_length > self.result.max_burst_length {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        Ok(self.result.clone())
    }

    fn our_number(&self, param: Param) -> u64 {
        let l = &self.limits;
        match param {
            Param::MaxConnections => u64::from(l.max_connections.max(1)),
            Param::MaxBurstLength => u64::from(l.max_burst_length),
            // Also bounded by MaxBurstLength, ours and the one in force (§13.14).
            Param::FirstBurstLength => {
                u64::from(l.first_burst_length.min(l.max_burst_length).min(self.result.max_burst_length))
            }
            Param::DefaultTime2Wait => u64::from(l.default_time2wait),
            Param::DefaultTime2Retain => u64::from(l.default_time2retain),
            Param::MaxOutstandingR2T => u64::from(l.max_outstanding_r2t.max(1)),
            Param::ErrorRecoveryLevel => u64::from(l.error_recovery_level),
            _ => unreachable!("not a numeric parameter: {param:?}"),
        }
    }

    fn current_number(&self, param: Param) -> u64 {
        let r = &self.result;
        match param {
            Param::MaxConnections => u64::from(r.max_connections),
            Param::MaxBurstLength => u64::from(r.max_burst_length),
            Param::FirstBurstLength => u64::from(r.first_burst_length),
            Param::DefaultTime2Wait => u64::from(r.default_time2wait),
            Param::DefaultTime2Retain => u64::from(r.default_time2retain),
            Param::MaxOutstandingR2T => u64::from(r.max_outstanding_r2t),
            Param::ErrorRecoveryLevel => u64::from(r.error_recovery_level),
            _ => unreachable!("not a numeric parameter: {param:?}"),
        }
    }

    /// Values reaching here were range-checked against the key's rule, so they fit.
    fn set_number(&mut self, param: Param, n: u64) {
        let r = &mut self.result;
        match param {
            Param::MaxConnections => r.max_connections = n as u16,
            Param::InitiatorRecvLength => r.max_recv_data_segment_length_initiator = n as u32,
            Param::MaxBurstLength => r.max_burst_length = n as u32,
            Param::FirstBurstLength => r.first_burst_length = n as u32,
            Param::DefaultTime2Wait => r.default_time2wait = n as u16,
            Param::DefaultTime2Retain => r.default_time2retain = n as u16,
            Param::MaxOutstandingR2T => r.max_outstanding_r2t = n as u32,
            Param::ErrorRecoveryLevel => r.error_recovery_level = n as u8,
            _ => unreachable!("not a numeric parameter: {param:?}"),
        }
    }

    fn our_bool(&self, param: Param) -> bool {
        let l = &self.limits;
        match param {
            Param::InitialR2T => l.initial_r2t,
            Param::ImmediateData => l.immediate_data,
            Param::DataPduInOrder => l.data_pdu_in_order,
            Param::DataSequenceInOrder => l.data_sequence_in_order,
            Param::FixedNo => false,
            _ => unreachable!("not a boolean parameter: {param:?}"),
        }
    }

    fn current_bool(&self, param: Param) -> bool {
        let r = &self.result;
        match param {
            Param::InitialR2T => r.initial_r2t,
            Param::ImmediateData => r.immediate_data,
            Param::DataPduInOrder => r.data_pdu_in_order,
            Param::DataSequenceInOrder => r.data_sequence_in_order,
            _ => false,
        }
    }

    fn set_bool(&mut self, param: Param, b: bool) {
        let r = &mut self.result;
        match param {
            Param::HeaderDigest => r.header_digest = b,
            Param::DataDigest => r.data_digest = b,
            Param::InitialR2T => r.initial_r2t = b,
            Param::ImmediateData => r.immediate_data = b,
            Param::DataPduInOrder => r.data_pdu_in_order = b,
            Param::DataSequenceInOrder => r.data_sequence_in_order = b,
            Param::FixedNo => {}
            _ => unreachable!("not a boolean parameter: {param:?}"),
        }
    }
}
