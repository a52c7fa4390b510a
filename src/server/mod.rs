//! The lottery central, in the shape of the design card. One request's
//! path, in the order of the files:
//!
//! ```text
//! accept loop ─admit─▶ lobby ─pool.execute(job)─▶ connection job on a worker
//!  (accept.rs)     (registry.rs)                    (connection.rs)
//!                                                        │ every whole frame of a read
//!                                                        ▼
//!                               Handler::handle ─▶ Store: Arc<Mutex<StoreManager>>
//!                                 (handler/)          + its committer (crate::store)
//! ```
//!
//! One thread blocks in `accept`; each connection is registered and one
//! job goes to the pool (`pool.execute`). The job, on a worker, reads the
//! connection's frames, hands them to the [`Handler`], which says what they
//! mean against the shared store, waits once for the commit its answers
//! need, and writes them all. Around that path, each part defends the
//! agencies against something:
//!
//! - **the lobby** (`registry.rs`): connections wait there for a worker, and
//!   a free worker takes the one whose next frame is already there. Silent
//!   or trickling connections cannot hold the workers, and one that has not
//!   completed its handshake one first-frame timeout after its accept is
//!   closed wherever it is.
//! - **the eviction** (`registry.rs`): at `SERVER_MAX_CONNECTIONS`, the
//!   oldest connection that has not completed its handshake nor sent a
//!   whole first frame makes room. A flood of strangers cannot lock the
//!   agencies out; a newcomer is refused (`busy`) only when no such
//!   connection is left.
//! - **one session per agency** (`registry.rs`): a new handshake as an
//!   agency closes its older session (`session_replaced`). Whoever holds
//!   one agency's key holds one session, not the workers every other agency
//!   needs.
//! - **the workers taking turns** (`connection.rs`): a connection gives its
//!   worker back when another has a whole frame waiting. An agency busy on
//!   many connections does not make the others wait until it finishes.
//! - **the penalty box** (`penalty.rs`): a failed AUTH is answered a second
//!   late, without holding a worker. Guessing keys is slow, and costs the
//!   honest agencies nothing.
//!
//! `close.rs` holds the vocabulary of ending a connection, `lobby.rs` the
//! rules and deadlines of a waiting connection, `context.rs` what every
//! worker shares, `limits.rs` what one connection may cost, `progress.rs`
//! the ingest's progress line.
//!
//! Teardown (SIGTERM/SIGINT): the signal sets the shutdown flag and shuts
//! the listening socket down, which wakes the blocking `accept`; then every
//! live connection's reading side is shut down so blocked reads return,
//! answers in flight go out, the pool is joined and the storage closed,
//! each step logged.

// 1. The accept loop: registers each connection, one job per connection.
mod accept;
// 2. The registry of live connections, and the lobby where they wait.
mod registry;
// 3. The job: a connection's turn on a worker.
mod connection;
// 4. What each request means, against the store.
pub mod handler;
// What the path's parts share, and the defences beside it.
mod close;
mod context;
mod limits;
mod lobby;
mod penalty;
mod progress;

pub use limits::Limits;

use crate::config::ServerConfig;
use crate::logging::{Action, ActionEvent, LogLine, Outcome, ServerEvent, StorageEvent};
use crate::shutdown::Shutdown;
use crate::storage::{Location, OpenReport};
use crate::store::Store;
use context::Context;
use handler::Handler;
use penalty::PenaltyBox;
use registry::Connections;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use threadpool::ThreadPool;

/// How long teardown lets connections finish what they are doing before
/// shutting them down in both directions.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

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
    let store = open_store(config)?;
    let running = start(&listener, config, store, shutdown)?;
    accept::accept_loop(&listener, &running.ctx, &running.pool);
    drop(listener);
    ActionEvent::Succeeded(Action::CloseListener).info();
    running.stop();
    Ok(())
}

