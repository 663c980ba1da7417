//! A request to stop the run (Ctrl-C, SIGTERM), which every stage can wait on.
//!
//! A flag alone is not enough: a stage blocked on a read from a pipe, on a silent resolver
//! or on a tarpitting mail server would only see it when that wait ends, minutes later. So
//! the request is also something to wait for (`requested().await` in the async stages, a
//! short poll in the blocking ones).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub struct Interrupt {
    requested: AtomicBool,
    wake: watch::Sender<bool>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt {
            requested: AtomicBool::new(false),
            wake: watch::Sender::new(false),
        }
    }
}

impl Interrupt {
    /// Asks every stage to stop; safe from any thread (not from a signal handler itself).
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.wake.send_replace(true);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested (at once if it already was).
    pub async fn requested(&self) {
        let mut wake = self.wake.subscribe();
        // The sender lives in `self`, so the only way out is the request.
        let _ = wake.wait_for(|requested| *requested).await;
    }
}

/// Resolves when `interrupt` is requested; never without one (a library caller that did
/// not ask for interruption).
pub(crate) async fn requested(interrupt: Option<&Interrupt>) {
    match interrupt {
        Some(interrupt) => interrupt.requested().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_request_wakes_a_parked_waiter_and_a_late_waiter_returns_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let interrupt = Arc::new(Interrupt::default());
        runtime.block_on(async {
            let waiter = {
                let interrupt = Arc::clone(&interrupt);
                tokio::spawn(async move { interrupt.requested().await })
            };
            // The waiter runs until it parks on the request.
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            assert!(!interrupt.is_requested());
            interrupt.request();
            waiter.await.unwrap();
            interrupt.requested().await;
        });
        assert!(interrupt.is_requested());
    }
}
