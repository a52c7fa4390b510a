//! The draw's announcement on a shared database: the `sorteo` line logged
//! by exactly one server, then the draw's row marked as announced.

use super::error::{db, out_of_range};
use super::link::{Session, read_committed};
use crate::storage::draw::AnnounceDraw;
use crate::storage::error::StorageError;

/// Logs the draw if it is recorded and not yet announced, then marks it,
/// in one transaction that holds the draw's row (`FOR UPDATE`): of several
/// servers announcing at once, the first logs and marks it, and the others
/// then find it marked. The line is logged before the mark commits, so a
/// server that dies between the two leaves the draw unmarked and the next
/// server to look logs it again: a crash there logs it twice, never zero
/// times. Returns the winners it announced.
pub(super) fn announce(
    session: &mut Session,
    log: AnnounceDraw<'_>,
) -> Result<Option<u64>, StorageError> {
    let mut tx = read_committed(&mut session.client)?;
    let row = tx
        .query_opt("SELECT winners FROM draw WHERE id = 1 AND NOT announced FOR UPDATE", &[])
        .map_err(db("read the draw from"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let winners = u64::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("winners"))?;
    log(winners);
    tx.execute("UPDATE draw SET announced = true WHERE id = 1", &[])
        .map_err(db("mark the draw as announced in"))?;
    tx.commit().map_err(db("mark the draw as announced in"))?;
    Ok(Some(winners))
}
