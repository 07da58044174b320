//! A fresh, empty database per test, on SQLite (a file in a temp dir) or PostgreSQL (a new
//! database on the server named by VIGIL_TEST_POSTGRES_URL, dropped afterwards).

use sqlx::Connection;

/// The PostgreSQL server used by the tests; `.ci/run` creates this role and database.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://vigil:vigil@127.0.0.1:5432/vigil";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_cleanup: Option<(String, String)>,
}

fn admin_url() -> String {
    std::env::var("VIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("vigil.db").display());
                TestDb { url, _dir: Some(dir), pg_cleanup: None }
            }
            Backend::Postgres => {
                let admin = admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "cannot reach the test PostgreSQL at {admin} ({e}); start it and create the role as \
                         .ci/run does, or point VIGIL_TEST_POSTGRES_URL at a server where the user may create databases"
                    )
                });
                let name = format!("vigil_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                conn.close().await.ok();
                let mut url = url::Url::parse(&admin).expect("valid VIGIL_TEST_POSTGRES_URL");
                url.set_path(&name);
                TestDb { url: url.to_string(), _dir: None, pg_cleanup: Some((admin, name)) }
            }
        }
    }
}

impl TestDb {
    /// Owns nothing; stands in after the real one was moved out.
    pub fn placeholder() -> TestDb {
        TestDb { url: String::new(), _dir: None, pg_cleanup: None }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_cleanup.take() else {
            return;
        };
        // Drop runs outside async context: use a short-lived runtime on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}
