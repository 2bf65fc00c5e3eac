//! `MemoryEc2`: EC2's mirroring, instance and interface calls, in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use traffic_mirroring::domain::instance::InstanceState;
use traffic_mirroring::mirroring::model::RuleSpec;
use traffic_mirroring::ports::*;

use super::Faults;

mod calls;

#[derive(Default)]
struct Ec2State {
    next_id: u64,
    targets: BTreeMap<String, MirrorTarget>,
    filters: BTreeMap<String, (MirrorFilter, usize)>,
    sessions: BTreeMap<String, MirrorSession>,
    /// (call, client token) -> the id the first call made.
    tokens: HashMap<(&'static str, String), String>,
    calls: Vec<&'static str>,
    /// The EC2 actions asked with DryRun (a preflight), oldest first.
    dry_runs: Vec<&'static str>,
    /// Instances a test planted, by id.
    instances: BTreeMap<String, InstanceInfo>,
    /// Each filter's rules, as asked for, in order.
    rules: BTreeMap<String, Vec<RuleSpec>>,
    /// What each session was made with that `MirrorSession` does not carry
    /// (packet length, description).
    session_requests: BTreeMap<String, NewSession>,
    /// ENIs a test placed (subnet, VPC, address, groups); any other `eni-` id
    /// is an interface in the default subnet.
    interfaces: BTreeMap<String, InterfaceInfo>,
    /// ENIs that do not exist (deleted, or never made).
    absent_enis: BTreeSet<String>,
    /// Target ENIs' ingress rules, as a test set them; unset: not readable.
    ingress: BTreeMap<String, Ingress>,
    /// Other accounts' targets shared with this one (through RAM): a
    /// session may name them.
    shared_in: BTreeSet<String>,
}

impl Ec2State {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:017x}", self.next_id)
    }
}

/// The subnet and VPC of every ENI and instance a test does not place elsewhere.
pub const DEFAULT_SUBNET: &str = "subnet-0000000a";
pub const DEFAULT_VPC: &str = "vpc-0000000a";

/// Instance families EC2 runs on Xen, not Nitro (AWS's list of instances
/// built on the Nitro System leaves these out); every other type is Nitro.
const XEN_FAMILIES: [&str; 4] = ["t2", "m4", "c4", "r4"];

/// EC2's mirroring calls, in memory. Any `eni-` id is an interface in the
/// default subnet unless a test placed it elsewhere or said it is absent;
/// instances are those a test plants.
#[derive(Default)]
pub struct MemoryEc2 {
    state: Mutex<Ec2State>,
    faults: Faults,
    /// Calls that take this many turns of the scheduler: latency without a
    /// clock, so calls of actions run at once overlap as over the wire.
    turns: Mutex<HashMap<&'static str, usize>>,
    /// Calls that take this much wall-clock time (for deadlines, which are real time).
    delays: Mutex<HashMap<&'static str, std::time::Duration>>,
    /// A logical clock: each call's start and end take one tick each.
    clock: AtomicU64,
    spans: Mutex<Vec<Span>>,
}

/// One call, from its start to its answer, on `MemoryEc2`'s logical clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub call: &'static str,
    /// The source ENI of a session create.
    pub subject: Option<String>,
    pub start: u64,
    pub end: u64,
}

/// The most spans of `call` open at one tick.
pub fn peak_overlap(spans: &[Span], call: &str) -> usize {
    let mine: Vec<&Span> = spans.iter().filter(|s| s.call == call).collect();
    mine.iter()
        .map(|s| mine.iter().filter(|o| o.start <= s.start && s.start < o.end).count())
        .max()
        .unwrap_or(0)
}

impl MemoryEc2 {
    /// The next call named `call` (EC2's action name) fails with `error`.
    pub fn fail_next(&self, call: &str, error: AwsError) {
        self.faults.arm(call, error);
    }

    /// Another account's target is shared with this one (or no longer is).
    pub fn share_in(&self, target_id: &str, shared: bool) {
        let mut state = self.state.lock().expect("state");
        if shared {
            state.shared_in.insert(target_id.to_owned());
        } else {
            state.shared_in.remove(target_id);
        }
    }

    /// Every other account's target this one may name now.
    pub fn shared_in(&self) -> Vec<String> {
        self.state.lock().expect("state").shared_in.iter().cloned().collect()
    }

    /// Ids of every session, filter and target, in that order.
    pub fn resources(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let state = self.state.lock().expect("state");
        (
            state.sessions.keys().cloned().collect(),
            state.filters.keys().cloned().collect(),
            state.targets.keys().cloned().collect(),
        )
    }

    /// A session someone else made (a target for `destination` and a filter
    /// of their own, with `tags` on the session), as if by another tool.
    pub fn plant_session(&self, source: &str, destination: &str, tags: &[(&str, &str)]) -> String {
        let target_id = self.plant_target(destination, &[]);
        let filter_id = self.plant_filter(&[]);
        self.plant_session_on(source, &target_id, &filter_id, 1, tags)
    }

