//! The Lambda's behaviour against the AWS emulator over HTTP: one binary, one
//! module per behaviour family (a single binary links the SDK once).

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "cli")]
mod cli;
mod concurrency;
mod crash;
mod events;
mod faults;
mod fleet;
mod idempotency;
mod kinds;
mod metrics;
mod organization;
mod pools;
mod remove;
mod rules;
mod safety;
mod storm;
mod sweep;
