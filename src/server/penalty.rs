//! The penalty box: answers held back from peers that failed AUTH.
//!
//! A failed AUTH is answered (ERROR `unauthorized`) only after
//! [`AUTH_FAIL_DELAY`](super::handler::AUTH_FAIL_DELAY), which slows a peer
//! guessing keys one connection after another. The wait must not hold a
//! worker — the peer decides how often it happens, and a worker is what an
//! honest agency needs — so the worker hands the connection and its answer
//! here and moves on. One thread sends each held answer when it is due
//! (all at once at shutdown) and closes the connection.
//!
//! A quarter of `SERVER_MAX_CONNECTIONS` at most wait here; beyond that a
//! failed AUTH is answered at once. Held connections count against the cap
//! and cannot be evicted (no worker would notice), so a flood of failed
//! AUTHs could otherwise fill the cap and keep every agency out; bounded,
//! it gets its answers sooner, and three quarters of the cap stay for
//! connections that newcomers may evict.

use super::close::{Close, log_close};
use super::registry::Connections;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A connection that failed AUTH, and the answer it waits for.
pub(super) struct HeldAnswer {
    pub due: Instant,
    pub id: u64,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub answer: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    /// In order of `due` (every delay is the same).
    held: VecDeque<HeldAnswer>,
    /// Teardown: send everything now, then stop.
    closing: bool,
}

/// See the module doc.
pub(super) struct PenaltyBox {
    queue: Mutex<Queue>,
    changed: Condvar,
    /// Connections held at most at once.
    capacity: usize,
}

impl PenaltyBox {
    /// A box for a server that admits `max_connections` at once.
    pub(super) fn new(max_connections: usize) -> PenaltyBox {
        PenaltyBox {
            queue: Mutex::default(),
            changed: Condvar::new(),
            capacity: (max_connections / 4).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A plain queue; a panic cannot leave it half-done.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a connection's answer until `held.due`; answers it now if
    /// the server is stopping or the box is full.
    pub(super) fn hold(&self, held: HeldAnswer, connections: &Connections) {
        let mut queue = self.lock();
        if queue.closing || queue.held.len() >= self.capacity {
            let how = if queue.closing {
                Close::Shutdown
            } else {
                Close::Normal("failed AUTH, answered at once (penalty box full)")
            };
            drop(queue);
            release(held, connections, &how);
            return;
        }
        let id = held.id;
        queue.held.push_back(held);
        self.changed.notify_all();
        drop(queue);
        // Held, it must not be chosen for eviction: no worker would notice.
        // (Marked after the queue's lock is let go: no two locks at once.)
        connections.set_penalized(id);
    }

    /// Teardown: every held answer goes out now; [`PenaltyBox::run`] returns.
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_all();
    }

    /// The penalty box's thread: sends each answer when it is due, closes
    /// its connection and forgets it in the registry.
    pub(super) fn run(&self, connections: &Connections) {
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            match queue.held.front() {
                Some(first) if queue.closing || first.due <= now => {
                    let how = if queue.closing {
                        Close::Shutdown
                    } else {
                        Close::Normal("failed AUTH, answered late")
                    };
                    if let Some(held) = queue.held.pop_front() {
                        drop(queue);
                        release(held, connections, &how);
                        queue = self.lock();
                    }
                }
                Some(first) => {
                    let wait = first.due - now;
                    queue = self
                        .changed
                        .wait_timeout(queue, wait)
                        .map_or_else(|p| p.into_inner().0, |(q, _)| q);
                }
                None if queue.closing => return,
                None => {
                    queue = self.changed.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

/// Sends a held answer (best effort: the peer may be gone) and closes.
fn release(held: HeldAnswer, connections: &Connections, how: &Close) {
    log_close(held.peer, None, how);
    connections.hang_up(held.id, held.stream, &held.answer);
}
