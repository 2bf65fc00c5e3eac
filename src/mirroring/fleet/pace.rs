//! How long this sweep's policy actions take. One is started only while the
//! time the slowest of the recent ones took is still left (with a margin),
//! so that it is not cut off in flight: a create cut off by the deadline
//! leaves a pending record, and maybe a session, that a later sweep undoes
//! and makes again (three mutating calls where one would do). The time an
//! action takes includes its waits for EC2's pace, so a throttled account
//! starts fewer near the deadline.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// The recent actions remembered: enough to see the queue's wait, few
/// enough to forget a burst that has passed.
const REMEMBERED: usize = 16;
/// Headroom over the slowest recent action: the next may queue longer.
const MARGIN: f64 = 1.25;

pub(super) struct ActionTimes {
    /// Needed at the least, whatever the recent actions took.
    floor: Duration,
    recent: Mutex<VecDeque<Duration>>,
}

impl ActionTimes {
    pub(super) fn new(floor: Duration) -> Self {
        Self {
            floor,
            recent: Mutex::new(VecDeque::with_capacity(REMEMBERED)),
        }
    }

    /// An action finished (well or not) after `took`.
    pub(super) fn took(&self, took: Duration) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == REMEMBERED {
                recent.pop_front();
            }
            recent.push_back(took);
        }
    }

    /// The time an action started now should have left to finish.
    pub(super) fn needed(&self) -> Duration {
        let slowest = self
            .recent
            .lock()
            .ok()
            .and_then(|recent| recent.iter().max().copied())
            .unwrap_or_default();
        slowest.mul_f64(MARGIN).max(self.floor)
    }

    /// Whether an action started now would likely finish before the
    /// invocation's deadline (always, without one).
    pub(super) fn room_for_one(&self) -> bool {
        crate::deadline::budget().is_none_or(|left| left >= self.needed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_needs_the_slowest_recent_ones_time_with_a_margin_and_never_less_than_the_floor() {
        let times = ActionTimes::new(Duration::from_secs(2));
        assert_eq!(times.needed(), Duration::from_secs(2), "nothing seen yet: the floor");
        times.took(Duration::from_millis(300));
        assert_eq!(times.needed(), Duration::from_secs(2), "fast actions: the floor");
        times.took(Duration::from_secs(4));
        times.took(Duration::from_secs(1));
        assert_eq!(
            times.needed(),
            Duration::from_secs(5),
            "the slowest, and a quarter more"
        );
        // A slow burst is forgotten once enough faster actions follow it.
        for _ in 0..REMEMBERED {
            times.took(Duration::from_secs(3));
        }
        assert_eq!(times.needed(), Duration::from_millis(3750));
    }

    #[tokio::test]
    async fn without_a_deadline_there_is_always_room_and_with_one_only_for_what_fits() {
        let times = ActionTimes::new(Duration::from_secs(2));
        assert!(times.room_for_one());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        crate::deadline::within(deadline, async {
            assert!(times.room_for_one(), "a minute left");
            times.took(Duration::from_secs(50));
            assert!(
                !times.room_for_one(),
                "the last action took 50 s: the next might not finish"
            );
        })
        .await;
    }
}