    /// A target for an ENI made by someone else (or, with our tags, by an
    /// earlier version of the product).
    pub fn plant_target(&self, destination: &str, tags: &[(&str, &str)]) -> String {
        let mut state = self.state.lock().expect("state");
        let target_id = state.new_id("tmt");
        let target = MirrorTarget {
            owner_id: None,
            id: target_id.clone(),
            network_interface_id: Some(destination.to_owned()),
            load_balancer: None,
            tags: owned_tags(tags),
        };
        state.targets.insert(target_id.clone(), target);
        target_id
    }

    /// A filter without rules made by someone else.
    pub fn plant_filter(&self, tags: &[(&str, &str)]) -> String {
        let mut state = self.state.lock().expect("state");
        let filter_id = state.new_id("tmf");
        let filter = MirrorFilter {
            id: filter_id.clone(),
            tags: owned_tags(tags),
        };
        state.filters.insert(filter_id.clone(), (filter, 0));
        filter_id
    }

    /// A session made by someone else on a target and filter that exist.
    pub fn plant_session_on(
        &self,
        source: &str,
        target_id: &str,
        filter_id: &str,
        number: u16,
        tags: &[(&str, &str)],
    ) -> String {
        let mut state = self.state.lock().expect("state");
        assert!(
            (state.targets.contains_key(target_id) || state.shared_in.contains(target_id))
                && state.filters.contains_key(filter_id),
            "EC2 refuses a session on a target or filter it does not have (or was not shared)"
        );
        let session_id = state.new_id("tms");
        let session = MirrorSession {
            owner_id: None,
            id: session_id.clone(),
            source_eni: source.to_owned(),
            target_id: target_id.to_owned(),
            filter_id: filter_id.to_owned(),
            session_number: number,
            virtual_network_id: None,
            tags: owned_tags(tags),
        };
        state.sessions.insert(session_id.clone(), session);
        session_id
    }

    /// A session as EC2 has it now.
    pub fn session(&self, id: &str) -> Option<MirrorSession> {
        self.state.lock().expect("state").sessions.get(id).cloned()
    }

    /// The ids of the sessions whose source is `eni`.
    pub fn sessions_on(&self, eni: &str) -> Vec<String> {
        let state = self.state.lock().expect("state");
        state
            .sessions
            .values()
            .filter(|s| s.source_eni == eni)
            .map(|s| s.id.clone())
            .collect()
    }

    /// The packet length, VNI and description a session was made with.
    pub fn session_request(&self, id: &str) -> Option<NewSession> {
        self.state.lock().expect("state").session_requests.get(id).cloned()
    }

    /// The rules of a filter, in the order they were made.
    pub fn filter_rules(&self, id: &str) -> Vec<RuleSpec> {
        let state = self.state.lock().expect("state");
        state.rules.get(id).cloned().unwrap_or_default()
    }

    /// A target as EC2 has it now.
    pub fn target_of(&self, id: &str) -> Option<MirrorTarget> {
        self.state.lock().expect("state").targets.get(id).cloned()
    }

