//! The login state machine (RFC 7143 §6.3, §11.12, §11.13).

use std::collections::HashSet;
use std::sync::Arc;

use rand::RngCore;

use super::chap::{is_chap_key, ChapExchange, ChapKeys};
use super::identity::{self, Access, Identity, IDENTITY_KEYS};
use super::negotiate::{is_operational_key, Negotiator};
use super::text::pair_is_well_formed;
use super::{
    LoginPolicy, LoginProgress, LoginReply, LoginRequest, LoginResult, LoginStatus, SessionType, Stage, TargetLimits,
};

/// Fills a buffer with unpredictable bytes (CHAP identifiers and challenges). A seam so
/// tests can be deterministic; production uses `rand`'s thread-local CSPRNG.
pub type RandomSource = Box<dyn FnMut(&mut [u8]) + Send>;

/// A login that has not finished after this many requests is abandoned (defence against
/// initiators that loop with T=0 forever; the RFC sets no bound).
const MAX_LOGIN_REQUESTS: u32 = 64;
/// Bound on key text buffered across C-bit continuations (RFC 7143 §6.1 requires at least
/// 8192 bytes of key=value data per negotiation sequence; we allow far more).
const MAX_BUFFERED_TEXT: usize = 65_536;

enum Auth {
    /// Security stage, no AuthMethod agreed yet.
    NotStarted,
    Chap(ChapExchange),
    /// Authenticated (or no authentication needed) and authorized.
    Passed,
}

pub struct LoginMachine {
    limits: TargetLimits,
    policy: Arc<dyn LoginPolicy + Send + Sync>,
    random: RandomSource,
    portal_group_tag: u16,
    /// The stage the next request must carry as CSG.
    stage: Stage,
    finished: bool,
    requests: u32,
    /// ISID, TSIH and CID of the first request; later requests must repeat them.
    connection: Option<([u8; 6], u16, u16)>,
    identity: Option<Identity>,
    access: Option<Access>,
    auth: Auth,
    negotiator: Option<Negotiator>,
    /// Keys the initiator has offered or declared so far, to detect renegotiation.
    seen: HashSet<String>,
    buffered: Vec<(String, String)>,
    buffered_bytes: usize,
}

type Keys = Vec<(String, String)>;

impl LoginMachine {
    pub fn new(limits: TargetLimits, policy: Arc<dyn LoginPolicy + Send + Sync>) -> Self {
        LoginMachine {
            limits,
            policy,
            random: Box::new(|buf: &mut [u8]| rand::thread_rng().fill_bytes(buf)),
            portal_group_tag: 1,
            stage: Stage::Security,
            finished: false,
            requests: 0,
            connection: None,
            identity: None,
            access: None,
            auth: Auth::NotStarted,
            negotiator: None,
            seen: HashSet::new(),
            buffered: Vec::new(),
            buffered_bytes: 0,
        }
    }

    /// The Target Portal Group Tag of the portal this connection arrived on (RFC 7143 §13.9).
    pub fn with_portal_group_tag(mut self, tag: u16) -> Self {
        self.portal_group_tag = tag;
        self
    }

    /// Replace the source of CHAP identifiers and challenges (tests use a fixed one).
    pub fn with_random_source(mut self, random: RandomSource) -> Self {
        self.random = random;
        self
    }

    /// The stage the next Login Request is expected in.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Process one Login Request and produce the Login Response to send.
    pub fn step(&mut self, req: &LoginRequest) -> LoginReply {
        match self.try_step(req) {
            Ok(reply) => reply,
            Err(status) => {
                self.finished = true;
                LoginReply {
                    transit: false,
                    csg: self.stage,
                    nsg: self.stage,
                    status_class: status.class,
                    status_detail: status.detail,
                    keys: Vec::new(),
                    outcome: LoginProgress::Failed,
                }
            }
        }
    }

    fn try_step(&mut self, req: &LoginRequest) -> Result<LoginReply, LoginStatus> {
        // RFC 7143 §11.13.5 (02/0B): nothing is valid after the login ended.
        if self.finished {
            return Err(LoginStatus::INVALID_DURING_LOGIN);
        }
        self.requests += 1;
        if self.requests > MAX_LOGIN_REQUESTS {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        self.check_header(req)?;
        if !req.keys.iter().all(|(k, v)| pair_is_well_formed(k, v)) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if req.cont {
            return self.buffer_continuation(req);
        }
        let mut keys = std::mem::take(&mut self.buffered);
        self.buffered_bytes = 0;
        keys.extend(req.keys.iter().cloned());
        // RFC 7143 §6.2: a key may not be offered twice; the target answers initiator error.
        let mut names = HashSet::new();
        if !keys.iter().all(|(k, _)| names.insert(k.as_str())) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }

        let mut out = Keys::new();
        match &self.identity {
            None => {
                self.establish_identity(&keys, req.csg)?;
                self.first_response_declarations(&mut out);
            }
            Some(known) => identity::check_repeats(known, &keys)?,
        }

        let sorted = self.sort_keys(&keys, &mut out)?;
        if self.stage == Stage::Security {
            self.authenticate(sorted.auth_method, &sorted.chap, &mut out)?;
        }
        if self.stage == Stage::Operational {
            let negotiator = self.negotiator.as_mut().expect("set with identity");
            negotiator.respond(&sorted.operational, &mut out)?;
            negotiator.declarations(&mut out);
        }
        self.transition(req, out)
    }

