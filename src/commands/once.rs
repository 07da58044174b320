//! `vigil run --once`: every enabled monitor now, one pass, then exit — so the same YAML serves a
//! CI job as well as the daemon. The daemon starts on a loopback port (no cron), this command
//! drives it over its own API like any client (run now, then poll each run), waits for the alerts
//! of changed and failed runs to go out, prints a table, and exits 1 if anything changed or failed
//! or a monitor could not be checked.

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
/// How often the pending runs are looked at: the pass ends at most this long after its last
/// verdict (one request to the loopback API per round; the runs behind the first pending one
/// wait for the next round).
const VERDICT_POLL: Duration = Duration::from_millis(50);
/// How often every pending run is looked at, not only the first; in the pass's last second,
/// every [`FINAL_SWEEP_EVERY`].
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const FINAL_SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How often the alerts still being sent are looked at (each look lists the pending outbox rows
/// of the database, which replicas may share).
const ALERT_POLL: Duration = Duration::from_millis(100);

pub fn run(path: &Path) -> ExitCode {
    let config = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    let code = match runtime.block_on(pass(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", crate::http::client::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    };
    // Work the daemon left behind (a blocking read stuck on a volume) does not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

struct Tracked {
    monitor: String,
    id: String,
    view: Option<Value>,
}

/// A monitor whose run could not be started (a run of it still pending, left by an earlier
/// pass or being captured by a daemon on the same database): not checked, so not a success.
struct NotStarted {
    monitor: String,
    why: String,
}

/// How long the pass's daemon may take to open and migrate its database and storage.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The daemon this pass runs on, and how to reach it.
struct Daemon {
    base: String,
    token: String,
    client: reqwest::Client,
    database_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), crate::RunError>>,
}

/// One pass; `Ok(true)` when nothing changed or failed.
async fn pass(config: Config) -> anyhow::Result<bool> {
    // Each enabled monitor, with how many runs (one per viewport) checking it takes.
    let monitors: Vec<(String, usize)> = config
        .monitors
        .iter()
        .filter(|m| m.enabled)
        .map(|m| (m.name.to_string(), m.viewports.len()))
        .collect();
    let started = Instant::now();
    let since = crate::time::Timestamp::now();
    let names: Vec<&str> = monitors.iter().map(|(n, _)| n.as_str()).collect();
    // SIGTERM or Ctrl-C stops the daemon as `vigil run` stops, its Chromium closed; a second
    // signal exits at once.
    let mut signals = crate::signal_count()?;
    let profile_root = config.storage.data_dir.clone();
    let daemon = tokio::select! {
        daemon = start_daemon(config) => daemon?,
        _ = signals.wait_for(|n| *n > 0) => anyhow::bail!("interrupted while the daemon started"),
    };
    let work = async {
        let (mut runs, not_started) = start_runs(&daemon, &monitors).await?;
        eprintln!(
            "vigil: {} run{} of {} monitor{} started",
            runs.len(),
            plural(runs.len()),
            monitors.len(),
            plural(monitors.len())
        );
        let done = wait_for_verdicts(&daemon, &mut runs, started).await?;
        wait_for_alerts(&daemon.database_url, &runs).await?;
        anyhow::Ok((runs, not_started, done))
    };
    let outcome = tokio::select! {
        outcome = work => Some(outcome),
        _ = signals.wait_for(|n| *n > 0) => None,
    };
    if outcome.is_none() {
        eprintln!(
            "vigil: interrupted; stopping the captures in flight and the browser (a second signal exits at once)"
        );
    }
    let _ = daemon.stop.send(());
    // Bounded: each step of the daemon's shutdown has `server.shutdown_timeout`.
    tokio::select! {
        _ = daemon.task => {}
        _ = signals.wait_for(|n| *n > 1) => {
            eprintln!("vigil: a second signal; exiting now");
            crate::capture::profile::kill_own_browsers(&profile_root);
            // (A moment for the database, not the 10 s below.)
            close_unfinished(&daemon.database_url, (&names, since), Duration::from_secs(2)).await;
            std::process::exit(2);
        }
    }
    let Some(outcome) = outcome else {
        tokio::select! {
            () = close_unfinished(&daemon.database_url, (&names, since), Duration::from_secs(10)) => {}
            _ = signals.wait_for(|n| *n > 1) => eprintln!("vigil: a second signal; exiting now"),
        }
        anyhow::bail!("interrupted before every verdict was in");
    };
    let (runs, not_started, done) = outcome?;
    let ok = report(&runs, &not_started, done, started);
    if monitors.is_empty() {
        eprintln!("no enabled monitors");
    }
    Ok(ok && done == runs.len())
}

/// After an interrupt: the pass's runs still without a verdict (its monitors' runs started by
/// hand since the pass began, including those of a run-now cut on its way, whose ids never came
/// back) are recorded as `skipped`
/// (`interrupted`), so that the next pass can start its own (a pending run would refuse it) and
/// the history says why they have no capture; their capture jobs, if still queued or running,
/// are cancelled (nobody waits for their results any more). Within `bound`; a failure is said
/// and left to the reconciler (`capture.run_deadline`).
async fn close_unfinished(
    database_url: &str,
    (monitors, since): (&[&str], crate::time::Timestamp),
    bound: Duration,
) {
    let close = async {
        let store = crate::store::connect(database_url, 1).await?;
        let error = serde_json::json!({
            "code": "interrupted",
            "message": "vigil run --once was interrupted before this run had a verdict",
            "retryable": true,
        });
        let outcome = crate::store::RunOutcome {
            verdict: Some(crate::store::Verdict::Skipped),
            error: Some(error.to_string()),
            ..Default::default()
        };
        let cancelled = serde_json::json!({
            "code": "cancelled",
            "message": "its run was closed: vigil run --once was interrupted",
            "retryable": false,
        })
        .to_string();
        // (A person's "run now" of one of these monitors in the same seconds would be closed
        // too.) Newest first: one per viewport, so a few hundred cover any monitor.
        let mut ids = Vec::new();
        for name in monitors {
            let Ok(name) = name.parse::<crate::config::MonitorName>() else { continue };
            for run in store.list_runs(&name, None, 500).await? {
                if run.created_at < since {
                    break;
                }
                if run.trigger == crate::store::Trigger::Manual
                    && run.status == crate::store::RunStatus::Pending
                {
                    ids.push(run.id);
                }
            }
        }
        // Every run first; then their jobs, whose cancelling is only said if it fails.
        let mut closed = Vec::new();
        for id in ids {
            if store.complete_run(&id, &outcome, crate::time::Timestamp::now()).await? {
                closed.push(id);
            }
        }
        for id in &closed {
            let job = store.get_run(id).await.ok().flatten().and_then(|r| r.job_id);
            if let Some(job) = job
                && let Err(e) = store.cancel_job(&job, &cancelled, crate::time::Timestamp::now()).await
            {
                eprintln!(
                    "vigil: cannot cancel the capture job {job}: {}",
                    crate::http::client::error_chain(&e)
                );
            }
        }
        store.close().await;
        anyhow::Ok(closed.len())
    };
    match tokio::time::timeout(bound, close).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            eprintln!("vigil: {n} run{} without a verdict recorded as skipped (interrupted)", plural(n))
        }
        Ok(Err(e)) => eprintln!("vigil: cannot close the runs without a verdict: {e:#}"),
        Err(_) => eprintln!(
            "vigil: cannot close the runs without a verdict: the database did not answer within {bound:?}"
        ),
    }
}

/// The daemon on a private loopback port, without cron: this pass's captures report back to
/// it, whatever port the configured daemon uses. Returns once it is ready.
async fn start_daemon(mut config: Config) -> anyhow::Result<Daemon> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let base = format!("http://{}", listener.local_addr()?);
    if config.capture.provider.is_none() {
        config.server.internal_url = Some(crate::config::default_public_url(listener.local_addr()?));
    }
    let token = format!("vigil-once-{}", hex::encode(rand::random::<[u8; 16]>()));
    config.auth.api_tokens.push(crate::config::Secret::new(token.clone()));
    let database_url = config.storage.database_url.expose().to_owned();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = crate::RunOptions { schedule: false, config_path: None, roles: None };
    let task = tokio::spawn(crate::run_with(config, listener, async { drop(stop_rx.await) }, options));
    crate::init_tls();
    let client = reqwest::Client::new();
    // Ready once the database is open and migrated.
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if task.is_finished() {
            return match task.await {
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the daemon did not start")),
                _ => Err(anyhow::anyhow!("the daemon stopped before it was ready")),
            };
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(Daemon { base, token, client, database_url, stop, task });
            }
            // Not a matter of waiting: no capture starts while a volume is in trouble.
            let body: Value = r.json().await.unwrap_or_default();
            if let Some(why) = body["storage"]["message"].as_str() {
                let _ = stop.send(());
                let _ = task.await;
                anyhow::bail!("no capture can start: {why} (docs/operations.md)");
            }
        }
        if Instant::now() > deadline {
            let _ = stop.send(());
            let _ = task.await;
            anyhow::bail!("the daemon was not ready within {}s (GET /readyz)", READY_WITHIN.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "Run now" for each monitor, through the API. A monitor with a viewport left out (its run
/// still pending) is not checked whole.
async fn start_runs(
    daemon: &Daemon,
    monitors: &[(String, usize)],
) -> anyhow::Result<(Vec<Tracked>, Vec<NotStarted>)> {
    let (mut runs, mut not_started) = (Vec::new(), Vec::new());
    for (name, viewports) in monitors {
        let url = format!("{}/api/monitors/{name}/runs", daemon.base);
        let r = daemon.client.post(url).bearer_auth(&daemon.token).send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("unknown error");
            eprintln!("{name}: cannot start a run: {message}");
            not_started.push(NotStarted { monitor: name.clone(), why: message.to_owned() });
            continue;
        }
        let ids: Vec<&str> =
            body["run_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if ids.len() < *viewports {
            let why = format!("{} of {viewports} viewports have a run still pending", viewports - ids.len());
            eprintln!("{name}: {why}; those are not checked");
            not_started.push(NotStarted { monitor: name.clone(), why });
        }
        for id in ids {
            runs.push(Tracked { monitor: name.clone(), id: id.to_owned(), view: None });
        }
    }
    Ok((runs, not_started))
}

/// Polls the runs in order until each has a verdict (or the pass times out), showing progress:
/// a line per verdict, and a counter that stays on a terminal. How many were judged.
async fn wait_for_verdicts(daemon: &Daemon, runs: &mut [Tracked], started: Instant) -> anyhow::Result<usize> {
    let (total, tty) = (runs.len(), std::io::stderr().is_terminal());
    let (mut done, mut swept) = (0, Instant::now());
    while done < total && started.elapsed() < PASS_TIMEOUT {
        // Every few seconds, and in the last round, look at every run: one that never ends must
        // not hide the verdicts of the runs behind it.
        let last_second = started.elapsed() + Duration::from_secs(1) >= PASS_TIMEOUT;
        let sweep = swept.elapsed() >= if last_second { FINAL_SWEEP_EVERY } else { SWEEP_EVERY };
        if sweep {
            swept = Instant::now();
        }
        for run in runs.iter_mut().filter(|r| r.view.is_none()) {
            let url = format!("{}/api/runs/{}", daemon.base, run.id);
            let view: Value = daemon
                .client
                .get(url)
                .bearer_auth(&daemon.token)
                .send()
                .await?
                .json()
                .await
                .unwrap_or_default();
            // Runs end roughly in the order they started: the rest of the round waits for the
            // next (polling every pending run of a large pass costs the daemon real CPU).
            if view["verdict"].is_null() {
                match sweep {
                    true => continue,
                    false => break,
                }
            }
            done += 1;
            let ratio =
                view["diff_ratio"].as_f64().map(|r| format!(" {}", crate::alert::message::percent(r)));
            let (viewport, verdict) =
                (view["viewport"].as_str().unwrap_or(""), view["verdict"].as_str().unwrap_or(""));
            let line =
                format!("[{done}/{total}] {} {viewport} {verdict}{}", run.monitor, ratio.unwrap_or_default());
            match tty {
                true => eprint!("\r\x1b[2K{line}\n"),
                false => eprintln!("{line}"),
            }
            run.view = Some(view);
        }
        if done < total {
            if tty {
                eprint!("\r\x1b[2K[{done}/{total}] waiting for captures… {:.0?}", started.elapsed());
                let _ = std::io::stderr().flush();
            }
            tokio::time::sleep(VERDICT_POLL).await;
        }
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
    Ok(done)
}

/// The alerts of this pass's changed and failed runs go out before the process ends.
async fn wait_for_alerts(database_url: &str, runs: &[Tracked]) -> anyhow::Result<()> {
    let store = crate::store::connect(database_url, 1).await?;
    let deadline = Instant::now() + ALERT_TIMEOUT;
    let alerting = |r: &&Tracked| {
        r.view
            .as_ref()
            .is_some_and(|v| matches!(v["verdict"].as_str(), Some("changed" | "failed" | "unstable")))
    };
    for run in runs.iter().filter(alerting) {
        let id = run.id.parse().expect("ids from our API parse");
        loop {
            let alerts = store.alerts_for_run(&id).await?;
            // And the events for `alerts:` destinations (the outbox rows about this run).
            let events = store.list_deliveries(OutboxStatus::Pending, 10_000).await?;
            // (Not one that waits past the deadline for a retry.)
            let before_deadline =
                crate::time::Timestamp::now().plus(deadline.saturating_duration_since(Instant::now()));
            let sending = events
                .iter()
                .any(|d| !d.sender.is_empty() && d.subject == run.id && d.next_attempt_at <= before_deadline);
            if (alerts.iter().all(|a| a.status != OutboxStatus::Pending) && !sending)
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(ALERT_POLL).await;
        }
    }
    store.close().await;
    Ok(())
}

/// Prints the table and the summary; whether every monitor was checked and every run was
/// unchanged or a new baseline.
fn report(runs: &[Tracked], not_started: &[NotStarted], done: usize, started: Instant) -> bool {
    let mut ok = not_started.is_empty();
    let mut rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let v = r.view.clone().unwrap_or_default();
            let verdict = v["verdict"].as_str().unwrap_or("pending (timed out)").to_owned();
            // (An ignored change is one a person said is fine.)
            ok &= matches!(verdict.as_str(), "unchanged" | "baseline_created" | "ignored");
            let detail = match verdict.as_str() {
                "failed" | "skipped" => v["error"]["message"].as_str().unwrap_or("").to_owned(),
                _ => {
                    let ratio =
                        v["diff_ratio"].as_f64().map(crate::alert::message::percent).unwrap_or_default();
                    match v["headline"].as_str() {
                        Some(words) => format!("{ratio} {words}"),
                        None => ratio,
                    }
                }
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
    rows.extend(not_started.iter().map(|n| {
        vec![n.monitor.clone(), String::new(), "not started".to_owned(), n.why.clone(), String::new()]
    }));
    print!("{}", crate::config::report::render(&["MONITOR", "VIEWPORT", "VERDICT", "DIFF", "RUN"], &rows));
    let count = |verdict: &str| {
        runs.iter().filter(|r| r.view.as_ref().is_some_and(|v| v["verdict"] == verdict)).count()
    };
    let total = runs.len();
    println!(
        "{total} run{} in {:.1?}: {} unchanged, {} new baseline{}, {} changed, {} failed{}{}{}{}",
        plural(total),
        started.elapsed(),
        count("unchanged"),
        count("baseline_created"),
        plural(count("baseline_created")),
        count("changed"),
        count("failed"),
        // (Only when there are some: a capture that never settled is not the usual case.)
        match count("unstable") {
            0 => String::new(),
            n => format!(", {n} never settled (unstable)"),
        },
        match count("ignored") {
            0 => String::new(),
            n => format!(", {n} ignored"),
        },
        match total - done {
            0 => String::new(),
            n => format!(", {n} timed out"),
        },
        match not_started.len() {
            0 => String::new(),
            n => format!("; {n} monitor{} not checked", plural(n)),
        }
    );
    ok
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
