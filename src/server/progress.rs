//! The ingest's progress, logged every few seconds while bets arrive: a
//! long ingest (millions of bets) otherwise says nothing between the
//! server's start and the draw but one line per batch.

use super::context::Context;
use crate::logging::{LogLine, ServerEvent};
use crate::store::Store;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts the reporter thread (none if `interval` is zero). It ends at
/// shutdown.
pub(super) fn start(
    store: &Store,
    ctx: &Arc<Context>,
    interval: Duration,
) -> Option<JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let (store, ctx) = (store.clone(), Arc::clone(ctx));
    std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || report(&store, &ctx, interval))
        .ok()
}

fn report(store: &Store, ctx: &Context, interval: Duration) {
    let mut last = store.progress().unwrap_or_default();
    let mut since = Instant::now();
    while ctx.shutdown.sleep(interval) {
        let Ok(now) = store.progress() else { return };
        // Nothing arrived: an idle server stays quiet.
        if now.bets == last.bets {
            since = Instant::now();
            continue;
        }
        let rate = (now.bets - last.bets) as f64 / since.elapsed().as_secs_f64();
        ServerEvent::Ingest {
            bets: now.bets,
            rate,
            active_agencies: ctx.connections.active_agencies(),
            finished: now.finished,
        }
        .info();
        last = now;
        since = Instant::now();
    }
}
