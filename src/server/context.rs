//! What every worker shares: the request handler (and through it the
//! store), the limits, the registry of connections, the penalty box and
//! the shutdown flag.

use super::handler::Handler;
use super::limits::Limits;
use super::penalty::PenaltyBox;
use super::registry::Connections;
use crate::shutdown::Shutdown;

/// See the module doc.
pub(super) struct Context {
    pub handler: Handler,
    pub limits: Limits,
    pub connections: Connections,
    /// Answers held back from peers that failed AUTH.
    pub penalty: PenaltyBox,
    pub shutdown: Shutdown,
}
