//! An AWS Lambda that sets up and tears down VPC Traffic Mirroring on request.
//!
//! `contract` is the wire format callers speak, `mirroring` the logic,
//! `ports` the traits it needs, `aws` the only code that talks to AWS, and
//! `handler` ties one request to all of them.

// A failed action is answered with an `ActionResult`, so the create and
// remove steps return one as their error: it is built once per action, off any
// hot path, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod announce;
pub mod aws;
pub mod config;
pub mod contract;
pub mod deadline;
pub mod handler;
pub mod ingress;
pub mod mirroring;
pub mod ports;
