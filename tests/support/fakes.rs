//! In-memory fakes of the ports, for tests of the logic that need no
//! emulator and run in milliseconds.
//!
//! - `MemoryEc2` and `MemoryLedger` keep their state behind a mutex and hold
//!   to the rules the logic relies on: EC2's sessions per source ENI, unique
//!   session numbers, in-use deletes and client tokens; the ledger's
//!   conditional claims, makers and users of shared resources, and record
//!   versions. `fail_next` makes the next call of one name fail, as the
//!   emulator's faults do. They are not the emulator: paging, latency,
//!   throttling, lagging indexes and atomicity across processes are tested
//!   against it, over HTTP.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use traffic_mirroring::contract::ActionResult;
use traffic_mirroring::mirroring::model::{RuleSpec, TargetSpec};
use traffic_mirroring::ports::*;

/// Armed failures: the next call of a name fails with this error.
#[derive(Default)]
struct Faults(Mutex<Vec<(String, AwsError)>>);

impl Faults {
    fn arm(&self, call: &str, error: AwsError) {
        if let Ok(mut faults) = self.0.lock() {
            faults.push((call.to_owned(), error));
        }
    }

    fn take(&self, call: &str) -> AwsResult<()> {
        let mut faults = self.0.lock().expect("faults");
        match faults.iter().position(|(name, _)| name == call) {
            Some(at) => Err(faults.remove(at).1),
            None => Ok(()),
        }
    }
}

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
            state.targets.contains_key(target_id) && state.filters.contains_key(filter_id),
            "EC2 refuses a session on a target or filter it does not have"
        );
        let session_id = state.new_id("tms");
        let session = MirrorSession {
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

    /// The inbound rules that admit traffic into a target ENI.
    pub fn set_ingress(&self, eni: &str, ingress: Ingress) {
        self.state.lock().expect("state").ingress.insert(eni.to_owned(), ingress);
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
            enis: enis.iter().map(|e| e.to_string()).collect(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state: Some("running".into()),
            endpoints: Default::default(),
        };
        self.state
            .lock()
            .expect("state")
            .instances
            .insert(id.to_owned(), instance);
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
            instance.state = Some(state.to_owned());
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

fn refused(code: &str, message: &str) -> AwsError {
    let kind = if code.ends_with(".NotFound") {
        ErrorKind::NotFound
    } else if code.ends_with("InUse") {
        ErrorKind::InUse
    } else if code.ends_with("LimitExceeded") {
        ErrorKind::Quota
    } else {
        ErrorKind::Rejected
    };
    AwsError::new(kind, code, message)
}

fn owned_tags(tags: &[(&str, &str)]) -> Tags {
    tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn absent_eni(eni: &str) -> AwsError {
    refused(
        "InvalidNetworkInterfaceID.NotFound",
        &format!("The networkInterface ID '{eni}' does not exist"),
    )
}

fn tagged(tags: &Tags, key: &str, value: &str) -> bool {
    tag_value(tags, key) == Some(value)
}

#[async_trait]
impl Targets for MemoryEc2 {
    async fn targets_of(&self, destination: &TargetSpec) -> AwsResult<Vec<MirrorTarget>> {
        self.pace("DescribeTrafficMirrorTargets", None).await;
        let state = self.enter("DescribeTrafficMirrorTargets")?;
        let matches = |t: &&MirrorTarget| match destination {
            TargetSpec::Existing(id) => &t.id == id,
            other => t.claim_name() == other.claim_name(),
        };
        Ok(state.targets.values().filter(matches).cloned().collect())
    }

    async fn target(&self, id: &str) -> AwsResult<Option<MirrorTarget>> {
        self.pace("DescribeTrafficMirrorTargets", None).await;
        let state = self.enter("DescribeTrafficMirrorTargets")?;
        Ok(state.targets.get(id).cloned())
    }

    async fn targets_tagged(&self, key: &str, value: &str) -> AwsResult<Vec<MirrorTarget>> {
        self.pace("DescribeTrafficMirrorTargets", None).await;
        let state = self.enter("DescribeTrafficMirrorTargets")?;
        Ok(state
            .targets
            .values()
            .filter(|t| tagged(&t.tags, key, value))
            .cloned()
            .collect())
    }

    async fn create_target(&self, destination: &TargetSpec, tags: &Tags, token: &str) -> AwsResult<String> {
        self.pace("CreateTrafficMirrorTarget", None).await;
        let mut state = self.enter("CreateTrafficMirrorTarget")?;
        if let Some(id) = state.tokens.get(&("CreateTrafficMirrorTarget", token.to_owned())) {
            return Ok(id.clone());
        }
        if let TargetSpec::Eni(eni) = destination {
            if state.absent_enis.contains(eni.as_str()) {
                return Err(absent_eni(eni.as_str()));
            }
        }
        let id = state.new_id("tmt");
        let (network_interface_id, load_balancer) = match destination {
            TargetSpec::Eni(eni) => (Some(eni.to_string()), None),
            other => (None, other.claim_name().map(str::to_owned)),
        };
        let target = MirrorTarget {
            id: id.clone(),
            network_interface_id,
            load_balancer,
            tags: tags.clone(),
        };
        state.targets.insert(id.clone(), target);
        state
            .tokens
            .insert(("CreateTrafficMirrorTarget", token.to_owned()), id.clone());
        Ok(id)
    }

    async fn delete_target(&self, id: &str) -> AwsResult<Deleted> {
        self.pace("DeleteTrafficMirrorTarget", None).await;
        let mut state = self.enter("DeleteTrafficMirrorTarget")?;
        if state.sessions.values().any(|s| s.target_id == id) {
            return Err(refused("TrafficMirrorTargetInUseException", "a session uses it"));
        }
        Ok(match state.targets.remove(id) {
            Some(_) => Deleted::Now,
            None => Deleted::AlreadyGone,
        })
    }
}

#[async_trait]
impl Filters for MemoryEc2 {
    async fn filter(&self, id: &str) -> AwsResult<Option<MirrorFilter>> {
        self.pace("DescribeTrafficMirrorFilters", None).await;
        let state = self.enter("DescribeTrafficMirrorFilters")?;
        Ok(state.filters.get(id).map(|(f, _)| f.clone()))
    }

    async fn filters_tagged(&self, key: &str, value: &str) -> AwsResult<Vec<MirrorFilter>> {
        self.pace("DescribeTrafficMirrorFilters", None).await;
        let state = self.enter("DescribeTrafficMirrorFilters")?;
        Ok(state
            .filters
            .values()
            .filter(|(f, _)| tagged(&f.tags, key, value))
            .map(|(f, _)| f.clone())
            .collect())
    }

    async fn create_filter(&self, _: &str, tags: &Tags, token: &str) -> AwsResult<String> {
        self.pace("CreateTrafficMirrorFilter", None).await;
        let mut state = self.enter("CreateTrafficMirrorFilter")?;
        if let Some(id) = state.tokens.get(&("CreateTrafficMirrorFilter", token.to_owned())) {
            return Ok(id.clone());
        }
        let id = state.new_id("tmf");
        let filter = MirrorFilter {
            id: id.clone(),
            tags: tags.clone(),
        };
        state.filters.insert(id.clone(), (filter, 0));
        state
            .tokens
            .insert(("CreateTrafficMirrorFilter", token.to_owned()), id.clone());
        Ok(id)
    }

    async fn create_filter_rule(&self, filter_id: &str, rule: &RuleSpec, token: &str) -> AwsResult<String> {
        self.pace("CreateTrafficMirrorFilterRule", None).await;
        let mut state = self.enter("CreateTrafficMirrorFilterRule")?;
        if let Some(id) = state.tokens.get(&("CreateTrafficMirrorFilterRule", token.to_owned())) {
            return Ok(id.clone());
        }
        let id = state.new_id("tmfr");
        match state.filters.get_mut(filter_id) {
            Some((_, rules)) => *rules += 1,
            None => return Err(refused("InvalidTrafficMirrorFilterId.NotFound", filter_id)),
        }
        state.rules.entry(filter_id.to_owned()).or_default().push(rule.clone());
        state
            .tokens
            .insert(("CreateTrafficMirrorFilterRule", token.to_owned()), id.clone());
        Ok(id)
    }

    async fn delete_filter(&self, id: &str) -> AwsResult<Deleted> {
        self.pace("DeleteTrafficMirrorFilter", None).await;
        let mut state = self.enter("DeleteTrafficMirrorFilter")?;
        if state.sessions.values().any(|s| s.filter_id == id) {
            return Err(refused("TrafficMirrorFilterInUse", "a session uses it"));
        }
        state.rules.remove(id);
        Ok(match state.filters.remove(id) {
            Some(_) => Deleted::Now,
            None => Deleted::AlreadyGone,
        })
    }
}

#[async_trait]
impl Sessions for MemoryEc2 {
    async fn sessions(&self, query: &SessionQuery) -> AwsResult<Vec<MirrorSession>> {
        self.pace("DescribeTrafficMirrorSessions", None).await;
        let state = self.enter("DescribeTrafficMirrorSessions")?;
        let wanted = |s: &&MirrorSession| match query {
            SessionQuery::Id(id) => &s.id == id,
            SessionQuery::SourceEni(eni) => s.source_eni == eni.as_str(),
            SessionQuery::Target(id) => &s.target_id == id,
            SessionQuery::Tag(key, value) => tagged(&s.tags, key, value),
            SessionQuery::All => true,
        };
        Ok(state.sessions.values().filter(wanted).cloned().collect())
    }

    async fn create_session(&self, new: &NewSession, tags: &Tags, token: &str) -> AwsResult<MirrorSession> {
        self.pace("CreateTrafficMirrorSession", Some(new.source_eni.as_str())).await;
        let mut state = self.enter("CreateTrafficMirrorSession")?;
        if let Some(id) = state.tokens.get(&("CreateTrafficMirrorSession", token.to_owned())) {
            let id = id.clone();
            return state
                .sessions
                .get(&id)
                .cloned()
                .ok_or_else(|| refused("IdempotentParameterMismatch", "the session was deleted"));
        }
        if state.absent_enis.contains(new.source_eni.as_str()) {
            return Err(absent_eni(new.source_eni.as_str()));
        }
        if !state.targets.contains_key(&new.target_id) {
            return Err(refused("InvalidTrafficMirrorTargetId.NotFound", &new.target_id));
        }
        if !state.filters.contains_key(&new.filter_id) {
            return Err(refused("InvalidTrafficMirrorFilterId.NotFound", &new.filter_id));
        }
        let on_source: Vec<&MirrorSession> = state
            .sessions
            .values()
            .filter(|s| s.source_eni == new.source_eni.as_str())
            .collect();
        if on_source.len() >= 3 {
            return Err(refused("TrafficMirrorSessionsPerInterfaceLimitExceeded", "3 sessions"));
        }
        if on_source.iter().any(|s| s.session_number == new.session_number) {
            return Err(refused("InvalidParameterValue", "session number in use"));
        }
        let id = state.new_id("tms");
        let session = MirrorSession {
            id: id.clone(),
            source_eni: new.source_eni.to_string(),
            target_id: new.target_id.clone(),
            filter_id: new.filter_id.clone(),
            session_number: new.session_number,
            virtual_network_id: new.virtual_network_id,
            tags: tags.clone(),
        };
        state.sessions.insert(id.clone(), session.clone());
        state.session_requests.insert(id.clone(), new.clone());
        state
            .tokens
            .insert(("CreateTrafficMirrorSession", token.to_owned()), id);
        Ok(session)
    }

    async fn delete_session(&self, id: &str) -> AwsResult<Deleted> {
        self.pace("DeleteTrafficMirrorSession", None).await;
        let mut state = self.enter("DeleteTrafficMirrorSession")?;
        Ok(match state.sessions.remove(id) {
            Some(_) => Deleted::Now,
            None => Deleted::AlreadyGone,
        })
    }
}

#[async_trait]
impl Instances for MemoryEc2 {
    async fn instance(&self, id: &str) -> AwsResult<Option<InstanceInfo>> {
        self.pace("DescribeInstances", None).await;
        let state = self.enter("DescribeInstances")?;
        Ok(state.instances.get(id).map(|i| described(&state, i)))
    }
    async fn hypervisor(&self, instance_type: &str) -> AwsResult<Option<String>> {
        self.pace("DescribeInstanceTypes", None).await;
        drop(self.enter("DescribeInstanceTypes")?);
        let family = instance_type.split('.').next().unwrap_or_default();
        let hypervisor = if XEN_FAMILIES.contains(&family) { "xen" } else { "nitro" };
        Ok(Some(hypervisor.into()))
    }
    async fn interface(&self, eni: &str) -> AwsResult<Option<InterfaceInfo>> {
        self.pace("DescribeNetworkInterfaces", None).await;
        let state = self.enter("DescribeNetworkInterfaces")?;
        if !eni.starts_with("eni-") || state.absent_enis.contains(eni) {
            return Ok(None);
        }
        Ok(Some(state.interfaces.get(eni).cloned().unwrap_or_else(|| InterfaceInfo {
            vpc_id: Some(DEFAULT_VPC.into()),
            subnet_id: Some(DEFAULT_SUBNET.into()),
            endpoint: Endpoint::default(),
        })))
    }
    async fn instances(&self) -> AwsResult<Vec<InstanceInfo>> {
        self.pace("DescribeInstances", None).await;
        let state = self.enter("DescribeInstances")?;
        Ok(state.instances.values().map(|i| described(&state, i)).collect())
    }
    async fn ingress(&self, eni: &str) -> AwsResult<Option<Ingress>> {
        self.pace("DescribeSecurityGroups", None).await;
        let state = self.enter("DescribeSecurityGroups")?;
        Ok(state.ingress.get(eni).cloned())
    }
}

/// An instance as DescribeInstances tells it: with the address and groups
/// of each of its ENIs that a test placed.
fn described(state: &Ec2State, instance: &InstanceInfo) -> InstanceInfo {
    let mut described = instance.clone();
    for eni in &instance.enis {
        if let Some(interface) = state.interfaces.get(eni) {
            described.endpoints.insert(eni.clone(), interface.endpoint.clone());
        }
    }
    described
}

#[async_trait]
impl Preflight for MemoryEc2 {
    /// A DryRun call: counted apart from the real calls, and refused by a
    /// fault armed for the action itself, as IAM refuses both alike.
    async fn permitted(&self, call: &CheckedCall, _: &Tags) -> AwsResult<()> {
        let mut state = self.state.lock().expect("state");
        state.dry_runs.push(call.action());
        self.faults.take(call.action())
    }
}

#[async_trait]
impl Tagging for MemoryEc2 {
    async fn retag(&self, ids: &[String], tags: &Tags) -> AwsResult<()> {
        self.pace("CreateTags", None).await;
        let mut state = self.enter("CreateTags")?;
        let set = |on: &mut Tags| {
            for (key, value) in tags {
                on.retain(|(k, _)| k != key);
                on.push((key.clone(), value.clone()));
            }
        };
        for id in ids {
            if let Some(t) = state.targets.get_mut(id) {
                set(&mut t.tags);
            } else if let Some((f, _)) = state.filters.get_mut(id) {
                set(&mut f.tags);
            } else if let Some(s) = state.sessions.get_mut(id) {
                set(&mut s.tags);
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct LedgerState {
    records: BTreeMap<String, (LedgerRecord, u64)>,
    shared: BTreeMap<SharedKey, SharedClaims>,
    sources: BTreeMap<String, BTreeMap<u16, String>>,
}

/// The ledger, in memory: every call is one atomic step, as each DynamoDB
/// conditional write is. Leases are ignored (nothing here outlives a test).
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<LedgerState>,
    faults: Faults,
}

impl MemoryLedger {
    /// The next call named `call` (the port method's name) fails with `error`.
    pub fn fail_next(&self, call: &str, error: AwsError) {
        self.faults.arm(call, error);
    }

    pub fn record(&self, action_id: &str) -> Option<LedgerRecord> {
        let state = self.state.lock().expect("state");
        state.records.get(action_id).map(|(r, _)| r.clone())
    }

    /// Whether no item was ever written (or all were lost).
    pub fn is_empty(&self) -> bool {
        let state = self.state.lock().expect("state");
        state.records.is_empty() && state.shared.is_empty() && state.sources.is_empty()
    }

    /// Deletes every item, as a lost table would.
    pub fn empty(&self) {
        let mut state = self.state.lock().expect("state");
        *state = LedgerState::default();
    }

    /// Claim items that still name a resource, a maker or a user, and
    /// session numbers still claimed: what a finished test should not leave.
    pub fn claims_left(&self) -> Vec<String> {
        let state = self.state.lock().expect("state");
        let shared = state
            .shared
            .values()
            .filter(|c| c.resource_id.is_some() || c.maker.is_some() || !c.users.is_empty())
            .map(|c| format!("{}: {:?}", c.key.name(), c));
        let numbers = state
            .sources
            .iter()
            .flat_map(|(eni, numbers)| numbers.iter().map(move |(n, a)| format!("{eni} #{n} by {a}")));
        shared.chain(numbers).collect()
    }

    fn enter(&self, call: &str) -> Result<std::sync::MutexGuard<'_, LedgerState>, LedgerError> {
        self.faults.take(call)?;
        Ok(self.state.lock().expect("state"))
    }
}

#[async_trait]
impl ActionRecords for MemoryLedger {
    async fn claim(&self, record: &LedgerRecord, _lease_seconds: u64) -> Result<Claim, LedgerError> {
        let mut state = self.enter("claim")?;
        let (attempt, version) = match state.records.get(&record.action_id) {
            None => (0, 0),
            Some((existing, version)) if existing.status == Some(RecordStatus::Failed) => (existing.attempt, *version),
            Some((existing, _)) => {
                return Ok(match (&existing.status, &existing.result) {
                    (Some(RecordStatus::Pending), _) | (_, None) => Claim::InProgress,
                    (_, Some(result)) => Claim::Finished(Box::new(result.clone())),
                });
            }
        };
        let mut claimed = record.clone();
        claimed.status = Some(RecordStatus::Pending);
        claimed.attempt = attempt;
        claimed.version = version + 1;
        state.records.insert(record.action_id.clone(), (claimed, version + 1));
        Ok(Claim::Granted {
            attempt,
            version: version + 1,
        })
    }

    async fn save(&self, record: &mut LedgerRecord) -> Result<(), LedgerError> {
        let mut state = self.enter("save")?;
        let stored = state.records.get(&record.action_id).map(|(_, v)| *v).unwrap_or(0);
        if stored != record.version {
            return Err(LedgerError::Conflict(record.action_id.clone()));
        }
        record.version += 1;
        state
            .records
            .insert(record.action_id.clone(), (record.clone(), record.version));
        Ok(())
    }

    async fn adopt(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let mut state = self.enter("adopt")?;
        if state.records.contains_key(&record.action_id) {
            return Ok(false);
        }
        let mut adopted = record.clone();
        adopted.version = 1;
        state.records.insert(record.action_id.clone(), (adopted, 1));
        Ok(true)
    }

    async fn get(&self, action_id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        let state = self.enter("get")?;
        Ok(state.records.get(action_id).map(|(r, _)| r.clone()))
    }

    async fn find(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LedgerError> {
        let state = self.enter("find")?;
        let wanted = |r: &LedgerRecord| match query {
            LedgerQuery::Session(id) => r.session_id.as_ref() == Some(id),
            LedgerQuery::TargetEni(eni) => r.target_eni.as_ref() == Some(eni),
            LedgerQuery::SourceEni(eni) => r.source_eni.as_ref() == Some(eni),
            LedgerQuery::Reservation(id) => r.reservation_id.as_ref() == Some(id),
            LedgerQuery::Instance(id) => r.instance_id.as_ref() == Some(id),
        };
        Ok(state
            .records
            .values()
            .map(|(r, _)| r)
            .filter(|r| wanted(r))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SharedResources for MemoryLedger {
    async fn join_shared(&self, key: &SharedKey, action_id: &str, limit: usize, _: u64) -> Result<Slot, LedgerError> {
        let mut state = self.enter("join_shared")?;
        let claims = state.shared.entry(key.clone()).or_insert_with(|| SharedClaims {
            key: key.clone(),
            resource_id: None,
            maker: None,
            users: Vec::new(),
        });
        let me = action_id.to_owned();
        if let Some(id) = claims.resource_id.clone() {
            if claims.users.contains(&me) {
                return Ok(Slot::Joined(id));
            }
            if claims.users.len() >= limit {
                return Ok(Slot::Full(claims.users.len()));
            }
            claims.users.push(me);
            return Ok(Slot::Joined(id));
        }
        match &claims.maker {
            Some(maker) if *maker != me => Ok(Slot::Busy),
            _ => {
                claims.maker = Some(me.clone());
                if !claims.users.contains(&me) {
                    claims.users.push(me);
                }
                Ok(Slot::Make)
            }
        }
    }

    async fn shared_made(&self, key: &SharedKey, action_id: &str, resource_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("shared_made")?;
        match state.shared.get_mut(key) {
            Some(claims) if claims.maker.as_deref() == Some(action_id) => {
                claims.maker = None;
                claims.resource_id = Some(resource_id.to_owned());
                Ok(())
            }
            _ => Err(AwsError::new(
                ErrorKind::ConditionFailed,
                "ConditionalCheckFailedException",
                "not the maker",
            )
            .into()),
        }
    }

    async fn leave_shared(&self, key: &SharedKey, action_id: &str) -> Result<(Option<String>, usize), LedgerError> {
        let mut state = self.enter("leave_shared")?;
        let Some(claims) = state.shared.get_mut(key) else {
            return Ok((None, 0));
        };
        claims.users.retain(|u| u != action_id);
        if claims.maker.as_deref() == Some(action_id) {
            claims.maker = None;
        }
        Ok((claims.resource_id.clone(), claims.users.len()))
    }

    async fn retire_shared(&self, key: &SharedKey, resource_id: &str) -> Result<bool, LedgerError> {
        let mut state = self.enter("retire_shared")?;
        let retire = state
            .shared
            .get(key)
            .is_some_and(|c| c.resource_id.as_deref() == Some(resource_id) && c.users.is_empty() && c.maker.is_none());
        if retire {
            state.shared.remove(key);
        }
        Ok(retire)
    }

    async fn restore_shared(&self, key: &SharedKey, resource_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("restore_shared")?;
        state.shared.entry(key.clone()).or_insert_with(|| SharedClaims {
            key: key.clone(),
            resource_id: Some(resource_id.to_owned()),
            maker: None,
            users: Vec::new(),
        });
        Ok(())
    }

    async fn shared(&self, key: &SharedKey) -> Result<Option<SharedClaims>, LedgerError> {
        let state = self.enter("shared")?;
        Ok(state.shared.get(key).cloned())
    }
}

#[async_trait]
impl SessionNumbers for MemoryLedger {
    async fn claim_number(
        &self,
        source_eni: &str,
        number: u16,
        action_id: &str,
        limit: usize,
    ) -> Result<NumberClaim, LedgerError> {
        let mut state = self.enter("claim_number")?;
        let numbers = state.sources.entry(source_eni.to_owned()).or_default();
        let free = match numbers.get(&number) {
            Some(holder) => holder == action_id,
            None => numbers.len() < limit,
        };
        if !free {
            return Ok(NumberClaim::Refused(numbers.keys().copied().collect()));
        }
        numbers.insert(number, action_id.to_owned());
        Ok(NumberClaim::Claimed)
    }

    async fn numbers(&self, source_eni: &str) -> Result<Vec<(u16, String)>, LedgerError> {
        let state = self.enter("numbers")?;
        Ok(state
            .sources
            .get(source_eni)
            .map(|numbers| numbers.iter().map(|(n, a)| (*n, a.clone())).collect())
            .unwrap_or_default())
    }

    async fn release_number(&self, source_eni: &str, number: u16, action_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("release_number")?;
        if let Some(numbers) = state.sources.get_mut(source_eni) {
            if numbers.get(&number).map(String::as_str) == Some(action_id) {
                numbers.remove(&number);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Scans for MemoryLedger {
    async fn contents(&self) -> Result<LedgerContents, LedgerError> {
        let state = self.enter("contents")?;
        Ok(LedgerContents {
            records: state.records.values().map(|(r, _)| r.clone()).collect(),
            shared: state.shared.values().cloned().collect(),
            sources: state
                .sources
                .iter()
                .map(|(eni, numbers)| SourceClaims {
                    source_eni: eni.clone(),
                    numbers: numbers.iter().map(|(n, a)| (*n, a.clone())).collect(),
                })
                .collect(),
        })
    }

    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError> {
        let state = self.enter("ending_by")?;
        Ok(state
            .records
            .values()
            .filter(|(r, _)| r.status.is_some_and(|s| s.holds_resources()) && r.ends_at.is_some_and(|end| end <= at))
            .map(|(r, _)| r.action_id.clone())
            .collect())
    }
}

/// Completion events, kept in memory.
#[derive(Default)]
pub struct MemoryBus {
    pub events: Mutex<Vec<ActionResult>>,
}

#[async_trait]
impl Publisher for MemoryBus {
    async fn publish(&self, result: &ActionResult) -> AwsResult<()> {
        self.events.lock().expect("events").push(result.clone());
        Ok(())
    }
}
