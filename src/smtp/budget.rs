//! A politeness budget shared with other processes: when several workers probe the same mail
//! servers (the distributed mode, `src/queue`), the per-server limits are the server's
//! tolerance, not one process's. The prober keeps its own limits as before and, when it has a
//! shared budget, also asks it before each new connection and tells it of each backoff.
//!
//! The trait keeps the prober free of any database: `queue::budget` implements it on
//! PostgreSQL.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use super::outbound::Egress;

/// Held while a connection counted by a shared budget is open; dropping it gives the place
/// back.
pub struct SharedPermit(#[allow(dead_code)] Box<dyn Send + Sync>);

impl SharedPermit {
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        SharedPermit(Box::new(inner))
    }
}

impl fmt::Debug for SharedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedPermit")
    }
}

pub type BudgetFuture<'a> = Pin<Box<dyn Future<Output = Result<SharedPermit, String>> + Send + 'a>>;

/// Per-server limits counted across processes.
pub trait SharedBudget: Send + Sync + fmt::Debug {
    /// Waits until one more connection from `egress` to `server` keeps every process sharing
    /// the budget within the server's limits: fewer than `limit` open at once, `pause` since
    /// the last one opened anywhere, no backoff in force. The permit counts the connection
    /// while it is open. Err: the budget cannot be reached (the caller treats the server as
    /// unreached for now, never as a verdict).
    fn open<'a>(
        &'a self,
        egress: &'a Egress,
        server: IpAddr,
        limit: usize,
        pause: Duration,
    ) -> BudgetFuture<'a>;

    /// `server` answered 421 or a rate limit: no process opens a connection to it for `wait`.
    fn back_off(&self, egress: &Egress, server: IpAddr, wait: Duration);
}
