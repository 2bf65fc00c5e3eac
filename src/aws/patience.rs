//! Patience with EC2's rate limits. EC2 throttles each account and Region
//! with token buckets; in a launch storm the bucket stays empty for longer
//! than the SDK's own retries last. Giving up then loses the mirror until the
//! record comes back from its queue, so throttled calls are tried again, with
//! growing pauses and full jitter, for as long as the invocation can afford:
//! while the invocation's budget lasts (`deadline::budget`). The EC2
//! client makes one attempt per call (see `aws::ec2_retry_policy`), so this
//! is the one retry loop for EC2: it knows the deadline, and when time runs
//! out it answers with what EC2 last said. Throttling, 5xx and dropped
//! connections are retried; every create carries a client token and every
//! delete treats "not found" as done, so a retry never makes a twin.
//!
//! Better than being throttled is not asking too fast: with a rate set, each
//! process paces its mutating calls with a token bucket of its own, so that
//! processes x rate stays inside the account's budget (the template sizes it).

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::aws::errors::THROTTLING;
use crate::deadline;
use crate::domain::clock::jitter_millis;
use crate::metrics::{self, Counter};
use crate::ports::{AwsError, AwsResult, Deleted, ErrorKind};

/// How long to keep trying when the work has no deadline (tests, tools).
const PATIENCE_WITHOUT_DEADLINE: Duration = Duration::from_secs(60);
/// Pauses between tries: the first, and the longest it doubles up to.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    first: Duration,
    longest: Duration,
}

const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(400),
    longest: Duration::from_secs(8),
};

/// The code of a call our own pacer refused, its turn being past the budget.
const PACED_PAST_DEADLINE: &str = "PacedPastDeadline";
/// Tries of a call that fails with a 5xx or a dropped connection, as many
/// as the SDK's own retry policy makes of other calls; throttling is tried
/// for as long as the budget lasts.
const TRIES_OF_OTHER_FAILURES: u32 = 6;

/// Whether EC2 may answer otherwise if asked again, after `tries` tries:
/// throttling, while time lasts; 5xx and dropped connections a few times
/// (not our own deadline or pacer refusing the call).
fn worth_retrying(err: &AwsError, tries: u32) -> bool {
    if THROTTLING.contains(&err.code.as_str()) {
        return true;
    }
    err.kind == ErrorKind::Transient
        && err.code != deadline::OUT_OF_TIME
        && err.code != PACED_PAST_DEADLINE
        && tries < TRIES_OF_OTHER_FAILURES
}

/// The one choke point of EC2 calls: every call of the EC2 adapters goes
/// through `read`, `create` or `delete`, which pace mutating calls and retry
/// throttled ones within the invocation's time.
pub struct Patience {
    pace: Option<Pace>,
}

impl Patience {
    /// Paces mutating calls at `per_second` on average (bursts of one
    /// second's worth); `None` or zero: no pace of our own.
    pub fn new(mutating_per_second: Option<f64>) -> Self {
        Self {
            pace: mutating_per_second.filter(|r| *r > 0.0).map(Pace::new),
        }
    }

    /// A call that changes nothing: retried, never paced.
    pub async fn read<T, F, Fut>(&self, call_name: &str, call: F) -> AwsResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = AwsResult<T>>,
    {
        persist(call_name, call).await
    }

    /// A call that makes something: each try waits for its turn; a success
    /// counts in `made`.
    pub async fn create<T, F, Fut>(&self, call_name: &str, made: Option<Counter>, call: F) -> AwsResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = AwsResult<T>>,
    {
        let outcome = persist(call_name, || async {
            self.turn(Call::Create).await?;
            call().await
        })
        .await;
        if let (Ok(_), Some(counter)) = (&outcome, made) {
            metrics::add(counter, 1);
        }
        outcome
    }

