//! What an agency does between two connections: which server it tries
//! next, how long it waits, when it stops, and the line that says why it
//! tries again.
//!
//! Failover: `server.address` may list several servers (comma-separated)
//! that share one database. A broken connection, a timeout, a "try again"
//! error or a `busy` server moves the agency to the next one in the list;
//! HELLO_OK there says where to resume, as it does on a reconnect to the
//! same server. So does a refusal, either way: a server that refuses the
//! agency's key (`unauthorized`: servers in the middle of a key rotation),
//! or one the agency refuses (no CHALLENGE while its `auth` is `required`,
//! or a CHALLENGE it has no key for). The agency stops only when every
//! server of the list refused, one after the other; with one server, a
//! refusal stops it at once.
//!
//! Waiting: a capped exponential backoff (`retry.maxBackoff`), back to its
//! start when a connection got somewhere. The agency gives up after
//! `retry.timeout` without progress, and only once every server of the list
//! failed since: a server that goes silent costs a whole `io.timeout` (as
//! long as `retry.timeout` by default), and must not make the agency give
//! up before it has tried the others. A server that answers `busy` is
//! alive, so that counts as progress, never toward giving up. Before the
//! draw the server answers the winners query with NOT_READY: the agency
//! asks the same server again after a short pause that grows with the
//! agencies waiting (`winners.maxBackoff` at most).
//!
//! Every retry has a reason, and an operator must see it at INFO:
//! `action: reconnect | result: in_progress | error: <reason> | ...`. An
//! agency retrying fast would flood its log with the same reason, so each
//! reason is logged at INFO at most once a second, with the number of times
//! it came back in between (`repeated: N`), and every time at DEBUG.

use super::error::ClientError;
use super::session_end::{Reason, SessionEnd};
use crate::config::ClientConfig;
use crate::logging::{AgencyEvent, LogLine, RateLimit};
use std::time::{Duration, Instant};

/// The first pause between two attempts; it doubles up to
/// `retry.maxBackoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How often, at most, one reason to reconnect is logged at INFO.
const REASON_EVERY: Duration = Duration::from_secs(1);

/// Where the agency connects next and what it does when a connection ends.
#[derive(Debug)]
pub(super) struct Failover<'a> {
    /// The servers of `server.address`, in order; never empty.
    servers: Vec<&'a str>,
    /// `server.address` as configured, for the line that gives up.
    configured: &'a str,
    retry_timeout: Duration,
    winners_max_backoff: Duration,
    /// The server in use: the next one in the list after a failure.
    at: usize,
    backoff: Backoff,
    /// The agency's last progress as the end of the previous connection
    /// left it: a connection that moved it got somewhere.
    mark: Instant,
    /// Failures in a row since `mark`.
    failures: usize,
    /// Refusals in a row, `server: reason`: one per server of the list (it
    /// is walked round robin), so a whole round of them is fatal.
    refusals: Vec<String>,
    reasons: RateLimit,
}

impl<'a> Failover<'a> {
    /// Starts at the first server of `config`'s list; `last_progress` is
    /// the agency's (see [`Failover::after`]).
    pub(super) fn new(config: &'a ClientConfig, last_progress: Instant) -> Self {
        Failover {
            // Never empty: the config refuses an address list without one.
            servers: config.server_addresses(),
            configured: &config.server_address,
            retry_timeout: config.retry_timeout,
            winners_max_backoff: config.winners_max_backoff,
            at: 0,
            backoff: Backoff::new(FIRST_BACKOFF, config.retry_max_backoff),
            mark: last_progress,
            failures: 0,
            refusals: Vec::new(),
            reasons: RateLimit::new(REASON_EVERY),
        }
    }

