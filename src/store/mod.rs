//! Storage: one contract ([`Store`]), made of one trait per table group, and one
//! implementation ([`SqlStore`]) that runs the same SQL on SQLite (the embedded default) or
//! PostgreSQL (several replicas), chosen by the database URL ([`pool`] says what differs).
//! Queries are checked at run time, so building needs no database; one conformance story
//! (tests/it/store/) runs every method on both backends.
//!
//! Blobs (captures, diffs, baselines' images) live in a directory or an S3 bucket, and baseline
//! files on disk, see [`blobs`].

mod alerts;
mod baselines;
pub mod blobs;
mod deliveries;
mod ignores;
mod inspect;
mod jobs;
mod masks;
mod monitors;
mod objects;
mod outbox;
mod pool;
mod records;
mod retention;
mod runs;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use alerts::{AlertStore, GroupBuilder, GroupForming};
pub use baselines::BaselineStore;
pub use deliveries::DeliveryStore;
pub use ignores::IgnoreStore;
pub use inspect::Inspect;
pub use jobs::{JobFailure, JobStore};
pub use masks::{MAX_MASKS, MaskAdded, MaskStore};
pub use monitors::MonitorStore;
pub use records::*;
pub use retention::RetentionStore;
pub use runs::RunStore;
pub use sessions::SessionStore;

use crate::config::MonitorName;
use crate::ids::{AlertId, AssetId, BaselineId, JobId, MessageId, RunId};
use crate::time::Timestamp;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying again later may succeed (the database is busy, restarting, unreachable,
    /// or its disk is full or failing: space and devices come back).
    pub fn is_retryable(&self) -> bool {
        self.storage_fault().is_some() || self.is_unavailable()
    }

    fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else { return false };
        match e {
            // A connection cut mid-conversation surfaces as I/O, TLS or protocol trouble.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included (sqlx
                // reports 517 for BUSY_SNAPSHOT, 262 for LOCKED_SHAREDCACHE …).
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    return matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6));
                }
                // PostgreSQL: serialization, deadlock, admin shutdown and connection classes.
                matches!(code.as_ref(), "40001" | "40P01" | "57P01" | "57P03") || code.starts_with("08")
            }
            _ => false,
        }
    }

    /// The database's disk is full (`storage_full`) or failing (`storage_error`): SQLite's
    /// `SQLITE_FULL` and `SQLITE_IOERR`/`READONLY`/`CANTOPEN` (extended codes included),
    /// PostgreSQL's `disk_full` and `io_error`. A corrupt database is no passing fault: it stays
    /// a `database_error`.
    pub fn storage_fault(&self) -> Option<&'static str> {
        let StoreError::Database(sqlx::Error::Database(db)) = self else { return None };
        let code = db.code().unwrap_or_default();
        // SQLite's codes are numbers, and so are many of PostgreSQL's SQLSTATEs (53100): tell
        // them apart by the error's type, not by the code's shape.
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            return match code.parse::<i32>().map(|c| c & 0xff) {
                Ok(13) => Some("storage_full"),
                Ok(8 | 10 | 14) => Some("storage_error"),
                _ => None,
            };
        }
        match code.as_ref() {
            "53100" => Some("storage_full"),
            "58030" => Some("storage_error"),
            _ => None,
        }
    }

    /// Stable machine-readable code for logs and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl => "unsupported_database_url",
            StoreError::Migrate(_) => "migration_failed",
            StoreError::Database(_) => match self.storage_fault() {
                Some(code) => code,
                None if self.is_unavailable() => "database_unavailable",
                None => "database_error",
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The file of a `sqlite://path?…` URL (none for `:memory:` or another backend).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    // As sqlx reads it: `my%20dir` is `my dir`.
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path.as_ref()))
}

/// Where `url` points, for a message: the SQLite file, or PostgreSQL's host, port and database
/// (never the password).
pub fn describe_url(url: &str) -> String {
    if let Some(file) = sqlite_file(url) {
        return file.display().to_string();
    }
    match url::Url::parse(url) {
        Ok(u) if u.scheme().starts_with("postgres") => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}{} (PostgreSQL)", u.host_str().unwrap_or("localhost"), u.path())
        }
        _ => "(the configured database_url)".to_owned(),
    }
}

