//! What EC2 says of an instance that the logic decides on: its state and
//! its type's hypervisor, read once from EC2's names into enums.

use std::fmt;

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
}
