//! A fresh, empty database per test, on SQLite (a file in a temp dir) or PostgreSQL (a new
//! database on the test server of [`super::pg`], dropped afterwards).

use sqlx::Connection;

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

pub fn admin_url() -> String {
    super::pg::admin_url().to_owned()
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
                        "cannot reach the test PostgreSQL at {admin} ({e}); unset VIGIL_TEST_POSTGRES_URL to let the \
                         tests start their own, or point it at a server where the user may create databases"
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
    /// The database of another test app, for a replica: owns nothing (the first app drops it).
    pub fn sharing(url: &str) -> TestDb {
        TestDb { url: url.to_owned(), _dir: None, pg_cleanup: None }
    }

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
