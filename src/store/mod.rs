//! The store: an embedded database beside the stages, holding what earlier runs decided.
//!
//! - **Cache and resume.** Each decided verdict is committed as soon as it is known (the SMTP
//!   stage per round of sessions, the writer per chunk), with the options it was decided under
//!   and the run that decided it. A later run — or the same command started
//!   again after a crash, Ctrl-C or SIGKILL — answers those addresses from here without any
//!   network traffic, as long as the verdict is young enough (see [`CachePolicy`]). At level
//!   dns a verdict is its domain's, so it is also stored per domain, and a later run answers
//!   each address from its domain's verdict (one lookup a domain, not one an address).
//! - **Revalidation.** When an address is verified again, its previous verdict is kept beside
//!   the new one, so a run can list the addresses whose status changed (changes.csv).
//! - **Suppression.** Addresses and domains that must never be mailed (`prebounce suppress`).
//!
//! SQLite (rusqlite, bundled) and not a key-value store: one file, transactions, WAL so readers
//! never block the writer, and a busy timeout so two runs on one store take turns instead of
//! corrupting it.

mod codes;
mod policy;
pub mod postgres;
pub mod sqlite;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bounce::{Action, Kind};
use crate::clock::Clock;
use crate::model::smtp::CatchAll;
pub use crate::model::stored::{DecidedUnder, Previous, Prior, StoredDomain, Suppression};
pub use crate::model::time::date_of;

use crate::syntax::{self, Address, SyntaxOptions};

pub use policy::{
    CachePolicy, DOMAIN_MAX_AGE, DomainState, RowAnswer, UNKNOWN_MAX_AGE, answer_row, replaced,
};
pub use sqlite::SCHEMA_VERSION;
#[doc(hidden)]
pub use sqlite::version_1_sql;
pub use writer::{DnsVerdicts, Record, StoreWriter, Write};

/// How long a run waits, by default, for another run holding the store's write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a process uses the store: how long it waits for another run's write lock, and the clock
/// its timestamps and ages are read from.
#[derive(Debug, Clone, Copy)]
pub struct StoreAccess {
    pub busy_timeout: Duration,
    pub clock: Clock,
}

impl Default for StoreAccess {
    fn default() -> Self {
        StoreAccess {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            clock: Clock::System,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "the store {} is damaged or not a prebounce store ({detail}); move it away, or pass another --store or --no-store",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the store {} is locked by another prebounce run (waited {:.1}s); try again when it ends, or pass another --store",
        path.display(), waited.as_secs_f64()
    )]
    Locked { path: PathBuf, waited: Duration },
    #[error(
        "the store {} was written by a newer prebounce (schema {found}, this one knows {known}); upgrade, or pass another --store",
        path.display(), known = SCHEMA_VERSION
    )]
    Newer { path: PathBuf, found: u32 },
    #[error("cannot use the store {}: {source}", path.display())]
    Other {
        path: PathBuf,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "cannot connect to the store {}: {detail}; check the URL, that the server runs and lets this role in, or pass another --store",
        path.display()
    )]
    Unreachable { path: PathBuf, detail: String },
    #[error("cannot create the folder of the store {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Entry(String),
    #[error(
        "the store {} is a symbolic link, which prebounce does not write through; pass the file it points to with --store",
        path.display()
    )]
    Link { path: PathBuf },
    #[error(
        "the store {} is a folder; pass a file in it with --store (e.g. --store {}), or --no-store",
        path.display(), path.join("store.sqlite3").display()
    )]
    IsFolder { path: PathBuf },
    #[error(
        "{} is not a prebounce store (another program's database, left as it is); pass another --store or --no-store",
        path.display()
    )]
    NotAStore { path: PathBuf },
    #[error(
        "the store {} is read-only here and this command writes to it; make it (and its folder) writable, or pass a writable --store or --no-store",
        path.display()
    )]
    ReadOnly { path: PathBuf },
}

impl StoreError {
    /// The process's exit code for it: 2 for what the user can fix by passing another store or
    /// entry (a damaged, locked or newer store, an unusable entry), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            StoreError::Other { .. } | StoreError::Folder { .. } => 1,
            StoreError::Corrupt { .. }
            | StoreError::Locked { .. }
            | StoreError::Newer { .. }
            | StoreError::Entry(_)
            | StoreError::Link { .. }
            | StoreError::IsFolder { .. }
            | StoreError::NotAStore { .. }
            | StoreError::ReadOnly { .. }
            | StoreError::Unreachable { .. } => 2,
        }
    }
}

