//! The accept loop: one thread blocks in `accept`, registers each
//! connection (in the lobby, see [`registry`](super::registry)) and hands
//! the pool one job for it. The job serves whichever waiting connection is
//! readiest when it starts (see [`connection::run_job`]).

use super::close::{Close, log_close};
use super::connection;
use super::context::Context;
use crate::logging::{LogLine, RateLimit, ServerEvent};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

/// Accepts connections until shutdown, handing each to the pool.
pub(super) fn accept_loop(listener: &TcpListener, ctx: &Arc<Context>, pool: &ThreadPool) {
    // A persistent error (out of descriptors) is logged once a second at
    // most, with how many were not.
    let mut lines = RateLimit::new(Duration::from_secs(1));
    loop {
        let accepted = listener.accept();
        if ctx.shutdown.is_triggered() {
            if let Ok((_, peer)) = accepted {
                log_close(peer, None, &Close::Shutdown);
            }
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if ctx.connections.admit(stream, peer, &ctx.limits) {
                    let ctx = Arc::clone(ctx);
                    pool.execute(move || connection::run_job(&ctx));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors, or a peer that gave up while queued:
                // log and carry on; the listener itself is fine. A short
                // pause keeps a persistent error from spinning.
                if let Some(unlogged) = lines.allow("accept", Instant::now()) {
                    ServerEvent::ListenerFailed { error: &e, unlogged }.error();
                }
                ctx.shutdown.sleep(Duration::from_millis(10));
            }
        }
    }
}
