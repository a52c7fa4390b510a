//! The file backend's winners in their two phases: gathered in the log
//! while bets arrive, then, from the draw on, the winners file.

use super::gathering::WinnersLog;
use super::grouped::WinnersFile;
use std::sync::Arc;

/// The file backend's winners: gathered while bets arrive, regrouped at
/// the draw.
#[derive(Debug)]
pub enum Winners {
    Gathering(WinnersLog),
    /// The draw happened: `total` winners, and the file that serves them
    /// (or why it could not be built: a restart builds it again).
    Drawn {
        total: u64,
        file: DrawnWinners,
    },
}

/// The file backend's draw as the store serves it: the winners file, or
/// why it could not be built (a restart builds it again).
pub type DrawnWinners = Result<Arc<WinnersFile>, String>;