/// Connects to `url` (`sqlite://path`, `postgres://…`) and runs pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(open(url, max_connections).await?))
}

/// [`connect`], with the [`Inspect`] reads too (tests, tools).
pub async fn connect_for_inspection(url: &str, max_connections: u32) -> Result<Arc<dyn InspectStore>> {
    Ok(Arc::new(open(url, max_connections).await?))
}

/// A store with the reads the daemon does not need.
pub trait InspectStore: Store + Inspect {}

impl<T: Store + Inspect> InspectStore for T {}

async fn open(url: &str, max_connections: u32) -> Result<SqlStore> {
    let pool = if url.starts_with("sqlite:") {
        pool::Pool::sqlite(url, max_connections).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        pool::Pool::postgres(url, max_connections).await?
    } else {
        return Err(StoreError::UnsupportedUrl);
    };
    Ok(SqlStore { pool })
}

/// The store on either backend.
pub struct SqlStore {
    pool: pool::Pool,
}

/// Everything the daemon keeps in its database. Every method is one transaction. Times are
/// passed in, never read from the database's clock, so replicas and tests agree on "now".
pub trait Store:
    Database
    + MonitorStore
    + RunStore
    + JobStore
    + DeliveryStore
    + BaselineStore
    + AlertStore
    + RetentionStore
    + SessionStore
    + IgnoreStore
    + MaskStore
{
}

impl<T> Store for T where
    T: Database
        + MonitorStore
        + RunStore
        + JobStore
        + DeliveryStore
        + BaselineStore
        + AlertStore
        + RetentionStore
        + SessionStore
        + IgnoreStore
        + MaskStore
{
}

/// The connection itself.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// A trivial query: is the database reachable?
    async fn ping(&self) -> Result<()>;
    /// A trivial write, committed: does the database take writes (not read-only, not full)?
    async fn check_writable(&self, now: Timestamp) -> Result<()>;
    async fn close(&self);
}

#[async_trait]
impl Database for SqlStore {
    fn backend(&self) -> Backend {
        self.pool.backend()
    }

    async fn ping(&self) -> Result<()> {
        pool::on_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(drop))?;
        Ok(())
    }

    async fn check_writable(&self, now: Timestamp) -> Result<()> {
        use pool::Dialect;
        pool::on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            sqlx::query(
                "INSERT INTO readiness (id, checked_at) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn close(&self) {
        pool::on_pool!(self, |p| p.close().await)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::StoreError;

    /// A server error with a SQLSTATE, as PostgreSQL reports them (its own error type cannot be
    /// built outside sqlx).
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> StoreError {
        StoreError::Database(sqlx::Error::Database(Box::new(ServerError(code))))
    }

    #[test]
    fn server_sqlstates_are_not_read_as_sqlite_codes() {
        // 53100 & 0xff would be 108 and 22026 & 0xff would be 10 (SQLITE_IOERR) if read as SQLite's.
        assert_eq!((server("53100").code(), server("53100").is_retryable()), ("storage_full", true));
        assert_eq!(server("58030").code(), "storage_error");
        assert_eq!((server("22026").code(), server("22026").is_retryable()), ("database_error", false));
        assert_eq!(server("57P01").code(), "database_unavailable");
        assert_eq!(server("08006").code(), "database_unavailable");
    }

    /// A write that lost a race to another connection's commit gets SQLite's extended code
    /// SQLITE_BUSY_SNAPSHOT (517): busy, so worth another try — not a permanent database error.
    #[tokio::test]
    async fn sqlite_extended_busy_codes_are_retryable() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut a = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut b = sqlx::SqliteConnection::connect(&url).await.unwrap();
        a.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        a.execute("BEGIN; SELECT * FROM t").await.unwrap();
        b.execute("INSERT INTO t VALUES (2)").await.unwrap();
        let lost = a.execute("INSERT INTO t VALUES (3)").await.unwrap_err();
        let sqlx::Error::Database(db) = &lost else { panic!("{lost:?}") };
        assert_eq!(db.code().as_deref(), Some("517"), "{lost:?}");
        let error = StoreError::Database(lost);
        assert!(error.is_retryable(), "{error:?}");
        assert_eq!(error.code(), "database_unavailable");
    }
}
