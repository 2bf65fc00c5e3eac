//! The EC2 ports over the EC2 SDK, every call through `Patience`. Describe
//! calls page through every result.

use crate::ports::{Filters, Instances, Preflight, Sessions, Tagging, Targets};
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, ResourceType, Tag, TagSpecification, TrafficDirection, TrafficMirrorPortRangeRequest,
    TrafficMirrorRuleAction, TrafficMirrorSession, TrafficMirrorTarget,
};
use aws_sdk_ec2::Client;
use std::sync::Arc;

use super::patience::Patience;
use crate::metrics::Counter;

mod instances;

use super::errors::{next_page, WithinBudget};
use crate::domain::model::{Direction, PortRange, RuleSpec, TargetSpec};
use crate::ports::{
    AclEntry, AwsError, AwsResult, CheckedCall, Deleted, Endpoint, GroupRule, Ingress, InstanceInfo, InterfaceInfo,
    MirrorFilter, MirrorSession, MirrorTarget, NewSession, SessionQuery, Tags,
};

/// The largest page EC2 allows for the mirroring Describe calls.
const PAGE_SIZE: i32 = 1000;

/// The EC2 client and the one place its calls go through (`Patience`:
/// pacing, retries within the invocation's budget). The ports are
/// implemented by one small adapter each, over a shared `Ec2`.
pub struct Ec2 {
    client: Client,
    patience: Patience,
}

macro_rules! capability {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<Ec2>);

        // The adapter is its `Ec2`: the helpers and the client are shared.
        impl std::ops::Deref for $name {
            type Target = Ec2;
            fn deref(&self) -> &Ec2 {
                &self.0
            }
        }
    )*};
}

capability!(
    /// The `Targets` port.
    Ec2Targets,
    /// The `Filters` port.
    Ec2Filters,
    /// The `Sessions` port.
    Ec2Sessions,
    /// The `Instances` port.
    Ec2Instances,
    /// The `Preflight` port (dry runs).
    Ec2Preflight,
    /// The `Tagging` port.
    Ec2Tagging,
);

/// One adapter per EC2 port, over one client.
pub struct Ec2Ports {
    pub targets: Ec2Targets,
    pub filters: Ec2Filters,
    pub sessions: Ec2Sessions,
    pub instances: Ec2Instances,
    pub preflight: Ec2Preflight,
    pub tagging: Ec2Tagging,
}

impl Ec2 {
    pub fn new(client: Client, patience: Patience) -> Self {
        Self { client, patience }
    }

    /// The adapters of every EC2 port, sharing this client and its patience.
    pub fn ports(self) -> Ec2Ports {
        let ec2 = Arc::new(self);
        Ec2Ports {
            targets: Ec2Targets(ec2.clone()),
            filters: Ec2Filters(ec2.clone()),
            sessions: Ec2Sessions(ec2.clone()),
            instances: Ec2Instances(ec2.clone()),
            preflight: Ec2Preflight(ec2.clone()),
            tagging: Ec2Tagging(ec2),
        }
    }

    /// Every target matching a Describe filter (all of them for `None`).
    async fn targets_where(&self, name: &str, value: Option<&str>) -> AwsResult<Vec<MirrorTarget>> {
        let mut pages = self
            .client
            .describe_traffic_mirror_targets()
            .set_filters(value.map(|value| vec![filter(name, value)]))
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut targets = Vec::new();
        while let Some(page) = next_page("DescribeTrafficMirrorTargets", pages.next()).await? {
            targets.extend(page.traffic_mirror_targets().iter().map(target_from));
        }
        Ok(targets)
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_specification(resource: ResourceType, tags: &Tags) -> TagSpecification {
    let tags = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags))
        .build()
}

