//! What EC2 says of an instance that the logic decides on: its state, its
//! type's hypervisor, and AWS's documented rules on which instance types
//! can be Traffic Mirroring sources and how many sources a target ENI takes.

use std::fmt;

use super::model::SOURCES_PER_ENI_TARGET;

/// An instance's lifecycle state, as EC2 names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
    /// A name EC2 may add later: kept, never acted on.
    Other(String),
}

impl InstanceState {
    pub fn parse(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Shutting down or terminated: AWS deletes its ENIs' sessions.
    pub fn is_ending(&self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The hypervisor of an instance type: only Nitro instances can be traffic
/// mirror sources (AWS's documented rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hypervisor {
    Nitro,
    Xen,
    Other(String),
}

impl Hypervisor {
    pub fn parse(name: &str) -> Self {
        match name {
            "nitro" => Self::Nitro,
            "xen" => Self::Xen,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Nitro => "nitro",
            Self::Xen => "xen",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `DescribeInstanceTypes` says of an instance type that the source
/// rules read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceTypeFacts {
    pub hypervisor: Option<Hypervisor>,
    pub bare_metal: bool,
}

/// Where the source rules come from, and when they were read.
pub const SOURCE_RULES_PAGE: &str =
    "https://docs.aws.amazon.com/vpc/latest/mirroring/traffic-mirroring-limitations.html (read 2026-12-04)";

/// Nitro families on which Traffic Mirroring is not available (the
/// limitations page: "virtualized Nitro instances").
const NITRO_FAMILIES_NOT_SOURCES: &[&str] = &[
    "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "m8g", //
    "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c8g", //
    "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "r8g", //
    "x2idn", "x2iedn", "x2iezn", "x8g", "i4g", "i4i", "im4gn", "is4gen", //
    "inf2", "p5", "trn1", "trn1n", "hpc6a", "hpc6id", "hpc7a", "hpc7g",
];

/// The only non-Nitro (Xen) families that can be sources (not T2).
const NON_NITRO_FAMILIES_SOURCES: &[&str] = &["c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e"];

/// Target ENIs on these instance types take up to 100 sources; every other
/// ENI target takes 10 (the quotas page,
/// https://docs.aws.amazon.com/vpc/latest/mirroring/traffic-mirroring-quotas.html, read
/// 2026-12-04: the largest sizes of the families it lists).
const TYPES_WITH_100_SOURCES_PER_TARGET: &[&str] = &[
    "m5.24xlarge",
    "m5d.24xlarge",
    "m5dn.24xlarge",
    "m5n.24xlarge", //
    "c5.18xlarge",
    "c5d.18xlarge",
    "c5n.18xlarge", //
    "r5.24xlarge",
    "r5d.24xlarge",
    "r5dn.24xlarge",
    "r5n.24xlarge",
];

/// Sources an ENI target on one of the largest sizes takes.
pub const SOURCES_PER_LARGEST_ENI_TARGET: usize = 100;

/// An instance type's family: `m7i-flex` of `m7i-flex.large`.
pub fn family(instance_type: &str) -> String {
    instance_type.split('.').next().unwrap_or_default().to_ascii_lowercase()
}

/// Why an instance of this type cannot be a Traffic Mirroring source, by
/// AWS's documented rules (`SOURCE_RULES_PAGE`); `None`: it can. "Nitro"
/// alone is the wrong rule both ways.
pub fn source_refusal(instance_type: &str, facts: &InstanceTypeFacts) -> Option<String> {
    let family = family(instance_type);
    if facts.bare_metal || instance_type.contains("metal") {
        return Some("bare-metal instances cannot be traffic mirror sources".into());
    }
    if NITRO_FAMILIES_NOT_SOURCES.contains(&family.as_str()) {
        return Some(format!(
            "the {family} family is among the virtualized Nitro families AWS does not mirror"
        ));
    }
    match &facts.hypervisor {
        Some(Hypervisor::Nitro) => None,
        _ if NON_NITRO_FAMILIES_SOURCES.contains(&family.as_str()) => None,
        Some(hypervisor) => Some(format!(
            "{family} is a {hypervisor} family, and only C4, D2, G3, G3s, H1, I3, M4, P2, P3, R4, X1 and X1e of \
             those can be traffic mirror sources"
        )),
        None => Some(format!("EC2 names no hypervisor for {instance_type}")),
    }
}

/// How many sources a target ENI attached to an instance of this type takes.
pub fn sources_per_eni_target(instance_type: Option<&str>) -> usize {
    match instance_type {
        Some(kind) if TYPES_WITH_100_SOURCES_PER_TARGET.contains(&kind) => SOURCES_PER_LARGEST_ENI_TARGET,
        _ => SOURCES_PER_ENI_TARGET,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2s_names_read_back_as_they_were_and_only_ends_are_ending() {
        for name in [
            "pending",
            "running",
            "shutting-down",
            "terminated",
            "stopping",
            "stopped",
            "rebooting",
        ] {
            assert_eq!(InstanceState::parse(name).name(), name);
        }
        let ending: Vec<&str> = [
            "pending",
            "running",
            "shutting-down",
            "terminated",
            "stopped",
            "rebooting",
        ]
        .into_iter()
        .filter(|name| InstanceState::parse(name).is_ending())
        .collect();
        assert_eq!(ending, ["shutting-down", "terminated"]);
        assert_eq!(Hypervisor::parse("nitro"), Hypervisor::Nitro);
        assert_eq!(Hypervisor::parse("xen"), Hypervisor::Xen);
        assert_eq!(Hypervisor::parse("kvm").name(), "kvm");
    }

    #[test]
    fn the_documented_source_rules_hold_both_ways() {
        let nitro = InstanceTypeFacts {
            hypervisor: Some(Hypervisor::Nitro),
            bare_metal: false,
        };
        let xen = InstanceTypeFacts {
            hypervisor: Some(Hypervisor::Xen),
            bare_metal: false,
        };
        let metal = InstanceTypeFacts {
            hypervisor: None,
            bare_metal: true,
        };
        let table = [
            ("m5.large", &nitro, true),
            ("t3.micro", &nitro, true),
            ("c5n.18xlarge", &nitro, true),
            ("m7i.large", &nitro, false),
            ("m7i-flex.large", &nitro, false),
            ("c7g.xlarge", &nitro, false),
            ("m6i.2xlarge", &nitro, false),
            ("m5.metal", &metal, false),
            ("m4.large", &xen, true),
            ("c4.xlarge", &xen, true),
            ("x1e.xlarge", &xen, true),
            ("t2.micro", &xen, false),
            ("m3.medium", &xen, false),
        ];
        for (kind, facts, can) in table {
            assert_eq!(
                source_refusal(kind, facts).is_none(),
                can,
                "{kind}: {:?}",
                source_refusal(kind, facts)
            );
        }
    }

    #[test]
    fn only_the_largest_listed_sizes_take_a_hundred_sources() {
        assert_eq!(sources_per_eni_target(Some("m5.24xlarge")), 100);
        assert_eq!(sources_per_eni_target(Some("c5n.18xlarge")), 100);
        assert_eq!(sources_per_eni_target(Some("m5.12xlarge")), 10);
        assert_eq!(sources_per_eni_target(Some("m5.large")), 10);
        assert_eq!(sources_per_eni_target(None), 10);
    }
}