/// One imported bounce record as the store keeps it (table `bounces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBounce {
    /// With `recipient`, what makes a record the same one on a second import: `mid:` and the
    /// Message-ID, `hash:` and a hash of a message without one, `event:` and an ESP event id.
    pub source_key: String,
    /// The address key (as on the suppression list), or the recipient as written when it is
    /// not a usable address.
    pub recipient: String,
    /// Unix seconds: the report's own date, else the time of the import (`dated` false).
    pub event_at: i64,
    pub dated: bool,
    pub kind: Kind,
    pub reason: Option<String>,
    /// A soft bounce about the mailbox: counts toward the soft rule.
    pub counts_soft: bool,
    pub status: Option<String>,
    pub reply_code: Option<u16>,
    pub diagnostic: Option<String>,
    /// The file, with `#N` for the N-th message of an mbox.
    pub source: String,
    pub message_id: Option<String>,
    /// The receiving server the report names (host name or address), when it names one.
    pub remote_mta: Option<String>,
    /// The DSN action (failed, delayed, delivered …).
    pub action: Action,
}

/// The store settings of a `verify` run.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// Verdicts older than this are verified again.
    pub max_age: Duration,
    /// Ignore stored verdicts (those of an interrupted run of the same command excepted: they
    /// are this run's own work); new ones are still written.
    pub fresh: bool,
    /// Put addresses found invalid for a permanent reason on the suppression list.
    pub suppress_invalid: bool,
    /// How long to wait for another run's write lock.
    pub busy_timeout: Duration,
    /// The run this one belongs to, when it is not the command's own: a distributed job's
    /// (src/queue), whose units and whose collect are one run, so each answers from the
    /// verdicts the others decided as from its own.
    pub job_run: Option<JobRun>,
}

/// A distributed job's run in the store (see [`StoreOptions::job_run`]).
#[derive(Debug, Clone)]
pub struct JobRun {
    /// Names the run, instead of the command line.
    pub fingerprint: String,
    /// Marks the run finished when the lists are written: a worker's unit leaves it open (the
    /// job goes on), the collect finishes it.
    pub finish: bool,
    /// When the job was submitted (unix seconds): the ages of stored verdicts are read as of
    /// then, by every unit and by the collect alike. A verdict one unit answered from the
    /// store must still answer the collect days later, which would otherwise verify it again
    /// itself, from its own machine and outside the shared politeness budget.
    pub as_of: i64,
}

impl StoreOptions {
    /// The store for messages: a PostgreSQL URL with its password masked.
    pub fn shown(&self) -> String {
        match postgres_url(&self.path) {
            Some(url) => postgres::masked(url),
            None => self.path.display().to_string(),
        }
    }

    pub fn new(path: PathBuf) -> Self {
        StoreOptions {
            path,
            max_age: Duration::from_secs(30 * 86_400),
            fresh: false,
            suppress_invalid: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            job_run: None,
        }
    }
}

/// `$XDG_CACHE_HOME/prebounce/store.sqlite3` (or the platform's cache folder).
pub fn default_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("prebounce").join("store.sqlite3"))
}

/// The suppression list of a run, in memory: one hash lookup per row.
#[derive(Debug, Default)]
pub struct SuppressionSet(HashMap<String, Suppression>);

impl SuppressionSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry that suppresses `a` (its address first, then its domain).
    pub fn of(&self, a: &Address) -> Option<&Suppression> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .get(&a.dedup_key())
            .or_else(|| self.0.get(&format!("@{}", a.domain_ascii())))
    }
}

/// A suppression entry as stored: `user@domain` as its dedup key, or `@domain` (also written
/// `domain`) with the domain in ASCII.
pub fn suppression_entry(text: &str) -> Result<String, StoreError> {
    let text = text.trim();
    let opts = SyntaxOptions {
        allow_reserved_domains: true,
    };
    let bad = |e: syntax::SyntaxError| {
        StoreError::Entry(format!("{text:?} is not an address or a domain: {e}"))
    };
    match text.strip_prefix('@') {
        Some(domain) => syntax::check(&format!("postmaster@{domain}"), opts)
            .map(|a| format!("@{}", a.domain_ascii()))
            .map_err(bad),
        None if !text.contains('@') => syntax::check(&format!("postmaster@{text}"), opts)
            .map(|a| format!("@{}", a.domain_ascii()))
            .map_err(bad),
        None => syntax::check(text, opts)
            .map(|a| a.dedup_key())
            .map_err(bad),
    }
}

/// Where a run stands with respect to an interrupted one.
#[derive(Debug, Clone, Copy)]
pub struct RunStart {
    pub id: i64,
    /// When the run (or the interrupted run it resumes) started.
    pub started_at: i64,
    pub resumed: bool,
}

/// What a run stamps on each verdict it writes: its id ("this run's verdicts", for a resumed
/// run and changes.csv) and the options the verdicts were decided under (their sender is
/// written with the smtp-level ones only).
#[derive(Debug, Clone)]
pub struct RunStamp {
    pub run: i64,
    pub under: DecidedUnder,
}

