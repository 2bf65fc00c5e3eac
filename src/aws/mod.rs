//! The adapters: the only code that imports the AWS SDK, one per port, and
//! the retry policy each client is built with. They know the ports and the
//! contract, nothing of the application (`app` puts them together).

pub mod ec2;
pub mod errors;
pub mod events;
pub mod ledger;
pub mod members;
pub mod patience;
pub mod queue;
pub mod ram;

use std::time::Duration;

use aws_config::retry::RetryConfig;

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

/// EC2 calls are tried once by the SDK: `patience::Patience` retries them,
/// within the invocation's budget, so that a call cut off by the deadline
/// still reports what EC2 last answered (throttling, say) rather than a
/// timeout, and no SDK backoff sleeps past the deadline.
pub fn ec2_retry_policy() -> RetryConfig {
    RetryConfig::disabled()
}
