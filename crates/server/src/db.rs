//! The store: one SQL dialect subset that runs on SQLite and PostgreSQL.
//!
//! Queries use `$1` placeholders, `BIGINT`-sized integers, no booleans and no
//! dialect-only functions, so one query text serves both backends through
//! sqlx's `Any` driver. Each backend has its own migration folder.
//!
//! SQLite allows one writer at a time, so it gets a single-connection write
//! pool (no `SQLITE_BUSY` surprises, writes queue in order) and a separate
//! read pool; WAL lets readers run beside the writer. PostgreSQL uses one pool
//! for both.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::clock::now_ms;

/// Set on every SQLite connection: WAL, foreign keys, waiting (not failing) on
/// locks, the `synchronous` level (`FULL`: a commit survives power loss) and the size of the
/// connection's page cache in KiB (`sqlite_cache_kib`; a negative `cache_size` is KiB).
fn sqlite_pragmas(synchronous: &str, cache_kib: u32) -> String {
    format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; \
         PRAGMA cache_size=-{cache_kib};"
    )
}

/// Most connections the SQLite read pool opens.
pub const SQLITE_READERS: u32 = 8;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Connection pools and store identity.
#[derive(Clone, Debug)]
pub struct Db {
    /// Pool for transactions that write.
    pub write: AnyPool,
    /// Pool for reads.
    pub read: AnyPool,
    /// The backend.
    pub backend: Backend,
    /// Random id of this store, fixed at creation: resume cursors carry it.
    pub epoch: String,
}

impl Db {
    /// Opens (creating if needed) the store and runs migrations. SQLite: `sqlite_cache_kib` is
    /// each connection's page cache (1 writer and up to [`SQLITE_READERS`] readers).
    pub async fn open(
        database: Option<&str>,
        data_dir: &Path,
        sqlite_synchronous: &str,
        sqlite_cache_kib: u32,
    ) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let (write, read, backend) = match database {
            Some(url) => {
                let opts = AnyConnectOptions::from_str(url)?
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                (pool.clone(), pool, Backend::Postgres)
            }
            None => {
                crate::private_dir(data_dir)?;
                let path = data_dir.join("chorus.db");
                private_database(&path)?;
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let opts = AnyConnectOptions::from_str(&url)?
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
                let pragmas: std::sync::Arc<str> = sqlite_pragmas(sqlite_synchronous, sqlite_cache_kib).into();
                // Connections to a local file are never recycled (sqlx's default closes each
                // after 30 minutes): a replacement starts an empty page cache on a new thread
                // and fills it again, while the old one's memory stays with the allocator.
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect({
                        let pragmas = pragmas.clone();
                        move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move { conn.execute(&*pragmas).await.map(|_| ()) })
                        }
                    })
                    .connect_with(opts.clone())
                    .await?;
                SQLITE_MIGRATIONS.run(&write).await?;
                let read = AnyPoolOptions::new()
                    .max_connections(SQLITE_READERS)
                    .max_lifetime(None)
                    .after_connect({
                        let pragmas = pragmas.clone();
                        move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move { conn.execute(&*pragmas).await.map(|_| ()) })
                        }
                    })
                    .connect_with(opts)
                    .await?;
                (write, read, Backend::Sqlite)
            }
        };
        let epoch = load_epoch(&write).await?;
        Ok(Db { write, read, backend, epoch })
    }
}

/// Creates the SQLite file 0600 before SQLite opens it (an empty file is an empty database):
/// SQLite gives its `-wal` and `-shm` files the mode of the database file. An existing file
/// and left-over `-wal`/`-shm` files are made 0600 too.
fn private_database(path: &Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if p.exists() {
            crate::private_file(&p);
        }
    }
    Ok(())
}

async fn load_epoch(pool: &AnyPool) -> anyhow::Result<String> {
    let fresh = crate::auth_token::random_token(12);
    sqlx::query("INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING")
        .bind(&fresh)
        .execute(pool)
        .await?;
    let epoch: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'epoch'").fetch_one(pool).await?;
    sqlx::query("INSERT INTO meta (key, value) VALUES ('created_at', $1) ON CONFLICT (key) DO NOTHING")
        .bind(now_ms().to_string())
        .execute(pool)
        .await?;
    Ok(epoch)
}
