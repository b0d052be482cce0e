//! SendTargets text responses (RFC 7143 Appendix C, §13.3).

/// Build the key list answering `SendTargets=<request_value>`.
///
/// `targets` holds the targets this initiator may see, each with its portals written as
/// `address:port,tpgt` (RFC 7143 §13.8). Per Appendix C:
/// - `All` lists every given target;
/// - an iSCSI name lists that target only, or nothing when it is not among `targets`;
/// - an empty value means "the target of this session": the caller passes just that target
///   (normal sessions only; a discovery session has none, so pass an empty slice).
///
/// Each target is a `TargetName` followed by its `TargetAddress` keys, the grouping
/// Appendix C prescribes.
pub fn send_targets_response(request_value: &str, targets: &[(String, Vec<String>)]) -> Vec<(String, String)> {
    let selected = targets.iter().filter(|(name, _)| match request_value {
        "All" | "" => true,
        wanted => name == wanted,
    });
    let mut keys = Vec::new();
    for (name, addresses) in selected {
        keys.push(("TargetName".to_string(), name.clone()));
        for address in addresses {
            keys.push(("TargetAddress".to_string(), address.clone()));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<(String, Vec<String>)> {
        vec![
            ("iqn.2024-01.org.example:disk1".into(), vec!["127.0.0.1:3260,1".into(), "[::1]:3260,1".into()]),
            ("iqn.2024-01.org.example:disk2".into(), vec!["127.0.0.1:3260,1".into()]),
        ]
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn all_lists_every_target_grouped_with_its_addresses() {
        assert_eq!(
            send_targets_response("All", &targets()),
            vec![
                pair("TargetName", "iqn.2024-01.org.example:disk1"),
                pair("TargetAddress", "127.0.0.1:3260,1"),
                pair("TargetAddress", "[::1]:3260,1"),
                pair("TargetName", "iqn.2024-01.org.example:disk2"),
                pair("TargetAddress", "127.0.0.1:3260,1"),
            ]
        );
    }

    #[test]
    fn a_name_selects_one_target() {
        assert_eq!(
            send_targets_response("iqn.2024-01.org.example:disk2", &targets()),
            vec![pair("TargetName", "iqn.2024-01.org.example:disk2"), pair("TargetAddress", "127.0.0.1:3260,1")]
        );
    }

    #[test]
    fn unknown_name_gives_nothing() {
        assert!(send_targets_response("iqn.2024-01.org.example:nope", &targets()).is_empty());
        assert!(send_targets_response("all", &targets()).is_empty(), "All is case-sensitive");
    }

    #[test]
    fn empty_value_reports_the_given_session_target() {
        let only = &targets()[..1];
        assert_eq!(send_targets_response("", only).len(), 3);
        assert!(send_targets_response("", &[]).is_empty());
    }
}
