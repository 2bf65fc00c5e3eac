//! The only code that imports the AWS SDK: one adapter per port, built once
//! from one `SdkConfig`.

pub mod ec2;
pub mod errors;
pub mod events;
pub mod ledger;

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::config::Config;
use crate::handler::App;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::Mirroring;

/// Builds every client and adapter from one SDK configuration, so the
/// standard settings (`AWS_ENDPOINT_URL`, region, retries) apply to all.
pub fn build_app(sdk: &SdkConfig, config: &Config) -> App {
    let ec2 = ec2::Ec2Mirroring::new(aws_sdk_ec2::Client::new(sdk));
    let ledger = ledger::DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name);
    let publisher = events::EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(sdk),
        &config.event_bus_name,
        &config.event_source,
    );
    let policy = LaunchPolicy {
        default_targets: config.default_targets.clone(),
    };
    App::new(Mirroring::new(Arc::new(ec2), Arc::new(ledger)), Arc::new(publisher)).with_launch_policy(policy)
}
