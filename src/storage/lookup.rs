//! What workers ask the storage directly, outside the committer: an
//! agency's position to resume from, and the draw with a page of winners
//! ([`Lookup`]). For the file backend the store's memory holds the
//! positions and the draw's [`WinnersFile`](super::WinnersFile) the
//! winners, so there is nothing to ask; a shared database is asked.

use super::draw::{AnnounceDraw, DrawState};
use super::error::StorageError;

/// What workers ask the storage directly, outside the committer.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The store knows (file backend: one server owns the data, so its
    /// memory is the truth for positions, and the draw's winners file,
    /// which the store holds, for winners).
    InMemory,
    /// Several servers share the database: ask it.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PgLookup),
}

impl Lookup {
    /// Whether the truth lives in a database other servers also write.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Lookup::InMemory)
    }

    /// The agency's durable position and whether its DONE is recorded;
    /// `None`: the store's memory knows.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn position(&self, agency: u32) -> Result<Option<(u64, bool)>, StorageError> {
        match self {
            Lookup::InMemory => {
                let _ = agency;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Lookup::Postgres(db) => db.position(agency).map(Some),
        }
    }

    /// The draw and a page of the agency's winners from `offset`, as many
    /// as fit in `room` bytes of documents; `None`: the store knows. A
    /// server that finds a draw nobody announced announces it (`log`).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn draw(
        &self,
        agency: u32,
        offset: u32,
        room: usize,
        log: AnnounceDraw<'_>,
    ) -> Result<Option<DrawState>, StorageError> {
        match self {
            Lookup::InMemory => {
                let _ = (agency, offset, room, log);
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Lookup::Postgres(db) => db.draw(agency, offset, room, log).map(Some),
        }
    }
}
