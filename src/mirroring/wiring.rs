//! Putting the use cases together: each service gets only the ports it
//! takes (see each one's struct) and the few others it calls. The graph has
//! no cycle: the sweep uses expiry, the fleet policy, removes and the
//! watch; expiry and the fleet policy run actions (creates and removes);
//! creates use the planner, numbering, joining and sharing; removes use
//! sharing. `Mirroring` is only the entry the `App` holds.

use std::sync::Arc;

use super::create::placement::Placement;
use super::create::plan::Planner;
use super::create::{Creates, Joining, Numbering};
use super::expiry::Expiry;
use super::facts::InstanceFacts;
use super::fleet::FleetPolicy;
use super::launch::Launches;
use super::release::Sharing;
use super::remove::Removes;
use super::sweep::Sweep;
use super::watch::Watch;
use super::{
    Actions, Allowed, Controls, Deployment, FleetSettings, DEFAULT_LEASE_SECONDS, DEFAULT_SWEEP_MAX_DELETIONS,
};
use crate::announce::Announcer;
use crate::domain::account::AccountId;
use crate::ports::{
    ActionRecords, Filters, Instances, Preflight, Publisher, Scans, SessionNumbers, Sessions, SharedResources, Tagging,
    Targets,
};

/// Every port, each on its own: a use case takes the ones it needs.
#[derive(Clone)]
pub struct Ports {
    pub targets: Arc<dyn Targets>,
    pub filters: Arc<dyn Filters>,
    pub sessions: Arc<dyn Sessions>,
    pub instances: Arc<dyn Instances>,
    pub preflight: Arc<dyn Preflight>,
    pub tagging: Arc<dyn Tagging>,
    pub records: Arc<dyn ActionRecords>,
    pub claims: Arc<dyn SharedResources>,
    pub numbers: Arc<dyn SessionNumbers>,
    pub scans: Arc<dyn Scans>,
    pub publisher: Arc<dyn Publisher>,
}

impl Ports {
    /// The EC2 ports from one adapter, the ledger's from another.
    pub fn new<E, L>(ec2: Arc<E>, ledger: Arc<L>, publisher: Arc<dyn Publisher>) -> Self
    where
        E: Targets + Filters + Sessions + Instances + Preflight + Tagging + 'static,
        L: ActionRecords + SharedResources + SessionNumbers + Scans + 'static,
    {
        Self {
            targets: ec2.clone(),
            filters: ec2.clone(),
            sessions: ec2.clone(),
            instances: ec2.clone(),
            preflight: ec2.clone(),
            tagging: ec2,
            records: ledger.clone(),
            claims: ledger.clone(),
            numbers: ledger.clone(),
            scans: ledger,
            publisher,
        }
    }
}

/// The use cases of one deployment, put together.
pub struct Mirroring {
    ports: Ports,
    deployment: Arc<Deployment>,
    /// Kept across rebuilds: its caches are the process's.
    facts: Arc<InstanceFacts>,
    services: Services,
}

struct Services {
    actions: Arc<Actions>,
    removes: Arc<Removes>,
    expiry: Arc<Expiry>,
    fleet: Arc<FleetPolicy>,
    sweep: Arc<Sweep>,
    watch: Arc<Watch>,
}

impl Mirroring {
    pub fn new<E, L>(ec2: Arc<E>, ledger: Arc<L>, publisher: Arc<dyn Publisher>, owner: impl Into<String>) -> Self
    where
        E: Targets + Filters + Sessions + Instances + Preflight + Tagging + 'static,
        L: ActionRecords + SharedResources + SessionNumbers + Scans + 'static,
    {
        Self::from_ports(Ports::new(ec2, ledger, publisher), owner)
    }

    pub fn from_ports(ports: Ports, owner: impl Into<String>) -> Self {
        let deployment = Deployment {
            records: ports.records.clone(),
            announcer: Arc::new(Announcer::new(ports.publisher.clone())),
            owner: owner.into(),
            lease_seconds: DEFAULT_LEASE_SECONDS,
            allowed: Allowed::default(),
            controls: Controls::default(),
            sweep_max_deletions: DEFAULT_SWEEP_MAX_DELETIONS,
            fleet: FleetSettings::default(),
        };
        let deployment = Arc::new(deployment);
        let facts = Arc::new(InstanceFacts::new(ports.instances.clone()));
        let services = assemble(&ports, &deployment, &facts);
        Self {
            ports,
            deployment,
            facts,
            services,
        }
    }

    pub fn with_allowed(self, allowed: Allowed) -> Self {
        reconfigured(self, |d| d.allowed = allowed)
    }

    pub fn with_controls(self, controls: Controls) -> Self {
        reconfigured(self, |d| d.controls = controls)
    }

    pub fn with_sweep_max_deletions(self, most: usize) -> Self {
        reconfigured(self, |d| d.sweep_max_deletions = most)
    }

    pub fn with_lease_seconds(self, lease_seconds: u64) -> Self {
        reconfigured(self, |d| d.lease_seconds = lease_seconds)
    }

    pub fn with_fleet(self, fleet: FleetSettings) -> Self {
        reconfigured(self, |d| d.fleet = fleet)
    }

