//! CHAP authentication, target side (RFC 7143 §12.1.3, §9.2.1; RFC 1994).

use super::text::{decode_binary, encode_hex, list_items, parse_number};
use super::{ChapCredentials, LoginStatus};

/// RFC 1994 §4.1 / RFC 7143 §12.1.3: algorithm 5 is CHAP with MD5, the one we implement.
pub const CHAP_MD5: u64 = 5;
/// Our challenge length; RFC 7143 §9.2.1 asks for unpredictable challenges, 16 bytes matches
/// the MD5 output size.
pub const CHALLENGE_LEN: usize = 16;
/// RFC 7143 §12.1.3: challenges and responses are bounded to 1024 bytes once decoded.
pub const MAX_BINARY_LEN: usize = 1024;

/// Keys exchanged during CHAP (RFC 7143 §12.1.3).
pub fn is_chap_key(key: &str) -> bool {
    matches!(key, "CHAP_A" | "CHAP_I" | "CHAP_C" | "CHAP_N" | "CHAP_R")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// AuthMethod=CHAP agreed; the initiator MUST continue with CHAP_A.
    AwaitAlgorithm,
    /// We sent CHAP_A/CHAP_I/CHAP_C; the initiator MUST continue with CHAP_N/CHAP_R.
    AwaitResponse,
    Done,
}

/// The CHAP keys found in one request.
#[derive(Default)]
pub struct ChapKeys<'a> {
    pub algorithms: Option<&'a str>,
    pub id: Option<&'a str>,
    pub challenge: Option<&'a str>,
    pub name: Option<&'a str>,
    pub response: Option<&'a str>,
}

impl<'a> ChapKeys<'a> {
    pub fn set(&mut self, key: &str, value: &'a str) {
        match key {
            "CHAP_A" => self.algorithms = Some(value),
            "CHAP_I" => self.id = Some(value),
            "CHAP_C" => self.challenge = Some(value),
            "CHAP_N" => self.name = Some(value),
            "CHAP_R" => self.response = Some(value),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.algorithms.is_none()
            && self.id.is_none()
            && self.challenge.is_none()
            && self.name.is_none()
            && self.response.is_none()
    }
}

pub struct ChapExchange {
    phase: Phase,
    expected: ChapCredentials,
    mutual: Option<ChapCredentials>,
    id: u8,
    challenge: Vec<u8>,
}

const AUTH_FAILED: LoginStatus = LoginStatus::AUTHENTICATION_FAILURE;

impl ChapExchange {
    pub fn new(expected: ChapCredentials, mutual: Option<ChapCredentials>) -> Self {
        ChapExchange { phase: Phase::AwaitAlgorithm, expected, mutual, id: 0, challenge: Vec::new() }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Advance the exchange with the CHAP keys of one request. Every deviation from the
    /// RFC 7143 §12.1.3 sequence ends the login with Authentication failure.
    pub fn step(
        &mut self,
        keys: &ChapKeys<'_>,
        random: &mut dyn FnMut(&mut [u8]),
        out: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        match self.phase {
            Phase::AwaitAlgorithm => {
                let algorithms = keys.algorithms.ok_or(AUTH_FAILED)?;
                if keys.id.is_some() || keys.challenge.is_some() || keys.name.is_some() || keys.response.is_some() {
                    return Err(AUTH_FAILED);
                }
                // RFC 7143 §12.1.3: the target picks one of the proposed algorithms; MD5 only.
                if !list_items(algorithms).any(|a| parse_number(a) == Some(CHAP_MD5)) {
                    return Err(AUTH_FAILED);
                }
                let mut id = [0u8; 1];
                random(&mut id);
                let mut challenge = vec![0u8; CHALLENGE_LEN];
                random(&mut challenge);
                self.id = id[0];
                self.challenge = challenge;
                out.push(("CHAP_A".into(), CHAP_MD5.to_string()));
                out.push(("CHAP_I".into(), self.id.to_string()));
                out.push(("CHAP_C".into(), encode_hex(&self.challenge)));
                self.phase = Phase::AwaitResponse;
                Ok(())
            }
            Phase::AwaitResponse => {
                if keys.algorithms.is_some() {
                    return Err(AUTH_FAILED);
                }
                let name = keys.name.ok_or(AUTH_FAILED)?;
                let response = keys.response.ok_or(AUTH_FAILED)?;
                self.verify(name, response)?;
                match (keys.id, keys.challenge) {
                    (None, None) => {}
                    (Some(id), Some(challenge)) => self.answer_mutual(id, challenge, out)?,
                    _ => return Err(AUTH_FAILED),
                }
                self.phase = Phase::Done;
                Ok(())
            }
            // After success no further CHAP key is legal (RFC 7143 §6.2: no renegotiation).
            Phase::Done if keys.is_empty() => Ok(()),
            Phase::Done => Err(AUTH_FAILED),
        }
    }

    /// RFC 1994 §4.1: Response = MD5(Identifier || secret || Challenge).
    fn verify(&self, name: &str, response: &str) -> Result<(), LoginStatus> {
        // CHAP_N is a plain text string, never binary-decoded (RFC 7143 §12.1.3).
        if name != self.expected.user || self.expected.secret.is_empty() {
            return Err(AUTH_FAILED);
        }
        let got = decode_binary(response, MAX_BINARY_LEN).ok_or(AUTH_FAILED)?;
        let want = chap_response(self.id, &self.expected.secret, &self.challenge);
        if constant_time_eq(&got, &want) {
            Ok(())
        } else {
            Err(AUTH_FAILED)
        }
    }

    /// Mutual CHAP: the initiator challenged us in the same request (RFC 7143 §12.1.3).
    fn answer_mutual(&self, id: &str, challenge: &str, out: &mut Vec<(String, String)>) -> Result<(), LoginStatus> {
        let mutual = self.mutual.as_ref().ok_or(AUTH_FAILED)?;
        let id = parse_number(id).and_then(|n| u8::try_from(n).ok()).ok_or(AUTH_FAILED)?;
        let challenge = decode_binary(challenge, MAX_BINARY_LEN).ok_or(AUTH_FAILED)?;
        // RFC 7143 §9.2.1: a challenge equal to the one we sent is a reflection attack.
        if challenge == self.challenge {
            return Err(AUTH_FAILED);
        }
        // RFC 7143 §9.2.1: the same secret MUST NOT authenticate both directions.
        if mutual.secret.is_empty() || mutual.secret == self.expected.secret {
            return Err(AUTH_FAILED);
        }
        out.push(("CHAP_N".into(), mutual.user.clone()));
        out.push(("CHAP_R".into(), encode_hex(&chap_response(id, &mutual.secret, &challenge))));
        Ok(())
    }
}

/// RFC 1994 §4.1 MD5(identifier || secret || challenge): one copy for target and initiator.
pub use pdu::chap::response as chap_response;

/// Comparison whose time does not depend on where the first differing byte is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1994_response_matches_known_vector() {
        // MD5(0x01 || "secret" || 0x00..0x0f), computed independently with Python hashlib.
        let challenge: Vec<u8> = (0u8..16).collect();
        let r = chap_response(1, b"secret", &challenge);
        assert_eq!(encode_hex(&r), "0x740e86463bda3a4d7017d6e0fba0699d");
    }

    #[test]
    fn constant_time_eq_checks_length_and_content() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