/// Opens (and recovers) the storage, logging what it found.
fn open_store(config: &ServerConfig) -> Result<Store, ServerError> {
    let location = config.storage_location();
    let (store, report) = match Store::open(&location, config.agencies) {
        Ok(opened) => opened,
        Err(e) => {
            if matches!(location, Location::File { .. }) {
                ActionEvent::Fields {
                    action: Action::Recovery,
                    outcome: Outcome::Fail,
                    fields: &e.log_fields(),
                }
                .error();
            }
            return Err(ServerError::Storage(e));
        }
    };
    let finished = store.progress().map_or(0, |p| p.finished);
    match report {
        OpenReport::File { path, recovery } => {
            // A cut is logged as a warning: the operator should know.
            let level = if recovery.torn.is_some() { log::Level::Warn } else { log::Level::Info };
            StorageEvent::Recovered {
                path: &path.display(),
                dropped_bytes: recovery.dropped_data_bytes,
                journal_dropped_bytes: recovery.dropped_journal_bytes,
                reason: &recovery,
                finished,
            }
            .log(level);
        }
        OpenReport::Postgres { target, schema } => {
            StorageEvent::DatabaseOpened { database: &target, schema_version: schema, finished }
                .info()
        }
    }
    Ok(store)
}

/// The server between its start and its teardown: what its threads share,
/// and the threads beside the accept loop.
struct Running {
    ctx: Arc<Context>,
    pool: ThreadPool,
    workers: usize,
    penalty: JoinHandle<()>,
    reporter: Option<JoinHandle<()>>,
    store: Store,
}

/// Makes the signal wake the accept loop, announces the listening
/// address, and starts the pool, the penalty box and the progress reporter.
fn start(
    listener: &TcpListener,
    config: &ServerConfig,
    store: Store,
    shutdown: Shutdown,
) -> Result<Running, ServerError> {
    // The signal wakes the blocking accept by shutting the listening
    // socket down (accept then fails at once).
    let waker = listener
        .try_clone()
        .map_err(|source| ServerError::Io { action: "clone the listener", source })?;
    shutdown.on_trigger(move || {
        let _ = socket2::SockRef::from(&waker).shutdown(std::net::Shutdown::Both);
    });
    // Announced only now: connections queue in the backlog until storage
    // is recovered, and tests and scripts wait for this line.
    if let Ok(addr) = listener.local_addr() {
        ServerEvent::Listening { address: addr }.info();
    }
    let pool =
        threadpool::Builder::new().num_threads(config.workers).thread_name("worker".into()).build();
    let ctx = Arc::new(Context {
        handler: Handler::new(store.clone(), config.auth.clone()),
        limits: Limits::from_config(config),
        connections: Connections::default(),
        penalty: PenaltyBox::new(config.max_connections),
        shutdown,
    });
    let penalty = {
        let ctx = Arc::clone(&ctx);
        std::thread::Builder::new()
            .name("penalty".into())
            .spawn(move || ctx.penalty.run(&ctx.connections))
            .map_err(|source| ServerError::Io { action: "start the penalty box", source })?
    };
    let reporter = progress::start(&store, &ctx, config.progress_interval);
    Ok(Running { ctx, pool, workers: config.workers, penalty, reporter, store })
}

impl Running {
    /// Teardown, once the accept loop has returned: every connection is
    /// closed, the threads joined and the storage closed, each step logged.
    fn stop(self) {
        let ctx = &self.ctx;
        // Held answers to failed AUTHs go out now, not a second later.
        ctx.penalty.close();
        let count = ctx.connections.close_all();
        ctx.connections.drain(SHUTDOWN_GRACE);
        self.pool.join();
        ctx.penalty.close(); // a worker may have handed one in meanwhile
        let _ = self.penalty.join();
        ServerEvent::PoolClosed { workers: self.workers }.info();
        ServerEvent::ConnectionsClosed { count }.info();
        if let Some(reporter) = self.reporter {
            let _ = reporter.join();
        }
        self.store.close();
    }
}

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
    socket.set_reuse_address(true).map_err(io("set SO_REUSEADDR"))?;
    socket.bind(&addr.into()).map_err(io("bind"))?;
    socket.listen(config.listen_backlog).map_err(io("listen"))?;
    Ok(socket.into())
}

/// Why the server could not run.
#[derive(Debug)]
pub enum ServerError {
    Storage(crate::storage::StorageError),
    Io { action: &'static str, source: io::Error },
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
