//! What several replicas stand on besides the database: an S3-compatible object store (moto's
//! server, from PyPI, installed by `scripts/dev tools`) and a load balancer in front of them
//! (round robin over the replicas that accept a connection, as a balancer with health checks
//! does once it has noticed a dead one).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::daemon::free_port;
use super::{tool, tools_dir, wait_for};

/// moto's S3 server on a loopback port, with one bucket; stopped when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub async fn start() -> S3Server {
        vigil::init_tls();
        let port = free_port();
        let child = Command::new(tool(tools_dir().join("venv/bin/moto_server")))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}"), bucket: "vigil".into() };
        let client = reqwest::Client::new();
        let bucket = format!("{}/{}", server.endpoint, server.bucket);
        // moto takes any credentials and creates a bucket on an unsigned PUT.
        wait_for("moto's S3 server to create the bucket", Duration::from_secs(60), || async {
            let r = client.put(&bucket).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        server
    }

    /// The `storage` keys that put a daemon's images in this bucket under `prefix`.
    pub fn storage_yaml(&self, prefix: &str) -> String {
        format!(
            "  blobs: s3://{}/{prefix}\n  s3:\n    endpoint: {}\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n",
            self.bucket, self.endpoint
        )
    }

    /// The keys of the objects in the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let body = reqwest::get(format!("{}/{}?list-type=2&prefix={prefix}", self.endpoint, self.bucket))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_owned).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP load balancer on a loopback port: each connection goes to the next backend in turn
/// that accepts it.
pub struct Balancer {
    pub port: u16,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let backends = Arc::new(Mutex::new(backends));
        let next = Arc::new(AtomicUsize::new(0));
        let list = backends.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let (list, next) = (list.clone(), next.clone());
                tokio::spawn(async move {
                    let all = list.lock().unwrap().clone();
                    for _ in 0..all.len() {
                        let to = all[next.fetch_add(1, Ordering::Relaxed) % all.len()];
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, backends }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, backends: Vec<SocketAddr>) {
        *self.backends.lock().unwrap() = backends;
    }
}
