//! `iscsi://[user[%secret]@]host[:port]/target-iqn/lun` — the libiscsi URL form, so the same
//! strings work with `iscsi-perf`, `iscsi-test-cu` and `palisade bench`.

use std::fmt;

/// IANA-assigned iSCSI port (RFC 7143 §13.8).
const DEFAULT_PORT: u16 = 3260;

#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// Host as written (an IPv6 literal keeps its brackets), ready for `host:port` joining.
    pub host: String,
    pub port: u16,
    pub target: String,
    pub lun: u64,
    /// CHAP user and secret (RFC 7143 §12.1.3) when the URL carries `user%secret@`.
    pub chap: Option<(String, String)>,
}

impl IscsiUrl {
    pub fn parse(text: &str) -> Result<IscsiUrl, String> {
        let rest =
            text.strip_prefix("iscsi://").ok_or_else(|| format!("`{text}`: an iSCSI URL starts with iscsi://"))?;
        let (authority, path) =
            rest.split_once('/').ok_or_else(|| format!("`{text}`: expected iscsi://HOST[:PORT]/TARGET/LUN"))?;
        let (chap, hostport) = match authority.rsplit_once('@') {
            Some((cred, hostport)) => {
                let (user, secret) =
                    cred.split_once('%').ok_or_else(|| format!("`{text}`: credentials are written user%secret@"))?;
                if user.is_empty() || secret.is_empty() {
                    return Err(format!("`{text}`: empty CHAP user or secret"));
                }
                (Some((user.to_string(), secret.to_string())), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).map_err(|e| format!("`{text}`: {e}"))?;
        let (target, lun) =
            path.split_once('/').ok_or_else(|| format!("`{text}`: the LUN is missing (…/TARGET/LUN)"))?;
        if target.is_empty() {
            return Err(format!("`{text}`: empty target name"));
        }
        let lun =
            lun.trim_end_matches('/').parse::<u64>().map_err(|_| format!("`{text}`: LUN `{lun}` is not a number"))?;
        // SAM-5 flat addressing reaches 16383; beyond that the LUN field encoding differs.
        if lun > 16383 {
            return Err(format!("`{text}`: LUN {lun} is above 16383"));
        }
        Ok(IscsiUrl { host, port, target: target.to_string(), lun, chap })
    }

    /// `host:port` for `TcpStream::connect`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The 8-byte LUN field of a PDU: SAM-5 §4.7.3 peripheral (LUN < 256) or flat addressing.
    pub fn lun_field(&self) -> u64 {
        if self.lun < 256 {
            self.lun << 48
        } else {
            (0x4000 | self.lun) << 48
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let (inside, tail) = after.split_once(']').ok_or("unterminated IPv6 literal")?;
        let host = format!("[{inside}]");
        match tail.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if tail.is_empty() => (host, None),
            None => return Err("junk after IPv6 literal".into()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?,
        None => DEFAULT_PORT,
    };
    Ok((host, port))
}

impl fmt::Display for IscsiUrl {
    // Never prints the CHAP secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.chap.as_ref().map(|(u, _)| format!("{u}@")).unwrap_or_default();
        write!(f, "iscsi://{user}{}:{}/{}/{}", self.host, self.port, self.target, self.lun)
    }
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_url() {
        let u = IscsiUrl::parse("iscsi://127.0.0.1:3261/iqn.2026-11.test:tgt/1").unwrap();
        assert_eq!(u.address(), "127.0.0.1:3261");
        assert_eq!(u.target, "iqn.2026-11.test:tgt");
        assert_eq!(u.lun, 1);
        assert_eq!(u.lun_field(), 1 << 48);
        assert!(u.chap.is_none());
    }

    #[test]
    fn default_port_ipv6_and_chap() {
        let u = IscsiUrl::parse("iscsi://bob%s3cr3tpassword@[::1]/iqn.x:y/0").unwrap();
        assert_eq!(u.address(), "[::1]:3260");
        assert_eq!(u.chap, Some(("bob".into(), "s3cr3tpassword".into())));
        assert!(!u.to_string().contains("s3cr3t"));
    }

    #[test]
    fn flat_lun_addressing_above_255() {
        let u = IscsiUrl::parse("iscsi://h/iqn.x:y/300").unwrap();
        assert_eq!(u.lun_field() >> 48, 0x4000 | 300);
    }

    #[test]
    fn rejects_malformed() {
        for bad in
            ["http://h/t/0", "iscsi://h/t", "iscsi://h:x/t/0", "iscsi://h/t/abc", "iscsi://bob@h/t/0", "iscsi:///t/0"]
        {
            assert!(IscsiUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
