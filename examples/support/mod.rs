//! The daemon in this process, for the benchmark examples: started from `yaml` on a random
//! loopback port, ready when this returns, stopped gracefully by [`Daemon::stop`].

use std::time::Duration;

pub struct Daemon {
    pub base_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), vigil::RunError>>,
}

impl Daemon {
    pub async fn start(yaml: &str) -> Daemon {
        vigil::init_tls();
        let config = vigil::config::parse(yaml, "bench.yaml", &|_| None).expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(vigil::run(config, listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        while client.get(format!("{base_url}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Daemon { base_url, stop, server }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
