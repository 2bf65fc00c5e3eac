//! The invocation's deadline, carried with the work of one invocation, and
//! the time budget every AWS call is held to. Lambda stops a function at its
//! deadline, and an SQS batch whose invocation was stopped comes back whole
//! (records that had succeeded too), so the work must answer first: forward
//! work stops early enough to leave time for undoing it, and the undoing
//! stops early enough to leave time for the answer.
//!
//! A call's budget covers everything the call does: the SDK's own retries
//! and backoff, our patience with throttling, and the pacer's wait. A call
//! past its budget is abandoned (its future dropped, which cancels the HTTP
//! request) and fails as retryable; see `bounded`.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::ports::{AwsError, ErrorKind};

tokio::task_local! {
    /// The deadline, and the invocation's whole time (start to deadline).
    static DEADLINE: (Instant, Duration);
    static PHASE: Phase;
}

/// The error code of a call abandoned to keep the deadline.
pub const OUT_OF_TIME: &str = "InvocationDeadlineNear";

/// What the time left is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Making things: keeps back the winding-down and the answer reserves.
    Work,
    /// Rolling back, recording the outcome and announcing it: keeps back
    /// the answer reserve only.
    WindingDown,
}

/// Time kept back from forward work for the rollback, its ledger write and
/// the completion event (each a call or two, themselves bounded): this, or
/// a quarter of a short invocation's whole time.
pub const WINDING_DOWN_RESERVE: Duration = Duration::from_secs(5);
/// Time kept back from everything for the runtime to send the answer: this,
/// or a tenth of a short invocation's whole time.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(1500);

/// Runs `work` with `deadline` as the time by which it must have answered.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    let whole = deadline.saturating_duration_since(Instant::now());
    DEADLINE.scope((deadline, whole), work).await
}

/// The reserves of the current invocation: the winding-down one and the
/// answer's, each capped by a share of the invocation's whole time so that
/// a short invocation (Lambda's default timeout is 3 s) still gets work done.
pub fn reserves() -> Option<(Duration, Duration)> {
    DEADLINE
        .try_with(|(_, whole)| (WINDING_DOWN_RESERVE.min(*whole / 4), ANSWER_RESERVE.min(*whole / 10)))
        .ok()
}

/// Runs `work` (a rollback, a final ledger write, a completion event) with
/// the reserve of forward work at its disposal.
pub async fn winding_down<F: Future>(work: F) -> F::Output {
    PHASE.scope(Phase::WindingDown, work).await
}

/// Below this, a "deadline" cannot be Unix milliseconds (it would be before
/// September 2001): `cargo lambda watch` 1.9 sends the function's timeout
/// itself (600000) in `Lambda-Runtime-Deadline-Ms`, so such a value is read
/// as milliseconds from now.
const EARLIEST_UNIX_MILLIS: u64 = 1_000_000_000_000;

/// The deadline of a Lambda invocation, given as Unix milliseconds (as
/// Lambda sends it; see `EARLIEST_UNIX_MILLIS` for the local runtime's form).
pub fn from_unix_millis(deadline_ms: u64) -> Instant {
    if deadline_ms < EARLIEST_UNIX_MILLIS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Time left before the deadline, when the work has one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

pub fn phase() -> Phase {
    PHASE.try_with(|phase| *phase).unwrap_or(Phase::Work)
}

/// What a call started now may spend, when the work has a deadline: the
/// time left less what the current phase keeps back.
pub fn budget() -> Option<Duration> {
    let (winding_down, answer) = reserves()?;
    let reserve = match phase() {
        Phase::Work => winding_down + answer,
        Phase::WindingDown => answer,
    };
    remaining().map(|left| left.saturating_sub(reserve))
}

/// The error of a call that was not made, or abandoned, to keep the deadline.
pub fn out_of_time(call: &str) -> AwsError {
    AwsError::new(
        ErrorKind::Transient,
        OUT_OF_TIME,
        format!("{call} was not finished: the invocation's deadline is near, so the action is left to a retry"),
    )
}

/// Runs one AWS call within the budget: at once an error if none is left,
/// else the call, abandoned when the budget runs out.
pub async fn bounded<T, F>(call: &str, work: F) -> Result<T, AwsError>
where
    F: Future<Output = Result<T, AwsError>>,
{
    match budget() {
        None => work.await,
        Some(left) if left.is_zero() => Err(out_of_time(call)),
        Some(left) => match tokio::time::timeout(left, work).await {
            Ok(outcome) => outcome,
            // Sent, and abandoned before its answer: AWS may apply it all the same.
            Err(_) => Err(out_of_time(call).in_doubt()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_seen_inside_its_scope_only() {
        assert_eq!(remaining(), None);
        let left = within(Instant::now() + Duration::from_secs(30), async { remaining() }).await;
        assert!(left.is_some_and(|d| d > Duration::from_secs(29) && d <= Duration::from_secs(30)));
    }

    #[test]
    fn a_deadline_is_unix_milliseconds_or_from_a_local_runtime_a_duration() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let left = |deadline_ms| from_unix_millis(deadline_ms).saturating_duration_since(Instant::now());
        assert!(left(now_ms + 30_000) > Duration::from_secs(29));
        assert_eq!(
            left(now_ms - 5_000),
            Duration::ZERO,
            "a deadline that passed leaves nothing"
        );
        let local = left(600_000);
        assert!(
            local > Duration::from_secs(599) && local <= Duration::from_secs(600),
            "{local:?}"
        );
    }

    #[tokio::test]
    async fn winding_down_may_spend_the_reserve_of_forward_work() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (work, winding) = within(deadline, async { (budget(), winding_down(async { budget() }).await) }).await;
        let (work, winding) = (work.expect("a budget"), winding.expect("a budget"));
        assert!(work <= Duration::from_secs(30) - WINDING_DOWN_RESERVE - ANSWER_RESERVE);
        assert!(winding > work + WINDING_DOWN_RESERVE - Duration::from_millis(100));
        assert!(winding <= Duration::from_secs(30) - ANSWER_RESERVE);
    }

    #[tokio::test]
    async fn a_short_invocation_keeps_back_a_share_of_its_time() {
        let work = within(Instant::now() + Duration::from_secs(3), async { budget() }).await;
        let work = work.expect("a budget");
        // A quarter and a tenth of 3 s kept back: about 1.95 s to work.
        assert!(
            work > Duration::from_millis(1900) && work <= Duration::from_millis(1950),
            "{work:?}"
        );
    }

    #[tokio::test]
    async fn a_call_that_would_outlast_its_budget_is_abandoned_in_time() {
        // One second in all: a quarter and a tenth kept back, 650 ms to work.
        let deadline = Instant::now() + Duration::from_secs(1);
        let started = Instant::now();
        let outcome: Result<(), AwsError> = within(deadline, async {
            bounded("SlowCall", async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await
        })
        .await;
        let err = outcome.expect_err("abandoned");
        assert_eq!((err.code.as_str(), err.kind), (OUT_OF_TIME, ErrorKind::Transient));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_millis(900),
            "{took:?}"
        );
        // With nothing left, the call is not even started.
        let spent = within(Instant::now(), bounded("NotStarted", async { Ok(1) })).await;
        assert_eq!(spent.map_err(|e| e.code), Err(OUT_OF_TIME.to_owned()));
        // Without a deadline (tests, tools), calls are not bounded.
        assert_eq!(bounded("Free", async { Ok(2) }).await, Ok(2));
    }
}
