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

/// Why a shared budget gives no place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// Another process gave the server up (it kept failing there): this one does not ask it
    /// again either, for now.
    GivenUp(String),
    /// The budget cannot be reached: the server is unreached for now, never a verdict.
    Unreachable(String),
}

impl fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetRefusal::GivenUp(why) => write!(f, "given up by another worker: {why}"),
            BudgetRefusal::Unreachable(why) => {
                write!(f, "the shared politeness budget: {why}")
            }
        }
    }
}

pub type BudgetFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SharedPermit, BudgetRefusal>> + Send + 'a>>;

/// Per-server limits counted across processes.
pub trait SharedBudget: Send + Sync + fmt::Debug {
    /// Waits until one more connection from `egress` to `server` keeps every process sharing
    /// the budget within the server's limits: fewer than `limit` open at once, `pause` since
    /// the last one opened anywhere, no backoff in force. The permit counts the connection
    /// while it is open. Err: another process gave the server up, or the budget cannot be
    /// reached (either way the caller treats the server as unreached, never as a verdict).
    fn open<'a>(
        &'a self,
        egress: &'a Egress,
        server: IpAddr,
        limit: usize,
        pause: Duration,
    ) -> BudgetFuture<'a>;

    /// `server` answered 421 or a rate limit: no process opens a connection to it for `wait`.
    fn back_off(&self, egress: &Egress, server: IpAddr, wait: Duration);

    /// This process gave `server` up (`why`): no process asks it again for `wait`, so a
    /// server that fails every session is not tried again by each worker in turn.
    fn give_up(&self, egress: &Egress, server: IpAddr, why: &str, wait: Duration);
}
