//! The database's schema: the DDL of every version, created at start if
//! missing or upgraded from an older version ([`prepare`]), and the checks
//! that refuse a database this server must not use: not UTF-8, a newer
//! schema, another number of agencies or another `SERVER_AUTH`.
//!
//! The schema is `SCHEMA_V2` with version 3's additions (`SCHEMA_V3_AGREE`,
//! `SCHEMA_V3_WINNERS`), its version in `schema_version`. Every statement
//! is idempotent, so servers starting at once may all run them.

use super::error::db;
use crate::bet::WINNING_NUMBER;
use crate::storage::error::StorageError;
use ::postgres as pg;

/// The schema version this server creates and understands.
pub(super) const SCHEMA_VERSION: i32 = 3;

/// Version 2 of the schema (version 1 lacked `lottery.finished`). `bets`
/// has the CSV's columns (so that `\copy (select agency, first_name, last_name, document, birthdate,
/// number from bets) to stdout csv` gives the rows `bets.csv` would hold)
/// plus the position, which with the agency is the primary key: a
/// position is stored at most once whatever the servers do. The partial
/// index holds only winning bets: the draw counts them and each agency's
/// winners query reads them, and it costs the ingest almost nothing.
/// `lottery.finished` counts the agencies whose DONE is recorded: the
/// transactions that record DONEs add to it (see
/// [`PgStorage::commit`](super::PgStorage::commit)).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS lottery (
    id INT PRIMARY KEY,
    agencies BIGINT NOT NULL,
    finished BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agencies (
    agency BIGINT PRIMARY KEY,
    next_position BIGINT NOT NULL,
    done BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS bets (
    agency BIGINT NOT NULL,
    position BIGINT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    document TEXT NOT NULL,
    birthdate DATE NOT NULL,
    number INT NOT NULL,
    PRIMARY KEY (agency, position)
);
CREATE INDEX IF NOT EXISTS bets_winners ON bets (agency, position) WHERE number = 7574;
CREATE TABLE IF NOT EXISTS draw (
    id INT PRIMARY KEY,
    winning_number INT NOT NULL,
    winners BIGINT NOT NULL,
    drawn_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// Version 3's additions for the winners and the draw's announcement, run
/// after `SCHEMA_V2` (idempotent). `winners`: every winning bet's document
/// with its rank among its agency's winners (0, 1, ... in storage order),
/// filled by the draw's transaction: a WINNERS?(offset) page is then
/// `rank >= offset ORDER BY rank LIMIT n` on the primary key, whatever the
/// offset. `draw.announced`: the `sorteo` line was logged (see
/// [`announce`](super::announce)).
const SCHEMA_V3_WINNERS: &str = "
CREATE TABLE IF NOT EXISTS winners (
    agency BIGINT NOT NULL,
    rank BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (agency, rank)
);
ALTER TABLE draw ADD COLUMN IF NOT EXISTS announced BOOLEAN NOT NULL DEFAULT false;
";

/// Version 1 or 2 → 3: a draw recorded by an older server gets its ranks,
/// and counts as announced (that server logged it).
const UPGRADE_TO_V3_WINNERS: &str = "
INSERT INTO winners (agency, rank, document)
SELECT agency, row_number() OVER (PARTITION BY agency ORDER BY position) - 1, document
FROM bets WHERE number = 7574 AND EXISTS (SELECT 1 FROM draw WHERE id = 1)
ON CONFLICT (agency, rank) DO NOTHING;
UPDATE draw SET announced = true;
";

/// Version 1 → 2: the finished-agencies counter on the lottery's row.
const UPGRADE_FROM_V1: &str = "
ALTER TABLE lottery ADD COLUMN IF NOT EXISTS finished BIGINT NOT NULL DEFAULT 0;
UPDATE lottery SET finished = (SELECT count(*) FROM agencies WHERE done) WHERE id = 1;
";

/// Version 3's additions for servers that agree on `SERVER_AUTH` and for
/// commits that can be looked up, run after [`SCHEMA_V2`] on a new
/// database and as the upgrade of a version-2 one. Every statement is
/// idempotent, so servers starting at once may all run them.
///
/// `lottery.auth` is the lottery's `SERVER_AUTH` (`required` or `off`),
/// written with the lottery's row; NULL only in a version-2 database until
/// the first version-3 server records its own (see [`prepare`]).
///
/// `commits` holds one row per server process: its random id and the
/// counter of its last commit, written by that commit's transaction (see
/// [`PgStorage::commit`](super::PgStorage::commit)). Rows of servers gone for [`COMMITS_KEPT`] are
/// deleted when a server opens the database.
const SCHEMA_V3_AGREE: &str = "
ALTER TABLE lottery ADD COLUMN IF NOT EXISTS auth TEXT CHECK (auth IN ('required', 'off'));
CREATE TABLE IF NOT EXISTS commits (
    server BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// How long a server's row in `commits` outlives its last commit. Only a
/// server whose COMMIT answer was just lost reads its row, within
/// [`LOOKUP_PATIENCE`](super::commit::LOOKUP_PATIENCE) of writing it; a day is far beyond that and keeps
/// the table at the servers started in a day.
pub(super) const COMMITS_KEPT: &str = "1 day";

// The SQL names the winning number as a literal (7574), so that the
// planner matches the partial index `bets_winners`; this keeps them equal.
const _: () = assert!(WINNING_NUMBER == 7574);

/// Whether `prepare` found a database this server must not use (a newer
/// schema, another number of agencies): waiting will not change that.
pub(super) fn refuses_us(e: &StorageError) -> bool {
    matches!(e, StorageError::Database { action: REFUSED, .. })
}

/// The action of the errors [`refuses_us`] recognises.
const REFUSED: &str = "use";

/// `SERVER_AUTH`'s word for `auth_required`, as the database records it.
pub(super) fn auth_word(auth_required: bool) -> &'static str {
    if auth_required { "required" } else { "off" }
}

/// Refuses a database that does not store text as UTF-8, then creates the
/// schema if missing (idempotent: every statement is `IF NOT EXISTS` or
/// `ON CONFLICT DO NOTHING`) or upgrades an older one, refuses a newer
/// one, and makes sure the database is set up for `agencies` agencies,
/// each with its row, and for `auth_required`.
///
/// Returns whether this server recorded its `SERVER_AUTH` in a database
/// that had none (a version-2 one). Version 2 did not record it, so no
/// server can know what the lottery's other servers run with; the first
/// version-3 server's setting is the best claim there is, and from then on
/// every server is held to it. Refusing instead would leave the operator
/// of a lottery under way no way on but SQL by hand. The recording is one
/// `UPDATE ... WHERE auth IS NULL`: of servers upgrading at once, the
/// first to take the row's lock records its setting, the others find it.
pub(super) fn prepare(
    client: &mut pg::Client,
    agencies: u32,
    auth_required: bool,
) -> Result<bool, StorageError> {
    check_encoding(client)?;
    create_or_upgrade(client)?;
    set_up_lottery(client, agencies, auth_required)
}

/// Refuses a database that does not store text as UTF-8.
fn check_encoding(client: &mut pg::Client) -> Result<(), StorageError> {
    // Names are any UTF-8: a database in another encoding (LATIN1,
    // SQL_ASCII...) would refuse some of them mid-ingest, or store bytes
    // that `\copy` does not give back as `bets.csv` holds them.
    let encoding: String =
        client.query_one("SHOW server_encoding", &[]).map_err(db("read the encoding of"))?.get(0);
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "its encoding is {encoding}, not UTF8: create the database with ENCODING 'UTF8' (names are UTF-8)"
            ),
        });
    }
    Ok(())
}

