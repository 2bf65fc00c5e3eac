//! In-memory fakes of the ports, for tests of the logic that need no
//! emulator and run in milliseconds.
//!
//! - `MemoryEc2` (`ec2.rs`, its answers in `ec2/calls.rs`) and `MemoryLedger`
//!   (`ledger.rs`) keep their state behind a mutex and hold to the rules the
//!   logic relies on: EC2's sessions per source ENI, unique session numbers,
//!   in-use deletes, client tokens, missing ENIs and Xen instance types; the
//!   ledger's conditional claims, makers and users of shared resources, and
//!   record versions. `fail_next` makes the next call of one name fail, as
//!   the emulator's faults do; `MemoryEc2::slow_down` makes a call take turns
//!   of the scheduler, timed on a logical clock, so the calls of actions run
//!   at once overlap without a real clock.
//! - They are not the emulator: paging, real latency and deadlines,
//!   throttling and the SDK's retries, lagging indexes, TTLs and atomicity
//!   across processes are tested against it, over HTTP.
#![allow(dead_code)]

mod ec2;
mod ledger;
mod org;

use std::sync::Mutex;

use async_trait::async_trait;
use traffic_mirroring::contract::ActionResult;
use traffic_mirroring::ports::{AwsError, AwsResult, Publisher};

// Each test binary uses some of them.
#[allow(unused_imports)]
pub use ec2::{peak_overlap, MemoryEc2, Span, DEFAULT_SUBNET, DEFAULT_VPC};
pub use ledger::MemoryLedger;
#[allow(unused_imports)]
pub use org::{MemoryMembers, MemoryQueue, MemoryShares};
/// Armed failures: the next call of a name fails with this error.
#[derive(Default)]
pub(crate) struct Faults(Mutex<Vec<(String, AwsError)>>);

impl Faults {
    pub(crate) fn arm(&self, call: &str, error: AwsError) {
        if let Ok(mut faults) = self.0.lock() {
            faults.push((call.to_owned(), error));
        }
    }

    pub(crate) fn take(&self, call: &str) -> AwsResult<()> {
        let mut faults = self.0.lock().expect("faults");
        match faults.iter().position(|(name, _)| name == call) {
            Some(at) => Err(faults.remove(at).1),
            None => Ok(()),
        }
    }
}

/// Completion events, kept in memory.
#[derive(Default)]
pub struct MemoryBus {
    pub events: Mutex<Vec<ActionResult>>,
}

#[async_trait]
impl Publisher for MemoryBus {
    async fn publish(&self, result: &ActionResult) -> AwsResult<()> {
        self.events.lock().expect("events").push(result.clone());
        Ok(())
    }
}