    /// The type EC2 gives a target: `network-interface`,
    /// `network-load-balancer` or `gateway-load-balancer-endpoint`.
    pub fn target_type(&self, id: &str) -> Option<&'static str> {
        let target = self.target_of(id)?;
        Some(match (&target.network_interface_id, target.load_balancer.as_deref()) {
            (Some(_), _) => "network-interface",
            (None, Some(endpoint)) if endpoint.starts_with("vpce-") => "gateway-load-balancer-endpoint",
            (None, _) => "network-load-balancer",
        })
    }

    /// The value of one tag on a session, filter or target.
    pub fn tag_of(&self, id: &str, key: &str) -> Option<String> {
        let state = self.state.lock().expect("state");
        let tags = if let Some(session) = state.sessions.get(id) {
            &session.tags
        } else if let Some((filter, _)) = state.filters.get(id) {
            &filter.tags
        } else {
            &state.targets.get(id)?.tags
        };
        tag_value(tags, key).map(str::to_owned)
    }

    /// An ENI that does not exist: EC2 answers `InvalidNetworkInterfaceID.NotFound`.
    pub fn forget_eni(&self, eni: &str) {
        self.state.lock().expect("state").absent_enis.insert(eni.to_owned());
    }

    /// Places an ENI in a subnet and VPC, with an address and security groups.
    pub fn place_eni(&self, eni: &str, subnet: &str, vpc: &str, endpoint: Endpoint) {
        let interface = InterfaceInfo {
            instance_id: None,
            availability_zone: None,
            vpc_id: Some(vpc.to_owned()),
            subnet_id: Some(subnet.to_owned()),
            endpoint,
        };
        self.state
            .lock()
            .expect("state")
            .interfaces
            .insert(eni.to_owned(), interface);
    }

    /// Puts an ENI in an Availability Zone (unplaced ENIs have none).
    pub fn set_zone(&self, eni: &str, zone: &str) {
        let mut state = self.state.lock().expect("state");
        let interface = state.interfaces.entry(eni.to_owned()).or_insert_with(|| InterfaceInfo {
            instance_id: None,
            availability_zone: None,
            vpc_id: Some(DEFAULT_VPC.into()),
            subnet_id: Some(DEFAULT_SUBNET.into()),
            endpoint: Endpoint::default(),
        });
        interface.availability_zone = Some(zone.to_owned());
    }

    /// The inbound rules that admit traffic into a target ENI.
    pub fn set_ingress(&self, eni: &str, ingress: Ingress) {
        self.state
            .lock()
            .expect("state")
            .ingress
            .insert(eni.to_owned(), ingress);
    }

    /// A running instance with these ENIs (the first primary) and tags.
    pub fn plant_instance(&self, id: &str, enis: &[&str], tags: &[(&str, &str)]) {
        self.plant_instance_of_type(id, "m5.large", enis, tags);
    }

    /// A running instance of `instance_type` (`t2.micro` runs on Xen).
    pub fn plant_instance_of_type(&self, id: &str, instance_type: &str, enis: &[&str], tags: &[(&str, &str)]) {
        let instance = InstanceInfo {
            id: id.to_owned(),
            instance_type: instance_type.to_owned(),
            vpc_id: Some(DEFAULT_VPC.into()),
            subnet_id: Some(DEFAULT_SUBNET.into()),
            availability_zone: None,
            enis: enis.iter().map(|e| e.to_string()).collect(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state: Some(InstanceState::Running),
            endpoints: Default::default(),
        };
        self.state
            .lock()
            .expect("state")
            .instances
            .insert(id.to_owned(), instance);
    }

    /// Puts a planted instance in an Availability Zone.
    pub fn set_instance_zone(&self, id: &str, zone: &str) {
        if let Some(instance) = self.state.lock().expect("state").instances.get_mut(id) {
            instance.availability_zone = Some(zone.to_owned());
        }
    }

    /// Attaches an ENI to a planted instance, after the ones it has.
    pub fn attach_eni(&self, id: &str, eni: &str) {
        if let Some(instance) = self.state.lock().expect("state").instances.get_mut(id) {
            instance.enis.push(eni.to_owned());
        }
    }

    /// Sets a planted instance's state (`shutting-down`, `terminated`, ...).
    pub fn set_instance_state(&self, id: &str, state: &str) {
        if let Some(instance) = self.state.lock().expect("state").instances.get_mut(id) {
            instance.state = Some(InstanceState::parse(state));
        }
    }

    /// Sets (or, with `None`, removes) one tag of a planted instance.
    pub fn tag_instance(&self, id: &str, key: &str, value: Option<&str>) {
        let mut state = self.state.lock().expect("state");
        if let Some(instance) = state.instances.get_mut(id) {
            instance.tags.retain(|(k, _)| k != key);
            if let Some(value) = value {
                instance.tags.push((key.to_owned(), value.to_owned()));
            }
        }
    }

    /// Deletes a session as someone else would, behind the deployment's back.
    pub fn delete_behind_our_back(&self, session_id: &str) -> bool {
        self.state.lock().expect("state").sessions.remove(session_id).is_some()
    }

    /// How many calls of each name were made.
    pub fn calls(&self, call: &str) -> usize {
        self.state
            .lock()
            .expect("state")
            .calls
            .iter()
            .filter(|c| **c == call)
            .count()
    }

    /// Every later call of `call` takes `turns` turns of the scheduler.
    pub fn slow_down(&self, call: &'static str, turns: usize) {
        self.turns.lock().expect("turns").insert(call, turns);
    }

    /// Every later call of `call` takes `delay` of real time, as EC2 does
    /// when its calls queue: the invocation's deadline is real time too.
    pub fn delay(&self, call: &'static str, delay: std::time::Duration) {
        self.delays.lock().expect("delays").insert(call, delay);
    }

    /// Every call made so far, as spans on the logical clock.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }

    async fn pace(&self, call: &'static str, subject: Option<&str>) {
        let turns = self.turns.lock().expect("turns").get(call).copied().unwrap_or(0);
        let start = self.clock.fetch_add(1, Ordering::SeqCst);
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
        let delay = self.delays.lock().expect("delays").get(call).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let end = self.clock.fetch_add(1, Ordering::SeqCst);
        let span = Span {
            call,
            subject: subject.map(str::to_owned),
            start,
            end,
        };
        self.spans.lock().expect("spans").push(span);
    }

    /// The actions asked with DryRun, oldest first.
    pub fn dry_runs(&self) -> Vec<&'static str> {
        self.state.lock().expect("state").dry_runs.clone()
    }

    fn enter(&self, call: &'static str) -> AwsResult<std::sync::MutexGuard<'_, Ec2State>> {
        let mut state = self.state.lock().expect("state");
        state.calls.push(call);
        self.faults.take(call)?;
        Ok(state)
    }
}

fn owned_tags(tags: &[(&str, &str)]) -> Tags {
    tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn absent_eni(eni: &str) -> AwsError {
    calls::refused(
        "InvalidNetworkInterfaceID.NotFound",
        &format!("The networkInterface ID '{eni}' does not exist"),
    )
}
