//! The politeness budget shared by every worker, in PostgreSQL (`smtp::budget`'s trait).
//!
//! - **Connections at once:** a server's N places are N advisory locks, `(key, 0..N)`, taken
//!   with `pg_try_advisory_lock` on this worker's budget connection. A lock lives as long as
//!   the database session that took it, so a worker that dies (SIGKILL, power loss, a
//!   partition) gives its places back by dying: nothing to expire or clean up.
//! - **Pause between opens and backoff:** one row per server in `server_pace`, updated
//!   atomically: each open reserves the next instant (`next_open`, pushed on by the pause) and
//!   waits for it; a 421 or a rate limit pushes `backoff_until` for every worker, and a server
//!   a worker gave up on (`given_up_until`) is skipped by the others.
//!
//! A server is counted by its address, whichever worker and source address connect to it
//! (it is the server's tolerance), unless `per_source` says to count per source too.
//!
//! The connection is tokio-postgres's, driven on a runtime of its own (the budget outlives the
//! runs whose probes ask it). When the database restarts, the locks are gone with the session:
//! the budget reconnects and takes again the places its open connections hold.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio_postgres::{Client, NoTls};

use crate::smtp::budget::{BudgetFuture, BudgetRefusal, SharedBudget, SharedPermit};
use crate::smtp::outbound::Egress;

/// How often a full server is asked again.
const POLL: Duration = Duration::from_millis(100);

/// Cheap to clone: every clone is the same budget (one connection, one set of places).
#[derive(Clone)]
pub struct PgBudget {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    per_source: bool,
    /// Taken on drop and shut down without waiting (the last holder may be one of its tasks).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: AsyncMutex<Option<Client>>,
    /// The places this worker holds, (key, slot): a session's advisory lock is re-entrant, so
    /// this worker must not count one of its own places as free.
    held: Arc<Mutex<HashSet<(i32, i32)>>>,
    releases: tokio::sync::mpsc::UnboundedSender<(i32, i32)>,
}

impl std::fmt::Debug for PgBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgBudget({}, per_source: {})",
            super::db::masked(&self.inner.url),
            self.inner.per_source
        )
    }
}

/// A place at a server; dropping it asks the budget's task to unlock it.
struct Place {
    key: (i32, i32),
    releases: tokio::sync::mpsc::UnboundedSender<(i32, i32)>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = self.releases.send(self.key);
    }
}

impl PgBudget {
    /// Connects (failing early on a bad URL or an unreachable database).
    pub fn connect(url: &str, per_source: bool) -> Result<PgBudget, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("prebounce-budget")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the budget's runtime: {e}"))?;
        let client = runtime.block_on(connect(url.to_owned(), runtime.handle().clone()))?;
        let (releases, mut released) = tokio::sync::mpsc::unbounded_channel::<(i32, i32)>();
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            per_source,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            client: AsyncMutex::new(Some(client)),
            held: Arc::new(Mutex::new(HashSet::new())),
            releases,
        });
        // Unlocks, in order, on the budget's own runtime (a place is dropped in sync code).
        let weak = Arc::downgrade(&inner);
        inner.handle.spawn(async move {
            while let Some(key) = released.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                inner.unlock(key).await;
            }
        });
        Ok(PgBudget { inner })
    }
}

