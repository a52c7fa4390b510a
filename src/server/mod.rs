//! The lottery central, in the shape of the design card: a blocking
//! accept loop hands each connection to a fixed thread pool, whose worker
//! owns that connection until it ends.
//!
//! - [`listener`]: the accept loop, the registry of live connections (with
//!   a cloned handle each, so the server can shut any of them down), the
//!   connection limit, and the lobby where accepted connections wait for a
//!   worker;
//! - [`connection`]: one connection on one worker — blocking reads and
//!   writes with timeouts, every whole frame of a read handled at once, one
//!   wait for the commit, one write of all the answers;
//! - [`handler`]: what each request means, against the shared
//!   [`Store`] (`Arc<Mutex<StoreManager>>`, group commit on its own
//!   thread);
//! - [`penalty`]: answers to failed AUTHs, held back a second without
//!   holding a worker;
//! - [`progress`]: the ingest's progress line every few seconds.
//!
//! Teardown (SIGTERM/SIGINT): the signal sets the shutdown flag and shuts
//! the listening socket down, which wakes the blocking `accept`; then every
//! live connection's reading side is shut down so blocked reads return,
//! answers in flight go out, the pool is joined and the storage closed,
//! each step logged.

mod connection;
pub mod handler;
mod listener;
mod penalty;
mod progress;

use crate::config::ServerConfig;
use crate::shutdown::Shutdown;
use crate::storage::{Location, OpenReport};
use crate::store::Store;
use handler::Handler;
use listener::Connections;
use log::{error, info};
use penalty::PenaltyBox;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long teardown lets connections finish what they are doing before
/// shutting them down in both directions.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Resource limits of connections (see [`ServerConfig`] for each).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub first_frame_timeout: Duration,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub write_timeout: Duration,
    pub max_frame: usize,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            first_frame_timeout: c.first_frame_timeout,
            idle_timeout: c.idle_timeout,
            frame_timeout: c.frame_timeout,
            write_timeout: c.write_timeout,
            max_frame: c.max_frame_size,
        }
    }
}

/// What every worker shares.
struct Context {
    handler: Handler,
    limits: Limits,
    connections: Connections,
    /// Answers held back from peers that failed AUTH.
    penalty: PenaltyBox,
    shutdown: Shutdown,
}

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
/// Storage that cannot be opened or recovered, or a listener that cannot
/// be woken at shutdown. Errors of single connections are logged and never
/// end the server.
pub fn run(
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let location = config.storage_location();
    let (store, report) = match Store::open(&location, config.agencies) {
        Ok(opened) => opened,
        Err(e) => {
            if matches!(location, Location::File { .. }) {
                error!("action: recovery | result: fail | {}", e.log_fields());
            }
            return Err(ServerError::Storage(e));
        }
    };
    let finished = store.progress().map_or(0, |p| p.finished);
    match report {
        OpenReport::File { path, recovery } => {
            // A cut is logged as a warning: the operator should know.
            let level = if recovery.torn.is_some() {
                log::Level::Warn
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "action: recovery | result: success | path: {} | dropped_bytes: {} | journal_dropped_bytes: {} | reason: {} | agencias_finalizadas: {finished}",
                crate::logging::clean(path.display()),
                recovery.dropped_data_bytes,
                recovery.dropped_journal_bytes,
                crate::logging::clean(&recovery),
            )
        }
        OpenReport::Postgres { target, schema } => info!(
            "action: storage_open | result: success | backend: postgres | database: {target} | schema_version: {schema} | agencias_finalizadas: {finished}"
        ),
    }
    // The signal wakes the blocking accept by shutting the listening
    // socket down (accept then fails at once).
    let waker = listener.try_clone().map_err(|source| ServerError::Io {
        action: "clone the listener",
        source,
    })?;
    shutdown.on_trigger(move || {
        let _ = socket2::SockRef::from(&waker).shutdown(std::net::Shutdown::Both);
    });
    // Announced only now: connections queue in the backlog until storage
    // is recovered, and tests and scripts wait for this line.
    if let Ok(addr) = listener.local_addr() {
        info!("action: listen | result: success | address: {addr}");
    }
    let pool = threadpool::Builder::new()
        .num_threads(config.workers)
        .thread_name("worker".into())
        .build();
    let ctx = Arc::new(Context {
        handler: Handler::new(store.clone(), config.auth.clone()),
        limits: Limits::from_config(config),
        connections: Connections::default(),
        penalty: PenaltyBox::new(config.max_connections),
        shutdown: shutdown.clone(),
    });
    let penalty = {
        let ctx = Arc::clone(&ctx);
        std::thread::Builder::new()
            .name("penalty".into())
            .spawn(move || ctx.penalty.run(&ctx.connections))
            .map_err(|source| ServerError::Io {
                action: "start the penalty box",
                source,
            })?
    };
    let reporter = progress::start(&store, &ctx, config.progress_interval);

    listener::accept_loop(&listener, &ctx, &pool);

    drop(listener);
    info!("action: close_listener | result: success");
    // Held answers to failed AUTHs go out now, not a second later.
    ctx.penalty.close();
    let count = ctx.connections.close_all();
    ctx.connections.drain(SHUTDOWN_GRACE);
    pool.join();
    ctx.penalty.close(); // a worker may have handed one in meanwhile
    let _ = penalty.join();
    info!(
        "action: close_thread_pool | result: success | workers: {}",
        config.workers
    );
    info!("action: close_connections | result: success | count: {count}");
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    store.close();
    Ok(())
}
