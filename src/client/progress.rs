//! The ingest's `progreso` line: how many bets were sent and acknowledged
//! so far, and at what rate, so an operator watching a long ingest sees it
//! move.

use crate::logging::AgencyEvent;
use std::time::{Duration, Instant};

/// How often, at most, an ingest logs its `progreso` line.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// When the next `progreso` line is due, and the line itself: at most once
/// per `every`, the first one `every` after the start, so an ingest shorter
/// than that logs none.
#[derive(Debug)]
pub(super) struct ProgressLine {
    started: Instant,
    every: Duration,
    next: Instant,
}

impl ProgressLine {
    pub(super) fn new(started: Instant, every: Duration) -> Self {
        ProgressLine { started, every, next: started + every }
    }

    /// The line to log at `now`, if one is due: `sent` bets sent and
    /// `acked` acknowledged so far; the rate is acknowledged bets per second
    /// since the start.
    pub(super) fn line(
        &mut self,
        now: Instant,
        sent: u64,
        acked: u64,
    ) -> Option<AgencyEvent<'static>> {
        if now < self.next {
            return None;
        }
        self.next = now + self.every;
        let seconds = now.duration_since(self.started).as_secs_f64();
        let rate = if seconds > 0.0 { acked as f64 / seconds } else { 0.0 };
        Some(AgencyEvent::Progress { sent, acked, rate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_waits_its_interval_and_then_reports_at_most_once_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = ProgressLine::new(t0, s);
        let mut line = |at, sent, acked| p.line(at, sent, acked).map(|l| l.to_string());
        assert_eq!(line(t0, 10, 5), None);
        assert_eq!(line(t0 + s / 2, 20, 10), None, "a short ingest says nothing");
        assert_eq!(
            line(t0 + s * 2, 4_000, 3_000).as_deref(),
            Some(
                "action: progreso | result: in_progress | enviadas: 4000 | confirmadas: 3000 | por_segundo: 1500"
            )
        );
        assert_eq!(line(t0 + s * 2 + s / 2, 5_000, 4_000), None);
        assert!(line(t0 + s * 3, 6_000, 6_000).is_some());
    }
}
