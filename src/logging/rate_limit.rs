//! At most one line per reason per interval, with how many were held
//! back: a retry loop (an agency reconnecting, a server waiting for its
//! database) says why it waits without flooding the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Lets one line per reason through per `every`, counting the others. The
/// clock is the caller's (`now`), so tests drive it.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    /// Per reason: when its last line was let through, and how many of
    /// its lines were held back since.
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit { every, last: BTreeMap::new() }
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
                limit.allow(reason, t0 + Duration::from_millis(i * 10)).is_some()
            })
            .count();
        assert_eq!(logged, 2, "one line for each of the two reasons");
    }
}
