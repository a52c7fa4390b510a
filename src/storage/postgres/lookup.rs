//! What the workers ask the database directly, on one connection per
//! server ([`PgLookup`]): an agency's position to resume from, and the
//! draw with a page of its winners, read by rank (a keyset read of the
//! page on `winners`' primary key, not a read of every winner). The first
//! time a server sees the draw, it announces it if nobody has.

use super::announce::announce;
use super::error::{db, out_of_range};
use super::link::{Health, Link, Session};
use crate::logging::{Action, ActionEvent, LogLine};
use crate::storage::draw::{AnnounceDraw, DrawState, WinnersPage};
use crate::storage::error::StorageError;
use ::postgres as pg;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lookup answers "no draw yet" from what it saw this recently: every
/// finished agency polls for its winners, and the answer changes once.
const NOT_READY_FRESH: Duration = Duration::from_millis(20);

const POSITION: &str = "SELECT next_position, done FROM agencies WHERE agency = $1";

/// How many agencies are done, and whether the draw is recorded.
const DRAWN: &str =
    "SELECT finished, EXISTS (SELECT 1 FROM draw WHERE id = 1) FROM lottery WHERE id = 1";

/// How many winners the agency has, and a page of them from rank `$2`.
const WINNERS_PAGE: &str = "
SELECT (SELECT COALESCE(max(rank) + 1, 0) FROM winners WHERE agency = $1),
       ARRAY(SELECT document FROM winners WHERE agency = $1 AND rank >= $2 ORDER BY rank LIMIT $3)
";

/// The workers' connection, for what they ask the database directly.
/// Shared by the workers of one server behind its own mutex (never the
/// store's): a query holds it, not the lottery's state.
#[derive(Clone)]
pub struct PgLookup {
    inner: Arc<Mutex<LookupConn>>,
}

impl fmt::Debug for PgLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgLookup")
    }
}

struct LookupConn {
    link: Link,
    /// The draw row exists (it never goes away).
    drawn: bool,
    /// When "no draw yet" was last read, and how many agencies were done.
    not_ready: Option<(Instant, u32)>,
}

impl PgLookup {
    /// The lookup of a server on the database of `config`, connected at
    /// its first question.
    pub(super) fn new(config: pg::Config, health: Health) -> PgLookup {
        PgLookup {
            inner: Arc::new(Mutex::new(LookupConn {
                link: Link::new(config, None, health),
                drawn: false,
                not_ready: None,
            })),
        }
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, LookupConn>, StorageError> {
        self.inner.lock().map_err(|_| StorageError::Database {
            action: "query",
            reason: "lookup connection poisoned".into(),
        })
    }

    /// The agency's durable position and whether its DONE is recorded.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn position(&self, agency: u32) -> Result<(u64, bool), StorageError> {
        self.conn()?.link.with(|Session { client, prepared }| {
            let statement = prepared.get(client, POSITION)?;
            let row = client
                .query_opt(&statement, &[&i64::from(agency)])
                .map_err(db("read the agency's position from"))?;
            match row {
                Some(row) => Ok((
                    u64::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("position"))?,
                    row.get(1),
                )),
                None => Ok((0, false)),
            }
        })
    }

    /// The draw: how many agencies are done while there is none; once
    /// there is, a page of the agency's winners from `offset`, as many as
    /// fit in `room` bytes of documents. The first time this server sees
    /// the draw, it announces it if nobody has (`log`: a server whose
    /// commit recorded the draw but died, or lost COMMIT's answer, before
    /// announcing it).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn draw(
        &self,
        agency: u32,
        offset: u32,
        room: usize,
        log: AnnounceDraw<'_>,
    ) -> Result<DrawState, StorageError> {
        let mut conn = self.conn()?;
        if let Some(finished) = conn.not_drawn(log)? {
            return Ok(DrawState::NotReady { finished });
        }
        conn.page(agency, offset, room).map(DrawState::Ready)
    }
}

impl LookupConn {
    /// `Some(finished agencies)` while there is no draw, `None` once there
    /// is one. "No draw yet" is answered from what was read within
    /// [`NOT_READY_FRESH`]; the draw, once seen, is never asked about
    /// again, and is announced if nobody has.
    fn not_drawn(&mut self, log: AnnounceDraw<'_>) -> Result<Option<u32>, StorageError> {
        if self.drawn {
            return Ok(None);
        }
        if let Some((at, finished)) = self.not_ready
            && at.elapsed() < NOT_READY_FRESH
        {
            return Ok(Some(finished));
        }
        let (finished, drawn) = self.link.with(|Session { client, prepared }| {
            let statement = prepared.get(client, DRAWN)?;
            let row = client.query_one(&statement, &[]).map_err(db("read the draw from"))?;
            let finished =
                u32::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("agencies"))?;
            Ok((finished, row.get::<_, bool>(1)))
        })?;
        if !drawn {
            self.not_ready = Some((Instant::now(), finished));
            return Ok(Some(finished));
        }
        self.drawn = true;
        if let Err(e) = self.link.with(|session| announce(session, log)) {
            ActionEvent::Failed { action: Action::Sorteo, error: &e }.warn();
        }
        Ok(None)
    }

    /// A page of the agency's winners from rank `offset`, as many as fit
    /// in `room` bytes of documents.
    fn page(&mut self, agency: u32, offset: u32, room: usize) -> Result<WinnersPage, StorageError> {
        // Every document takes at least 2 bytes: no page holds more.
        let limit = i64::try_from((room / 2).min(usize::from(u16::MAX))).unwrap_or(i64::MAX);
        self.link.with(|Session { client, prepared }| {
            let statement = prepared.get(client, WINNERS_PAGE)?;
            let row = client
                .query_one(&statement, &[&i64::from(agency), &i64::from(offset), &limit])
                .map_err(db("read the winners from"))?;
            let total = u32::try_from(row.get::<_, i64>(0).min(i64::from(u32::MAX)))
                .map_err(|_| out_of_range("winners"))?;
            let mut page = WinnersPage::new(total);
            for document in row.get::<_, Vec<String>>(1) {
                if !page.fits(document.len(), room) {
                    break;
                }
                page.push(document);
            }
            Ok(page)
        })
    }
}
