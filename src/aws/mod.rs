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
use crate::mirroring::Mirroring;

/// Builds every client and adapter from one SDK configuration, so the
/// standard settings (`AWS_ENDPOINT_URL`, region, retries) apply to all.
pub fn build_app(sdk: &SdkConfig, config: &Config) -> App {
    let ec2_config = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .build();
    let ec2 = patience::Patient::new(ec2::Ec2Mirroring::new(aws_sdk_ec2::Client::from_conf(ec2_config)))
        .with_mutating_rate(config.mutating_calls_per_second);
    let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .build();
    let ledger = ledger::DynamoLedger::new(aws_sdk_dynamodb::Client::from_conf(dynamodb_config), &config.table_name);
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
    let mirroring = Mirroring::new(Arc::new(ec2), Arc::new(ledger)).with_lease_seconds(config.claim_lease_seconds);
    App::new(mirroring, Arc::new(publisher))
        .with_launch_policy(policy)
        .with_max_concurrent_actions(config.max_concurrent_actions)
}

/// Throttling (`RequestLimitExceeded`, DynamoDB's `ThrottlingException` and
/// `ProvisionedThroughputExceededException`), 5xx and dropped connections are
/// retried by the SDK with exponential backoff and full jitter. Adaptive mode
/// adds a client-side rate limiter that slows every call of a client once
/// throttling is seen, instead of letting each call hammer the bucket; six
/// attempts with backoff capped at 5 s span about 15 s, well inside a Lambda
/// invocation.
pub fn retry_policy() -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}
