//! The `MemberAccess` port: a member account's EC2 ports, on the
//! credentials of its member role (`arn:aws:iam::<account>:role/<name>`),
//! assumed once per credential lifetime (the organization keeps the ports
//! until shortly before they expire). Each member has its own `Patience`:
//! EC2 paces and throttles every account apart.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::ec2::Ec2;
use super::patience::Patience;
use crate::domain::account::{AccountId, MEMBER_ACCOUNT_UNREACHABLE};
use crate::ports::{AwsError, AwsResult, ErrorKind, MemberAccess, MemberEc2};

pub struct StsMembers {
    sdk: SdkConfig,
    role_name: String,
    /// The session name each assumed role carries into CloudTrail.
    session_name: String,
    mutating_calls_per_second: Option<f64>,
}

impl StsMembers {
    pub fn new(sdk: &SdkConfig, role_name: impl Into<String>, mutating_calls_per_second: Option<f64>) -> Self {
        Self {
            sdk: sdk.clone(),
            role_name: role_name.into(),
            session_name: "traffic-mirroring".to_owned(),
            mutating_calls_per_second,
        }
    }

    pub fn role_arn(&self, account: &AccountId) -> String {
        let partition = match self.sdk.region().map(|r| r.as_ref().to_owned()) {
            Some(region) if region.starts_with("cn-") => "aws-cn",
            Some(region) if region.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        format!("arn:{partition}:iam::{account}:role/{}", self.role_name)
    }
}

#[async_trait]
impl MemberAccess for StsMembers {
    async fn reach(&self, account: &AccountId) -> AwsResult<MemberEc2> {
        let role = self.role_arn(account);
        let provider = AssumeRoleProvider::builder(&role)
            .session_name(&self.session_name)
            .configure(&self.sdk)
            .build()
            .await;
        let credentials = crate::deadline::bounded("AssumeRole", async {
            provider.provide_credentials().await.map_err(|err| {
                let text = DisplayErrorContext(&err).to_string();
                // A missing role or a trust that refuses stays so until
                // someone deploys the member stack; anything else may pass.
                let kind = if text.contains("AccessDenied") || text.contains("InvalidClientTokenId") {
                    ErrorKind::Rejected
                } else {
                    ErrorKind::Transient
                };
                AwsError::new(kind, MEMBER_ACCOUNT_UNREACHABLE, format!("assuming {role}: {text}"))
            })
        })
        .await?;
        let expires_at = credentials.expiry();
        let config = aws_sdk_ec2::config::Builder::from(&self.sdk)
            .retry_config(super::ec2_retry_policy())
            .credentials_provider(credentials)
            .build();
        let ec2 = Ec2::new(
            aws_sdk_ec2::Client::from_conf(config),
            Patience::new(self.mutating_calls_per_second),
        )
        .ports();
        Ok(MemberEc2 {
            targets: Arc::new(ec2.targets),
            filters: Arc::new(ec2.filters),
            sessions: Arc::new(ec2.sessions),
            instances: Arc::new(ec2.instances),
            preflight: Arc::new(ec2.preflight),
            tagging: Arc::new(ec2.tagging),
            expires_at,
        })
    }
}
