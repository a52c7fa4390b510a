//! One commit group, one transaction ([`PgStorage::commit`]): it locks the
//! row of every agency it touches (`SELECT ... FOR UPDATE`, in agency
//! order), decides each request against the positions it finds there
//! ([`decide`]), copies the new rows in with one `COPY`, moves the
//! positions, and, when it records the last DONE, records the draw and its
//! winners' ranks. Two servers holding the same agency's batches therefore
//! take turns on that agency's row, and the second finds the batch already
//! stored ([`Verdict::Duplicate`]).
//!
//! Each transaction also writes the commit's id (this server's random id
//! and a counter) in `commits`: a server whose COMMIT was sent but whose
//! answer was lost asks the database, on a new connection, whether that id
//! is there ([`landed`]).

use super::error::{db, out_of_range};
use super::link::{
    IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT, Prepared, STATEMENT_TIMEOUT, Session, read_committed,
};
use super::storage::PgStorage;
use crate::bet::WINNING_NUMBER;
use crate::logging::{LogLine, StorageEvent};
#[cfg(doc)]
use crate::storage::encode_copy_row;
use crate::storage::error::StorageError;
use crate::storage::group::{Committed, GroupData, GroupRequest, RequestKind, Verdict};
use crate::storage::{COPY_HEADER, COPY_TRAILER};
use ::postgres as pg;
use pg::error::{DbError, Severity};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a server whose COMMIT answer was lost keeps asking whether it
/// committed: the session that sent it is gone within a statement timeout
/// or an idle-in-transaction timeout (whichever applies), and with it its
/// lock on the server's `commits` row, which the question waits for.
pub(super) const LOOKUP_PATIENCE: Duration = Duration::from_secs(20);
const _: () = assert!(
    LOOKUP_PATIENCE.as_secs() >= STATEMENT_TIMEOUT.as_secs()
        && LOOKUP_PATIENCE.as_secs()
            >= IDLE_IN_TRANSACTION_TIMEOUT.as_secs() + LOCK_TIMEOUT.as_secs()
);

/// Records the winners' ranks: run by the transaction that records the
/// draw, so the ranks exist exactly when the draw does.
const RECORD_WINNERS: &str = "
INSERT INTO winners (agency, rank, document)
SELECT agency, row_number() OVER (PARTITION BY agency ORDER BY position) - 1, document
FROM bets WHERE number = 7574
";

/// How long the draw's transaction may spend recording the winners' ranks
/// (one row per winner: ten million take longer than the usual
/// [`STATEMENT_TIMEOUT`]).
const RECORD_WINNERS_TIMEOUT: Duration = Duration::from_secs(600);

/// Locks the touched agencies' rows and writes the commit's id (see
/// [`lock_rows`]).
const LOCK_ROWS: &str = "
WITH this_commit AS (
    INSERT INTO commits (server, seq) VALUES ($2, $3)
    ON CONFLICT (server) DO UPDATE SET seq = EXCLUDED.seq, at = now()
)
SELECT agency, next_position, done FROM agencies
WHERE agency = ANY($1) ORDER BY agency FOR UPDATE
";

/// The rows come as [`encode_copy_row`] writes them. `WITH BINARY` is the
/// spelling PostgreSQL (its older syntax, still accepted) and CockroachDB
/// both take.
const COPY_BETS: &str = "COPY bets (agency, position, first_name, last_name, document, birthdate, number) FROM STDIN WITH BINARY";

/// Every moved agency's position and DONE, from three arrays of one
/// element per agency.
const MOVE_POSITIONS: &str = "
UPDATE agencies SET next_position = moved.next, done = moved.done
FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BOOLEAN[]) AS moved (agency, next, done)
WHERE agencies.agency = moved.agency
";

const ADD_FINISHED: &str =
    "UPDATE lottery SET finished = finished + $1 WHERE id = 1 RETURNING finished";

