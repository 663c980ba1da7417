//! The queue's tables and statements (PostgreSQL, in the schema `prebounce`, beside the store's
//! tables when the queue database is also the job's store).
//!
//! - `jobs`: one a submitted list: its options as text (verify's arguments), its level, the
//!   store its units write to, its state.
//! - `job_input`: the list's bytes, so `collect` on any machine writes the lists.
//! - `job_addresses`: each distinct well-formed address of the list with its domain.
//! - `job_domains`: at level smtp, each domain's first mail server (from the `mx` units).
//! - `units`: the network work, claimed under a lease.
//! - `server_pace`: the politeness budget's per-server state (`budget`).

use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use super::{ServerGroup, UnitKind, group_by_server};
pub use crate::store::postgres::{SCHEMA_LOCK, describe, is_postgres_url, masked};

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS prebounce;
CREATE TABLE IF NOT EXISTS prebounce.jobs (
    id          BIGSERIAL PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    input_name  TEXT NOT NULL,
    args        TEXT[] NOT NULL,
    level       TEXT NOT NULL,
    store       TEXT NOT NULL,          -- '': the queue's own database
    state       TEXT NOT NULL,          -- running | done | failed
    rows_total  BIGINT NOT NULL,
    addresses   BIGINT NOT NULL,
    domains     BIGINT NOT NULL,
    unit_size   INTEGER NOT NULL,       -- addresses per unit at most
    files       JSONB NOT NULL DEFAULT '{}',  -- option → the contents of the file it named
    finished_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS prebounce.job_input (
    job   BIGINT NOT NULL REFERENCES prebounce.jobs ON DELETE CASCADE,
    seq   INTEGER NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (job, seq)
);
CREATE TABLE IF NOT EXISTS prebounce.job_addresses (
    job     BIGINT NOT NULL REFERENCES prebounce.jobs ON DELETE CASCADE,
    domain  TEXT NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_addresses_by_job ON prebounce.job_addresses (job, domain);
CREATE TABLE IF NOT EXISTS prebounce.job_domains (
    job    BIGINT NOT NULL REFERENCES prebounce.jobs ON DELETE CASCADE,
    domain TEXT NOT NULL,
    server TEXT NOT NULL,
    PRIMARY KEY (job, domain)
);
CREATE TABLE IF NOT EXISTS prebounce.units (
    id          BIGSERIAL PRIMARY KEY,
    job         BIGINT NOT NULL REFERENCES prebounce.jobs ON DELETE CASCADE,
    kind        TEXT NOT NULL,          -- dns | mx | smtp
    label       TEXT NOT NULL,          -- the server (smtp), else the first domain
    domains     TEXT[] NOT NULL,
    addresses   TEXT[] NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued',  -- queued | running | done | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    lease_until TIMESTAMPTZ,
    started_at  TIMESTAMPTZ,
    done_at     TIMESTAMPTZ,
    error       TEXT,
    stats       JSONB                   -- the unit's network work (summary.json's dns, smtp)
);
CREATE INDEX IF NOT EXISTS units_open ON prebounce.units (id) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS units_by_job ON prebounce.units (job, kind, state);
CREATE TABLE IF NOT EXISTS prebounce.server_pace (
    server        TEXT PRIMARY KEY,
    next_open     TIMESTAMPTZ NOT NULL,
    backoff_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
-- A server a worker gave up on (it failed every session): the others skip it until then.
ALTER TABLE prebounce.server_pace
    ADD COLUMN IF NOT EXISTS given_up_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    ADD COLUMN IF NOT EXISTS given_up_why TEXT;
";

/// Bytes of the list per `job_input` row.
const INPUT_PIECE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue {url}: {}", describe(source))]
    Db {
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{0}")]
    Job(String),
}

impl QueueError {
    /// Whether the database could not be reached (a restart, a partition): worth retrying.
    pub fn is_connection(&self) -> bool {
        match self {
            QueueError::Db { source, .. } => {
                source.is_closed()
                    || source.as_db_error().is_none_or(|e| {
                        e.code().code().starts_with("08") || e.code().code().starts_with("57P")
                    })
            }
            QueueError::Job(_) => false,
        }
    }
}

impl QueueError {
    /// Refused access: a wrong password or user, no such database (the user fixes the URL).
    pub fn is_access(&self) -> bool {
        match self {
            QueueError::Db { source, .. } => source.as_db_error().is_some_and(|e| {
                let code = e.code().code();
                code.starts_with("28") || code == "3D000"
            }),
            QueueError::Job(_) => false,
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub input_name: String,
    pub args: Vec<String>,
    pub level: String,
    pub store: String,
    pub rows: u64,
    /// Distinct well-formed addresses by domain (ASCII), in first-seen order.
    pub domains: Vec<(String, Vec<String>)>,
    /// Addresses per unit at most (smaller units spread one big server over more workers;
    /// larger ones keep more of its work on one worker's connections).
    pub unit_size: usize,
    /// Options that named a file (--providers, --priors) with the file's contents: the
    /// workers' machines do not have the file.
    pub files: Vec<(String, String)>,
    /// When it was submitted (unix seconds): the moment its stored verdicts are judged as of.
    pub submitted_at: i64,
}

/// A job as the workers and `collect` read it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    /// When it was submitted, in microseconds: with the id, names the job's run in a store
    /// that several queues share.
    pub submitted_us: i64,
    pub input_name: String,
    pub args: Vec<String>,
    pub level: String,
    pub store: String,
    pub state: String,
    pub rows: i64,
    pub addresses: i64,
    pub domains: i64,
    /// See [`NewJob::files`].
    pub files: Vec<(String, String)>,
}

/// A claimed unit.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: i64,
    pub job: i64,
    /// None: a kind this build does not know (a newer prebounce queued it); the attempt fails.
    pub kind: Option<UnitKind>,
    /// The kind as stored.
    pub kind_name: String,
    pub label: String,
    pub domains: Vec<String>,
    pub addresses: Vec<String>,
    pub attempts: i32,
}

/// Units of a job by kind and state, for `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnitCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// Where a job stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    pub job: i64,
    pub input: String,
    pub level: String,
    pub state: String,
    pub rows: i64,
    pub addresses: i64,
    pub domains: i64,
    /// Distinct mail servers found (level smtp, once the `mx` units are done).
    pub servers: i64,
    /// Addresses whose unit is done.
    pub addresses_done: i64,
    pub units: std::collections::BTreeMap<String, UnitCounts>,
    /// Workers holding a unit now.
    pub workers: Vec<String>,
    /// Seconds since the first unit was claimed.
    pub elapsed_seconds: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// The network work of the units done, summed: what one machine's summary.json counts in
    /// `dns` and `smtp` (collect's own summary counts only collect's, which is none).
    pub network: NetworkWork,
    /// Units given up on, with their last error.
    pub failed_units: Vec<FailedUnit>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetworkWork {
    pub dns_queries: i64,
    pub smtp_sessions: i64,
    pub rcpt_commands: i64,
    pub deferred: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedUnit {
    pub unit: i64,
    pub kind: String,
    pub label: String,
    pub attempts: i32,
    pub error: String,
}

/// What ending a unit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Recorded,
    /// The lease had passed to another worker: nothing recorded (the verdicts are in the store
    /// already, by address: nothing is counted twice).
    LeaseLost,
}

/// One connection to the queue.
pub struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    /// Connects and creates the queue's tables if they are missing (under a lock, so two
    /// processes creating them at once do it once).
    pub fn connect(url: &str) -> Result<Queue, QueueError> {
        let mut client = Client::connect(url, NoTls).map_err(|source| QueueError::Db {
            url: masked(url),
            source,
        })?;
        let q = |client: &mut Client| -> Result<(), postgres::Error> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()
        };
        q(&mut client).map_err(|source| QueueError::Db {
            url: masked(url),
            source,
        })?;
        Ok(Queue {
            client,
            url: url.to_owned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, source: postgres::Error) -> QueueError {
        QueueError::Db {
            url: masked(&self.url),
            source,
        }
    }

    /// Queues a job: its list's bytes (read by `input`), its addresses and its first units.
    /// Returns the job's id.
    pub fn submit(
        &mut self,
        job: &NewJob,
        mut input: impl std::io::Read,
    ) -> Result<i64, QueueError> {
        let url = self.url.clone();
        let err = |source| QueueError::Db {
            url: masked(&url),
            source,
        };
        let mut tx = self.client.transaction().map_err(err)?;
        let addresses: usize = job.domains.iter().map(|(_, a)| a.len()).sum();
        let id: i64 = tx
            .query_one(
                "INSERT INTO prebounce.jobs (input_name, args, level, store, state, rows_total,
                   addresses, domains, unit_size, files, created_at)
                 VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9::text::jsonb,
                   to_timestamp($10::int8)) RETURNING id",
                &[
                    &job.input_name,
                    &job.args,
                    &job.level,
                    &job.store,
                    &(job.rows as i64),
                    &(addresses as i64),
                    &(job.domains.len() as i64),
                    &(job.unit_size.clamp(1, i32::MAX as usize) as i32),
                    &serde_json::Value::Object(
                        job.files
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect(),
                    )
                    .to_string(),
                    &job.submitted_at,
                ],
            )
            .map_err(err)?
            .get(0);
        let mut buf = vec![0u8; INPUT_PIECE];
        let mut seq = 0i32;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(QueueError::Job(format!("cannot read the list: {e}"))),
                }
            }
            if filled == 0 {
                break;
            }
            tx.execute(
                "INSERT INTO prebounce.job_input (job, seq, bytes) VALUES ($1, $2, $3)",
                &[&id, &seq, &&buf[..filled]],
            )
            .map_err(err)?;
            seq += 1;
            if filled < buf.len() {
                break;
            }
        }
        // The addresses, 10,000 a statement.
        let mut domains = Vec::new();
        let mut addrs = Vec::new();
        for (domain, list) in &job.domains {
            for a in list {
                domains.push(domain.as_str());
                addrs.push(a.as_str());
                if addrs.len() == 10_000 {
                    insert_addresses(&mut tx, id, &domains, &addrs).map_err(err)?;
                    domains.clear();
                    addrs.clear();
                }
            }
        }
        insert_addresses(&mut tx, id, &domains, &addrs).map_err(err)?;
        let kind = match job.level.as_str() {
            "smtp" => Some(UnitKind::Mx),
            "dns" => Some(UnitKind::Dns),
            _ => None,
        };
        if let Some(kind) = kind {
            for unit in super::cut_domains(&job.domains, super::DOMAINS_PER_UNIT, job.unit_size) {
                let domains: Vec<String> = unit.iter().map(|(d, _)| d.clone()).collect();
                let addresses: Vec<String> = match kind {
                    // An mx unit needs the domains only.
                    UnitKind::Mx => Vec::new(),
                    _ => unit.into_iter().flat_map(|(_, a)| a).collect(),
                };
                insert_unit(&mut tx, id, kind, &domains[0], &domains, &addresses).map_err(err)?;
            }
        }
        finish_if_done(&mut tx, id).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    pub fn job(&mut self, id: i64) -> Result<Job, QueueError> {
        let row = self
            .client
            .query_opt(
                "SELECT id, input_name, args, level, store, state, rows_total, addresses, domains,
                   files::text, (extract(epoch FROM created_at) * 1000000)::int8
                 FROM prebounce.jobs WHERE id = $1",
                &[&id],
            )
            .map_err(|e| self.err(e))?
            .ok_or_else(|| QueueError::Job(format!("no job {id} in the queue")))?;
        Ok(Job {
            id: row.get(0),
            input_name: row.get(1),
            args: row.get(2),
            level: row.get(3),
            store: row.get(4),
            state: row.get(5),
            rows: row.get(6),
            addresses: row.get(7),
            domains: row.get(8),
            submitted_us: row.get(10),
            files: serde_json::from_str::<std::collections::BTreeMap<String, String>>(
                row.get::<_, &str>(9),
            )
            .unwrap_or_default()
            .into_iter()
            .collect(),
        })
    }

    /// Copies the job's list into `out`.
    pub fn copy_input(&mut self, id: i64, out: &mut impl std::io::Write) -> Result<(), QueueError> {
        let pieces: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM prebounce.job_input WHERE job = $1",
                &[&id],
            )
            .map_err(|e| self.err(e))?
            .get(0);
        for seq in 0..pieces as i32 {
            let row = self
                .client
                .query_one(
                    "SELECT bytes FROM prebounce.job_input WHERE job = $1 AND seq = $2",
                    &[&id, &seq],
                )
                .map_err(|e| self.err(e))?;
            let bytes: &[u8] = row.get(0);
            out.write_all(bytes)
                .map_err(|e| QueueError::Job(format!("cannot write the list: {e}")))?;
        }
        Ok(())
    }

    /// Claims the next unit of a running job (queued, or whose lease has passed), for `lease`.
    /// A unit out of attempts is marked failed instead, and the next one is tried.
    pub fn claim(&mut self, worker: &str, lease: Duration) -> Result<Option<Unit>, QueueError> {
        loop {
            let row = self
                .client
                .query_opt(
                    "WITH next AS (
                       SELECT u.id FROM prebounce.units u
                       JOIN prebounce.jobs j ON j.id = u.job AND j.state = 'running'
                       WHERE u.state = 'queued' OR (u.state = 'running' AND u.lease_until < now())
                       ORDER BY u.id LIMIT 1 FOR UPDATE OF u SKIP LOCKED)
                     UPDATE prebounce.units u SET state = 'running', worker = $1,
                       lease_until = now() + make_interval(secs => $2), attempts = u.attempts + 1,
                       started_at = coalesce(u.started_at, now())
                     FROM next WHERE u.id = next.id
                     RETURNING u.id, u.job, u.kind, u.label, u.domains, u.addresses, u.attempts",
                    &[&worker, &lease.as_secs_f64()],
                )
                .map_err(|e| self.err(e))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let unit = Unit {
                id: row.get(0),
                job: row.get(1),
                kind: UnitKind::parse(row.get(2)),
                kind_name: row.get(2),
                label: row.get(3),
                domains: row.get(4),
                addresses: row.get(5),
                attempts: row.get(6),
            };
            if unit.attempts > super::MAX_ATTEMPTS {
                let why = format!(
                    "given up after {} attempts (each ended without finishing: the worker died or failed)",
                    super::MAX_ATTEMPTS
                );
                self.fail(&unit, worker, &why, true)?;
                continue;
            }
            return Ok(Some(unit));
        }
    }

    /// Extends a unit's lease; false when it is no longer this worker's.
    pub fn renew(&mut self, unit: i64, worker: &str, lease: Duration) -> Result<bool, QueueError> {
        let n = self
            .client
            .execute(
                "UPDATE prebounce.units SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&unit, &worker, &lease.as_secs_f64()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Gives a unit back for another worker (a stop, or a failure that was not the unit's),
    /// without counting the attempt.
    pub fn hand_back(&mut self, unit: i64, worker: &str) -> Result<(), QueueError> {
        self.client
            .execute(
                "UPDATE prebounce.units SET state = 'queued', worker = NULL, lease_until = NULL,
                   attempts = greatest(attempts - 1, 0)
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&unit, &worker],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// An attempt at a unit failed: queued again while attempts are left (or `for_good`), else
    /// failed with `why` (the job then ends failed).
    pub fn fail(
        &mut self,
        unit: &Unit,
        worker: &str,
        why: &str,
        for_good: bool,
    ) -> Result<(), QueueError> {
        let url = self.url.clone();
        let err = |source| QueueError::Db {
            url: masked(&url),
            source,
        };
        let mut tx = self.client.transaction().map_err(err)?;
        let last = for_good || unit.attempts >= super::MAX_ATTEMPTS;
        tx.execute(
            "UPDATE prebounce.units SET state = $3, worker = NULL, lease_until = NULL, error = $4,
               done_at = CASE WHEN $3 = 'failed' THEN now() END
             WHERE id = $1 AND (worker = $2 OR state = 'running')",
            &[
                &unit.id,
                &worker,
                &if last { "failed" } else { "queued" },
                &why,
            ],
        )
        .map_err(err)?;
        if last {
            lock_job(&mut tx, unit.job).map_err(err)?;
            finish_if_done(&mut tx, unit.job).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Records a unit done (an `mx` unit with each domain's server); when it was the job's
    /// last `mx` unit, queues the job's server groups; when nothing is left, the job is done.
    pub fn complete(
        &mut self,
        unit: &Unit,
        worker: &str,
        servers: &[(String, String)],
        stats: Option<&serde_json::Value>,
    ) -> Result<Ended, QueueError> {
        let url = self.url.clone();
        let err = |source| QueueError::Db {
            url: masked(&url),
            source,
        };
        let mut tx = self.client.transaction().map_err(err)?;
        // Completions of one job take turns: the last mx unit plans the groups exactly once.
        lock_job(&mut tx, unit.job).map_err(err)?;
        let n = tx
            .execute(
                "UPDATE prebounce.units SET state = 'done', done_at = now(), lease_until = NULL,
                   stats = $3::text::jsonb
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&unit.id, &worker, &stats.map(|s| s.to_string())],
            )
            .map_err(err)?;
        if n == 0 {
            return Ok(Ended::LeaseLost);
        }
        if unit.kind == Some(UnitKind::Mx) {
            let (domains, found): (Vec<&str>, Vec<&str>) = servers
                .iter()
                .map(|(d, s)| (d.as_str(), s.as_str()))
                .unzip();
            tx.execute(
                "INSERT INTO prebounce.job_domains (job, domain, server)
                 SELECT $1, d, s FROM unnest($2::text[], $3::text[]) AS t(d, s)
                 ON CONFLICT (job, domain) DO UPDATE SET server = excluded.server",
                &[&unit.job, &domains, &found],
            )
            .map_err(err)?;
            let open_mx: i64 = tx
                .query_one(
                    "SELECT count(*) FROM prebounce.units WHERE job = $1 AND kind = 'mx'
                     AND state IN ('queued', 'running')",
                    &[&unit.job],
                )
                .map_err(err)?
                .get(0);
            if open_mx == 0 {
                plan_server_groups(&mut tx, unit.job).map_err(err)?;
            }
        }
        finish_if_done(&mut tx, unit.job).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Ended::Recorded)
    }

    /// Where a job stands.
    pub fn status(&mut self, id: i64) -> Result<JobStatus, QueueError> {
        let job = self.job(id)?;
        let mut units = std::collections::BTreeMap::<String, UnitCounts>::new();
        for row in self
            .client
            .query(
                "SELECT kind, state, count(*) FROM prebounce.units WHERE job = $1 GROUP BY 1, 2",
                &[&id],
            )
            .map_err(|e| self.err(e))?
        {
            let counts = units.entry(row.get::<_, String>(0)).or_default();
            let n: i64 = row.get(2);
            match row.get::<_, &str>(1) {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                _ => counts.failed = n,
            }
        }
        let row = self
            .client
            .query_one(
                "SELECT
                   (SELECT count(DISTINCT server) FROM prebounce.job_domains
                      WHERE job = $1 AND server <> ''),
                   (SELECT coalesce(sum(cardinality(addresses)), 0)::bigint FROM prebounce.units
                      WHERE job = $1 AND state = 'done' AND kind <> 'mx'),
                   (SELECT extract(epoch FROM (coalesce(j.finished_at, now()) - min(u.started_at)))::float8
                      FROM prebounce.units u JOIN prebounce.jobs j ON j.id = u.job
                      WHERE u.job = $1 GROUP BY j.finished_at),
                   (SELECT coalesce(array_agg(DISTINCT worker), '{}') FROM prebounce.units
                      WHERE job = $1 AND state = 'running' AND lease_until > now()),
                   (SELECT jsonb_build_array(
                      coalesce(sum((stats->'dns'->>'queries')::bigint), 0),
                      coalesce(sum((stats->'smtp'->>'sessions')::bigint), 0),
                      coalesce(sum((stats->'smtp'->>'rcpt_commands')::bigint), 0),
                      coalesce(sum((stats->'smtp'->>'deferred')::bigint), 0))::text
                      FROM prebounce.units WHERE job = $1 AND state = 'done')",
                &[&id],
            )
            .map_err(|e| self.err(e))?;
        let addresses_done: i64 = row.get(1);
        let sums: Vec<i64> = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_default();
        let sum = |i: usize| sums.get(i).copied().unwrap_or(0);
        let network = NetworkWork {
            dns_queries: sum(0),
            smtp_sessions: sum(1),
            rcpt_commands: sum(2),
            deferred: sum(3),
        };
        let elapsed: Option<f64> = row.get(2);
        let failed_units = self
            .client
            .query(
                "SELECT id, kind, label, attempts, coalesce(error, '') FROM prebounce.units
                 WHERE job = $1 AND state = 'failed' ORDER BY id",
                &[&id],
            )
            .map_err(|e| self.err(e))?
            .into_iter()
            .map(|r| FailedUnit {
                unit: r.get(0),
                kind: r.get(1),
                label: r.get(2),
                attempts: r.get(3),
                error: r.get(4),
            })
            .collect();
        let eta = match job.state.as_str() {
            "running" => elapsed.and_then(|e| {
                super::eta(
                    addresses_done as u64,
                    job.addresses as u64,
                    Duration::from_secs_f64(e.max(0.0)),
                )
            }),
            _ => Some(Duration::ZERO),
        };
        Ok(JobStatus {
            job: id,
            input: job.input_name,
            level: job.level,
            state: job.state,
            rows: job.rows,
            addresses: job.addresses,
            domains: job.domains,
            servers: row.get(0),
            addresses_done,
            units,
            workers: row.get(3),
            elapsed_seconds: elapsed,
            eta_seconds: eta.map(|d| d.as_secs_f64()),
            network,
            failed_units,
        })
    }

    /// Whether any running job has a unit left to claim or in progress.
    pub fn has_open_work(&mut self) -> Result<bool, QueueError> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM prebounce.units u JOIN prebounce.jobs j
                   ON j.id = u.job AND j.state = 'running' WHERE u.state IN ('queued', 'running'))",
                &[],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }
}

fn insert_addresses(
    tx: &mut Transaction,
    job: i64,
    domains: &[&str],
    addresses: &[&str],
) -> Result<(), postgres::Error> {
    if addresses.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO prebounce.job_addresses (job, domain, address)
         SELECT $1, d, a FROM unnest($2::text[], $3::text[]) AS t(d, a)",
        &[&job, &domains, &addresses],
    )?;
    Ok(())
}