    /// A delete: each try waits for its turn (but not while winding down);
    /// a resource deleted now, not found gone, counts in `gone`.
    pub async fn delete<F, Fut>(&self, call_name: &str, gone: Counter, call: F) -> AwsResult<Deleted>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = AwsResult<Deleted>>,
    {
        let outcome = persist(call_name, || async {
            self.turn(Call::Delete).await?;
            call().await
        })
        .await;
        if outcome == Ok(Deleted::Now) {
            metrics::add(gone, 1);
        }
        outcome
    }

    /// Waits for this process's turn to make a mutating call. A call whose
    /// turn would come too late to answer is refused at once (taking no
    /// turn): its action fails as retryable and goes back to its queue,
    /// instead of the whole invocation timing out. A delete made while
    /// winding down (a rollback's) does not wait: it takes its turn and goes
    /// at once, since an orphan left behind costs more than a moment over
    /// our own pace (EC2's bucket still applies, and throttling is retried).
    async fn turn(&self, call: Call) -> AwsResult<()> {
        let Some(pace) = &self.pace else {
            return Ok(());
        };
        if matches!(call, Call::Delete) && deadline::phase() == deadline::Phase::WindingDown {
            pace.take_now().await;
            return Ok(());
        }
        pace.wait(deadline::budget()).await.map_err(|wait| {
            AwsError::new(
                ErrorKind::Transient,
                PACED_PAST_DEADLINE,
                format!(
                    "this process's share of EC2's write rate comes round again in {:.1} s, after the \
                     invocation's deadline; the action is left to a retry",
                    wait.as_secs_f64()
                ),
            )
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Call {
    Create,
    Delete,
}

/// A token bucket on this side of the wire. A caller that finds it empty
/// takes a token in advance and sleeps until it would have refilled, so
/// waiting callers are served in order and the rate holds on average.
struct Pace {
    per_second: f64,
    burst: f64,
    bucket: tokio::sync::Mutex<(f64, Instant)>,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        let burst = per_second.max(1.0);
        Self {
            per_second,
            burst,
            bucket: tokio::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a turn without waiting for it (the bucket goes into debt).
    async fn take_now(&self) {
        let mut bucket = self.bucket.lock().await;
        let (tokens, since) = *bucket;
        let now = Instant::now();
        let refilled = (tokens + now.duration_since(since).as_secs_f64() * self.per_second).min(self.burst);
        *bucket = (refilled - 1.0, now);
    }

    /// Takes a turn and waits for it; `Err` with the wait, and no turn
    /// taken, when the wait would be longer than `budget`.
    async fn wait(&self, budget: Option<Duration>) -> Result<(), Duration> {
        let wait = {
            let mut bucket = self.bucket.lock().await;
            let (tokens, since) = *bucket;
            let now = Instant::now();
            let refilled = (tokens + now.duration_since(since).as_secs_f64() * self.per_second).min(self.burst);
            let wait = if refilled >= 1.0 {
                Duration::ZERO
            } else {
                // The configured rate is at least 0.01/s; a wait that would
                // still not fit a Duration is as good as for ever.
                Duration::try_from_secs_f64((1.0 - refilled) / self.per_second).unwrap_or(Duration::MAX)
            };
            if budget.is_some_and(|budget| wait > budget) {
                return Err(wait);
            }
            *bucket = (refilled - 1.0, now);
            wait
        };
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

async fn persist<T, F, Fut>(call_name: &str, call: F) -> AwsResult<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    persist_with(BACKOFF, call_name, call).await
}

/// Tries the call until it is not throttled or its budget is spent. Each
/// try is bounded by the adapter, the pacer's wait by `turn`, and the
/// pauses here; when time runs out after a failure worth retrying, that
/// failure is what the caller is told.
async fn persist_with<T, F, Fut>(backoff: Backoff, call_name: &str, call: F) -> AwsResult<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let started = Instant::now();
    let mut pause_next = backoff.first;
    let mut tries = 1u32;
    let mut last_failure: Option<AwsError> = None;
    // A try that may have taken effect keeps the call in doubt, whatever
    // the later tries say (a later success with the same client token
    // settles it by naming what was made). A try cut off by the deadline
    // while EC2 was throttling the call is taken as refused like the tries
    // before it: asking again to find out would be throttled too, and would
    // spend the time the rollback needs (the sweep deletes what such a try
    // made, in the rare case it made something).
    let mut in_doubt = false;
    let settle = |err: AwsError, in_doubt: bool| if in_doubt { err.in_doubt() } else { err };
    loop {
        let outcome = call().await;
        if let Err(err) = &outcome {
            let cut_off_while_throttled = err.code == deadline::OUT_OF_TIME
                && last_failure
                    .as_ref()
                    .is_some_and(|last| THROTTLING.contains(&last.code.as_str()));
            in_doubt |= err.in_doubt && !cut_off_while_throttled;
        }
        match outcome {
            Err(err) if err.code == deadline::OUT_OF_TIME && last_failure.is_some() => {
                warn!(call = call_name, tries, "still failing and out of time; giving up");
                // EC2's last word is what the caller is told.
                return Err(settle(last_failure.unwrap_or(err), in_doubt));
            }
            Err(err) if worth_retrying(&err, tries) => {
                let pause = pause_next;
                let budget = match deadline::budget() {
                    Some(left) => left,
                    None => PATIENCE_WITHOUT_DEADLINE.saturating_sub(started.elapsed()),
                };
                // A 5xx passes quickly or not at all: shorter pauses than throttling's.
                let pause = if THROTTLING.contains(&err.code.as_str()) {
                    pause
                } else {
                    pause / 4
                };
                // Full jitter: processes throttled together come back apart.
                let wait = Duration::from_millis(u64::from(jitter_millis(call_name, pause))) + pause / 2;
                if wait >= budget {
                    warn!(call = call_name, tries, "still failing and out of time; giving up");
                    return Err(settle(err, in_doubt));
                }
                warn!(
                    call = call_name,
                    tries,
                    code = %err.code,
                    wait_ms = wait.as_millis() as u64,
                    "failed for now; trying again"
                );
                if THROTTLING.contains(&err.code.as_str()) {
                    metrics::add(Counter::ThrottledCalls, 1);
                    metrics::add(Counter::ThrottleWaitMillis, wait.as_millis() as u64);
                }
                last_failure = Some(err);
                tokio::time::sleep(wait).await;
                pause_next = (pause_next * 2).min(backoff.longest);
                tries += 1;
            }
            Err(err) => return Err(settle(err, in_doubt)),
            ok => return ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn throttled() -> AwsError {
        AwsError::new(ErrorKind::Transient, "RequestLimitExceeded", "slow down")
    }

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(20),
        longest: Duration::from_millis(400),
    };

    #[tokio::test]
    async fn throttling_is_outlasted_while_time_remains() {
        let calls = AtomicU32::new(0);
        let outcome = persist_with(QUICK, "Call", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 5 {
                Err(throttled())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(outcome, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_5xx_is_tried_as_often_as_the_sdk_would_and_no_more() {
        let calls = AtomicU32::new(0);
        let outcome: AwsResult<()> = persist_with(QUICK, "Call", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AwsError::new(ErrorKind::Transient, "InternalError", "try later"))
        })
        .await;
        assert_eq!(outcome.map_err(|e| e.code), Err("InternalError".to_owned()));
        assert_eq!(calls.load(Ordering::SeqCst), TRIES_OF_OTHER_FAILURES);
    }

    #[tokio::test]
    async fn out_of_time_after_throttling_reports_the_throttling() {
        let calls = AtomicU32::new(0);
        let outcome: AwsResult<()> = persist_with(QUICK, "Call", || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(throttled())
            } else {
                Err(deadline::out_of_time("Call"))
            }
        })
        .await;
        assert_eq!(outcome.map_err(|e| e.code), Err("RequestLimitExceeded".to_owned()));
    }

    #[tokio::test]
    async fn a_try_that_may_have_taken_effect_leaves_the_call_in_doubt() {
        // Throttled, then cut off in flight: throttling is reported, and the
        // cut-off try is taken as throttled too.
        let calls = AtomicU32::new(0);
        let cut_off: AwsResult<()> = persist_with(QUICK, "Call", || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(throttled())
            } else {
                Err(deadline::out_of_time("Call").in_doubt())
            }
        })
        .await;
        let cut_off = cut_off.expect_err("it failed");
        assert_eq!(
            (cut_off.code.as_str(), cut_off.in_doubt),
            ("RequestLimitExceeded", false)
        );
        // Cut off in flight at the first try: nobody said no.
        let first: AwsResult<()> = persist_with(QUICK, "Call", || async {
            Err(deadline::out_of_time("Call").in_doubt())
        })
        .await;
        assert!(first.is_err_and(|e| e.in_doubt));
        // A 5xx, then throttling until time runs out: still in doubt.
        let calls = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        let failed: AwsResult<()> = deadline::within(deadline, async {
            persist_with(QUICK, "Call", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(AwsError::new(ErrorKind::Transient, "InternalError", "try later").in_doubt())
                } else {
                    Err(throttled())
                }
            })
            .await
        })
        .await;
        assert!(failed.is_err_and(|e| e.in_doubt));
        // Throttled every time: EC2 refused each try, nothing was made.
        let deadline = Instant::now() + Duration::from_secs(2);
        let refused: AwsResult<()> =
            deadline::within(deadline, persist_with(QUICK, "Call", || async { Err(throttled()) })).await;
        assert!(refused.is_err_and(|e| !e.in_doubt));
    }

    #[tokio::test]
    async fn mutating_calls_are_paced_to_the_rate() {
        let pace = Pace::new(20.0);
        let started = Instant::now();
        for _ in 0..30 {
            pace.wait(None).await.expect("no deadline");
        }
        // A burst of 20, then 10 more at 20 a second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn the_slowest_rate_waits_without_panicking() {
        let pace = Pace::new(0.01);
        pace.wait(Some(Duration::ZERO)).await.expect("the first turn");
        let refused = pace.wait(Some(Duration::from_secs(1))).await;
        assert!(refused.is_err_and(|wait| wait > Duration::from_secs(90)));
        let absurd = Pace::new(1e-300);
        absurd.wait(None).await.expect("a burst of one");
        assert_eq!(absurd.wait(Some(Duration::ZERO)).await, Err(Duration::MAX));
    }

    #[tokio::test]
    async fn a_turn_that_would_come_after_the_deadline_is_refused_without_being_taken() {
        let pace = Pace::new(2.0);
        for _ in 0..2 {
            pace.wait(Some(Duration::ZERO)).await.expect("the burst");
        }
        let refused = pace.wait(Some(Duration::from_millis(100))).await;
        assert!(refused.is_err_and(|wait| wait > Duration::from_millis(100)));
        // The refused turn was not taken: the next one is half a second away, not a whole.
        let started = Instant::now();
        pace.wait(None).await.expect("no deadline");
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn it_gives_up_before_the_deadline_and_never_retries_other_errors() {
        let calls = AtomicU32::new(0);
        // Two seconds: a quarter and a tenth are kept back, time for a few pauses.
        let reserve = Duration::from_millis(700);
        let deadline = Instant::now() + Duration::from_secs(2);
        let outcome: AwsResult<()> = deadline::within(deadline, async {
            persist_with(QUICK, "Call", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(throttled())
            })
            .await
        })
        .await;
        assert_eq!(outcome.map_err(|e| e.code), Err("RequestLimitExceeded".to_owned()));
        assert!(
            Instant::now() <= deadline - reserve,
            "it stopped in time to roll back and answer"
        );
        assert!(calls.load(Ordering::SeqCst) > 2, "it tried again while it could");
        let other = AtomicU32::new(0);
        let outcome: AwsResult<()> = persist_with(QUICK, "Call", || async {
            other.fetch_add(1, Ordering::SeqCst);
            Err(AwsError::new(
                crate::ports::ErrorKind::Rejected,
                "UnauthorizedOperation",
                "no",
            ))
        })
        .await;
        assert!(outcome.is_err());
        assert_eq!(other.load(Ordering::SeqCst), 1);
    }
}
