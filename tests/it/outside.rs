//! vigil checked by tools the team did not write (issue 13): Schemathesis fuzzes every route
//! from the OpenAPI document, promtool and the Prometheus client's OpenMetrics parser read
//! `/metrics`, and axe-core audits the pages in Chromium. `scripts/dev test` installs them
//! (`scripts/dev tools`: promtool from apt, the Python tools into `.tools/venv`, axe-core into
//! `.tools/axe-core`); `VIGIL_TEST_TOOLS` names another directory. The Standard Webhooks
//! library checks the signatures both ways in capture.rs and receiver.rs.

use std::path::PathBuf;
use std::process::Command;

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::SetBypassCspParams;
use serde_json::Value;

use crate::helpers::{TestApp, TestSite, tool, tools_dir};
use crate::monitoring::{TOKEN, run_now, verdict_of};
use crate::review::{HomeChanged, home_changed, home_changed_with};
use crate::ui::Urlencoded;
use crate::ui::{browser_pool, until};

fn python() -> PathBuf {
    tool(tools_dir().join("venv/bin/python"))
}

fn promtool() -> PathBuf {
    crate::helpers::tool_on_path("promtool")
}

/// Runs `command`, feeding `stdin`; its exit status and everything it printed.
fn run(mut command: Command, stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Signs in as a browser does; the session cookie (`name=value`).
async fn sign_in(app: &TestApp) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r =
        client.post(app.url("/login")).urlencoded(&[("token", TOKEN), ("next", "/")]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// Both formats of `/metrics`, after a monitor has run: promtool's lint passes on the text
/// format, the OpenMetrics parser reads the other, and every family the docs list is there.
#[tokio::test]
async fn metrics_pass_promtool_and_the_openmetrics_parser() {
    let HomeChanged { app, .. } = home_changed().await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(text.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = text.text().await.unwrap();
    let mut promtool_check = Command::new(promtool());
    promtool_check.args(["check", "metrics"]);
    let (ok, said) = run(promtool_check, &text);
    assert!(ok, "promtool check metrics:\n{said}\n{text}");

    let om = app
        .client
        .get(app.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    let mut parse = Command::new(python());
    parse.args([
        "-c",
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
         for f in parse(sys.stdin.read()): print(f.name, f.type)",
    ]);
    let (ok, families) = run(parse, &om);
    assert!(ok, "the OpenMetrics parser refused /metrics:\n{families}\n{om}");
    // The families served are exactly those docs/operations.md lists.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `vigil_"))
        .map(|l| format!("vigil_{}", l.split('`').next().unwrap().trim_end_matches("_total")))
        .collect();
    let served: std::collections::BTreeSet<String> =
        families.lines().map(|l| l.split(' ').next().unwrap().to_owned()).collect();
    assert_eq!(served, documented, "/metrics and docs/operations.md disagree");
    app.stop().await.expect("clean shutdown");
}

/// Schemathesis generates requests for every operation of `/openapi.json` — valid ones,
/// invalid ones, sequences along the document's links — with a token and a signed-in session,
/// and checks every answer against the document: status codes, content types, headers and
/// bodies, no server error, invalid data refused and valid data taken. Seeded, so a failure
/// here reproduces with the command it prints.
#[tokio::test]
async fn schemathesis_finds_no_defect() {
    let HomeChanged { app, change, .. } = home_changed().await;
    let cookie = sign_in(&app).await;
    let mut st = Command::new(tool(tools_dir().join("venv/bin/st")));
    // Its cache goes in the working directory: not the checkout's.
    let cwd = tempfile::tempdir().unwrap();
    st.current_dir(cwd.path())
        .env("VIGIL_RUN_ID", change["id"].as_str().unwrap())
        .arg("--config-file")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/schemathesis.toml"))
        .args(["run", &app.url("/openapi.json"), "--checks", "all", "--max-examples", "10", "--seed", "1"])
        .args(["--no-color", "--workers", "1"])
        .env("VIGIL_TOKEN", TOKEN)
        .env("VIGIL_SESSION", cookie.split_once('=').unwrap().1);
    let (ok, said) = tokio::task::spawn_blocking(move || run(st, "")).await.unwrap();
    assert!(ok, "Schemathesis found defects:\n{said}");
    assert!(said.contains("passed"), "{said}");
    // Afterwards the daemon still answers and is ready.
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await.expect("clean shutdown");
}

/// axe-core audits the dashboard, the monitor page and the review page (in each of its view
/// modes, and of a failed run showing the page as the failure left it) in Chromium: no serious
/// or critical violation. At a 390 px phone width none of them scrolls sideways.
#[tokio::test]
async fn pages_pass_axe_core_and_fit_a_phone() {
    let axe = std::fs::read_to_string(tool(tools_dir().join("axe-core/axe.min.js"))).unwrap();
    // An element shot of an element the page does not have fails at once, and keeps the page.
    let part = |site: &TestSite| {
        format!("  - name: part\n    url: {}\n    selector: \"#nowhere\"\n", site.url("home"))
    };
    let HomeChanged { app, change, .. } = home_changed_with(part).await;
    let run = change["id"].as_str().unwrap();
    let failed = verdict_of(&app, &run_now(&app, "part").await).await;
    assert_eq!(
        (failed["verdict"].as_str(), failed["error"]["code"].as_str()),
        (Some("failed"), Some("selector_not_found")),
        "{failed}"
    );
    let failed = failed["id"].as_str().unwrap();
    let cookie = sign_in(&app).await;
    let profiles = tempfile::tempdir().unwrap();
    let pool = browser_pool(profiles.path());
    let browser = pool.get().await.unwrap();
    let (_proxy, tab) = crate::ui::person_tab(&browser).await;
    // axe is injected from outside the page; the page's CSP allows only its own scripts.
    tab.execute(SetBypassCspParams::new(true)).await.unwrap();
    let (name, value) = cookie.split_once('=').unwrap();
    tab.set_cookie(
        chromiumoxide::cdp::browser_protocol::network::CookieParam::builder()
            .name(name)
            .value(value)
            .url(app.url("/"))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let pages = [
        ("/".to_owned(), None),
        ("/monitors/home".to_owned(), None),
        (format!("/runs/{run}"), None),
        (format!("/runs/{run}"), Some("swipe")),
        (format!("/runs/{run}"), Some("overlay")),
        (format!("/runs/{run}"), Some("diff")),
        (format!("/runs/{failed}"), None),
        // (Last: the change is ignored first, so the page has its table.)
        ("/ignored".to_owned(), None),
    ];
    for (path, mode) in &pages {
        if path == "/ignored" {
            let r = app
                .client
                .post(app.url(&format!("/api/runs/{run}/ignore")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        for width in [1280, 390] {
            tab.execute(SetDeviceMetricsOverrideParams::new(width, 800, 1.0, width < 500)).await.unwrap();
            let what = format!("{path} {} at {width} px", mode.unwrap_or(""));
            tab.goto(app.url(path)).await.unwrap();
            until(&tab, &what, "document.readyState === 'complete' && !!document.querySelector('main')")
                .await;
            if let Some(mode) = mode {
                tab.find_element(&format!("input[value={mode}]")).await.unwrap().click().await.unwrap();
            }
            if path.ends_with(failed) {
                tab.find_element("#failing-state img").await.expect("the failed run shows its picture");
            }
            tab.evaluate(axe.as_str()).await.unwrap();
            let found: Value = tab
                .evaluate(
                    "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations\
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')\
                     .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}))))",
                )
                .await
                .unwrap()
                .into_value()
                .unwrap();
            let found: Value = serde_json::from_str(found.as_str().unwrap()).unwrap();
            assert_eq!(found, Value::Array(vec![]), "axe-core on {what}");
            let (content, window): (u64, u64) = tab
                .evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                .await
                .unwrap()
                .into_value()
                .unwrap();
            assert!(content <= window, "{what} scrolls sideways: {content} px in a {window} px window");
        }
    }
    drop(tab);
    pool.shutdown().await;
    app.stop().await.expect("clean shutdown");
}
