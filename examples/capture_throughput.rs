//! Captures per minute through vigil's capture API: 20 full-page captures of a local site with N
//! browser tabs (workers), after one warm-up capture that starts Chromium.
//!
//!   cargo run --release --example capture_throughput -- TABS [BASE_URL] [load|networkidle] [STABILITY]
//!
//! BASE_URL serves /page/0 … /page/19 (scripts/bench-capture/site.mjs). STABILITY is
//! `capture.stability_timeout` (default 5s; 0s takes a single shot).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tabs: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let base = args.get(2).cloned().unwrap_or_else(|| "http://127.0.0.1:8799".into());
    let wait = args.get(3).cloned().unwrap_or_else(|| "load".into());
    let stability = args.get(4).cloned().unwrap_or_else(|| "5s".into());
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let yaml = format!(
        "server: {{listen: 127.0.0.1:0}}\nstorage: {{database_url: \"sqlite://{d}/t.db\", data_dir: \"{d}\", baselines_dir: \"{d}/b\"}}\n\
         auth: {{api_tokens: [bench-token-0123456789]}}\n\
         capture: {{workers: {tabs}, allow_private: [127.0.0.0/8], stability_timeout: {stability}}}\n",
        d = dir.path().display()
    );
    let daemon = support::Daemon::start(&yaml).await;
    let api = daemon.base_url.clone();
    let client = reqwest::Client::new();
    let run = |pages: Vec<usize>| {
        let (client, api, base, wait) = (client.clone(), api.clone(), base.clone(), wait.clone());
        async move {
            let mut ids = Vec::new();
            for i in pages {
                let body = json!({"url": format!("{base}/page/{i}"), "full_page": true, "wait_until": wait,
                                  "viewport": {"width": 1280, "height": 800}});
                let r: Value = client
                    .post(format!("{api}/v1/capture"))
                    .bearer_auth("bench-token-0123456789")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push(r["job_id"].as_str().unwrap().to_owned());
            }
            let mut unstable = 0;
            for id in ids {
                loop {
                    let doc: Value = client
                        .get(format!("{api}/v1/capture/{id}"))
                        .bearer_auth("bench-token-0123456789")
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    match doc["status"].as_str() {
                        Some("completed") => {
                            unstable += usize::from(doc["stable"] != true);
                            break;
                        }
                        Some("failed") => panic!("capture failed: {doc}"),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            unstable
        }
    };
    run(vec![0]).await;
    let start = Instant::now();
    let unstable = run((0..20).collect()).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"tool": "vigil", "tabs": tabs, "wait": wait, "stability_timeout": stability, "seconds": (secs * 100.0).round() / 100.0,
               "per_minute": (20.0 / secs * 60.0 * 10.0).round() / 10.0, "unstable": unstable})
    );
    daemon.stop().await;
}