    /// Creates and removes, one action at a time.
    pub fn actions(&self) -> &Actions {
        &self.services.actions
    }

    pub fn removes(&self) -> &Removes {
        &self.services.removes
    }

    pub fn expiry(&self) -> &Expiry {
        &self.services.expiry
    }

    pub fn fleet(&self) -> &FleetPolicy {
        &self.services.fleet
    }

    pub fn sweeper(&self) -> &Sweep {
        &self.services.sweep
    }

    pub fn watch(&self) -> &Watch {
        &self.services.watch
    }

    /// The launch planner: it holds only the `Instances` port and the facts.
    pub fn launches(&self) -> Launches {
        Launches {
            instances: self.ports.instances.clone(),
            facts: self.facts.clone(),
        }
    }

    /// The deployment's settings, owner and announcer.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }
}

/// The same use cases under changed settings, built again.
fn reconfigured(mut mirroring: Mirroring, change: impl FnOnce(&mut Deployment)) -> Mirroring {
    let mut deployment = Deployment::clone(&mirroring.deployment);
    change(&mut deployment);
    mirroring.deployment = Arc::new(deployment);
    mirroring.services = assemble(&mirroring.ports, &mirroring.deployment, &mirroring.facts);
    mirroring
}

/// Builds every service from the ports, leaves first.
fn assemble(ports: &Ports, deployment: &Arc<Deployment>, facts: &Arc<InstanceFacts>) -> Services {
    let sharing = Arc::new(Sharing {
        claims: ports.claims.clone(),
        filters: ports.filters.clone(),
        numbers: ports.numbers.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
    });
    let joining = Arc::new(Joining {
        claims: ports.claims.clone(),
        filters: ports.filters.clone(),
        records: ports.records.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
        facts: facts.clone(),
    });
    let numbering = Arc::new(Numbering {
        numbers: ports.numbers.clone(),
        joining: joining.clone(),
    });
    let planner = Arc::new(Planner {
        claims: ports.claims.clone(),
        filters: ports.filters.clone(),
        numbers: ports.numbers.clone(),
        preflight: ports.preflight.clone(),
        sessions: ports.sessions.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
        facts: facts.clone(),
    });
    let placement = Arc::new(Placement {
        claims: ports.claims.clone(),
        records: ports.records.clone(),
        instances: ports.instances.clone(),
        facts: facts.clone(),
        deployment: deployment.clone(),
    });
    let creates = Arc::new(Creates {
        instances: ports.instances.clone(),
        numbers: ports.numbers.clone(),
        records: ports.records.clone(),
        sessions: ports.sessions.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
        facts: facts.clone(),
        joining: joining.clone(),
        numbering,
        planner,
        placement,
        sharing: sharing.clone(),
    });
    let removes = Arc::new(Removes {
        records: ports.records.clone(),
        sessions: ports.sessions.clone(),
        tagging: ports.tagging.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
        sharing: sharing.clone(),
    });
    let actions = Arc::new(Actions {
        creates,
        removes: removes.clone(),
    });
    let expiry = Arc::new(Expiry {
        records: ports.records.clone(),
        scans: ports.scans.clone(),
        actions: actions.clone(),
    });
    let fleet = Arc::new(FleetPolicy {
        instances: ports.instances.clone(),
        records: ports.records.clone(),
        actions: actions.clone(),
        facts: facts.clone(),
        price_per_eni_hour: deployment.fleet.price_per_eni_hour,
    });
    let watch = Arc::new(Watch {
        sessions: ports.sessions.clone(),
        targets: ports.targets.clone(),
        filters: ports.filters.clone(),
        records: ports.records.clone(),
        scans: ports.scans.clone(),
        announcer: deployment.announcer.clone(),
        owner: deployment.owner.clone(),
        allowed_targets: deployment.allowed.targets.clone(),
        remove_unapproved: deployment.controls.remove_unapproved_mirrors,
    });
    let sweep = Arc::new(Sweep {
        claims: ports.claims.clone(),
        filters: ports.filters.clone(),
        numbers: ports.numbers.clone(),
        records: ports.records.clone(),
        scans: ports.scans.clone(),
        sessions: ports.sessions.clone(),
        tagging: ports.tagging.clone(),
        targets: ports.targets.clone(),
        deployment: deployment.clone(),
        expiry: expiry.clone(),
        fleet: fleet.clone(),
        joining,
        removes: removes.clone(),
        sharing,
        watch: watch.clone(),
    });
    Services {
        actions,
        removes,
        expiry,
        fleet,
        sweep,
        watch,
    }
}

/// The same deployment's use cases over another account's ports (a member
/// account of an organization hub): the same settings and announcer, its
/// own ledger view and instance facts.
pub fn for_account(home: &Mirroring, account: AccountId, ports: Ports) -> Mirroring {
    let mut deployment = Deployment::clone(&home.deployment);
    deployment.records = ports.records.clone();
    deployment.announcer = Arc::new(home.deployment.announcer.for_account(account));
    let deployment = Arc::new(deployment);
    let facts = Arc::new(InstanceFacts::new(ports.instances.clone()));
    let services = assemble(&ports, &deployment, &facts);
    Mirroring {
        ports,
        deployment,
        facts,
        services,
    }
}
