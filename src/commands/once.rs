//! `vigil run --once`: every enabled monitor now, one pass, then exit — so the same YAML serves a
//! CI job as well as the daemon. The daemon starts on a loopback port (no cron), this command
//! drives it over its own API like any client (run now, then poll each run), waits for the alerts
//! of changed and failed runs to go out, prints a table, and exits 1 if anything changed or failed.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::store::OutboxStatus;

/// Longest wait for one pass; past it, the runs still pending count as failures.
const PASS_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest wait for the alerts once every run is judged.
const ALERT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(path: &Path) -> ExitCode {
    let config = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    match runtime.block_on(pass(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct Tracked {
    monitor: String,
    id: String,
    view: Option<Value>,
}

/// One pass; `Ok(true)` when nothing changed or failed.
async fn pass(mut config: Config) -> anyhow::Result<bool> {
    use anyhow::Context;
    // A private listener: this pass's captures report back to it, whatever the daemon uses.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let base = format!("http://{}", listener.local_addr()?);
    if config.capture.provider.is_none() {
        config.server.public_url = crate::config::default_public_url(listener.local_addr()?);
    }
    let token = format!("vigil-once-{}", hex::encode(rand::random::<[u8; 16]>()));
    config.auth.api_tokens.push(crate::config::Secret::new(token.clone()));
    let monitors: Vec<String> =
        config.monitors.iter().filter(|m| m.enabled).map(|m| m.name.to_string()).collect();
    let database_url = config.storage.database_url.expose().to_owned();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::run_with(
        config,
        listener,
        async {
            let _ = stop_rx.await;
        },
        crate::RunOptions { schedule: false, config_path: None },
    ));
    crate::init_tls();
    let client = reqwest::Client::new();
    let started = Instant::now();
    // Ready once the database is open and migrated.
    loop {
        if daemon.is_finished() {
            return match daemon.await {
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the daemon did not start")),
                _ => Err(anyhow::anyhow!("the daemon stopped before it was ready")),
            };
        }
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut runs = Vec::new();
    for name in &monitors {
        let r = client.post(format!("{base}/api/monitors/{name}/runs")).bearer_auth(&token).send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            eprintln!(
                "{name}: cannot start a run: {}",
                body["error"]["message"].as_str().unwrap_or("unknown error")
            );
            continue;
        }
        for id in body["run_ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            runs.push(Tracked { monitor: name.clone(), id: id.to_owned(), view: None });
        }
    }
    let total = runs.len();
    eprintln!(
        "vigil: {total} run{} of {} monitor{} started",
        plural(total),
        monitors.len(),
        plural(monitors.len())
    );
    let tty = std::io::stderr().is_terminal();
    let mut done = 0;
    while done < total && started.elapsed() < PASS_TIMEOUT {
        for run in runs.iter_mut().filter(|r| r.view.is_none()) {
            let r = client.get(format!("{base}/api/runs/{}", run.id)).bearer_auth(&token).send().await?;
            let view: Value = r.json().await.unwrap_or_default();
            if !view["verdict"].is_null() {
                done += 1;
                // The progress: a line per verdict, and a counter that stays on a terminal.
                let line = format!(
                    "[{done}/{total}] {} {} {}{}",
                    run.monitor,
                    view["viewport"].as_str().unwrap_or(""),
                    view["verdict"].as_str().unwrap_or(""),
                    view["diff_ratio"]
                        .as_f64()
                        .map(|r| format!(" {}", crate::alert::message::percent(r)))
                        .unwrap_or_default()
                );
                if tty {
                    eprint!("\r\x1b[2K{line}\n");
                } else {
                    eprintln!("{line}");
                }
                run.view = Some(view);
            }
        }
        if done < total {
            if tty {
                eprint!("\r\x1b[2K[{done}/{total}] waiting for captures… {:.0?}", started.elapsed());
                let _ = std::io::stderr().flush();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if tty {
        eprint!("\r\x1b[2K");
    }

    // Alerts of this pass go out before the process ends.
    let store = crate::store::connect(&database_url, 1).await?;
    let alert_deadline = Instant::now() + ALERT_TIMEOUT;
    for run in runs
        .iter()
        .filter(|r| r.view.as_ref().is_some_and(|v| v["verdict"] == "changed" || v["verdict"] == "failed"))
    {
        let id = run.id.parse().expect("ids from our API parse");
        loop {
            let alerts = store.alerts_for_run(&id).await?;
            if alerts.iter().all(|a| a.status != OutboxStatus::Pending) || Instant::now() > alert_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    store.close().await;
    let _ = stop_tx.send(());
    let _ = daemon.await;

    let mut ok = true;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let v = r.view.clone().unwrap_or_default();
            let verdict = v["verdict"].as_str().unwrap_or("pending (timed out)").to_owned();
            if !matches!(verdict.as_str(), "unchanged" | "baseline_created") {
                ok = false;
            }
            let detail = match verdict.as_str() {
                "failed" => v["error"]["message"].as_str().unwrap_or("").to_owned(),
                _ => v["diff_ratio"].as_f64().map(crate::alert::message::percent).unwrap_or_default(),
            };
            vec![
                r.monitor.clone(),
                v["viewport"].as_str().unwrap_or("").to_owned(),
                verdict,
                detail,
                r.id.clone(),
            ]
        })
        .collect();
    print!("{}", crate::config::report::render(&["MONITOR", "VIEWPORT", "VERDICT", "DIFF", "RUN"], &rows));
    let count = |verdict: &str| {
        runs.iter().filter(|r| r.view.as_ref().is_some_and(|v| v["verdict"] == verdict)).count()
    };
    println!(
        "{total} run{} in {:.1?}: {} unchanged, {} new baseline{}, {} changed, {} failed{}",
        plural(total),
        started.elapsed(),
        count("unchanged"),
        count("baseline_created"),
        plural(count("baseline_created")),
        count("changed"),
        count("failed"),
        match total - done {
            0 => String::new(),
            n => format!(", {n} timed out"),
        }
    );
    if monitors.is_empty() {
        eprintln!("no enabled monitors");
    }
    Ok(ok && done == total)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