    /// The server to connect to now.
    pub(super) fn server(&self) -> &'a str {
        self.servers[self.at % self.servers.len()]
    }

    /// A connection to `server` ended with `end`: how long to wait before
    /// the next attempt, or why the agency stops. `last_progress` is when
    /// the agency last got anywhere: the session moves it whenever the
    /// server takes something (an ACK, a page of winners), this on a sign
    /// of life (`busy`, NOT_READY).
    ///
    /// # Errors
    /// The session's fatal error; a refusal by every server of the list
    /// (or by the only one); no progress for `retry.timeout` (`GaveUp`).
    pub(super) fn after(
        &mut self,
        end: SessionEnd,
        server: &str,
        last_progress: &mut Instant,
    ) -> Result<Duration, ClientError> {
        let progressed = *last_progress != self.mark;
        let reason = match end {
            SessionEnd::Fatal(e) => return Err(e),
            SessionEnd::NotReady { finished, expected } => {
                let reason = Reason::new(
                    "not_ready",
                    format!("no draw yet: {finished} of {expected} agencies finished"),
                );
                self.refusals.clear();
                *last_progress = Instant::now();
                (self.mark, self.failures) = (*last_progress, 0);
                self.backoff.reset();
                self.report(server, &reason);
                return Ok(poll_pause(finished, self.winners_max_backoff));
            }
            SessionEnd::Busy(reason) => {
                // Alive and at its limit: not a reason to give up;
                // another server may have room.
                self.refusals.clear();
                *last_progress = Instant::now();
                reason
            }
            SessionEnd::Retry(reason) => {
                self.refusals.clear();
                if progressed {
                    self.backoff.reset();
                }
                reason
            }
            SessionEnd::Refused { kind, error } => self.refused(server, kind, error)?,
        };
        self.at += 1;
        self.report(server, &reason);
        if *last_progress != self.mark {
            (self.mark, self.failures) = (*last_progress, 0);
        }
        self.failures += 1;
        if last_progress.elapsed() >= self.retry_timeout && self.failures >= self.servers.len() {
            AgencyEvent::GaveUp { server: self.configured, error: &reason.detail }.warn();
            return Err(ClientError::GaveUp { last: reason.detail });
        }
        Ok(self.backoff.next_delay())
    }

    /// `server` refused the agency, or the agency refused it: fatal with
    /// one server, or once every server of the list did, one after the
    /// other; otherwise the reason to try the next one.
    fn refused(
        &mut self,
        server: &str,
        kind: &'static str,
        error: ClientError,
    ) -> Result<Reason, ClientError> {
        if self.servers.len() <= 1 {
            return Err(error);
        }
        self.refusals.push(format!("{server}: {error}"));
        if self.refusals.len() >= self.servers.len() {
            return Err(ClientError::AllRefused { refusals: std::mem::take(&mut self.refusals) });
        }
        Ok(Reason::new(kind, error.to_string()))
    }

    /// Says why the agency tries again: at INFO, at most once per
    /// [`REASON_EVERY`] per reason (with how often it came back in
    /// between); every time at DEBUG.
    fn report(&mut self, server: &str, reason: &Reason) {
        let line = |repeated| AgencyEvent::Reconnecting {
            reason: reason.kind,
            server,
            detail: &reason.detail,
            repeated,
        };
        match self.reasons.allow(reason.kind, Instant::now()) {
            Some(0) => line(None).info(),
            Some(held) => line(Some(held)).info(),
            None => line(None).debug(),
        }
    }
}

/// The pause before asking for the winners again: a quarter of a
/// millisecond per agency already waiting for the draw (every finished
/// agency polls), so the server sees about four thousand polls a second
/// however many agencies wait, and an agency learns its winners at most
/// that long after the draw (1 ms with 5 agencies, 25 ms with 100); at
/// least 1 ms, at most `max` (`winners.maxBackoff`).
fn poll_pause(finished: u32, max: Duration) -> Duration {
    (Duration::from_micros(250) * finished).max(Duration::from_millis(1)).min(max)
}

