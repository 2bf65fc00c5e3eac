//! The `TargetShares` port over AWS RAM: one resource share per deployment,
//! found by its owner tag (made once, empty, with a client token derived
//! from the owner, so processes making it at once make one), holding the
//! hub's targets that member sessions use and the members as principals.

use async_trait::async_trait;
use aws_sdk_ram::types::{
    ResourceOwner, ResourceShareAssociationStatus, ResourceShareAssociationType, ResourceShareStatus, Tag, TagFilter,
};
use aws_sdk_ram::Client;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::errors::WithinBudget;
use crate::domain::account::AccountId;
use crate::domain::tags::TAG_MANAGED_BY;
use crate::ports::{AwsResult, TargetShares};

pub struct RamShares {
    client: Client,
    owner: String,
    /// Where the hub's targets live, for their ARNs.
    region: String,
    hub: AccountId,
    share: OnceCell<String>,
}

impl RamShares {
    pub fn new(client: Client, owner: impl Into<String>, region: impl Into<String>, hub: AccountId) -> Self {
        Self {
            client,
            owner: owner.into(),
            region: region.into(),
            hub,
            share: OnceCell::new(),
        }
    }

    /// A traffic mirror target's ARN, as RAM names the resource.
    pub fn target_arn(&self, target_id: &str) -> String {
        format!(
            "arn:{}:ec2:{}:{}:traffic-mirror-target/{target_id}",
            partition(&self.region),
            self.region,
            self.hub
        )
    }

    /// The deployment's share: the oldest-named one tagged with its owner,
    /// made when there is none.
    async fn share(&self) -> AwsResult<&String> {
        self.share
            .get_or_try_init(|| async {
                if let Some(found) = self.find_share().await? {
                    return Ok(found);
                }
                let made = self
                    .client
                    .create_resource_share()
                    .name(share_name(&self.owner))
                    .allow_external_principals(true)
                    .tags(Tag::builder().key(TAG_MANAGED_BY).value(&self.owner).build())
                    .client_token(share_token(&self.owner))
                    .send()
                    .within_budget()
                    .await?;
                match made.resource_share().and_then(|s| s.resource_share_arn()) {
                    Some(arn) => Ok(arn.to_owned()),
                    // RAM always names what it made; read it back if not.
                    None => Ok(self.find_share().await?.unwrap_or_default()),
                }
            })
            .await
    }

    async fn find_share(&self) -> AwsResult<Option<String>> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .get_resource_shares()
                .resource_owner(ResourceOwner::SelfValue)
                .resource_share_status(ResourceShareStatus::Active)
                .tag_filters(
                    TagFilter::builder()
                        .tag_key(TAG_MANAGED_BY)
                        .tag_values(&self.owner)
                        .build(),
                )
                .set_next_token(token)
                .send()
                .within_budget()
                .await?;
            arns.extend(
                page.resource_shares()
                    .iter()
                    .filter_map(|s| s.resource_share_arn().map(str::to_owned)),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        arns.sort();
        Ok(arns.into_iter().next())
    }

    /// The share's live associations of one kind (all pages).
    async fn associated(
        &self,
        share: &str,
        kind: ResourceShareAssociationType,
        entity: Option<&str>,
    ) -> AwsResult<Vec<String>> {
        let mut entities = Vec::new();
        let mut token = None;
        loop {
            let mut call = self
                .client
                .get_resource_share_associations()
                .association_type(kind.clone())
                .resource_share_arns(share)
                .set_next_token(token);
            call = match (&kind, entity) {
                (ResourceShareAssociationType::Resource, Some(arn)) => call.resource_arn(arn),
                (ResourceShareAssociationType::Principal, Some(principal)) => call.principal(principal),
                _ => call,
            };
            let page = call.send().within_budget().await?;
            entities.extend(
                page.resource_share_associations()
                    .iter()
                    .filter(|a| {
                        matches!(
                            a.status(),
                            Some(
                                ResourceShareAssociationStatus::Associated
                                    | ResourceShareAssociationStatus::Associating
                            )
                        )
                    })
                    .filter_map(|a| a.associated_entity().map(str::to_owned)),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(entities)
    }
}

#[async_trait]
impl TargetShares for RamShares {
    async fn share(&self, target_id: &str, account: &AccountId) -> AwsResult<bool> {
        let share = self.share().await?.clone();
        let arn = self.target_arn(target_id);
        let (resources, principals) = tokio::try_join!(
            self.associated(&share, ResourceShareAssociationType::Resource, Some(&arn)),
            self.associated(&share, ResourceShareAssociationType::Principal, None),
        )?;
        let has_resource = resources.contains(&arn);
        // The account itself, or an organization (or OU) the operator shared with.
        let has_principal = principals
            .iter()
            .any(|p| p == account.as_str() || p.starts_with("arn:aws:organizations::"));
        if has_resource && has_principal {
            return Ok(false);
        }
        let mut call = self.client.associate_resource_share().resource_share_arn(&share);
        if !has_resource {
            call = call.resource_arns(&arn);
        }
        if !has_principal {
            call = call.principals(account.as_str());
        }
        call.send().within_budget().await?;
        Ok(true)
    }

    async fn unshare_account(&self, account: &AccountId) -> AwsResult<()> {
        let share = self.share().await?.clone();
        let principals = self
            .associated(&share, ResourceShareAssociationType::Principal, Some(account.as_str()))
            .await?;
        if principals.is_empty() {
            return Ok(());
        }
        self.client
            .disassociate_resource_share()
            .resource_share_arn(&share)
            .principals(account.as_str())
            .send()
            .within_budget()
            .await?;
        Ok(())
    }

    async fn unshare_target(&self, target_id: &str) -> AwsResult<()> {
        let share = self.share().await?.clone();
        let arn = self.target_arn(target_id);
        let resources = self
            .associated(&share, ResourceShareAssociationType::Resource, Some(&arn))
            .await?;
        if resources.is_empty() {
            return Ok(());
        }
        self.client
            .disassociate_resource_share()
            .resource_share_arn(&share)
            .resource_arns(&arn)
            .send()
            .within_budget()
            .await?;
        Ok(())
    }
}

/// The share's name: the owner, in the characters RAM takes.
fn share_name(owner: &str) -> String {
    let cleaned: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!("traffic-mirroring-{cleaned}")
}

/// One token per owner: every process making the share makes the same one.
fn share_token(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("tm-share-{hex}")
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_named_and_tokened_by_the_owner_alone() {
        assert_eq!(
            share_name("arn:aws:cloudformation:us-east-1:1:stack/tm/x"),
            "traffic-mirroring-arn-aws-cloudformation-us-east-1-1-stack-tm-x"
        );
        assert_eq!(share_token("a"), share_token("a"));
        assert_ne!(share_token("a"), share_token("b"));
        assert!(share_token("a").len() <= 64, "RAM takes tokens of up to 64 characters");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}