fn tags_from(tags: &[Tag]) -> Tags {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn target_from(target: &TrafficMirrorTarget) -> MirrorTarget {
    MirrorTarget {
        id: target.traffic_mirror_target_id().unwrap_or_default().to_owned(),
        network_interface_id: target.network_interface_id().map(str::to_owned),
        load_balancer: target
            .network_load_balancer_arn()
            .or(target.gateway_load_balancer_endpoint_id())
            .map(str::to_owned),
        tags: tags_from(target.tags()),
        owner_id: target.owner_id().map(str::to_owned),
    }
}

fn session_from(session: &TrafficMirrorSession) -> MirrorSession {
    MirrorSession {
        id: session.traffic_mirror_session_id().unwrap_or_default().to_owned(),
        source_eni: session.network_interface_id().unwrap_or_default().to_owned(),
        target_id: session.traffic_mirror_target_id().unwrap_or_default().to_owned(),
        filter_id: session.traffic_mirror_filter_id().unwrap_or_default().to_owned(),
        session_number: session
            .session_number()
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or_default(),
        virtual_network_id: session.virtual_network_id(),
        tags: tags_from(session.tags()),
        owner_id: session.owner_id().map(str::to_owned),
    }
}

fn port_range(range: Option<PortRange>) -> Option<TrafficMirrorPortRangeRequest> {
    range.map(|r| {
        TrafficMirrorPortRangeRequest::builder()
            .from_port(i32::from(r.from))
            .to_port(i32::from(r.to))
            .build()
    })
}

fn missing(what: &str) -> AwsError {
    AwsError::new(
        crate::ports::ErrorKind::Transient,
        "IncompleteResponse",
        format!("EC2 answered without {what}"),
    )
}

/// Deletes treat "not found" as done: removing what is gone is a success.
fn deleted<T>(outcome: Result<T, AwsError>) -> AwsResult<Deleted> {
    match outcome {
        Ok(_) => Ok(Deleted::Now),
        Err(err) if err.is_not_found() => Ok(Deleted::AlreadyGone),
        Err(err) => Err(err),
    }
}

/// Lookups treat "not found" as an answer: there is no such thing.
fn found<T>(outcome: AwsResult<T>) -> AwsResult<Option<T>> {
    match outcome {
        Ok(output) => Ok(Some(output)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

#[async_trait]
impl Targets for Ec2Targets {
    async fn targets_of(&self, destination: &TargetSpec) -> AwsResult<Vec<MirrorTarget>> {
        self.patience
            .read("DescribeTrafficMirrorTargets", || async move {
                match destination {
                    TargetSpec::Eni(eni) => self.targets_where("network-interface-id", Some(eni.as_str())).await,
                    TargetSpec::NetworkLoadBalancer(arn) => {
                        self.targets_where("network-load-balancer-arn", Some(arn)).await
                    }
                    // EC2 has no Describe filter for the endpoint: read them all and
                    // pick. Only the maker of a new endpoint target does this, once.
                    TargetSpec::GatewayLoadBalancerEndpoint(id) => Ok(self
                        .targets_where("", None)
                        .await?
                        .into_iter()
                        .filter(|t| t.load_balancer.as_deref() == Some(id))
                        .collect()),
                    TargetSpec::Existing(id) => self.targets_where("traffic-mirror-target-id", Some(id)).await,
                    // A pool is placed on a member before anything asks EC2.
                    TargetSpec::Pool(_) => Ok(Vec::new()),
                }
            })
            .await
    }

    async fn target(&self, id: &str) -> AwsResult<Option<MirrorTarget>> {
        self.patience
            .read("DescribeTrafficMirrorTargets", || async move {
                // A filter, unlike TrafficMirrorTargetIds, answers "none" instead of an error.
                Ok(self
                    .targets_where("traffic-mirror-target-id", Some(id))
                    .await?
                    .into_iter()
                    .next())
            })
            .await
    }

    async fn all_targets(&self) -> AwsResult<Vec<MirrorTarget>> {
        self.patience
            .read("DescribeTrafficMirrorTargets", || async move {
                self.targets_where("", None).await
            })
            .await
    }

    async fn create_target(&self, destination: &TargetSpec, tags: &Tags, token: &str) -> AwsResult<String> {
        self.patience
            .create(
                "CreateTrafficMirrorTarget",
                Some(Counter::TargetsCreated),
                || async move {
                    let output = self
                        .target_call(destination)?
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorTarget, tags))
                        .client_token(token)
                        .send()
                        .within_budget()
                        .await?;
                    output
                        .traffic_mirror_target()
                        .and_then(|t| t.traffic_mirror_target_id())
                        .map(str::to_owned)
                        .ok_or_else(|| missing("a target id"))
                },
            )
            .await
    }

    async fn delete_target(&self, id: &str) -> AwsResult<Deleted> {
        self.patience
            .delete("DeleteTrafficMirrorTarget", Counter::TargetsDeleted, || async move {
                deleted(
                    self.client
                        .delete_traffic_mirror_target()
                        .traffic_mirror_target_id(id)
                        .send()
                        .within_budget()
                        .await,
                )
            })
            .await
    }
}

#[async_trait]
impl Filters for Ec2Filters {
    async fn filter(&self, id: &str) -> AwsResult<Option<MirrorFilter>> {
        self.patience
            .read("DescribeTrafficMirrorFilters", || async move {
                Ok(self
                    .filters_where("traffic-mirror-filter-id", Some(id))
                    .await?
                    .into_iter()
                    .next())
            })
            .await
    }

    async fn all_filters(&self) -> AwsResult<Vec<MirrorFilter>> {
        self.patience
            .read("DescribeTrafficMirrorFilters", || async move {
                self.filters_where("", None).await
            })
            .await
    }

    async fn create_filter(&self, description: &str, tags: &Tags, token: &str) -> AwsResult<String> {
        self.patience
            .create(
                "CreateTrafficMirrorFilter",
                Some(Counter::FiltersCreated),
                || async move {
                    let output = self
                        .client
                        .create_traffic_mirror_filter()
                        .description(description)
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorFilter, tags))
                        .client_token(token)
                        .send()
                        .within_budget()
                        .await?;
                    output
                        .traffic_mirror_filter()
                        .and_then(|f| f.traffic_mirror_filter_id())
                        .map(str::to_owned)
                        .ok_or_else(|| missing("a filter id"))
                },
            )
            .await
    }

    async fn create_filter_rule(&self, filter_id: &str, rule: &RuleSpec, token: &str) -> AwsResult<String> {
        self.patience
            .create("CreateTrafficMirrorFilterRule", None, || async move {
                let output = self
                    .rule_call(filter_id, rule)
                    .client_token(token)
                    .send()
                    .within_budget()
                    .await?;
                output
                    .traffic_mirror_filter_rule()
                    .and_then(|r| r.traffic_mirror_filter_rule_id())
                    .map(str::to_owned)
                    .ok_or_else(|| missing("a filter rule id"))
            })
            .await
    }

    async fn delete_filter(&self, id: &str) -> AwsResult<Deleted> {
        self.patience
            .delete("DeleteTrafficMirrorFilter", Counter::FiltersDeleted, || async move {
                deleted(
                    self.client
                        .delete_traffic_mirror_filter()
                        .traffic_mirror_filter_id(id)
                        .send()
                        .within_budget()
                        .await,
                )
            })
            .await
    }
}

