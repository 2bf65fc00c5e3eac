//! The `MemberAccess` port: a member account's EC2 ports, on the
//! credentials of its member role (`arn:aws:iam::<account>:role/<name>`),
//! assumed once per credential lifetime (the organization keeps the ports
//! until shortly before they expire). Each member has its own `Patience`:
//! EC2 paces and throttles every account apart.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::config::Credentials;

use super::ec2::Ec2;
use super::errors::WithinBudget;
use super::patience::Patience;
use crate::domain::account::{AccountId, MEMBER_ACCOUNT_UNREACHABLE};
use crate::ports::{AwsError, AwsResult, ErrorKind, MemberAccess, MemberEc2};

pub struct StsMembers {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    role_name: String,
    mutating_calls_per_second: Option<f64>,
}

impl StsMembers {
    pub fn new(sdk: &SdkConfig, role_name: impl Into<String>, mutating_calls_per_second: Option<f64>) -> Self {
        let sts_config = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(super::retry_policy())
            .build();
        Self {
            sdk: sdk.clone(),
            sts: aws_sdk_sts::Client::from_conf(sts_config),
            role_name: role_name.into(),
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
        let assumed = self
            .sts
            .assume_role()
            .role_arn(&role)
            // The session name goes into the member's CloudTrail.
            .role_session_name("traffic-mirroring")
            .send()
            .within_budget()
            .await
            .map_err(|err| unreachable(&role, err))?;
        let Some(given) = assumed.credentials() else {
            return Err(AwsError::new(
                ErrorKind::Transient,
                MEMBER_ACCOUNT_UNREACHABLE,
                format!("assuming {role}: STS answered without credentials"),
            ));
        };
        let expires_at = std::time::SystemTime::try_from(*given.expiration()).ok();
        let credentials = Credentials::new(
            given.access_key_id(),
            given.secret_access_key(),
            Some(given.session_token().to_owned()),
            expires_at,
            "traffic-mirroring-member-role",
        );
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

/// STS's refusal, named: a missing role or a trust that refuses stays so
/// until someone deploys the member stack (not retryable); throttling or a
/// failure of STS may pass.
fn unreachable(role: &str, err: AwsError) -> AwsError {
    // Cut off by the invocation's deadline: nothing is known of the role.
    if err.code == crate::deadline::OUT_OF_TIME {
        return err;
    }
    let kind = match err.kind {
        ErrorKind::Transient => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    };
    AwsError::new(
        kind,
        MEMBER_ACCOUNT_UNREACHABLE,
        format!("assuming {role}: {}: {}", err.code, err.message),
    )
}
