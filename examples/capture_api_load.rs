//! Accept latency of `POST /v1/capture` under a steady request rate, on SQLite (default) or the
//! database given as the first argument. The daemon runs in this process with its capture workers
//! off (an external provider is configured), so only the API and the job insert are measured.
//!
//!   cargo run --release --example capture_api_load -- [DATABASE_URL] [RATE] [SECONDS]
//!
//! Requests go to 127.0.0.1 only; the loop is bounded by RATE × SECONDS.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().unwrap();
    let db =
        args.get(1).cloned().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let yaml = format!(
        "server: {{listen: 127.0.0.1:0}}\nstorage: {{database_url: \"{db}\", data_dir: \"{d}\", baselines_dir: \"{d}/b\"}}\n\
         auth: {{api_tokens: [load-test-token-0123456789]}}\n\
         capture: {{provider: {{url: \"http://127.0.0.1:9/\", api_key: unused}}, allow_private: [127.0.0.0/8]}}\n",
        d = dir.path().display()
    );
    let daemon = support::Daemon::start(&yaml).await;
    let base = daemon.base_url.clone();
    let client = reqwest::Client::new();

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let body = r#"{"url": "http://127.0.0.1:8080/report/482", "viewport": {"width": 1280, "height": 800},
        "full_page": true, "metadata": {"monitor": "load", "run_id": "run_x"}}"#;
    let mut tasks = Vec::with_capacity(total as usize);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), format!("{base}/v1/capture"));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .post(url)
                .bearer_auth("load-test-token-0123456789")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            (t.elapsed(), r.map(|r| r.status().as_u16()).unwrap_or(0))
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (d, status) = t.await.unwrap();
        if status != 202 {
            errors += 1;
        }
        latencies.push(d);
    }
    let wall = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "backend={} rate={rate}/s requests={total} non-202={errors} achieved={:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        db.split(':').next().unwrap(),
        total as f64 / wall.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    daemon.stop().await;
}
