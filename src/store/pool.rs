//! The connection pool of either backend, and the little that differs between them. Every
//! query is written once, as SQL both backends accept (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`, partial indexes), and run through [`on_pool!`], which type-checks the same code
//! against each backend's pool. The two differences come from [`Dialect`]:
//!
//! - claiming queue work: PostgreSQL locks the row with `FOR UPDATE SKIP LOCKED` so workers on
//!   several machines never take the same one; SQLite has a single writer, which already makes
//!   the claim's `UPDATE … RETURNING` atomic;
//! - starting a write transaction: SQLite's must be `BEGIN IMMEDIATE`, because a deferred
//!   transaction that reads and then writes fails at once with `SQLITE_BUSY` (no busy wait) when
//!   another connection committed in between; taking the write lock up front makes it wait on the
//!   busy timeout instead.
//!
//! On both, a connection whose transaction did not end cleanly is closed instead of going
//! back to the pool ([`discard_if_poisoned`]): a COMMIT that failed (SQLite's `SQLITE_FULL`,
//! say) can leave sqlx counting a transaction that the database already rolled back (every
//! later `BEGIN` on it then fails) or one that is still open (every later write on it would
//! vanish uncommitted).

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Postgres, Sqlite, Transaction};

use super::{Backend, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the store's pool, once for each backend: the body is
/// written once and compiled against both.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::pool::Pool::Sqlite($p) => $body,
            $crate::store::pool::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// What differs between the backends' SQL.
pub trait Dialect {
    type Db: sqlx::Database;
    /// The row lock of a queue claim's sub-select.
    fn skip_locked(&self) -> &'static str;
    /// Starts a transaction that will write.
    fn write_tx(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
    /// Starts a write transaction that no other process runs at the same time under the same
    /// `lock`: a read-then-write that replicas starting together must not interleave.
    fn exclusive_tx(&self, lock: i64) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
}

impl Dialect for SqlitePool {
    type Db = Sqlite;

    fn skip_locked(&self) -> &'static str {
        ""
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// SQLite has one writer at a time: an immediate transaction is already exclusive.
    async fn exclusive_tx(&self, _lock: i64) -> Result<Transaction<'static, Sqlite>> {
        self.write_tx().await
    }
}

impl Dialect for PgPool {
    type Db = Postgres;

    fn skip_locked(&self) -> &'static str {
        "FOR UPDATE SKIP LOCKED"
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.begin().await?)
    }

    /// A transaction-scoped advisory lock: released at commit or rollback, or when the
    /// connection dies with its process.
    async fn exclusive_tx(&self, lock: i64) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock).execute(&mut *tx).await?;
        Ok(tx)
    }
}

impl Pool {
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// SQLite, the embedded default: one file, WAL journal, a busy timeout so concurrent writers
    /// wait instead of failing. WAL + `synchronous = NORMAL`: a commit is in the WAL before it
    /// returns, so whatever vigil acknowledged survives a crash of vigil; only an OS crash or a
    /// power cut can lose the last transactions (`FULL` would fsync every commit: tried, it
    /// stretched every write transaction enough to time out concurrent writers under load).
    pub async fn sqlite(url: &str, max_connections: u32) -> Result<Pool> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .after_release(|conn, meta| Box::pin(discard_if_poisoned(conn, meta)))
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        private_to_owner(super::sqlite_file(url).as_deref());
        Ok(Pool::Sqlite(pool))
    }

    /// PostgreSQL, for several replicas sharing one database.
    pub async fn postgres(url: &str, max_connections: u32) -> Result<Pool> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_release(|conn, meta| Box::pin(discard_if_poisoned(conn, meta)))
            .connect(url)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Pool::Postgres(pool))
    }
}

/// The database holds monitor settings (headers, cookies) and review history: nobody but its
/// owner and group may read it. SQLite creates the file (and its `-wal` and `-shm` files, with
/// the same mode) under the umask, usually readable by everyone; the bits for others are
/// cleared at every start, the owner's and group's left as the operator set them.
#[cfg(unix)]
fn private_to_owner(file: Option<&std::path::Path>) {
    use std::os::unix::fs::PermissionsExt;
    let Some(file) = file else { return };
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0
            && let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o007))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the database file private");
        }
    }
}

#[cfg(not(unix))]
fn private_to_owner(_: Option<&std::path::Path>) {}

/// Whether a connection given back may be used again: not if a transaction is still counted on
/// it once the pending rollback of a dropped transaction has run (the ping waits for that: on
/// SQLite the count drops only when the rollback has run).
async fn discard_if_poisoned<C: Connection>(
    conn: &mut C,
    _: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    // The usual case costs nothing: no transaction counted (sqlx pings every released
    // connection after this hook anyway).
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "a database connection was left inside a transaction (a failed COMMIT?); it is closed"
        );
        return Ok(false);
    }
    Ok(true)
}