/// Whether a commit is stored (see [`landed`]).
const LANDED: &str = "
INSERT INTO commits (server, seq) VALUES ($1, 0)
ON CONFLICT (server) DO UPDATE SET seq = commits.seq RETURNING seq
";

/// One commit of one server, as `commits` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CommitId {
    server: i64,
    seq: i64,
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{}", self.server, self.seq)
    }
}

/// How a commit's transaction failed.
#[derive(Debug)]
enum TxFailure {
    /// Before COMMIT was sent, or COMMIT was refused: nothing is stored.
    RolledBack(StorageError),
    /// COMMIT was sent and no answer came (or one that may have come after
    /// the commit): stored or not, only the database knows. `outcome` is
    /// what the transaction made durable if it committed.
    AnswerLost { error: StorageError, outcome: Committed },
}

impl fmt::Display for TxFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxFailure::RolledBack(e) => e.fmt(f),
            TxFailure::AnswerLost { error, .. } => write!(f, "{error} (COMMIT's answer lost)"),
        }
    }
}

impl From<StorageError> for TxFailure {
    fn from(e: StorageError) -> TxFailure {
        TxFailure::RolledBack(e)
    }
}

/// Whether a COMMIT that failed with an answer of `severity` (`None`: no
/// answer, the connection broke) may have committed. Only an ERROR answer
/// says the transaction rolled back; no answer says nothing, and a FATAL
/// or PANIC ends the session, which may happen after the commit was
/// recorded (its answer then never reaches us).
fn may_have_committed(severity: Option<Severity>) -> bool {
    severity != Some(Severity::Error)
}

/// An agency's row as one transaction sees and moves it.
#[derive(Debug, Clone, Copy)]
pub(super) struct AgencyRow {
    pub next: u64,
    pub done: bool,
    changed: bool,
}

/// A row of `SELECT agency, next_position, done FROM agencies`.
pub(super) fn agency_row(row: &pg::Row) -> Result<(u32, AgencyRow), StorageError> {
    let agency = u32::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("agency"))?;
    let next = u64::try_from(row.get::<_, i64>(1)).map_err(|_| out_of_range("position"))?;
    let row = AgencyRow { next, done: row.get(2), changed: false };
    Ok((agency, row))
}

impl PgStorage {
    /// Stores the group in one transaction (see the module doc). On any
    /// error the connection is dropped, and the next commit opens another.
    ///
    /// The transaction writes its [`CommitId`] in `commits`. If COMMIT was
    /// sent and its answer lost, [`PgStorage::learn`] asks the database on
    /// a new connection whether that id is there: if so, the group is
    /// stored, and this returns what the transaction decided (its verdicts,
    /// and the draw if it recorded it) as if the answer had come.
    ///
    /// # Errors
    /// The database cannot be reached or refused the transaction; nothing
    /// of it is stored (unless COMMIT's answer was lost and the database
    /// could not be asked within [`LOOKUP_PATIENCE`]).
    pub fn commit(&mut self, group: &GroupData<'_>) -> Result<Committed, StorageError> {
        self.seq += 1;
        let id = CommitId { server: self.server, seq: self.seq };
        let (agencies, copy) = (self.agencies, &mut self.copy);
        match self.link.with(|session| Self::transaction(session, agencies, copy, group, id)) {
            Ok(committed) => Ok(committed),
            Err(TxFailure::RolledBack(e)) => Err(e),
            Err(TxFailure::AnswerLost { error, outcome }) => self.learn(id, error, outcome),
        }
    }