fn insert_unit(
    tx: &mut Transaction,
    job: i64,
    kind: UnitKind,
    label: &str,
    domains: &[String],
    addresses: &[String],
) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO prebounce.units (job, kind, label, domains, addresses)
         VALUES ($1, $2, $3, $4, $5)",
        &[&job, &kind.as_str(), &label, &domains, &addresses],
    )?;
    Ok(())
}

fn lock_job(tx: &mut Transaction, job: i64) -> Result<(), postgres::Error> {
    tx.execute(
        "SELECT 1 FROM prebounce.jobs WHERE id = $1 FOR UPDATE",
        &[&job],
    )?;
    Ok(())
}

/// The job's `smtp` units, from its addresses and their domains' servers.
fn plan_server_groups(tx: &mut Transaction, job: i64) -> Result<(), postgres::Error> {
    let unit_size: i32 = tx
        .query_one(
            "SELECT unit_size FROM prebounce.jobs WHERE id = $1",
            &[&job],
        )?
        .get(0);
    let rows = tx.query(
        "SELECT coalesce(d.server, ''), a.domain, a.address FROM prebounce.job_addresses a
         LEFT JOIN prebounce.job_domains d ON d.job = a.job AND d.domain = a.domain
         WHERE a.job = $1",
        &[&job],
    )?;
    let groups: Vec<ServerGroup> = group_by_server(
        rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))),
        unit_size as usize,
    );
    for g in groups {
        let label = if g.server.is_empty() {
            "(no mail server)".to_owned()
        } else {
            g.server.clone()
        };
        insert_unit(tx, job, UnitKind::Smtp, &label, &g.domains, &g.addresses)?;
    }
    Ok(())
}

/// Marks the job done (or failed, when a unit failed) once no unit is left to do.
fn finish_if_done(tx: &mut Transaction, job: i64) -> Result<(), postgres::Error> {
    tx.execute(
        "UPDATE prebounce.jobs SET finished_at = now(),
           state = CASE WHEN EXISTS (SELECT 1 FROM prebounce.units WHERE job = $1
                                     AND state = 'failed') THEN 'failed' ELSE 'done' END
         WHERE id = $1 AND state = 'running'
           AND NOT EXISTS (SELECT 1 FROM prebounce.units WHERE job = $1
                           AND state IN ('queued', 'running'))",
        &[&job],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked("postgres://bob:s3cret@db.example:5432/q"),
            "postgres://bob:***@db.example:5432/q"
        );
        assert_eq!(masked("postgres://bob@db/q"), "postgres://bob@db/q");
        assert_eq!(masked("postgres://db/q"), "postgres://db/q");
        // An '@' in the password: the last one ends the user part.
        assert_eq!(masked("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert!(is_postgres_url("postgresql://h/d") && !is_postgres_url("/tmp/x.sqlite3"));
    }
}
