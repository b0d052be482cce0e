//! The login state machine (RFC 7143 §6.3, §11.12, §11.13).

use std::collections::HashSet;
use std::sync::Arc;

use rand::RngCore;

use super::chap::{is_chap_key, ChapExchange, ChapKeys};
use super::negotiate::{is_operational_key, is_private_extension, Negotiator};
use super::text::pair_is_well_formed;
use super::{
    ChapCredentials, LoginPolicy, LoginProgress, LoginReply, LoginRequest, LoginResult,
    LoginStatus, SessionType, Stage, TargetLimits,
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

/// Declarative identity keys of the first request (RFC 7143 §13.4, §13.5, §13.7, §13.21).
const IDENTITY_KEYS: &[&str] = &[
    "InitiatorName",
    "InitiatorAlias",
    "TargetName",
    "SessionType",
];

struct Identity {
    initiator_name: String,
    initiator_alias: Option<String>,
    target_name: Option<String>,
    session_type: SessionType,
}

/// What the configuration demands of this login.
struct Access {
    allowed: bool,
    chap: Option<ChapCredentials>,
    mutual_chap: Option<ChapCredentials>,
    alias: Option<String>,
}

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
    responded: bool,
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
            responded: false,
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
            Ok(reply) => {
                self.responded = true;
                reply
            }
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
        if self.identity.is_none() {
            self.establish_identity(&keys, req.csg)?;
            self.first_response_declarations(&mut out);
        } else {
            self.check_identity_repeats(&keys)?;
        }

        let mut security = ChapKeysOwned::default();
        let mut operational = Vec::new();
        for (key, value) in &keys {
            let key = key.as_str();
            if IDENTITY_KEYS.contains(&key) {
                continue;
            }
            let negotiator = self.negotiator.as_ref().expect("set with identity");
            if !negotiator.is_pending_answer(key) && !self.seen.insert(key.to_string()) {
                // RFC 7143 §6.2: renegotiating a key during login is an initiator error.
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            if key == "AuthMethod" || is_chap_key(key) {
                // RFC 7143 §6.3: security keys belong to the SecurityNegotiation stage.
                if self.stage != Stage::Security {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                security.set(key, value);
            } else if is_operational_key(key) || negotiator.is_pending_answer(key) {
                operational.push((key, value.as_str()));
            } else if key == "SendTargets" {
                // RFC 7143 §13.3: SendTargets is for Text Requests in Full Feature Phase.
                out.push((key.to_string(), "Irrelevant".into()));
            } else {
                // RFC 7143 §6.2, §13.22: unknown and private (X-, X#) keys.
                debug_assert!(is_private_extension(key) || !is_operational_key(key));
                out.push((key.to_string(), "NotUnderstood".into()));
            }
        }

        if self.stage == Stage::Security {
            self.authenticate(&security, &mut out)?;
        }
        let negotiator = self.negotiator.as_mut().expect("set with identity");
        negotiator.respond(&operational, &mut out)?;
        if self.stage == Stage::Operational {
            negotiator.declarations(&mut out);
        }
        self.transition(req, out)
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
            Some(first) if first != (req.isid, req.tsih, req.cid) => {
                return Err(LoginStatus::INITIATOR_ERROR)
            }
            Some(_) if req.csg != self.stage => return Err(LoginStatus::INVALID_DURING_LOGIN),
            Some(_) => {}
        }
        Ok(())
    }

    /// §11.12.2: each C=1 request gets an empty response; the text is kept for the final one.
    fn buffer_continuation(&mut self, req: &LoginRequest) -> Result<LoginReply, LoginStatus> {
        self.buffered_bytes += req
            .keys
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
        if self.buffered_bytes > MAX_BUFFERED_TEXT {
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        self.buffered.extend(req.keys.iter().cloned());
        Ok(self.reply(false, self.stage, Keys::new(), LoginProgress::Continue))
    }

    /// First request: InitiatorName, SessionType and (Normal) TargetName, then the policy.
    fn establish_identity(
        &mut self,
        keys: &[(String, String)],
        csg: Stage,
    ) -> Result<(), LoginStatus> {
        let get = |name: &str| keys.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        // RFC 7143 §13.5: InitiatorName MUST be in the first Login Request.
        let initiator_name = get("InitiatorName")
            .filter(|n| !n.is_empty())
            .ok_or(LoginStatus::MISSING_PARAMETER)?;
        // RFC 7143 §13.21: SessionType defaults to Normal.
        let session_type = match get("SessionType").as_deref() {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
        };
        let target_name = get("TargetName").filter(|n| !n.is_empty());
        let access = match session_type {
            SessionType::Normal => {
                // RFC 7143 §13.4: TargetName is required in the first request of a Normal session.
                let target = target_name
                    .as_deref()
                    .ok_or(LoginStatus::MISSING_PARAMETER)?;
                let access = self
                    .policy
                    .target(target, &initiator_name)
                    .ok_or(LoginStatus::NOT_FOUND)?;
                Access {
                    allowed: access.initiator_allowed,
                    chap: access.chap,
                    mutual_chap: access.mutual_chap,
                    alias: access.alias,
                }
            }
            SessionType::Discovery => Access {
                allowed: true,
                chap: self.policy.discovery_auth(),
                mutual_chap: None,
                alias: None,
            },
        };
        self.identity = Some(Identity {
            initiator_name,
            initiator_alias: get("InitiatorAlias"),
            target_name,
            session_type,
        });
        self.access = Some(access);
        self.negotiator = Some(Negotiator::new(self.limits.clone(), session_type));
        if csg == Stage::Operational {
            // RFC 7143 §6.3: starting in Operational skips authentication, which a target
            // that requires it refuses with Authentication failure.
            if self.access.as_ref().is_some_and(|a| a.chap.is_some()) {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            self.authorize()?;
        }
        Ok(())
    }

    /// Identity keys are declared once; libiscsi repeats them unchanged when it enters the
    /// Operational stage after AuthMethod=None, which we tolerate. A changed value would be a
    /// redeclaration, an initiator error (RFC 7143 §6.2).
    fn check_identity_repeats(&self, keys: &[(String, String)]) -> Result<(), LoginStatus> {
        let id = self.identity.as_ref().expect("checked by caller");
        for (key, value) in keys {
            let same = match key.as_str() {
                "InitiatorName" => *value == id.initiator_name,
                "InitiatorAlias" => Some(value) == id.initiator_alias.as_ref(),
                "TargetName" => Some(value) == id.target_name.as_ref(),
                "SessionType" => {
                    let wanted = if id.session_type == SessionType::Normal {
                        "Normal"
                    } else {
                        "Discovery"
                    };
                    value == wanted
                }
                _ => true,
            };
            if !same {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
        }
        Ok(())
    }

    /// Keys the target sends in its first Login Response of a Normal session.
    fn first_response_declarations(&self, out: &mut Keys) {
        let normal = self
            .identity
            .as_ref()
            .is_some_and(|i| i.session_type == SessionType::Normal);
        if !normal || self.responded {
            return;
        }
        // RFC 7143 §13.9: TargetPortalGroupTag MUST be in the first Login Response.
        out.push((
            "TargetPortalGroupTag".into(),
            self.portal_group_tag.to_string(),
        ));
        // RFC 7143 §13.6: TargetAlias may be declared by the target.
        if let Some(alias) = self.access.as_ref().and_then(|a| a.alias.clone()) {
            out.push(("TargetAlias".into(), alias));
        }
    }

    /// Security stage: AuthMethod selection and the CHAP exchange (RFC 7143 §12.1, §12.1.3).
    fn authenticate(
        &mut self,
        security: &ChapKeysOwned,
        out: &mut Keys,
    ) -> Result<(), LoginStatus> {
        let access = self.access.as_ref().expect("set with identity");
        let mut just_selected = false;
        if let Some(methods) = security.auth_method.as_deref() {
            if !matches!(self.auth, Auth::NotStarted) {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            // §12.1 and §6.2.1: we accept exactly one method, chosen by configuration.
            let wanted = if access.chap.is_some() {
                "CHAP"
            } else {
                "None"
            };
            if !methods.split(',').any(|m| m == wanted) {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            out.push(("AuthMethod".into(), wanted.into()));
            just_selected = true;
            match &access.chap {
                Some(creds) => {
                    self.auth =
                        Auth::Chap(ChapExchange::new(creds.clone(), access.mutual_chap.clone()))
                }
                None => self.authorize()?,
            }
        }
        let chap_keys = security.chap_keys();
        match &mut self.auth {
            Auth::Chap(exchange) if !(just_selected && security.no_chap_keys()) => {
                exchange.step(&chap_keys, &mut self.random, out)?;
                if exchange.is_done() {
                    self.authorize()?;
                }
            }
            Auth::Chap(_) => {}
            // CHAP keys without AuthMethod=CHAP agreed, or after authentication ended.
            _ if !security.no_chap_keys() => return Err(LoginStatus::AUTHENTICATION_FAILURE),
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
                Auth::Chap(_) => {
                    return Ok(self.reply(false, self.stage, out, LoginProgress::Continue))
                }
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
        self.stage = req.nsg;
        if req.nsg != Stage::FullFeature {
            let mut reply = self.reply(true, from, out, LoginProgress::Continue);
            reply.nsg = req.nsg;
            return Ok(reply);
        }
        let result = self.finish()?;
        let mut reply = self.reply(true, from, out, LoginProgress::Complete(result));
        reply.nsg = Stage::FullFeature;
        self.finished = true;
        Ok(reply)
    }

    fn finish(&self) -> Result<LoginResult, LoginStatus> {
        let identity = self.identity.as_ref().expect("set with identity");
        let (isid, tsih, cid) = self.connection.expect("set by the first request");
        let params = self
            .negotiator
            .as_ref()
            .expect("set with identity")
            .finish()?;
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

/// Security keys of one request, owned so the machine can mutate itself while using them.
#[derive(Default)]
struct ChapKeysOwned {
    auth_method: Option<String>,
    chap: Vec<(String, String)>,
}

impl ChapKeysOwned {
    fn set(&mut self, key: &str, value: &str) {
        if key == "AuthMethod" {
            self.auth_method = Some(value.to_string());
        } else {
            self.chap.push((key.to_string(), value.to_string()));
        }
    }

    fn no_chap_keys(&self) -> bool {
        self.chap.is_empty()
    }

    fn chap_keys(&self) -> ChapKeys<'_> {
        let mut keys = ChapKeys::default();
        for (k, v) in &self.chap {
            keys.set(k, v);
        }
        keys
    }
}
