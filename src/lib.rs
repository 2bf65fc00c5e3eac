//! An AWS Lambda that sets up and tears down VPC Traffic Mirroring on request.
//!
//! `contract` is the wire format callers speak (requests, answers, event
//! names), `sources` tells which source invoked us, `mirroring` is the logic,
//! `ports` the traits it needs, `aws` the adapters (the only code that talks
//! to AWS), `handler` the `App` that serves one invocation, and `app` the
//! composition root that puts them together.

// A failed action is answered with an `ActionResult`, so the create and
// remove steps return one as their error: it is built once per action, off any
// hot path, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod announce;
pub mod app;
pub mod aws;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod contract;
pub mod deadline;
pub mod domain;
pub mod handler;
pub mod instance_events;
pub mod lanes;
pub mod metrics;
pub mod mirroring;
pub mod organization;
pub mod ports;
pub mod runner;
pub mod sources;
