//! PostgreSQL, for several replicas sharing one database: queue claims use
//! `FOR UPDATE SKIP LOCKED` so workers on different machines never take the same row.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql::{HasDb, impl_store, outbox_update};
use super::*;
use crate::ids::BaselineId;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

impl HasDb for PgStore {
    type Db = sqlx::Postgres;
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

impl_store!(PgStore, Backend::Postgres, "FOR UPDATE SKIP LOCKED", "BEGIN");
