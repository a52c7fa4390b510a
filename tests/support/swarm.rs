//! Attackers for the tests: threads that repeat one attack until told to
//! stop, counting what they did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// What every thread of a swarm shares: the stop flag and the counter.
#[derive(Clone)]
pub struct SwarmControl {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
}

impl SwarmControl {
    /// Whether the swarm was told to stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Counts one more attack done.
    pub fn count(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Attacks done so far.
    pub fn counted(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Threads running an attack until [`Swarm::stop`].
pub struct Swarm {
    pub control: SwarmControl,
    threads: Vec<JoinHandle<()>>,
}

impl Swarm {
    pub fn new() -> Swarm {
        Swarm {
            control: SwarmControl {
                stop: Arc::new(AtomicBool::new(false)),
                count: Arc::new(AtomicUsize::new(0)),
            },
            threads: Vec::new(),
        }
    }

    /// Starts `n` threads running `attack(i, control)`; each should loop
    /// until `control.stopped()`.
    pub fn spawn(
        mut self,
        n: usize,
        attack: impl Fn(usize, SwarmControl) + Clone + Send + 'static,
    ) -> Swarm {
        for i in 0..n {
            let (attack, control) = (attack.clone(), self.control.clone());
            self.threads.push(std::thread::spawn(move || attack(i, control)));
        }
        self
    }

    /// Stops every thread, waits for them, and returns the count.
    pub fn stop(self) -> usize {
        self.control.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("attacker thread");
        }
        self.control.counted()
    }
}