    /// After COMMIT's answer was lost: whether commit `id` is stored, asked
    /// again (on a new connection) until the database answers or
    /// [`LOOKUP_PATIENCE`] has passed. `outcome` if it is, the lost
    /// answer's error if it is not.
    fn learn(
        &mut self,
        id: CommitId,
        lost: StorageError,
        outcome: Committed,
    ) -> Result<Committed, StorageError> {
        StorageEvent::CommitAnswerLost { commit: &id, error: &lost }.warn();
        let started = Instant::now();
        loop {
            match self.link.with(|session| landed(session, id)) {
                Ok(committed) => {
                    StorageEvent::CommitFound { commit: &id, committed }.info();
                    return if committed {
                        Ok(outcome)
                    } else {
                        Err(StorageError::Database {
                            action: "commit to",
                            reason: format!(
                                "{} (its answer was lost; the database says it did not commit)",
                                lost_reason(&lost)
                            ),
                        })
                    };
                }
                Err(e) if started.elapsed() < LOOKUP_PATIENCE => {
                    StorageEvent::CommitLookupRetry { commit: &id, error: &e }.warn();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    // Whatever the database's state, that the outcome is
                    // unknown is logged as this commit's failure.
                    self.link.forget_unreachable();
                    return Err(StorageError::Database {
                        action: "learn whether a commit is stored in",
                        reason: format!(
                            "COMMIT's answer was lost ({}) and the database did not say within {} s whether it committed: {e}",
                            lost_reason(&lost),
                            LOOKUP_PATIENCE.as_secs()
                        ),
                    });
                }
            }
        }
    }

    /// The transaction of one commit group (see the module doc), in steps:
    /// lock the agencies' rows, decide, copy the new rows in, move the
    /// positions, count the DONEs (and record the draw), COMMIT.
    fn transaction(
        session: &mut Session,
        agencies: u32,
        copy: &mut Vec<u8>,
        group: &GroupData<'_>,
        id: CommitId,
    ) -> Result<Committed, TxFailure> {
        // READ COMMITTED whatever the database's default: every decision
        // is taken under a row lock, and a row that another transaction
        // moved is then read as it committed it. (Stricter levels are
        // still correct — see the `lottery` row's counter in
        // `add_finished` — but would turn every such wait into a
        // serialization error.)
        let Session { client, prepared } = session;
        let mut tx = read_committed(client)?;
        let mut rows = lock_rows(&mut tx, prepared, group, id)?;
        copy.clear();
        let (verdicts, newly_done) = decide(group, &mut rows, copy)?;
        copy_in(&mut tx, prepared, copy)?;
        move_positions(&mut tx, prepared, &rows)?;
        let drew = if newly_done > 0 {
            add_finished(&mut tx, prepared, newly_done, agencies)?
        } else {
            None
        };
        let outcome = Committed {
            agencies: rows.iter().map(|(agency, row)| (*agency, row.next, row.done)).collect(),
            verdicts,
            drew,
        };
        match tx.commit() {
            Ok(()) => Ok(outcome),
            Err(e) => {
                let unknown =
                    may_have_committed(e.as_db_error().and_then(DbError::parsed_severity));
                let error = db("commit to")(e);
                Err(if unknown {
                    TxFailure::AnswerLost { error, outcome }
                } else {
                    TxFailure::RolledBack(error)
                })
            }
        }
    }
}

/// Locks the rows of the agencies the group touches, in agency order, so
/// two servers' transactions never wait for each other in a circle. The
/// same statement writes this commit's id (no extra round trip), and so
/// holds this server's `commits` row until the transaction ends: a
/// look-up after a lost answer waits for it (see [`landed`]).
fn lock_rows(
    tx: &mut pg::Transaction<'_>,
    prepared: &mut Prepared,
    group: &GroupData<'_>,
    id: CommitId,
) -> Result<BTreeMap<u32, AgencyRow>, StorageError> {
    let touched: Vec<i64> = group
        .requests
        .iter()
        .map(|r| i64::from(r.agency))
        .collect::<BTreeSet<i64>>()
        .into_iter()
        .collect();
    let statement = prepared.get(tx, LOCK_ROWS)?;
    tx.query(&statement, &[&touched, &id.server, &id.seq])
        .map_err(db("lock the agencies' rows in"))?
        .iter()
        .map(agency_row)
        .collect()
}