/// Creates the schema if missing, upgrades an older one (from version 1
/// or 2), refuses a newer one.
fn create_or_upgrade(client: &mut pg::Client) -> Result<(), StorageError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version INT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .map_err(db("create the schema_version table in"))?;
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .map_err(db("read the schema version of"))?
        .get(0);
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StorageError::Database {
                action: REFUSED,
                reason: format!(
                    "its schema is version {v}, newer than this server's {SCHEMA_VERSION}"
                ),
            });
        }
        Some(v) if v == SCHEMA_VERSION => {}
        previous => {
            client.batch_execute(SCHEMA_V2).map_err(db("create the schema in"))?;
            if previous == Some(1) {
                // From version 1: the counter starts at what the agencies'
                // rows say (upgrade with every version-1 server stopped).
                client.batch_execute(UPGRADE_FROM_V1).map_err(db("upgrade the schema of"))?;
            }
            // New, or from version 1 or 2 (servers of version 2 may still
            // be running: nothing here changes what they read or write).
            client.batch_execute(SCHEMA_V3_AGREE).map_err(db("upgrade the schema of"))?;
            // Version 3's winners and announcement.
            client.batch_execute(SCHEMA_V3_WINNERS).map_err(db("create the winners' table in"))?;
            if matches!(previous, Some(1 | 2)) {
                client.batch_execute(UPGRADE_TO_V3_WINNERS).map_err(db("upgrade the schema of"))?;
            }
            client
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
                    &[&SCHEMA_VERSION],
                )
                .map_err(db("record the schema version in"))?;
        }
    }
    Ok(())
}

/// Makes sure the database is set up for `agencies` agencies, each with
/// its row, and for `auth_required`, recording it where none is.
fn set_up_lottery(
    client: &mut pg::Client,
    agencies: u32,
    auth_required: bool,
) -> Result<bool, StorageError> {
    let wanted = i64::from(agencies);
    let auth = auth_word(auth_required);
    client
        .execute(
            "INSERT INTO lottery (id, agencies, auth) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            &[&wanted, &auth],
        )
        .map_err(db("set up the lottery in"))?;
    let recorded = client
        .execute("UPDATE lottery SET auth = $1 WHERE id = 1 AND auth IS NULL", &[&auth])
        .map_err(db("record SERVER_AUTH in"))?
        > 0;
    let row = client
        .query_one("SELECT agencies, auth FROM lottery WHERE id = 1", &[])
        .map_err(db("read the lottery from"))?;
    let (set_up, set_auth): (i64, Option<String>) = (row.get(0), row.get(1));
    if set_up != wanted {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "it was set up for {set_up} agencies and SERVER_AGENCIES is {agencies}: every server of one lottery must say the same"
            ),
        });
    }
    if set_auth.as_deref() != Some(auth) {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "SERVER_AUTH: this server has {auth}, the database's lottery has {}: every server of one lottery must say the same",
                set_auth.as_deref().unwrap_or("none recorded")
            ),
        });
    }
    client
        .execute(
            "INSERT INTO agencies (agency, next_position, done)
             SELECT g.a, 0, false FROM generate_series(1, $1::BIGINT) AS g(a)
             ON CONFLICT (agency) DO NOTHING",
            &[&wanted],
        )
        .map_err(db("create the agencies' rows in"))?;
    Ok(recorded)
}
