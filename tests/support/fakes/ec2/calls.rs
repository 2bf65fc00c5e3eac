//! `MemoryEc2`'s answers to the ports' calls, holding to EC2's documented
//! rules (quotas, in-use deletes, client tokens, missing ENIs).

use async_trait::async_trait;
use traffic_mirroring::domain::instance::{Hypervisor, InstanceTypeFacts};
use traffic_mirroring::mirroring::model::{RuleSpec, TargetSpec};
use traffic_mirroring::ports::*;

use super::{absent_eni, Ec2State, MemoryEc2, DEFAULT_SUBNET, DEFAULT_VPC, XEN_FAMILIES};

pub(super) fn refused(code: &str, message: &str) -> AwsError {
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

    async fn all_targets(&self) -> AwsResult<Vec<MirrorTarget>> {
        self.pace("DescribeTrafficMirrorTargets", None).await;
        let state = self.enter("DescribeTrafficMirrorTargets")?;
        Ok(state.targets.values().cloned().collect())
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
            owner_id: None,
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

    async fn all_filters(&self) -> AwsResult<Vec<MirrorFilter>> {
        self.pace("DescribeTrafficMirrorFilters", None).await;
        let state = self.enter("DescribeTrafficMirrorFilters")?;
        Ok(state.filters.values().map(|(f, _)| f.clone()).collect())
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
        self.pace("CreateTrafficMirrorSession", Some(new.source_eni.as_str()))
            .await;
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
        // Another account's target only when it is shared with this one.
        if !state.targets.contains_key(&new.target_id) && !state.shared_in.contains(&new.target_id) {
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
            owner_id: None,
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
    async fn instance_type(&self, instance_type: &str) -> AwsResult<Option<InstanceTypeFacts>> {
        self.pace("DescribeInstanceTypes", None).await;
        drop(self.enter("DescribeInstanceTypes")?);
        let family = instance_type.split('.').next().unwrap_or_default();
        // As EC2 says: bare metal has no hypervisor.
        let bare_metal = instance_type.ends_with(".metal");
        let hypervisor = if bare_metal {
            None
        } else if XEN_FAMILIES.contains(&family) {
            Some(Hypervisor::Xen)
        } else {
            Some(Hypervisor::Nitro)
        };
        Ok(Some(InstanceTypeFacts { hypervisor, bare_metal }))
    }
    async fn interface(&self, eni: &str) -> AwsResult<Option<InterfaceInfo>> {
        self.pace("DescribeNetworkInterfaces", None).await;
        let state = self.enter("DescribeNetworkInterfaces")?;
        if !eni.starts_with("eni-") || state.absent_enis.contains(eni) {
            return Ok(None);
        }
        let attached_to = state
            .instances
            .values()
            .find(|i| i.enis.iter().any(|e| e == eni))
            .map(|i| i.id.clone());
        let mut interface = state.interfaces.get(eni).cloned().unwrap_or_else(|| InterfaceInfo {
            instance_id: None,
            availability_zone: None,
            vpc_id: Some(DEFAULT_VPC.into()),
            subnet_id: Some(DEFAULT_SUBNET.into()),
            endpoint: Endpoint::default(),
        });
        interface.instance_id = attached_to;
        Ok(Some(interface))
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
