//! How an agency waits and what it says between attempts: the backoff
//! between reconnections, and the rate limit on the lines that say why it
//! reconnects.
//!
//! Every retry has a reason, and an operator must see it at INFO (an agency
//! kept out by a busy server used to log only `close_socket` every two
//! seconds). An agency retrying fast would flood its log with the same
//! reason, so each reason is logged at most once per interval, with the
//! number of times it came back in between.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why a connection ended in a way worth trying again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reason {
    /// A short, stable name (`busy`, `io_timeout`, `connect`, ...): what
    /// the log line's `error` says and what its rate limit is kept by.
    pub kind: &'static str,
    /// What happened, for people.
    pub detail: String,
}

impl Reason {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Reason {
            kind,
            detail: detail.into(),
        }
    }
}

/// Exponential backoff between `first` and `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first.min(max),
            first,
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

/// Lets one line per reason through per `every`, counting the others. The
/// clock is the caller's (`now`), so tests drive it.
#[derive(Debug)]
pub(crate) struct RateLimit {
    every: Duration,
    /// Per reason: when its last line was let through, and how many of
    /// its lines were held back since.
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: BTreeMap::new(),
        }
    }

    /// Whether a line for `reason` may be logged at `now`: `Some(n)` with
    /// the `n` lines for it held back since its last one, or `None` (held
    /// back, and counted).
    pub fn allow(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, held)) if now.saturating_duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn each_reason_is_let_through_once_per_interval_with_what_was_held_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut limit = RateLimit::new(Duration::from_secs(1));
        assert_eq!(limit.allow("busy", t0), Some(0), "the first one goes out");
        assert_eq!(limit.allow("busy", t0 + ms(100)), None);
        assert_eq!(limit.allow("busy", t0 + ms(999)), None);
        // Another reason has its own interval.
        assert_eq!(limit.allow("connect", t0 + ms(500)), Some(0));
        assert_eq!(limit.allow("connect", t0 + ms(600)), None);
        // A second after the last line: out, with the two held back.
        assert_eq!(limit.allow("busy", t0 + ms(1000)), Some(2));
        assert_eq!(limit.allow("busy", t0 + ms(1500)), None);
        assert_eq!(limit.allow("connect", t0 + ms(1500)), Some(1));
        // After a quiet spell, at once and with nothing held back.
        assert_eq!(limit.allow("busy", t0 + ms(9000)), Some(1));
        assert_eq!(limit.allow("busy", t0 + ms(20_000)), Some(0));
        // A clock that goes backwards (it cannot, but) holds the line back.
        assert_eq!(limit.allow("busy", t0), None);
    }

    #[test]
    fn many_retries_in_a_second_log_one_line_per_reason() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(1));
        let logged = (0..100)
            .filter(|i| {
                let reason = if i % 2 == 0 { "busy" } else { "io_timeout" };
                limit
                    .allow(reason, t0 + Duration::from_millis(i * 10))
                    .is_some()
            })
            .count();
        assert_eq!(logged, 2, "one line for each of the two reasons");
    }
}