    /// Sorts one request's keys by kind (RFC 7143 §6.2, §6.3, §13): security keys, operational
    /// keys, and those answered at once (Irrelevant, NotUnderstood) into `out`.
    fn sort_keys<'k>(&mut self, keys: &'k [(String, String)], out: &mut Keys) -> Result<SortedKeys<'k>, LoginStatus> {
        let mut sorted = SortedKeys::default();
        for (key, value) in keys {
            let key = key.as_str();
            if IDENTITY_KEYS.contains(&key) {
                continue;
            }
            let negotiator = self.negotiator.as_ref().expect("set with identity");
            let answer = negotiator.is_pending_answer(key);
            // RFC 7143 §6.2: renegotiating a key during login is an initiator error; only an
            // answer to our own offer may name a key again.
            if !self.seen.insert(key.to_string()) && !answer {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            if key == "AuthMethod" || is_chap_key(key) {
                // RFC 7143 §6.3: security keys belong to the SecurityNegotiation stage.
                if self.stage != Stage::Security {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                match key {
                    "AuthMethod" => sorted.auth_method = Some(value.as_str()),
                    _ => sorted.chap.set(key, value),
                }
            } else if is_operational_key(key) || answer {
                // RFC 7143 §13: only Any-Stage keys (the identity ones) may appear in the
                // SecurityNegotiation stage; the rest are operational keys.
                if self.stage == Stage::Security {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                sorted.operational.push((key, value.as_str()));
            } else if key == "SendTargets" {
                // RFC 7143 §13.3: SendTargets is for Text Requests in Full Feature Phase.
                out.push((key.to_string(), "Irrelevant".into()));
            } else {
                // RFC 7143 §6.2, §13.22: unknown keys, private (X-, X#) ones included.
                out.push((key.to_string(), "NotUnderstood".into()));
            }
        }
        Ok(sorted)
    }

    /// Header rules of RFC 7143 §11.12 and the version check of §11.12.4/§11.12.5.
    fn check_header(&mut self, req: &LoginRequest) -> Result<(), LoginStatus> {
        // We implement version 0x00 only; VersionMin above it cannot be met.
        if req.version_min > 0 {
            return Err(LoginStatus::UNSUPPORTED_VERSION);
        }
        // §11.12.3: CSG is Security or Operational; NSG must be a later, defined stage.
        if !matches!(req.csg, Stage::Security | Stage::Operational) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if req.transit && (req.nsg == Stage::Reserved || req.nsg <= req.csg) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        // §11.12.2: with C=1, T MUST be 0.
        if req.cont && req.transit {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        match self.connection {
            None => {
                // §6.3: the first request may start in Security or Operational.
                self.connection = Some((req.isid, req.tsih, req.cid));
                self.stage = req.csg;
            }
            // §6.3: ISID, TSIH and CID stay fixed for the whole login.
            Some(first) if first != (req.isid, req.tsih, req.cid) => return Err(LoginStatus::INITIATOR_ERROR),
            Some(_) if req.csg != self.stage => return Err(LoginStatus::INVALID_DURING_LOGIN),
            Some(_) => {}
        }
        Ok(())
    }

    /// §11.12.2: each C=1 request gets an empty response; the text is kept for the final one.
    fn buffer_continuation(&mut self, req: &LoginRequest) -> Result<LoginReply, LoginStatus> {
        self.buffered_bytes += req.keys.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
        if self.buffered_bytes > MAX_BUFFERED_TEXT {
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        self.buffered.extend(req.keys.iter().cloned());
        Ok(self.reply(false, self.stage, Keys::new(), LoginProgress::Continue))
    }

    /// First request: identity and policy verdict, then the negotiator for this session type.
    fn establish_identity(&mut self, keys: &[(String, String)], csg: Stage) -> Result<(), LoginStatus> {
        let (identity, access) = identity::resolve(keys, self.policy.as_ref())?;
        self.negotiator = Some(Negotiator::new(self.limits.clone(), identity.session_type));
        let chap_required = access.chap.is_some();
        self.identity = Some(identity);
        self.access = Some(access);
        if csg == Stage::Operational {
            // RFC 7143 §6.3: starting in Operational skips authentication, which a target
            // that requires it refuses with Authentication failure.
            if chap_required {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            self.authorize()?;
        }
        Ok(())
    }

    /// Keys the target sends in its first Login Response of a Normal session (the first one
    /// answering keys: a C-bit acknowledgement carries none).
    fn first_response_declarations(&self, out: &mut Keys) {
        let normal = self.identity.as_ref().is_some_and(|i| i.session_type == SessionType::Normal);
        if !normal {
            return;
        }
        // RFC 7143 §13.9: TargetPortalGroupTag MUST be in the first Login Response.
        out.push(("TargetPortalGroupTag".into(), self.portal_group_tag.to_string()));
        // RFC 7143 §13.6: TargetAlias may be declared by the target.
        if let Some(alias) = self.access.as_ref().and_then(|a| a.alias.clone()) {
            out.push(("TargetAlias".into(), alias));
        }
    }

    /// Security stage: AuthMethod selection and the CHAP exchange (RFC 7143 §12.1, §12.1.3).
    fn authenticate(
        &mut self,
        auth_method: Option<&str>,
        chap: &ChapKeys<'_>,
        out: &mut Keys,
    ) -> Result<(), LoginStatus> {
        let mut just_selected = false;
        if let Some(methods) = auth_method {
            let access = self.access.as_ref().expect("set with identity");
            // §12.1 and §6.2.1: we accept exactly one method, chosen by configuration.
            let wanted = if access.chap.is_some() { "CHAP" } else { "None" };
            if !methods.split(',').any(|m| m == wanted) {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            out.push(("AuthMethod".into(), wanted.into()));
            just_selected = true;
            match &access.chap {
                Some(expected) => {
                    self.auth = Auth::Chap(ChapExchange::new(expected.clone(), access.mutual_chap.clone()))
                }
                None => self.authorize()?,
            }
        }
        match &mut self.auth {
            // Right after AuthMethod=CHAP the initiator may wait for our answer before CHAP_A.
            Auth::Chap(_) if just_selected && chap.is_empty() => {}
            Auth::Chap(exchange) => {
                exchange.step(chap, &mut self.random, out)?;
                if exchange.is_done() {
                    self.authorize()?;
                }
            }
            // CHAP keys without AuthMethod=CHAP agreed, or after authentication ended.
            _ if !chap.is_empty() => return Err(LoginStatus::AUTHENTICATION_FAILURE),
            _ => {}
        }
        Ok(())
    }

    /// RFC 7143 §11.13.5 (02/02): authenticated, but the ACL refuses this initiator.
    fn authorize(&mut self) -> Result<(), LoginStatus> {
        if !self.access.as_ref().is_some_and(|a| a.allowed) {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        self.auth = Auth::Passed;
        Ok(())
    }

    /// Decide the T bit (RFC 7143 §6.3, §11.13.3): the target sets T=1 only when the
    /// initiator did and the target is ready to leave the current stage.
    fn transition(&mut self, req: &LoginRequest, mut out: Keys) -> Result<LoginReply, LoginStatus> {
        if !req.transit {
            return Ok(self.reply(false, self.stage, out, LoginProgress::Continue));
        }
        match self.stage {
            Stage::Security => match self.auth {
                Auth::Passed => {}
                Auth::NotStarted => {
                    // No AuthMethod offered: allowed only when we need no authentication.
                    if self.access.as_ref().is_some_and(|a| a.chap.is_some()) {
                        return Err(LoginStatus::AUTHENTICATION_FAILURE);
                    }
                    self.authorize()?;
                }
                // Mid-CHAP: we do not agree to transit yet.
                Auth::Chap(_) => return Ok(self.reply(false, self.stage, out, LoginProgress::Continue)),
            },
            _ => {
                let negotiator = self.negotiator.as_mut().expect("set with identity");
                // Offers we made earlier had to be answered in this request (RFC 7143 §6.2).
                if negotiator.has_pending_offers() {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                let seen = &self.seen;
                if negotiator.make_offers(&|k| seen.contains(k), &mut out) {
                    return Ok(self.reply(false, self.stage, out, LoginProgress::Continue));
                }
            }
        }
        let from = self.stage;
        let outcome = if req.nsg == Stage::FullFeature {
            self.finished = true;
            LoginProgress::Complete(self.finish()?)
        } else {
            LoginProgress::Continue
        };
        self.stage = req.nsg;
        let mut reply = self.reply(true, from, out, outcome);
        reply.nsg = req.nsg;
        Ok(reply)
    }

    fn finish(&self) -> Result<LoginResult, LoginStatus> {
        let identity = self.identity.as_ref().expect("set with identity");
        let (isid, tsih, cid) = self.connection.expect("set by the first request");
        let params = self.negotiator.as_ref().expect("set with identity").finish()?;
        Ok(LoginResult {
            session_type: identity.session_type,
            initiator_name: identity.initiator_name.clone(),
            initiator_alias: identity.initiator_alias.clone(),
            target_name: identity.target_name.clone(),
            isid,
            tsih_requested: tsih,
            cid,
            params,
        })
    }

    /// A success-class reply; with T=0 the NSG field is reserved, so it repeats the CSG.
    fn reply(&self, transit: bool, csg: Stage, keys: Keys, outcome: LoginProgress) -> LoginReply {
        LoginReply {
            transit,
            csg,
            nsg: csg,
            status_class: LoginStatus::SUCCESS.class,
            status_detail: LoginStatus::SUCCESS.detail,
            keys,
            outcome,
        }
    }
}

/// One request's keys, sorted by the stage that handles them.
#[derive(Default)]
struct SortedKeys<'k> {
    auth_method: Option<&'k str>,
    chap: ChapKeys<'k>,
    operational: Vec<(&'k str, &'k str)>,
}