/// Exponential backoff between `first` and `max`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first.min(max), first, max }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::message::ErrorCode;

    /// An agency of `servers` that gives up after `retry_timeout`.
    fn config(servers: &str, retry_timeout: &str) -> ClientConfig {
        let settings: Settings = [
            ("id", "1"),
            ("server.address", servers),
            ("bets.file", "agency.csv"),
            ("auth", "off"),
            ("retry.timeout", retry_timeout),
            ("retry.maxBackoff", "1s"),
            ("winners.maxBackoff", "1s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ClientConfig::from_settings(&settings, &[], None, &|_| Err("no files".into())).unwrap()
    }

    fn refused() -> SessionEnd {
        SessionEnd::Refused {
            kind: "unauthorized",
            error: ClientError::Server { code: ErrorCode::Unauthorized, message: "bad key".into() },
        }
    }

    fn retry() -> SessionEnd {
        SessionEnd::Retry(Reason::new("closed", "server closed the connection"))
    }

    #[test]
    fn a_refusal_stops_a_lone_server_at_once_and_a_list_after_a_whole_round() {
        let one = config("a:1", "1h");
        let mut progress = Instant::now();
        let mut failover = Failover::new(&one, progress);
        let stop = failover.after(refused(), "a:1", &mut progress);
        assert!(matches!(stop, Err(ClientError::Server { .. })), "{stop:?}");

        let three = config("a:1, b:2, c:3", "1h");
        let mut failover = Failover::new(&three, progress);
        let mut tried = Vec::new();
        // A lost connection in between starts the round again.
        for end in [refused(), refused(), retry(), refused(), refused()] {
            let server = failover.server();
            tried.push(server);
            assert!(failover.after(end, server, &mut progress).is_ok());
        }
        tried.push(failover.server());
        let stop = failover.after(refused(), "c:3", &mut progress);
        let Err(ClientError::AllRefused { refusals }) = stop else { panic!("{stop:?}") };
        assert_eq!(refusals.len(), 3, "{refusals:?}");
        assert_eq!(tried, ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3"]);
    }

    #[test]
    fn the_agency_gives_up_only_past_the_deadline_once_every_server_failed() {
        let patient = config("a:1, b:2", "1h");
        let mut progress = Instant::now();
        let mut failover = Failover::new(&patient, progress);
        for _ in 0..10 {
            let server = failover.server();
            assert!(failover.after(retry(), server, &mut progress).is_ok());
        }

        let hasty = config("a:1, b:2, c:3", "0s");
        let mut failover = Failover::new(&hasty, progress);
        let mut pauses = Vec::new();
        for (i, server) in ["a:1", "b:2", "c:3", "a:1"].into_iter().enumerate() {
            if i == 2 {
                // Progress during that connection: the failures and the
                // backoff start again.
                progress = Instant::now();
            }
            let pause = failover.after(retry(), server, &mut progress).unwrap();
            pauses.push(pause.as_millis());
        }
        assert_eq!(pauses, [100, 200, 100, 200]);
        let stop = failover.after(retry(), "b:2", &mut progress);
        assert!(
            matches!(&stop, Err(ClientError::GaveUp { last }) if last.contains("closed")),
            "{stop:?}"
        );
    }

    #[test]
    fn busy_is_a_sign_of_life_and_not_ready_polls_the_same_server() {
        let hasty = config("a:1, b:2", "0s");
        let mut progress = Instant::now();
        let mut failover = Failover::new(&hasty, progress);
        let busy = || SessionEnd::Busy(Reason::new("busy", "server: busy (full)"));
        let mut tried = Vec::new();
        for _ in 0..4 {
            let server = failover.server();
            tried.push(server);
            assert!(failover.after(busy(), server, &mut progress).is_ok());
        }
        assert_eq!(tried, ["a:1", "b:2", "a:1", "b:2"]);
        let not_ready = SessionEnd::NotReady { finished: 100, expected: 200 };
        let pause = failover.after(not_ready, "a:1", &mut progress).unwrap();
        assert_eq!(pause, poll_pause(100, Duration::from_secs(1)));
        assert_eq!(failover.server(), "a:1", "the draw is awaited where it is");
        // A lost connection is not a sign of life: with both servers
        // failed past the deadline, the agency gives up.
        assert!(failover.after(retry(), "a:1", &mut progress).is_ok());
        let stop = failover.after(retry(), "b:2", &mut progress);
        assert!(matches!(stop, Err(ClientError::GaveUp { .. })), "{stop:?}");
    }

    #[test]
    fn winners_polls_are_spaced_by_the_agencies_waiting() {
        let max = Duration::from_secs(1);
        assert_eq!(poll_pause(0, max), Duration::from_millis(1));
        assert_eq!(poll_pause(4, max), Duration::from_millis(1));
        assert_eq!(poll_pause(100, max), Duration::from_millis(25));
        assert_eq!(poll_pause(999, max), Duration::from_micros(249_750));
        assert_eq!(poll_pause(5000, max), max);
        assert_eq!(poll_pause(500, Duration::from_millis(25)), Duration::from_millis(25));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
