//! The only code that imports the AWS SDK: one adapter per port, built once
//! from one `SdkConfig`.

pub mod ec2;
pub mod errors;
pub mod events;
pub mod ledger;
pub mod patience;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;

use crate::config::Config;
use crate::handler::App;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::{Allowed, Mirroring};

/// Builds every client and adapter from one SDK configuration, so the
/// standard settings (`AWS_ENDPOINT_URL`, region, retries) apply to all.
pub fn build_app(sdk: &SdkConfig, config: &Config) -> App {
    let ec2_config = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_config(ec2_retry_policy())
        .build();
    let ec2 = patience::Patient::new(ec2::Ec2Mirroring::new(aws_sdk_ec2::Client::from_conf(ec2_config)))
        .with_mutating_rate(config.mutating_calls_per_second);
    let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .build();
    let ledger = ledger::DynamoLedger::new(aws_sdk_dynamodb::Client::from_conf(dynamodb_config), &config.table_name)
        .with_finished_record_days(config.finished_record_days);
    let events_config = aws_sdk_eventbridge::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .build();
    let publisher = events::EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::from_conf(events_config),
        &config.event_bus_name,
        &config.event_source,
    );
    let policy = LaunchPolicy {
        default_targets: config.default_targets.clone(),
    };
    if config.allowed_targets.is_none() {
        tracing::warn!(
            owner = %config.owner,
            "ALLOWED_TARGETS is not set: any caller that may invoke this function, send to its queue, put an \
             event on its bus or tag an instance can mirror any ENI's traffic to any destination"
        );
    }
    let allowed = Allowed {
        targets: config.allowed_targets.clone(),
        sources: config.allowed_sources.clone(),
    };
    let mirroring = Mirroring::new(Arc::new(ec2), Arc::new(ledger), &config.owner)
        .with_lease_seconds(config.claim_lease_seconds)
        .with_allowed(allowed)
        .with_sweep_max_deletions(config.sweep_max_deletions);
    App::new(mirroring, Arc::new(publisher))
        .with_launch_policy(policy)
        .with_max_concurrent_actions(config.max_concurrent_actions)
}

/// DynamoDB and EventBridge: throttling (`ThrottlingException`,
/// `ProvisionedThroughputExceededException`), 5xx and dropped connections are
/// retried by the SDK with exponential backoff and full jitter. Adaptive mode
/// adds a client-side rate limiter that slows every call of a client once
/// throttling is seen, instead of letting each call hammer the bucket. Six
/// attempts with backoff capped at 5 s span about 15 s; the invocation's
/// budget cuts them shorter when it must (`errors::WithinBudget`).
pub fn retry_policy() -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

/// EC2 calls are tried once by the SDK: `patience::Patient` retries them,
/// within the invocation's budget, so that a call cut off by the deadline
/// still reports what EC2 last answered (throttling, say) rather than a
/// timeout, and no SDK backoff sleeps past the deadline.
pub fn ec2_retry_policy() -> RetryConfig {
    RetryConfig::disabled()
}
