//! The mirroring logic against in-memory fakes of its ports (no emulator, no
//! HTTP): a few milliseconds a test, for the rules a change to the logic is
//! most likely to break. What depends on AWS's behaviour over the wire
//! (paging, throttling, lagging indexes, processes racing, the deadline) is
//! tested in `aws_flows` against the emulator. One module per behaviour
//! family, as in `aws_flows`; `world` holds the fixture and the payloads.

#[path = "../support/fakes/mod.rs"]
mod fakes;
#[path = "../support/payloads.rs"]
mod payloads;
mod world;

mod create;
mod fleet;
mod kinds;
mod numbers;
mod organization;
mod pools;
mod remove;
mod requests;
mod safety;
mod sources;
mod wiretap;