/// What a store backend does for the stages; [`Store`] dispatches to the backend that
/// [`Store::open`] opened. A backend connection is used by one thread; each stage that
/// needs the store opens its own.
///
/// The stages call [`Store`], an enum of backends, rather than a `dyn Backend`: the lookups of a
/// chunk (inside [`Store::reading`]) run once a row, and a `match` over the backends inlines
/// into them where a virtual call would not — with SQLite the only backend, it compiles away.
/// A new backend implements this trait and adds a variant to [`Store`]; the stages stay as they
/// are.
pub trait Backend: Send + Sized {
    /// Where the store is, for messages.
    fn path(&self) -> &Path;

    /// Run `f` (which does lookups on this connection) in one read transaction: one snapshot
    /// and one lock for a chunk's lookups instead of one per row.
    fn reading<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError>;

    /// The stored verdict of an address key.
    fn lookup(&self, key: &str) -> Result<Option<Prior>, StoreError>;

    /// What the store knows of a domain (ASCII) at level dns: its verdict, which answers each of
    /// its addresses, and when one of its addresses was last verified at level smtp.
    fn lookup_domain(&self, domain: &str) -> Result<StoredDomain, StoreError>;

    /// Everything the store knows of domains at level dns, by domain, if it holds at most
    /// `limit` domains: one scan is far cheaper than a lookup each, but not for a store much
    /// larger than the list.
    fn all_domains(
        &self,
        limit: usize,
    ) -> Result<Option<HashMap<String, StoredDomain>>, StoreError>;

    /// Whether any verdict is stored (a first run over an empty store skips the lookups).
    fn has_verdicts(&self) -> Result<bool, StoreError>;

    /// Catch-all verdicts (domain, server, verdict) checked since `since`.
    fn catch_all_since(
        &self,
        since: i64,
    ) -> Result<Vec<(String, std::net::IpAddr, CatchAll)>, StoreError>;

    /// Resume the latest unfinished run of the same command started after `since`, or start one.
    fn begin_run(&self, fingerprint: &str, since: i64) -> Result<RunStart, StoreError>;

    /// Mark a run finished: the same command no longer resumes it.
    fn finish_run(&self, id: i64) -> Result<(), StoreError>;

    /// Add (or update the reason of) suppression entries; returns how many were new.
    fn suppress(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError>;

    /// Add the suppression entries not listed yet, leaving listed ones as they are (an import
    /// must not overwrite a reason someone gave by hand, and a second import must change
    /// nothing); returns how many were added.
    fn suppress_new(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError>;

    /// Store bounce records in one transaction; a record whose key and recipient are stored
    /// already is left as it is. Returns how many were new.
    fn add_bounces(&mut self, rows: &[StoredBounce]) -> Result<usize, StoreError>;

    /// Every stored record of a recipient (an address key), oldest first.
    fn bounces_of(&self, recipient: &str) -> Result<Vec<StoredBounce>, StoreError>;

    /// Hand every stored record dated at or after `since` to `each`, oldest first, without
    /// holding them all (a store may keep millions).
    fn each_bounce(
        &self,
        since: i64,
        each: &mut dyn FnMut(StoredBounce) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Remove a suppression entry; whether it was there.
    fn unsuppress(&self, entry: &str) -> Result<bool, StoreError>;

    /// The whole suppression list, by entry.
    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError>;

    /// Commit a batch of the writer's messages in one transaction (see [`StoreWriter`]), each
    /// verdict stamped with `stamp`; returns the number of address verdicts written. A verdict
    /// another run wrote becomes the previous one of the address it replaces; with
    /// `suppress_invalid`, addresses invalid for a permanent reason join the suppression list.
    fn commit(
        &mut self,
        batch: &[Write],
        stamp: &RunStamp,
        suppress_invalid: bool,
    ) -> Result<u64, StoreError>;
}

/// The PostgreSQL URL `path` is, if it is one.
fn postgres_url(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| postgres::is_postgres_url(s))
}

/// One connection to the store, whichever backend holds it.
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    /// Boxed: a connection's state is larger than SQLite's handle, and a store is moved
    /// between stages.
    Postgres(Box<postgres::PgStore>),
}

/// Call the same method on whichever backend `$store` is.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Open (creating it and its folder if needed) and migrate to the current schema.
    /// A `postgres://` URL opens the PostgreSQL backend; anything else is an SQLite file.
    pub fn open(path: &Path, access: StoreAccess) -> Result<Store, StoreError> {
        match postgres_url(path) {
            Some(url) => postgres::PgStore::open(url, access).map(|s| Store::Postgres(Box::new(s))),
            None => sqlite::SqliteStore::open(path, access).map(Store::Sqlite),
        }
    }

