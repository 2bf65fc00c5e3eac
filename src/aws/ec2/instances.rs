//! What EC2 says about instances, instance types, network interfaces and a
//! target ENI's ingress (security groups and network ACL): the `Instances` port.

use async_trait::async_trait;
use aws_sdk_ec2::types::InstanceType;

use super::*;
use crate::domain::instance::{Hypervisor, InstanceState, InstanceTypeFacts};

#[async_trait]
impl Instances for Ec2Instances {
    async fn instance(&self, id: &str) -> AwsResult<Option<InstanceInfo>> {
        self.patience
            .read("DescribeInstances", || async move {
                let described = self
                    .client
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .within_budget()
                    .await;
                let Some(output) = found(described)? else {
                    return Ok(None);
                };
                let Some(instance) = output.reservations().iter().flat_map(|r| r.instances()).next() else {
                    return Ok(None);
                };
                Ok(Some(instance_from(instance, id)))
            })
            .await
    }

    async fn instance_type(&self, instance_type: &str) -> AwsResult<Option<InstanceTypeFacts>> {
        self.patience
            .read("DescribeInstanceTypes", || async move {
                let output = self
                    .client
                    .describe_instance_types()
                    .instance_types(InstanceType::from(instance_type))
                    .send()
                    .within_budget()
                    .await?;
                Ok(output.instance_types().first().map(|t| InstanceTypeFacts {
                    hypervisor: t.hypervisor().map(|h| Hypervisor::parse(h.as_str())),
                    bare_metal: t.bare_metal().unwrap_or(false),
                }))
            })
            .await
    }

    async fn interface(&self, eni: &str) -> AwsResult<Option<InterfaceInfo>> {
        self.patience
            .read("DescribeNetworkInterfaces", || async move {
                let described = self
                    .client
                    .describe_network_interfaces()
                    .network_interface_ids(eni)
                    .send()
                    .within_budget()
                    .await;
                let Some(output) = found(described)? else {
                    return Ok(None);
                };
                Ok(output.network_interfaces().first().map(|interface| InterfaceInfo {
                    availability_zone: interface.availability_zone().map(str::to_owned),
                    instance_id: interface.attachment().and_then(|a| a.instance_id()).map(str::to_owned),
                    vpc_id: interface.vpc_id().map(str::to_owned),
                    subnet_id: interface.subnet_id().map(str::to_owned),
                    endpoint: Endpoint {
                        private_ip: interface.private_ip_address().map(str::to_owned),
                        security_groups: interface
                            .groups()
                            .iter()
                            .filter_map(|g| g.group_id().map(str::to_owned))
                            .collect(),
                    },
                }))
            })
            .await
    }

    async fn instances(&self) -> AwsResult<Vec<InstanceInfo>> {
        self.patience
            .read("DescribeInstances", || async move {
                let mut pages = self
                    .client
                    .describe_instances()
                    .filters(
                        Filter::builder()
                            .name("instance-state-name")
                            .values("pending")
                            .values("running")
                            .values("stopping")
                            .values("stopped")
                            .build(),
                    )
                    .max_results(PAGE_SIZE)
                    .into_paginator()
                    .send();
                let mut instances = Vec::new();
                while let Some(page) = next_page("DescribeInstances", pages.next()).await? {
                    instances.extend(
                        page.reservations()
                            .iter()
                            .flat_map(|r| r.instances())
                            .map(|i| instance_from(i, "")),
                    );
                }
                Ok(instances)
            })
            .await
    }

    async fn ingress(&self, eni: &str) -> AwsResult<Option<Ingress>> {
        self.patience
            .read("DescribeSecurityGroups", || async move {
                let Some(interface) = self.interface(eni).await? else {
                    return Ok(None);
                };
                // No group ids would list every group in the account: none admits nothing.
                let group_ids = interface.endpoint.security_groups.clone();
                let groups = async {
                    if group_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let output = self
                        .client
                        .describe_security_groups()
                        .set_group_ids(Some(group_ids))
                        .send()
                        .within_budget()
                        .await?;
                    Ok::<_, AwsError>(output.security_groups().to_vec())
                };
                let acls = async {
                    match interface.subnet_id.as_deref() {
                        Some(subnet) => self
                            .client
                            .describe_network_acls()
                            .filters(filter("association.subnet-id", subnet))
                            .send()
                            .within_budget()
                            .await
                            .map(Some),
                        None => Ok(None),
                    }
                };
                let (groups, acls) = tokio::join!(groups, acls);
                let port_pair = |from: Option<i32>, to: Option<i32>| match (from, to) {
                    (Some(from), Some(to)) if from >= 0 => Some((from, to)),
                    _ => None,
                };
                let group_rules = groups?
                    .iter()
                    .flat_map(|g| g.ip_permissions())
                    .map(|p| GroupRule {
                        protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
                        ports: port_pair(p.from_port(), p.to_port()),
                        cidrs: p
                            .ip_ranges()
                            .iter()
                            .filter_map(|r| r.cidr_ip().map(str::to_owned))
                            .collect(),
                        groups: p
                            .user_id_group_pairs()
                            .iter()
                            .filter_map(|pair| pair.group_id().map(str::to_owned))
                            .collect(),
                    })
                    .collect();
                // A network ACL the role may not read is not judged, rather than failing the check.
                let acl_entries = acls.ok().flatten().and_then(|output| {
                    output.network_acls().first().map(|acl| {
                        acl.entries()
                            .iter()
                            .filter(|e| e.egress() == Some(false))
                            .map(|e| AclEntry {
                                rule_number: e.rule_number().unwrap_or(i32::MAX),
                                protocol: e.protocol().unwrap_or("-1").to_owned(),
                                allow: e.rule_action().map(|a| a.as_str()) == Some("allow"),
                                cidr: e.cidr_block().map(str::to_owned),
                                ports: e.port_range().and_then(|r| port_pair(r.from(), r.to())),
                            })
                            .collect()
                    })
                });
                Ok(Some(Ingress {
                    group_rules,
                    acl_entries,
                }))
            })
            .await
    }
}

/// Our view of an instance; `asked_for` stands in for a missing id.
fn instance_from(instance: &aws_sdk_ec2::types::Instance, asked_for: &str) -> InstanceInfo {
    let mut interfaces: Vec<_> = instance
        .network_interfaces()
        .iter()
        .map(|n| (n.attachment().and_then(|a| a.device_index()).unwrap_or(i32::MAX), n))
        .collect();
    interfaces.sort_by_key(|(index, _)| *index);
    let endpoints = interfaces
        .iter()
        .filter_map(|(_, n)| {
            let endpoint = Endpoint {
                private_ip: n.private_ip_address().map(str::to_owned),
                security_groups: n
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
            };
            n.network_interface_id().map(|id| (id.to_owned(), endpoint))
        })
        .collect();
    InstanceInfo {
        id: instance.instance_id().unwrap_or(asked_for).to_owned(),
        instance_type: instance
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        vpc_id: instance.vpc_id().map(str::to_owned),
        subnet_id: instance.subnet_id().map(str::to_owned),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        enis: interfaces
            .iter()
            .filter_map(|(_, n)| n.network_interface_id().map(str::to_owned))
            .collect(),
        tags: tags_from(instance.tags()),
        state: instance
            .state()
            .and_then(|state| state.name())
            .map(|name| InstanceState::parse(name.as_str())),
        endpoints,
    }
}
