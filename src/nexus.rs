//! Who talks to whom (SAM-5 §4.7): one typed I_T nexus, shared by the transport, the SCSI layer
//! (unit attentions, SPC-2 reservations, LUN masking, copy results, task sets) and the
//! reservation manager. No identity is a formatted string that gets parsed again; the
//! "<name>,i,0x<ISID>" form exists only for display.
//!
//! iSCSI names compare case-insensitively (RFC 7143 §4.2.7.1: names are normalised, and
//! normalised names are compared): an `IscsiName` is normalised once, when it is made, so every
//! comparison after that is plain equality, the same in masking, reservations and unit
//! attentions.

use std::fmt;
use std::sync::Arc;

/// An iSCSI name, normalised (lower case). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IscsiName(Arc<str>);

impl IscsiName {
    pub fn new(name: &str) -> IscsiName {
        IscsiName(name.to_ascii_lowercase().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IscsiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IscsiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// An iSCSI initiator port (RFC 7143 §4.2.7.1, SPC-4 §7.6.4.6): initiator name and ISID.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InitiatorPort {
    pub name: IscsiName,
    pub isid: [u8; 6],
}

impl InitiatorPort {
    pub fn new(name: &str, isid: [u8; 6]) -> InitiatorPort {
        InitiatorPort { name: IscsiName::new(name), isid }
    }
}

/// "<name>,i,0x<ISID>" (RFC 7143 §4.2.7.1).
impl fmt::Display for InitiatorPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},i,0x", self.name)?;
        self.isid.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for InitiatorPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An iSCSI target port: target name and target portal group tag (RFC 7143 §4.2.7.1), and its
/// RELATIVE TARGET PORT IDENTIFIER (SPC-4 §7.8.6.7) that READ FULL STATUS, VPD 83h and REPORT
/// TARGET PORT GROUPS report. Single-node the relative port is the TPGT; in a cluster it is
/// gateway id × 256 + TPGT (`scsi::alua::Alua::relative_port`), so two gateways whose portal
/// groups share a TPGT are still two target ports.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TargetPort {
    pub name: String,
    pub tpgt: u16,
    pub relative_port: u16,
}

impl TargetPort {
    /// A single-node target port: its relative port identifier is the TPGT.
    pub fn new(name: &str, tpgt: u16) -> TargetPort {
        TargetPort { name: name.to_string(), tpgt, relative_port: tpgt }
    }
}

/// "<name>,t,0x<TPGT>" (RFC 7143 §4.2.7.1).
impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},t,0x{:04x}", self.name, self.tpgt)
    }
}

impl fmt::Debug for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An I_T nexus (SAM-5 §4.7): one initiator port talking to one target port.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ItNexus {
    pub initiator: InitiatorPort,
    pub target: TargetPort,
}

impl ItNexus {
    pub fn new(initiator_name: &str, isid: [u8; 6], target_name: &str, tpgt: u16) -> ItNexus {
        ItNexus { initiator: InitiatorPort::new(initiator_name, isid), target: TargetPort::new(target_name, tpgt) }
    }

    /// The same nexus on a target port whose relative port identifier is `relative_port`
    /// (a cluster gateway's port, SPC-4 §7.8.6.7).
    pub fn with_relative_port(mut self, relative_port: u16) -> ItNexus {
        self.target.relative_port = relative_port;
        self
    }

    /// The initiator port: what unit attentions, SPC-2 reservations and copy results are kept by.
    pub fn initiator_port(&self) -> &InitiatorPort {
        &self.initiator
    }

    pub fn initiator_name(&self) -> &IscsiName {
        &self.initiator.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_after_normalisation_and_display_as_rfc_7143_port_names() {
        let a = ItNexus::new("IQN.1994-05.com.Example:Host", [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a], "iqn.t", 1);
        let b = ItNexus::new("iqn.1994-05.com.example:host", [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a], "iqn.t", 1);
        assert_eq!(a, b);
        assert_eq!(a.initiator.to_string(), "iqn.1994-05.com.example:host,i,0x80123456789a");
        assert_eq!(a.target.to_string(), "iqn.t,t,0x0001");
        assert_ne!(a.initiator, InitiatorPort::new("iqn.1994-05.com.example:host", [0; 6]));
    }
}