    /// Open for a command that only reads (`suppress list`, `suppress export`): as
    /// [`Store::open`] when the store can be written, else read-only, as it is (not migrated),
    /// so a store shared read-only still answers.
    pub fn open_to_read(path: &Path, access: StoreAccess) -> Result<Store, StoreError> {
        if postgres_url(path).is_some() {
            return Store::open(path, access);
        }
        match sqlite::SqliteStore::open(path, access) {
            Err(StoreError::ReadOnly { .. }) => {
                sqlite::SqliteStore::open_read_only(path, access).map(Store::Sqlite)
            }
            other => other.map(Store::Sqlite),
        }
    }

    pub fn path(&self) -> &Path {
        on_backend!(self, b => b.path())
    }

    /// Run `f` in one read transaction: one snapshot and one lock for a chunk's lookups
    /// instead of one per row.
    pub fn reading<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        on_backend!(self, b => b.reading(|| f(self)))
    }

    /// See [`Backend::lookup`].
    #[inline]
    pub fn lookup(&self, key: &str) -> Result<Option<Prior>, StoreError> {
        on_backend!(self, b => b.lookup(key))
    }

    /// See [`Backend::lookup_domain`].
    #[inline]
    pub fn lookup_domain(&self, domain: &str) -> Result<StoredDomain, StoreError> {
        on_backend!(self, b => b.lookup_domain(domain))
    }

    /// See [`Backend::all_domains`].
    pub fn all_domains(
        &self,
        limit: usize,
    ) -> Result<Option<HashMap<String, StoredDomain>>, StoreError> {
        on_backend!(self, b => b.all_domains(limit))
    }

    /// See [`Backend::has_verdicts`].
    pub fn has_verdicts(&self) -> Result<bool, StoreError> {
        on_backend!(self, b => b.has_verdicts())
    }

    /// See [`Backend::catch_all_since`].
    pub fn catch_all_since(
        &self,
        since: i64,
    ) -> Result<Vec<(String, std::net::IpAddr, CatchAll)>, StoreError> {
        on_backend!(self, b => b.catch_all_since(since))
    }

    /// See [`Backend::begin_run`].
    pub fn begin_run(&self, fingerprint: &str, since: i64) -> Result<RunStart, StoreError> {
        on_backend!(self, b => b.begin_run(fingerprint, since))
    }

    /// See [`Backend::finish_run`].
    pub fn finish_run(&self, id: i64) -> Result<(), StoreError> {
        on_backend!(self, b => b.finish_run(id))
    }

    /// See [`Backend::suppress`].
    pub fn suppress(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        on_backend!(self, b => b.suppress(entries))
    }

    /// See [`Backend::suppress_new`].
    pub fn suppress_new(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        on_backend!(self, b => b.suppress_new(entries))
    }

    /// See [`Backend::add_bounces`].
    pub fn add_bounces(&mut self, rows: &[StoredBounce]) -> Result<usize, StoreError> {
        on_backend!(self, b => b.add_bounces(rows))
    }

    /// See [`Backend::bounces_of`].
    pub fn bounces_of(&self, recipient: &str) -> Result<Vec<StoredBounce>, StoreError> {
        on_backend!(self, b => b.bounces_of(recipient))
    }

    /// See [`Backend::each_bounce`].
    pub fn each_bounce(
        &self,
        since: i64,
        mut each: impl FnMut(StoredBounce) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.each_bounce(since, &mut each))
    }

    /// See [`Backend::unsuppress`].
    pub fn unsuppress(&self, entry: &str) -> Result<bool, StoreError> {
        on_backend!(self, b => b.unsuppress(entry))
    }

    /// See [`Backend::suppressions`].
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        on_backend!(self, b => b.suppressions())
    }

    /// The suppression list of a run, in memory.
    pub fn suppression_set(&self) -> Result<SuppressionSet, StoreError> {
        Ok(SuppressionSet(
            self.suppressions()?
                .into_iter()
                .map(|s| (s.entry.clone(), s))
                .collect(),
        ))
    }

    /// See [`Backend::commit`].
    fn commit(
        &mut self,
        batch: &[Write],
        stamp: &RunStamp,
        suppress_invalid: bool,
    ) -> Result<u64, StoreError> {
        on_backend!(self, b => b.commit(batch, stamp, suppress_invalid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalized() {
        assert_eq!(
            suppression_entry(" Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        assert_eq!(suppression_entry("@Example.com").unwrap(), "@example.com");
        assert_eq!(suppression_entry("bücher.de").unwrap(), "@xn--bcher-kva.de");
        assert!(suppression_entry("not an address@").is_err());
    }
}