#[async_trait]
impl Sessions for Ec2Sessions {
    async fn sessions(&self, query: &SessionQuery) -> AwsResult<Vec<MirrorSession>> {
        self.patience
            .read("DescribeTrafficMirrorSessions", || async move {
                let filter = match query {
                    SessionQuery::Id(id) => Some(filter("traffic-mirror-session-id", id)),
                    SessionQuery::SourceEni(eni) => Some(filter("network-interface-id", eni.as_str())),
                    SessionQuery::Target(id) => Some(filter("traffic-mirror-target-id", id)),
                    SessionQuery::Tag(key, value) => Some(filter(&format!("tag:{key}"), value)),
                    SessionQuery::All => None,
                };
                let mut pages = self
                    .client
                    .describe_traffic_mirror_sessions()
                    .set_filters(filter.map(|f| vec![f]))
                    .max_results(PAGE_SIZE)
                    .into_paginator()
                    .send();
                let mut sessions = Vec::new();
                while let Some(page) = next_page("DescribeTrafficMirrorSessions", pages.next()).await? {
                    sessions.extend(page.traffic_mirror_sessions().iter().map(session_from));
                }
                Ok(sessions)
            })
            .await
    }

    async fn create_session(&self, session: &NewSession, tags: &Tags, token: &str) -> AwsResult<MirrorSession> {
        self.patience
            .create(
                "CreateTrafficMirrorSession",
                Some(Counter::SessionsCreated),
                || async move {
                    let output = self
                        .session_call(session)
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorSession, tags))
                        .client_token(token)
                        .send()
                        .within_budget()
                        .await?;
                    output
                        .traffic_mirror_session()
                        .map(session_from)
                        .ok_or_else(|| missing("a session"))
                },
            )
            .await
    }

    async fn delete_session(&self, id: &str) -> AwsResult<Deleted> {
        self.patience
            .delete("DeleteTrafficMirrorSession", Counter::SessionsDeleted, || async move {
                deleted(
                    self.client
                        .delete_traffic_mirror_session()
                        .traffic_mirror_session_id(id)
                        .send()
                        .within_budget()
                        .await,
                )
            })
            .await
    }
}

#[async_trait]
impl Preflight for Ec2Preflight {
    async fn permitted(&self, call: &CheckedCall, tags: &Tags) -> AwsResult<()> {
        self.patience
            .read(call.action(), || async move {
                let outcome = match call {
                    CheckedCall::Target(destination) => self
                        .target_call(destination)?
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorTarget, tags))
                        .dry_run(true)
                        .send()
                        .within_budget()
                        .await
                        .map(|_| ()),
                    CheckedCall::Filter => self
                        .client
                        .create_traffic_mirror_filter()
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorFilter, tags))
                        .dry_run(true)
                        .send()
                        .within_budget()
                        .await
                        .map(|_| ()),
                    CheckedCall::Rule { filter_id, rule } => self
                        .rule_call(filter_id, rule)
                        .dry_run(true)
                        .send()
                        .within_budget()
                        .await
                        .map(|_| ()),
                    CheckedCall::Session(session) => self
                        .session_call(session)
                        .tag_specifications(tag_specification(ResourceType::TrafficMirrorSession, tags))
                        .dry_run(true)
                        .send()
                        .within_budget()
                        .await
                        .map(|_| ()),
                };
                match outcome {
                    // EC2's way of saying yes to a dry run is this error.
                    Err(err) if err.code == "DryRunOperation" => Ok(()),
                    other => other,
                }
            })
            .await
    }
}

