//! Whether a target ENI can receive what is mirrored to it. EC2 wraps
//! mirrored packets in VXLAN (UDP 4789) from the source ENI's address; the
//! target's security groups and its subnet's network ACL must admit that,
//! or the session exists and delivers nothing. Pure: the adapter reads the
//! rules (`Instances::ingress`), this judges them.

use std::net::Ipv4Addr;

use crate::ports::{AclEntry, Endpoint, GroupRule, Ingress};

/// VXLAN's UDP port, the one EC2 sends mirrored traffic to.
pub const VXLAN_PORT: i32 = 4789;

/// Why traffic from `source` would not reach a target with this ingress, or
/// `None` when it would (or the answer cannot be known: no source address).
pub fn refusal(ingress: &Ingress, source: &Endpoint) -> Option<String> {
    let ip = source.private_ip.as_deref()?.parse::<Ipv4Addr>().ok()?;
    let by_group = ingress
        .group_rules
        .iter()
        .any(|rule| udp_port_in(&rule.protocol, rule.ports) && admits_source(rule, ip, source));
    if !by_group {
        return Some(format!(
            "the target ENI's security groups do not admit UDP {VXLAN_PORT} (VXLAN) from {ip}"
        ));
    }
    let entries = ingress.acl_entries.as_ref()?;
    match acl_verdict(entries, ip) {
        Some(true) => None,
        _ => Some(format!(
            "the target subnet's network ACL does not admit UDP {VXLAN_PORT} (VXLAN) from {ip}"
        )),
    }
}

fn admits_source(rule: &GroupRule, ip: Ipv4Addr, source: &Endpoint) -> bool {
    rule.cidrs.iter().any(|cidr| contains(cidr, ip)) || rule.groups.iter().any(|g| source.security_groups.contains(g))
}

/// The first entry, in rule-number order, that matches decides; none denies.
fn acl_verdict(entries: &[AclEntry], ip: Ipv4Addr) -> Option<bool> {
    let mut ordered: Vec<&AclEntry> = entries.iter().collect();
    ordered.sort_by_key(|e| e.rule_number);
    ordered
        .into_iter()
        .find(|e| udp_port_in(&e.protocol, e.ports) && e.cidr.as_deref().is_some_and(|c| contains(c, ip)))
        .map(|e| e.allow)
}

fn udp_port_in(protocol: &str, ports: Option<(i32, i32)>) -> bool {
    let udp = matches!(protocol, "-1" | "udp" | "17" | "all");
    udp && ports.is_none_or(|(from, to)| from <= VXLAN_PORT && VXLAN_PORT <= to)
}

/// Whether an IPv4 CIDR holds the address; anything unreadable holds nothing.
fn contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let Some((network, length)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(length)) = (network.parse::<Ipv4Addr>(), length.parse::<u32>()) else {
        return false;
    };
    if length > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
    u32::from(network) & mask == u32::from(ip) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str, groups: &[&str]) -> Endpoint {
        Endpoint {
            private_ip: Some(ip.into()),
            security_groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rule(protocol: &str, ports: Option<(i32, i32)>, cidrs: &[&str], groups: &[&str]) -> GroupRule {
        GroupRule {
            protocol: protocol.into(),
            ports,
            cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn ingress(rules: Vec<GroupRule>) -> Ingress {
        Ingress {
            group_rules: rules,
            acl_entries: None,
        }
    }

    #[test]
    fn a_group_must_admit_udp_4789_from_the_source() {
        let from = source("10.0.1.5", &["sg-src"]);
        let admitted = [
            rule("udp", Some((4789, 4789)), &["10.0.0.0/16"], &[]),
            rule("-1", None, &["0.0.0.0/0"], &[]),
            rule("17", Some((4000, 5000)), &["10.0.1.5/32"], &[]),
            rule("udp", Some((4789, 4789)), &[], &["sg-src"]),
        ];
        for r in admitted {
            assert_eq!(refusal(&ingress(vec![r.clone()]), &from), None, "{r:?}");
        }
        let refused = [
            rule("tcp", Some((4789, 4789)), &["10.0.0.0/16"], &[]),
            rule("udp", Some((53, 53)), &["10.0.0.0/16"], &[]),
            rule("udp", Some((4789, 4789)), &["10.1.0.0/16"], &[]),
            rule("udp", Some((4789, 4789)), &[], &["sg-other"]),
            rule("udp", Some((4789, 4789)), &["not a cidr"], &[]),
        ];
        for r in refused {
            let why = refusal(&ingress(vec![r.clone()]), &from).expect("refused");
            assert!(why.contains("security groups") && why.contains("10.0.1.5"), "{why}");
        }
        assert!(refusal(&ingress(vec![]), &from).is_some());
    }

    #[test]
    fn the_network_acl_is_read_in_rule_order() {
        let from = source("10.0.1.5", &[]);
        let open = rule("-1", None, &["0.0.0.0/0"], &[]);
        let entry = |n, allow, cidr: &str| AclEntry {
            rule_number: n,
            protocol: "-1".into(),
            allow,
            cidr: Some(cidr.into()),
            ports: None,
        };
        let mut with_acl = ingress(vec![open]);
        with_acl.acl_entries = Some(vec![entry(200, true, "0.0.0.0/0"), entry(100, false, "10.0.1.0/24")]);
        assert!(refusal(&with_acl, &from).is_some_and(|w| w.contains("network ACL")));
        with_acl.acl_entries = Some(vec![entry(100, true, "0.0.0.0/0"), entry(200, false, "10.0.1.0/24")]);
        assert_eq!(refusal(&with_acl, &from), None);
        with_acl.acl_entries = Some(vec![]);
        assert!(refusal(&with_acl, &from).is_some(), "no matching entry denies");
    }

    #[test]
    fn without_a_source_address_nothing_is_judged() {
        let unknown = Endpoint::default();
        assert_eq!(refusal(&ingress(vec![]), &unknown), None);
    }
}
