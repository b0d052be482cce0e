//! Who is logging in to what: the declarative keys of the first request and the policy's
//! verdict on them (RFC 7143 §13.4, §13.5, §13.7, §13.21).

use super::{ChapCredentials, LoginPolicy, LoginStatus, SessionType};

/// Keys that identify the login; declared in the first request.
pub const IDENTITY_KEYS: &[&str] = &["InitiatorName", "InitiatorAlias", "TargetName", "SessionType"];

pub struct Identity {
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub target_name: Option<String>,
    pub session_type: SessionType,
}

/// What the configuration demands of this login.
pub struct Access {
    pub allowed: bool,
    /// Some → CHAP required, verified against these credentials.
    pub chap: Option<ChapCredentials>,
    pub mutual_chap: Option<ChapCredentials>,
    pub alias: Option<String>,
}

/// Read the identity from the first request and ask the policy about it.
pub fn resolve(keys: &[(String, String)], policy: &dyn LoginPolicy) -> Result<(Identity, Access), LoginStatus> {
    let get = |name: &str| keys.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    // RFC 7143 §13.5: InitiatorName MUST be in the first Login Request.
    let initiator_name = get("InitiatorName").filter(|n| !n.is_empty()).ok_or(LoginStatus::MISSING_PARAMETER)?;
    // RFC 7143 §13.21: SessionType defaults to Normal; other values are not supported (02/09).
    let session_type = match get("SessionType").as_deref() {
        None | Some("Normal") => SessionType::Normal,
        Some("Discovery") => SessionType::Discovery,
        Some(_) => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
    };
    let target_name = get("TargetName").filter(|n| !n.is_empty());
    let access = match session_type {
        SessionType::Normal => {
            // RFC 7143 §13.4: TargetName is required in the first request of a Normal session.
            let target = target_name.as_deref().ok_or(LoginStatus::MISSING_PARAMETER)?;
            // RFC 7143 §11.13.5 (02/03): the target does not exist here.
            let access = policy.target(target, &initiator_name).ok_or(LoginStatus::NOT_FOUND)?;
            Access {
                allowed: access.initiator_allowed,
                chap: access.chap,
                mutual_chap: access.mutual_chap,
                alias: access.alias,
            }
        }
        // Discovery names no target; its only gate is the optional discovery CHAP.
        SessionType::Discovery => {
            Access { allowed: true, chap: policy.discovery_auth(), mutual_chap: None, alias: None }
        }
    };
    let identity = Identity { initiator_name, initiator_alias: get("InitiatorAlias"), target_name, session_type };
    Ok((identity, access))
}

/// Identity keys are declared once; libiscsi repeats them unchanged when it enters the
/// Operational stage after AuthMethod=None, which we tolerate. A changed value would be a
/// redeclaration, an initiator error (RFC 7143 §6.2).
pub fn check_repeats(identity: &Identity, keys: &[(String, String)]) -> Result<(), LoginStatus> {
    for (key, value) in keys {
        let same = match key.as_str() {
            "InitiatorName" => *value == identity.initiator_name,
            "InitiatorAlias" => Some(value) == identity.initiator_alias.as_ref(),
            "TargetName" => Some(value) == identity.target_name.as_ref(),
            "SessionType" => match identity.session_type {
                SessionType::Normal => value == "Normal",
                SessionType::Discovery => value == "Discovery",
            },
            _ => true,
        };
        if !same {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
    }
    Ok(())
}