#[async_trait]
impl Tagging for Ec2Tagging {
    async fn retag(&self, resource_ids: &[String], tags: &Tags) -> AwsResult<()> {
        self.patience
            .create("CreateTags", None, || async move {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect();
                self.client
                    .create_tags()
                    .set_resources(Some(resource_ids.to_vec()))
                    .set_tags(Some(tags))
                    .send()
                    .within_budget()
                    .await
                    .map(|_| ())
            })
            .await
    }
}

impl Ec2 {
    /// Every filter matching a Describe filter (all of them for `None`).
    async fn filters_where(&self, name: &str, value: Option<&str>) -> AwsResult<Vec<MirrorFilter>> {
        let mut pages = self
            .client
            .describe_traffic_mirror_filters()
            .set_filters(value.map(|value| vec![filter(name, value)]))
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut filters = Vec::new();
        while let Some(page) = next_page("DescribeTrafficMirrorFilters", pages.next()).await? {
            filters.extend(page.traffic_mirror_filters().iter().map(|f| MirrorFilter {
                id: f.traffic_mirror_filter_id().unwrap_or_default().to_owned(),
                tags: tags_from(f.tags()),
            }));
        }
        Ok(filters)
    }
}

impl Ec2 {
    /// The create-target call for a destination, without tags or token, so
    /// the create and its dry run send the same parameters.
    fn target_call(
        &self,
        destination: &TargetSpec,
    ) -> AwsResult<aws_sdk_ec2::operation::create_traffic_mirror_target::builders::CreateTrafficMirrorTargetFluentBuilder>
    {
        let call = self
            .client
            .create_traffic_mirror_target()
            .description(format!("traffic-mirroring target for {destination}"));
        Ok(match destination {
            TargetSpec::Eni(eni) => call.network_interface_id(eni.as_str()),
            TargetSpec::NetworkLoadBalancer(arn) => call.network_load_balancer_arn(arn),
            TargetSpec::GatewayLoadBalancerEndpoint(id) => call.gateway_load_balancer_endpoint_id(id),
            TargetSpec::Existing(id) => {
                return Err(AwsError::new(
                    crate::ports::ErrorKind::Rejected,
                    "TargetExists",
                    format!("{id} is an existing target; it is used, not created"),
                ))
            }
            TargetSpec::Pool(name) => {
                return Err(AwsError::new(
                    crate::ports::ErrorKind::Rejected,
                    "TargetIsPool",
                    format!("pool:{name} is placed on one of its members before a target is made"),
                ))
            }
        })
    }

    fn rule_call(
        &self,
        filter_id: &str,
        rule: &RuleSpec,
    ) -> aws_sdk_ec2::operation::create_traffic_mirror_filter_rule::builders::CreateTrafficMirrorFilterRuleFluentBuilder
    {
        let direction = match rule.direction {
            Direction::Ingress => TrafficDirection::Ingress,
            Direction::Egress => TrafficDirection::Egress,
        };
        self.client
            .create_traffic_mirror_filter_rule()
            .traffic_mirror_filter_id(filter_id)
            .traffic_direction(direction)
            .rule_number(rule.rule_number)
            .rule_action(TrafficMirrorRuleAction::Accept)
            .set_protocol(rule.protocol.number())
            .set_source_port_range(port_range(rule.source_ports))
            .set_destination_port_range(port_range(rule.destination_ports))
            .source_cidr_block(&rule.source_cidr)
            .destination_cidr_block(&rule.destination_cidr)
    }

    fn session_call(
        &self,
        session: &NewSession,
    ) -> aws_sdk_ec2::operation::create_traffic_mirror_session::builders::CreateTrafficMirrorSessionFluentBuilder {
        self.client
            .create_traffic_mirror_session()
            .network_interface_id(session.source_eni.as_str())
            .traffic_mirror_target_id(&session.target_id)
            .traffic_mirror_filter_id(&session.filter_id)
            .session_number(i32::from(session.session_number))
            .set_packet_length(session.packet_length)
            .set_virtual_network_id(session.virtual_network_id)
            .set_description(session.description.clone())
    }
}
