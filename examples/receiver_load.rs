//! Throughput of the capture-webhook receiver: `CLIENTS` concurrent senders post distinct,
//! correctly signed webhooks (Standard Webhooks) to `POST /hooks/capture` as fast as the daemon
//! answers, for `SECONDS`. Each answered 204 was verified over the raw bytes and stored durably
//! before the answer. The daemon runs in this process with no capture workers and no rate limit.
//!
//!   cargo run --release --example receiver_load -- [DATABASE_URL] [CLIENTS] [SECONDS]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().unwrap();
    let db =
        args.get(1).cloned().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let yaml = format!(
        "server: {{listen: 127.0.0.1:0}}\nstorage: {{database_url: \"{db}\", data_dir: \"{d}\", baselines_dir: \"{d}/b\"}}\n\
         auth: {{api_tokens: [load-test-token-0123456789]}}\n\
         capture: {{provider: {{url: \"http://127.0.0.1:9/\", api_key: unused}}}}\n\
         webhook: {{secret: \"{SECRET}\", rate_limit: 0}}\n",
        d = dir.path().display()
    );
    let daemon = support::Daemon::start(&yaml).await;
    let base = daemon.base_url.clone();
    let client = reqwest::Client::new();
    let key = Arc::new(vigil::signing::SigningKey::from_secret(SECRET).unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, key, counter, url) =
            (client.clone(), key.clone(), counter.clone(), format!("{base}/hooks/capture"));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let id = format!("msg_load_{n:012}");
                let body = format!(
                    r#"{{"type":"capture.completed","job_id":"job_load_{n:012}","status":"completed","asset_url":"http://127.0.0.1:9/a","metadata":{{"run_id":"run_none"}}}}"#
                );
                let ts = vigil::time::Timestamp::now().millis() / 1000;
                let signature = key.sign(&id, ts, body.as_bytes());
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(204) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let q = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "backend={} clients={clients} stored={} failed={failures} rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        if db.starts_with("sqlite") { "sqlite" } else { "postgres" },
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    daemon.stop().await;
}
