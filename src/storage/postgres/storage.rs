//! The committer's connection to the database ([`PgStorage`]) and what one
//! commit needs; its commit transaction is in `commit.rs`.

use super::announce::announce;
use super::link::Link;
use crate::storage::draw::AnnounceDraw;
use crate::storage::error::StorageError;
use std::fmt;

/// The committer's connection and what one commit needs.
pub struct PgStorage {
    pub(super) link: Link,
    pub(super) agencies: u32,
    /// The rows of one COPY, reused from commit to commit.
    pub(super) copy: Vec<u8>,
    pub(super) target: String,
    /// This server's id in `commits`: random, chosen at open.
    pub(super) server: i64,
    /// The counter of this server's last commit (attempted or made).
    pub(super) seq: i64,
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .field("connected", &self.link.is_connected())
            .finish()
    }
}

impl PgStorage {
    /// Host, port and database, for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the last commit failed for want of a database (its outage
    /// is logged as `storage | in_progress`, not as each commit's failure),
    /// not on an answer of it.
    pub fn failed_unreachable(&self) -> bool {
        self.link.failed_unreachable()
    }

    /// Announces the draw if it is recorded and not yet announced (see
    /// [`announce`]).
    ///
    /// # Errors
    /// The database cannot be reached, or another server holds the draw's
    /// row past the lock timeout (it is announcing it).
    pub fn announce(&mut self, log: AnnounceDraw<'_>) -> Result<Option<u64>, StorageError> {
        self.link.with(|session| announce(session, log))
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::{Health, settings, target};
    use super::*;

    #[test]
    fn the_log_names_the_database_but_never_the_password() {
        let config = settings("postgresql://lottery:s3cret@db.example:5433/bets").unwrap();
        let shown = target(&config);
        assert_eq!(shown, "db.example:5433/bets");
        assert!(
            !format!(
                "{:?}",
                PgStorage {
                    link: Link::new(config, None, Health::new(&shown)),
                    agencies: 1,
                    copy: Vec::new(),
                    target: shown,
                    server: 1,
                    seq: 0,
                }
            )
            .contains("s3cret")
        );
    }
}
