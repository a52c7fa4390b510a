//! A shutdown signal shared by every thread of a binary.
//!
//! An `AtomicBool` is not enough for threads blocked in a system call, so
//! the signal also runs "wakers" registered by whoever blocks: the server
//! registers one that shuts its listening socket down (which wakes the
//! blocking `accept`), the client one that shuts its socket down. Sleeps
//! taken through [`Shutdown::sleep`] end at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Waker = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
    sleepers: Condvar,
    sleep_lock: Mutex<()>,
}

/// Cheap to clone; every clone sees the same signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("triggered", &self.is_triggered()).finish()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that SIGINT and SIGTERM trigger, after `on_signal` (the
    /// server logs the signal). One per process: `ctrlc` takes the handler.
    ///
    /// # Errors
    /// The signal handler cannot be installed.
    pub fn on_signals(on_signal: impl Fn() + Send + 'static) -> Result<Self, ctrlc::Error> {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        ctrlc::set_handler(move || {
            on_signal();
            trigger.trigger();
        })?;
        Ok(shutdown)
    }

    /// Whether shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Asks every thread to stop; runs the wakers. Safe to call from a
    /// signal-handling thread and more than once.
    pub fn trigger(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        {
            let _guard = self.inner.sleep_lock.lock();
            self.inner.sleepers.notify_all();
        }
        let wakers = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for wake in wakers.iter() {
            wake();
        }
    }

    /// Registers a function that unblocks a thread; it runs on trigger (or
    /// at once if shutdown was already asked for).
    pub fn on_trigger(&self, waker: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_triggered() {
            waker();
        }
        wakers.push(Box::new(waker));
    }

    /// Sleeps up to `duration`; returns `false` if woken by shutdown.
    pub fn sleep(&self, duration: Duration) -> bool {
        let guard = self.inner.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_triggered() {
            return false;
        }
        let (_guard, _) = self
            .inner
            .sleepers
            .wait_timeout_while(guard, duration, |()| !self.is_triggered())
            .unwrap_or_else(|p| p.into_inner());
        !self.is_triggered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn trigger_ends_a_sleep_and_runs_wakers() {
        let s = Shutdown::new();
        let woke = Arc::new(AtomicBool::new(false));
        let w = Arc::clone(&woke);
        s.on_trigger(move || w.store(true, Ordering::SeqCst));
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let slept_fully = s2.sleep(Duration::from_secs(30));
            (slept_fully, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        s.trigger();
        let (slept_fully, took) = t.join().unwrap();
        assert!(!slept_fully);
        assert!(took < Duration::from_secs(5));
        assert!(woke.load(Ordering::SeqCst));
        assert!(!s.sleep(Duration::from_secs(30)), "no sleep after trigger");
    }

    #[test]
    fn a_sleep_without_trigger_runs_its_course() {
        let s = Shutdown::new();
        assert!(s.sleep(Duration::from_millis(10)));
    }
}
