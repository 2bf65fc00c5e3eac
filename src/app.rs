//! The composition root: the one place where the AWS clients, their adapters
//! and the application are put together, from one `SdkConfig` (so the
//! standard settings, `AWS_ENDPOINT_URL`, region and credentials, apply to
//! all) and the `Config`. `main` and the tests build the function here.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::retry::RetryPartition;

use crate::aws::queue::SqsSweepQueue;
use crate::aws::{ec2::Ec2, events::EventBridgePublisher, ledger::DynamoLedger, patience::Patience};
use crate::aws::{ec2_retry_policy, retry_policy};
use crate::aws::{members::StsMembers, ram::RamShares};
use crate::config::Config;
use crate::handler::App;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::{AllowList, Allowed, Controls, FleetSettings, Mirroring, Ports};
use crate::organization::scoped::SharedScan;
use crate::organization::{FanOut, HubParts, Organization};

/// How long an organization's sweeps share one read of the ledger.
const SHARED_SCAN_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(15);

pub fn build(sdk: &SdkConfig, config: &Config) -> App {
    let ec2_config = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_config(ec2_retry_policy())
        .build();
    // Every EC2 call goes through one `Patience`: paced and retried there.
    let patience = Patience::new(config.mutating_calls_per_second);
    let ec2 = Ec2::new(aws_sdk_ec2::Client::from_conf(ec2_config), patience).ports();
    // The SDK shares a retry partition's token bucket and adaptive rate
    // limiter among every client of that name in the process: each
    // deployment gets its own, so another served by the same process (the
    // tests run several, one of them throttled for ever) cannot slow it.
    let partition = |service: &str| RetryPartition::new(format!("{service}/{}", config.owner));
    let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .retry_partition(partition("dynamodb"))
        .build();
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::from_conf(dynamodb_config), &config.table_name)
        .with_finished_record_days(config.finished_record_days)
        .ports();
    let events_config = aws_sdk_eventbridge::config::Builder::from(sdk)
        .retry_config(retry_policy())
        .retry_partition(partition("events"))
        .build();
    let publisher = EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::from_conf(events_config),
        &config.event_bus_name,
        &config.event_source,
    );
    if config.allowed_targets == AllowList::Nothing || config.allowed_sources == AllowList::Nothing {
        tracing::warn!(
            owner = %config.owner,
            "ALLOWED_TARGETS or ALLOWED_SOURCES is not set: every create is refused until both name what this \
             deployment may mirror (or * for any)"
        );
    }
    let allowed = Allowed {
        targets: config.allowed_targets.clone(),
        sources: config.allowed_sources.clone(),
    };
    let controls = Controls {
        require_reason: config.require_reason,
        max_mirror_minutes: config.max_mirror_minutes,
        remove_unapproved_mirrors: config.remove_unapproved_mirrors,
    };
    let ports = Ports {
        targets: Arc::new(ec2.targets),
        filters: Arc::new(ec2.filters),
        sessions: Arc::new(ec2.sessions),
        instances: Arc::new(ec2.instances),
        preflight: Arc::new(ec2.preflight),
        tagging: Arc::new(ec2.tagging),
        records: Arc::new(ledger.records),
        claims: Arc::new(ledger.claims),
        numbers: Arc::new(ledger.numbers),
        scans: Arc::new(ledger.scans),
        publisher: Arc::new(publisher),
    };
    let ledger_reports = ledger.reports;
    // A hub: the members' EC2 on their roles' credentials, the hub's
    // targets shared with them through RAM, one ledger seen per account.
    let hub = match (&config.accounts.home, config.accounts.spans_members()) {
        (Some(home), true) => {
            let ram_config = aws_sdk_ram::config::Builder::from(sdk)
                .retry_config(retry_policy())
                .retry_partition(partition("ram"))
                .build();
            let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
            let shares = RamShares::new(
                aws_sdk_ram::Client::from_conf(ram_config),
                &config.owner,
                region,
                home.clone(),
            );
            let parts = HubParts {
                home: home.clone(),
                records: ports.records.clone(),
                claims: ports.claims.clone(),
                numbers: ports.numbers.clone(),
                // Every account's sweep that starts within seconds of another
                // shares its read of the table.
                scans: Arc::new(SharedScan::new(ports.scans.clone(), SHARED_SCAN_FRESH_FOR)),
                targets: ports.targets.clone(),
                instances: ports.instances.clone(),
                preflight: ports.preflight.clone(),
                publisher: ports.publisher.clone(),
                shares: Arc::new(shares),
                reports: Arc::new(ledger_reports),
                fan_out: config.sweep_queue_url.as_ref().map(|url| {
                    let sqs_config = aws_sdk_sqs::config::Builder::from(sdk)
                        .retry_config(retry_policy())
                        .retry_partition(partition("sqs"))
                        .build();
                    FanOut {
                        queue: Arc::new(SqsSweepQueue::new(aws_sdk_sqs::Client::from_conf(sqs_config), url)),
                        accounts_per_invocation: config.sweep_accounts_per_invocation,
                    }
                }),
            };
            let access = StsMembers::new(sdk, &config.member_role_name, config.mutating_calls_per_second);
            Some((parts, Arc::new(access)))
        }
        _ => None,
    };
    let ports = match &hub {
        Some((parts, _)) => parts.home_ports(ports),
        None => ports,
    };
    let mirroring = Mirroring::from_ports(ports, &config.owner)
        .with_lease_seconds(config.claim_lease_seconds)
        .with_allowed(allowed)
        .with_controls(controls)
        .with_sweep_max_deletions(config.sweep_max_deletions)
        .with_fleet(FleetSettings {
            pools: config.target_pools.clone(),
            price_per_eni_hour: config.price_per_eni_hour,
        });
    let home = Arc::new(mirroring);
    let organization = match hub {
        Some((parts, access)) => Organization::hub(home, config.accounts.clone(), parts, access),
        None => Organization::single(home, config.accounts.clone()),
    };
    App::new(organization)
        .with_launch_policy(LaunchPolicy {
            default_targets: config.default_targets.clone(),
        })
        .with_max_concurrent_actions(config.max_concurrent_actions)
}