impl Inner {
    /// The advisory-lock key of a server (and source, when counted per source).
    fn key(&self, egress: &Egress, server: IpAddr) -> i32 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        server.hash(&mut h);
        if self.per_source {
            egress.to_string().hash(&mut h);
        }
        h.finish() as i32
    }

    fn pace_key(&self, egress: &Egress, server: IpAddr) -> String {
        if self.per_source {
            format!("{server} from {egress}")
        } else {
            server.to_string()
        }
    }

    /// Runs `f` with the connection, reconnecting once when it was lost (a restarted
    /// database): then the places held are taken again first.
    async fn with_client<T>(
        &self,
        f: impl for<'c> Fn(
            &'c Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    ) -> Result<T, String> {
        let mut guard = self.client.lock().await;
        if let Some(client) = guard.as_ref().filter(|c| !c.is_closed()) {
            match f(client).await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_closed() && e.as_db_error().is_some() => {
                    return Err(e.to_string());
                }
                Err(_) => {}
            }
        }
        *guard = None;
        let client = connect(self.url.clone(), self.handle.clone()).await?;
        let held: Vec<(i32, i32)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        for (key, slot) in held {
            // Best effort: another worker may have taken the place meanwhile; the connection
            // it counts closes soon.
            let _ = client
                .execute("SELECT pg_try_advisory_lock($1, $2)", &[&key, &slot])
                .await;
        }
        let out = f(&client).await.map_err(|e| e.to_string());
        *guard = Some(client);
        out
    }

    async fn unlock(&self, (key, slot): (i32, i32)) {
        let _ = self
            .with_client(move |c| {
                Box::pin(async move {
                    c.execute("SELECT pg_advisory_unlock($1, $2)", &[&key, &slot])
                        .await
                })
            })
            .await;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(key, slot));
    }

    async fn try_place(&self, key: i32, limit: usize) -> Result<Option<i32>, String> {
        for slot in 0..limit.min(64) as i32 {
            {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                if held.contains(&(key, slot)) {
                    continue;
                }
                // Marked before asking: two probes of this worker must not both take it.
                held.insert((key, slot));
            }
            let got = self
                .with_client(move |c| {
                    Box::pin(async move {
                        c.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&key, &slot])
                            .await
                            .map(|r| r.get::<_, bool>(0))
                    })
                })
                .await;
            match got {
                Ok(true) => return Ok(Some(slot)),
                Ok(false) => {
                    self.held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(key, slot));
                }
                Err(e) => {
                    self.held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(key, slot));
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Why another worker gave the server up, while it stays given up.
    async fn given_up(&self, server: String) -> Result<Option<String>, String> {
        self.with_client(move |c| {
            let server = server.clone();
            Box::pin(async move {
                c.query_opt(
                    "SELECT coalesce(given_up_why, '') FROM prebounce.server_pace
                     WHERE server = $1 AND given_up_until > clock_timestamp()",
                    &[&server],
                )
                .await
                .map(|r| r.map(|r| r.get::<_, String>(0)))
            })
        })
        .await
    }

    /// Reserves the next open at a server: returns how long to wait for it.
    async fn reserve_open(&self, server: String, pause: Duration) -> Result<Duration, String> {
        let pause = pause.as_secs_f64();
        let wait: f64 = self
            .with_client(move |c| {
                let server = server.clone();
                Box::pin(async move {
                    c.query_one(
                        "INSERT INTO prebounce.server_pace AS p (server, next_open)
                         VALUES ($1, clock_timestamp() + make_interval(secs => $2))
                         ON CONFLICT (server) DO UPDATE SET next_open =
                           greatest(p.next_open, p.backoff_until, clock_timestamp())
                           + make_interval(secs => $2)
                         RETURNING extract(epoch FROM (next_open - clock_timestamp()))::float8 - $2",
                        &[&server, &pause],
                    )
                    .await
                    .map(|r| r.get::<_, f64>(0))
                })
            })
            .await?;
        Ok(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }

    async fn open_place(
        self: Arc<Self>,
        key: i32,
        pace: String,
        limit: usize,
        pause: Duration,
    ) -> Result<SharedPermit, BudgetRefusal> {
        loop {
            if let Some(why) = self
                .given_up(pace.clone())
                .await
                .map_err(BudgetRefusal::Unreachable)?
            {
                return Err(BudgetRefusal::GivenUp(why));
            }
            if let Some(slot) = self
                .try_place(key, limit)
                .await
                .map_err(BudgetRefusal::Unreachable)?
            {
                let place = Place {
                    key: (key, slot),
                    releases: self.releases.clone(),
                };
                let wait = self
                    .reserve_open(pace, pause)
                    .await
                    .map_err(BudgetRefusal::Unreachable)?;
                tokio::time::sleep(wait).await;
                return Ok(SharedPermit::new(place));
            }
            tokio::time::sleep(POLL + Duration::from_millis(fastrand::u64(0..50))).await;
        }
    }
}

async fn connect(url: String, runtime: tokio::runtime::Handle) -> Result<Client, String> {
    let masked = super::db::masked(&url);
    let (client, connection) = runtime
        .spawn(async move { tokio_postgres::connect(&url, NoTls).await })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot reach the queue {masked}: {e}"))?;
    runtime.spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl SharedBudget for PgBudget {
    fn open<'a>(
        &'a self,
        egress: &'a Egress,
        server: IpAddr,
        limit: usize,
        pause: Duration,
    ) -> BudgetFuture<'a> {
        let key = self.inner.key(egress, server);
        let pace = self.inner.pace_key(egress, server);
        // The work runs on the budget's runtime, so a probe's runtime ending mid-wait cannot
        // strand a lock half taken; dropping the wait drops the place it got.
        let me = Arc::clone(&self.inner);
        let task = self
            .inner
            .handle
            .spawn(async move { me.open_place(key, pace, limit, pause).await });
        Box::pin(async move {
            let mut task = task;
            let _abort = AbortOnDrop(task.abort_handle());
            (&mut task)
                .await
                .map_err(|e| BudgetRefusal::Unreachable(e.to_string()))?
        })
    }

    fn back_off(&self, egress: &Egress, server: IpAddr, wait: Duration) {
        let pace = self.inner.pace_key(egress, server);
        let me = Arc::clone(&self.inner);
        let secs = wait.as_secs_f64();
        self.inner.handle.spawn(async move {
            let _ = me
                .with_client(move |c| {
                    let pace = pace.clone();
                    Box::pin(async move {
                        c.execute(
                            "INSERT INTO prebounce.server_pace AS p (server, next_open, backoff_until)
                             VALUES ($1, clock_timestamp(), clock_timestamp() + make_interval(secs => $2))
                             ON CONFLICT (server) DO UPDATE SET backoff_until =
                               greatest(p.backoff_until, clock_timestamp() + make_interval(secs => $2))",
                            &[&pace, &secs],
                        )
                        .await
                    })
                })
                .await;
        });
    }

    fn give_up(&self, egress: &Egress, server: IpAddr, why: &str, wait: Duration) {
        let pace = self.inner.pace_key(egress, server);
        let me = Arc::clone(&self.inner);
        let (why, secs) = (why.replace('\0', ""), wait.as_secs_f64());
        self.inner.handle.spawn(async move {
            let _ = me
                .with_client(move |c| {
                    let (pace, why) = (pace.clone(), why.clone());
                    Box::pin(async move {
                        c.execute(
                            "INSERT INTO prebounce.server_pace AS p
                               (server, next_open, given_up_until, given_up_why)
                             VALUES ($1, clock_timestamp(),
                               clock_timestamp() + make_interval(secs => $2), $3)
                             ON CONFLICT (server) DO UPDATE SET
                               given_up_until = greatest(p.given_up_until, excluded.given_up_until),
                               given_up_why = excluded.given_up_why",
                            &[&pace, &secs, &why],
                        )
                        .await
                    })
                })
                .await;
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts the budget's task when the probe stops waiting for it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