/// Copies the rows of the batches to store (with their positions, in
/// COPY's binary format) in with one `COPY`.
fn copy_in(
    tx: &mut pg::Transaction<'_>,
    prepared: &mut Prepared,
    copy: &[u8],
) -> Result<(), StorageError> {
    if copy.is_empty() {
        return Ok(());
    }
    let statement = prepared.get(tx, COPY_BETS)?;
    let mut writer = tx.copy_in(&statement).map_err(db("start copying bets into"))?;
    [COPY_HEADER, copy, COPY_TRAILER]
        .iter()
        .try_for_each(|part| writer.write_all(part))
        .map_err(|e| StorageError::Database { action: "copy bets into", reason: e.to_string() })?;
    writer.finish().map_err(db("copy bets into"))?;
    Ok(())
}

/// Writes the positions and DONEs this group moved, in one statement
/// whatever the number of agencies.
fn move_positions(
    tx: &mut pg::Transaction<'_>,
    prepared: &mut Prepared,
    rows: &BTreeMap<u32, AgencyRow>,
) -> Result<(), StorageError> {
    let (mut agencies, mut nexts, mut dones) = (Vec::new(), Vec::new(), Vec::new());
    for (agency, row) in rows.iter().filter(|(_, r)| r.changed) {
        agencies.push(i64::from(*agency));
        nexts.push(i64::try_from(row.next).map_err(|_| out_of_range("position"))?);
        dones.push(row.done);
    }
    if agencies.is_empty() {
        return Ok(());
    }
    let statement = prepared.get(tx, MOVE_POSITIONS)?;
    tx.execute(&statement, &[&agencies, &nexts, &dones])
        .map_err(db("move the agencies' positions in"))?;
    Ok(())
}

/// Adds the DONEs this transaction flipped to the finished count; the
/// transaction that brings it to every agency records the draw. Returns
/// the draw's winners if this transaction recorded it.
///
/// The count lives on the lottery's one row, so DONEs take turns on it.
/// Under READ COMMITTED the UPDATE waits for the row and adds to the
/// committed count; under REPEATABLE READ or SERIALIZABLE (another
/// engine's default) a concurrent update makes this transaction fail with
/// a serialization error, which the agencies retry. Counting `agencies
/// WHERE done` instead would, under a snapshot, miss a DONE committed
/// meanwhile, and then no transaction would ever draw.
fn add_finished(
    tx: &mut pg::Transaction<'_>,
    prepared: &mut Prepared,
    newly_done: u64,
    agencies: u32,
) -> Result<Option<u64>, StorageError> {
    let added = i64::try_from(newly_done).map_err(|_| out_of_range("agencies"))?;
    let statement = prepared.get(tx, ADD_FINISHED)?;
    let finished: i64 =
        tx.query_one(&statement, &[&added]).map_err(db("count the finished agencies in"))?.get(0);
    if finished < i64::from(agencies) {
        return Ok(None);
    }
    record_draw(tx)
}

/// Records the draw (unless another transaction already did) and, in the
/// same transaction, the winners' ranks (see [`RECORD_WINNERS`]): one row
/// per winner, so under a longer statement timeout.
fn record_draw(tx: &mut pg::Transaction<'_>) -> Result<Option<u64>, StorageError> {
    let winning = i32::from(WINNING_NUMBER);
    let row = tx
        .query_opt(
            "INSERT INTO draw (id, winning_number, winners)
                         SELECT 1, $1, count(*) FROM bets WHERE number = 7574
                         ON CONFLICT (id) DO NOTHING RETURNING winners",
            &[&winning],
        )
        .map_err(db("record the draw in"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let winners: i64 = row.get(0);
    let drew = u64::try_from(winners).map_err(|_| out_of_range("winners"))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        RECORD_WINNERS_TIMEOUT.as_millis()
    ))
    .map_err(db("record the winners in"))?;
    tx.execute(RECORD_WINNERS, &[]).map_err(db("record the winners in"))?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", STATEMENT_TIMEOUT.as_millis()))
        .map_err(db("record the winners in"))?;
    Ok(Some(drew))
}

