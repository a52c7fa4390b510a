//! The lottery central: accepts agencies' connections and serves their
//! requests on a fixed thread pool.
//!
//! One event-loop thread ([`reactor`]) owns every socket. It reads whatever
//! bytes arrive, and only when a connection has at least one whole frame
//! does it hand those frames to a pool worker ([`handler`]); the worker's
//! answer comes back to the loop, which writes it. So a worker is never tied
//! to a connection: an idle, silent or slow peer costs a buffer, not a
//! thread, and agencies can outnumber workers without anyone waiting for a
//! worker to be released.

pub mod handler;
mod reactor;

use crate::config::ServerConfig;
use crate::shutdown::Shutdown;
use crate::store::StoreManager;
use log::info;
use std::fmt;
use std::io;
use std::net::TcpListener;

pub use reactor::Limits;

/// Why the server could not run.
#[derive(Debug)]
pub enum ServerError {
    Storage(crate::storage::StorageError),
    Io {
        action: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Storage(e) => write!(f, "{e}"),
            ServerError::Io { action, source } => write!(f, "cannot {action}: {source}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Binds the listening socket the way the config says (address, port and
/// backlog; std cannot set the backlog, hence `socket2`).
///
/// # Errors
/// An address that does not resolve, or a bind/listen failure.
pub fn bind(config: &ServerConfig) -> Result<TcpListener, ServerError> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let io = |action| move |source| ServerError::Io { action, source };
    let addr = (config.ip.as_str(), config.port)
        .to_socket_addrs()
        .map_err(io("resolve SERVER_IP"))?
        .next()
        .ok_or_else(|| ServerError::Io {
            action: "resolve SERVER_IP",
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        })?;
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(io("create socket"))?;
    // A restarted server must not wait for old connections' TIME_WAIT.
    socket
        .set_reuse_address(true)
        .map_err(io("set SO_REUSEADDR"))?;
    socket.bind(&addr.into()).map_err(io("bind"))?;
    socket.listen(config.listen_backlog).map_err(io("listen"))?;
    Ok(socket.into())
}

/// Runs the server on an already bound `listener` until `shutdown` is
/// triggered, then closes everything, logging each close.
///
/// # Errors
/// Storage that cannot be opened or recovered, or a failure of the event
/// loop itself. Errors of single connections are logged and never end the
/// server.
pub fn run(
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let (store, recovery) = StoreManager::open(
        &config.storage_filepath,
        config.storage_sync,
        config.agencies,
    )
    .map_err(ServerError::Storage)?;
    let finished = (1..=config.agencies)
        .filter(|a| store.position(*a).map(|(_, done)| done).unwrap_or(false))
        .count();
    info!(
        "action: recovery | result: success | path: {} | dropped_bytes: {} | journal_dropped_bytes: {} | rebuilt_journal: {} | agencias_finalizadas: {finished}",
        config.storage_filepath.display(),
        recovery.dropped_data_bytes,
        recovery.dropped_journal_bytes,
        recovery.rebuilt_journal,
    );
    // Announced only now: connections queue in the backlog until storage
    // is recovered, and tests and scripts wait for this line.
    if let Ok(addr) = listener.local_addr() {
        info!("action: listen | result: success | address: {addr}");
    }
    let pool = threadpool::Builder::new()
        .num_threads(config.workers)
        .thread_name("worker".into())
        .build();
    let limits = Limits::from_config(config);
    let result = reactor::Reactor::new(
        listener,
        store.clone(),
        pool.clone(),
        limits,
        config.auth.clone(),
        shutdown,
    )
    .and_then(reactor::Reactor::run);
    pool.join();
    info!(
        "action: close_thread_pool | result: success | workers: {}",
        config.workers
    );
    store.close();
    result
}