/// The reason of a storage error, without its action (for an error that
/// says it again in its own words).
fn lost_reason(e: &StorageError) -> String {
    match e {
        StorageError::Database { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Whether commit `id` is stored. The look-up is an upsert of the
/// server's `commits` row (rolled back: it changes nothing), because an
/// upsert waits for whatever transaction holds that row or is inserting
/// it — the one whose answer was lost, if its session still lives — and
/// then reads the row as that transaction left it. A plain `SELECT` would
/// not wait, and could read "not committed" just before the COMMIT lands.
fn landed(session: &mut Session, id: CommitId) -> Result<bool, StorageError> {
    let Session { client, prepared } = session;
    let mut tx = read_committed(client)?;
    let statement = prepared.get(&mut tx, LANDED)?;
    let seq: i64 =
        tx.query_one(&statement, &[&id.server]).map_err(db("look up a commit in"))?.get(0);
    // What it wrote is not meant to last (the row is the commit's).
    let _ = tx.rollback();
    Ok(seq == id.seq)
}

/// Decides each request of the group against the agencies' rows (locked
/// by the caller), in order: the rows of the batches to store go to
/// `copy`, agency by agency (each agency's rows then extend its end of the
/// primary key's index in one run, as a load of one file after another
/// does, instead of landing in five places by turns), and the rows move. Returns the requests not stored as asked and
/// how many agencies' DONEs this group newly records.
fn decide(
    group: &GroupData<'_>,
    rows: &mut BTreeMap<u32, AgencyRow>,
    copy: &mut Vec<u8>,
) -> Result<(BTreeMap<usize, Verdict>, u64), StorageError> {
    let mut verdicts = BTreeMap::new();
    let mut newly_done = 0;
    let mut stored = Vec::new();
    for (i, GroupRequest { agency, kind }) in group.requests.iter().enumerate() {
        let Some(row) = rows.get_mut(agency) else {
            return Err(StorageError::Database {
                action: "store bets in",
                reason: format!("agency {agency} has no row (not one of the lottery's agencies)"),
            });
        };
        let verdict = match kind {
            RequestKind::Batch { first, count, rows } => {
                if first.checked_add(*count).is_some_and(|end| end <= row.next) {
                    Some(Verdict::Duplicate)
                } else if row.done {
                    Some(Verdict::AlreadyDone)
                } else if *first == row.next {
                    let Some(bytes) = group.rows.get(rows.clone()) else {
                        return Err(StorageError::Database {
                            action: "store bets in",
                            reason: "a batch's rows are outside its group".into(),
                        });
                    };
                    stored.push((*agency, bytes));
                    row.next += count;
                    row.changed = true;
                    None
                } else {
                    Some(Verdict::Sequence { expected: row.next })
                }
            }
            RequestKind::Done { total } => {
                // A repeated DONE is acknowledged only with the total that
                // was recorded, as the file backend does: a different one
                // means the agency and the database disagree.
                if *total != row.next {
                    Some(Verdict::DoneMismatch { stored: row.next })
                } else if row.done {
                    Some(Verdict::Duplicate)
                } else {
                    row.done = true;
                    row.changed = true;
                    newly_done += 1;
                    None
                }
            }
        };
        if let Some(verdict) = verdict {
            verdicts.insert(i, verdict);
        }
    }
    // Stable: an agency's batches keep their order.
    stored.sort_by_key(|(agency, _)| *agency);
    for (_, bytes) in stored {
        copy.extend_from_slice(bytes);
    }
    Ok((verdicts, newly_done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(agency: u32, first: u64, count: u64, rows: std::ops::Range<usize>) -> GroupRequest {
        GroupRequest { agency, kind: RequestKind::Batch { first, count, rows } }
    }

    #[test]
    fn each_request_is_decided_against_the_locked_rows_in_order() {
        let bytes = b"a\nb\nc\nd\n";
        let requests = vec![
            batch(1, 0, 1, 0..2), // stored elsewhere already
            batch(1, 1, 2, 2..6), // half stored: a gap now
            batch(2, 5, 1, 6..8), // continues agency 2
            GroupRequest { agency: 2, kind: RequestKind::Done { total: 6 } },
            batch(2, 6, 1, 6..8), // after DONE
            GroupRequest { agency: 3, kind: RequestKind::Done { total: 1 } },
            GroupRequest { agency: 2, kind: RequestKind::Done { total: 6 } }, // repeated, same total
            GroupRequest { agency: 2, kind: RequestKind::Done { total: 7 } }, // repeated, another total
            GroupRequest { agency: 4, kind: RequestKind::Done { total: 3 } }, // done elsewhere, same total
            GroupRequest { agency: 4, kind: RequestKind::Done { total: 0 } }, // done elsewhere, another total
        ];
        let group = GroupData { rows: bytes, added: &[], done: &[], requests: &requests };
        let row = |next, done| AgencyRow { next, done, changed: false };
        let mut rows = BTreeMap::from([
            (1, row(2, false)),
            (2, row(5, false)),
            (3, row(0, false)),
            (4, row(3, true)),
        ]);
        let mut copy = Vec::new();
        let (verdicts, newly_done) = decide(&group, &mut rows, &mut copy).unwrap();
        assert_eq!(copy, b"d\n");
        assert_eq!(newly_done, 1);
        assert_eq!(
            verdicts,
            BTreeMap::from([
                (0, Verdict::Duplicate),
                (1, Verdict::Sequence { expected: 2 }),
                (4, Verdict::AlreadyDone),
                (5, Verdict::DoneMismatch { stored: 0 }),
                (6, Verdict::Duplicate),
                (7, Verdict::DoneMismatch { stored: 6 }),
                (8, Verdict::Duplicate),
                (9, Verdict::DoneMismatch { stored: 3 }),
            ])
        );
        assert_eq!((rows[&2].next, rows[&2].done, rows[&2].changed), (6, true, true));
        assert!(!rows[&1].changed);
        assert!(!rows[&4].changed);
    }

    #[test]
    fn the_rows_of_a_group_are_copied_agency_by_agency_each_in_order() {
        let bytes = b"a0\nb0\na1\nc0\nb1\n";
        let requests = vec![
            batch(1, 0, 1, 0..3),
            batch(2, 0, 1, 3..6),
            batch(1, 1, 1, 6..9),
            batch(3, 0, 1, 9..12),
            batch(2, 1, 1, 12..15),
        ];
        let group = GroupData { rows: bytes, added: &[], done: &[], requests: &requests };
        let row = AgencyRow { next: 0, done: false, changed: false };
        let mut rows = BTreeMap::from([(1, row), (2, row), (3, row)]);
        let mut copy = Vec::new();
        let (verdicts, _) = decide(&group, &mut rows, &mut copy).unwrap();
        assert!(verdicts.is_empty());
        assert_eq!(copy, b"a0\na1\nb0\nb1\nc0\n");
    }

    #[test]
    fn only_an_error_answer_to_commit_says_it_rolled_back() {
        // No answer at all (the connection broke after COMMIT was sent).
        assert!(may_have_committed(None));
        // The session ended, possibly after the commit was recorded.
        assert!(may_have_committed(Some(Severity::Fatal)));
        assert!(may_have_committed(Some(Severity::Panic)));
        // The database refused the COMMIT: the transaction rolled back.
        assert!(!may_have_committed(Some(Severity::Error)));
    }
}
