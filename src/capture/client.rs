//! The capture client: how the monitor side talks to a capture API — vigil's own, in this
//! process or on another machine, or an external provider (`capture.provider`) — over HTTP like
//! any client: `POST /v1/capture` with an `Idempotency-Key`, and `GET /v1/capture/{id}` as the
//! polling fallback. Also the request a monitor's viewport becomes.

use serde_json::{Value, json};

use std::time::Duration;

use crate::config::{Format, Mask, Monitor, Viewport, WaitUntil};
use crate::ids::{JobId, RunId};
use crate::queue::backoff::{Exponential, jitter};

/// Attempts at one submission, and the wait between them: 0.5 s, 1 s, 2 s (±20 %).
pub const SUBMIT_ATTEMPTS: u32 = 4;
pub const SUBMIT_RETRY: Exponential = Exponential::new(Duration::from_millis(500), Duration::from_secs(4));

/// Submits captures to a capture API and looks their jobs up.
pub struct CaptureClient {
    pub client: reqwest::Client,
    /// `…/v1/capture` of the capture API.
    pub capture_url: String,
    pub token: String,
    /// Where the API sends finished captures: `server.public_url` + `hooks/capture`.
    pub webhook_url: String,
}

impl CaptureClient {
    /// Submits the capture of `monitor` at `viewport` for `run`; the job id. Submitting twice
    /// with the same `idempotency_key` gives the same job, so a submission that failed on the
    /// way (a connection cut by a replica's death, a 502 from the load balancer, a 503) is sent
    /// again, [`SUBMIT_ATTEMPTS`] times in all, [`SUBMIT_RETRY`] apart; a refusal (another 4xx)
    /// is not.
    pub async fn submit(
        &self,
        monitor: &Monitor,
        viewport: &Viewport,
        run: &RunId,
        idempotency_key: &str,
    ) -> Result<JobId, String> {
        let request = capture_request(monitor, viewport, run, &self.webhook_url);
        let mut failures = 0;
        loop {
            match self.submit_once(&request, idempotency_key).await {
                Ok(job) => return Ok(job),
                Err((message, true)) if failures + 1 < SUBMIT_ATTEMPTS => {
                    failures += 1;
                    let wait = jitter(SUBMIT_RETRY.delay(failures));
                    tracing::info!(%run, %message, retry_in = ?wait, "capture submission failed; sending it again");
                    tokio::time::sleep(wait).await;
                }
                Err((message, _)) => return Err(message),
            }
        }
    }

    /// One attempt; an error says whether another may do better.
    async fn submit_once(&self, request: &Value, idempotency_key: &str) -> Result<JobId, (String, bool)> {
        let r = self
            .client
            .post(&self.capture_url)
            .bearer_auth(&self.token)
            .header("idempotency-key", idempotency_key)
            .json(request)
            .send()
            .await
            .map_err(|e| (crate::http::client::error_chain(&e), true))?;
        let status = r.status();
        let transient = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504);
        let body =
            crate::http::client::body_within(r, 1024 * 1024).await.map_err(|e| (e.to_string(), true))?;
        let body: Value =
            serde_json::from_slice(&body).map_err(|e| (format!("HTTP {status}: {e}"), transient))?;
        if status != reqwest::StatusCode::ACCEPTED {
            // The API's own error says it best: "url_not_allowed: 127.0.0.1 is a private …".
            let said = match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => body.to_string(),
            };
            return Err((format!("the capture API refused it (HTTP {status}): {said}"), transient));
        }
        body["job_id"]
            .as_str()
            .and_then(|j| j.parse().ok())
            .ok_or_else(|| (format!("no job_id in {body}"), false))
    }

    /// `GET /v1/capture/{id}`: the job's result document, `None` if the API does not know the job.
    pub async fn lookup(&self, job: &JobId) -> Result<Option<Value>, String> {
        let url = format!("{}/{job}", self.capture_url.trim_end_matches('/'));
        let r = self.client.get(url).bearer_auth(&self.token).send().await.map_err(|e| e.to_string())?;
        match r.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                // A result document is a few kilobytes; a peer may not make it more.
                let body =
                    crate::http::client::body_within(r, 1024 * 1024).await.map_err(|e| e.to_string())?;
                serde_json::from_slice(&body).map(Some).map_err(|e| e.to_string())
            }
            s => Err(format!("HTTP {s}")),
        }
    }
}

pub fn capture_request(monitor: &Monitor, viewport: &Viewport, run: &RunId, webhook_url: &str) -> Value {
    let masks: Vec<Value> = monitor
        .mask
        .iter()
        .map(|m| match m {
            Mask::Selector(s) => json!(s),
            Mask::Rect { x, y, width, height } => json!({"x": x, "y": y, "width": width, "height": height}),
        })
        .collect();
    let mut req = json!({
        "url": monitor.url.as_str(),
        "format": match monitor.format { Format::Png => "png", Format::Pdf => "pdf" },
        "full_page": monitor.full_page,
        "viewport": {"width": viewport.width, "height": viewport.height, "scale": viewport.scale, "mobile": viewport.mobile},
        "wait_until": match monitor.wait_until {
            WaitUntil::Load => "load",
            WaitUntil::Domcontentloaded => "domcontentloaded",
            WaitUntil::Networkidle => "networkidle",
        },
        "delay": format!("{}ms", monitor.delay.as_millis()),
        "timeout": format!("{}ms", monitor.timeout.as_millis()),
        "hide": monitor.hide,
        "mask": masks,
        "headers": monitor.headers.iter().map(|(k, v)| (k.clone(), json!(v.expose()))).collect::<serde_json::Map<_, _>>(),
        "cookies": monitor.cookies.iter().map(|c| json!({"name": c.name, "value": c.value.expose(), "domain": c.domain, "path": c.path})).collect::<Vec<_>>(),
        "dark_mode": monitor.dark_mode,
        "reduced_motion": monitor.reduced_motion,
        "max_height": monitor.max_height,
        "text": true,
        "webhook_url": webhook_url,
        "metadata": {"monitor": monitor.name.as_str(), "viewport": viewport.key(), "run_id": run.as_str()},
    });
    let obj = req.as_object_mut().expect("an object");
    if let Some(w) = &monitor.wait_for {
        obj.insert("wait_for".into(), json!(w));
    }
    if let Some(s) = &monitor.selector {
        obj.insert("selector".into(), json!(s));
    }
    if let Some(ua) = &monitor.user_agent {
        obj.insert("user_agent".into(), json!(ua));
    }
    if let Some(b) = &monitor.basic_auth {
        obj.insert("basic_auth".into(), json!({"username": b.username, "password": b.password.expose()}));
    }
    let page = &monitor.page;
    let steps: Vec<_> = page.steps.iter().map(|s| s.to_wire()).collect();
    let lists = [
        ("steps", json!(steps)),
        ("click_accept", json!(page.click_accept)),
        ("remove", json!(page.remove)),
        ("block_requests", json!(page.block_requests)),
    ];
    for (key, v) in lists.into_iter().filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty())) {
        obj.insert(key.into(), v);
    }
    if page.block_banners {
        obj.insert("block_banners".into(), json!(true));
    }
    let optional = [
        ("inject_css", page.inject_css.as_ref().map(|v| json!(v))),
        ("inject_js", page.inject_js.as_ref().map(|v| json!(v))),
        ("locale", page.locale.as_ref().map(|v| json!(v))),
        ("geolocation", page.geolocation.map(|g| json!(g))),
        ("timezone", page.timezone.as_ref().map(|tz| json!(tz))),
        ("session", page.session.as_ref().map(|s| json!(s.to_wire()))),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            obj.insert(key.into(), v);
        }
    }
    // Cookies without a domain are left for the capture service to bind to the URL.
    if let Some(cookies) = obj.get_mut("cookies").and_then(Value::as_array_mut) {
        for c in cookies.iter_mut().filter_map(Value::as_object_mut) {
            c.retain(|_, v| !v.is_null());
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monitor_becomes_a_valid_capture_request() {
        let yaml = "monitors:\n  - name: home\n    url: https://example.com/\n    mask: [\"#clock\", {x: 1, y: 2, width: 3, height: 4}]\n    wait_for: \"#main\"\n    delay: 250ms\n    cookies: [{name: s, value: v}]\n";
        let config = crate::config::parse(yaml, "m.yaml", &|_| None).unwrap();
        let m = &config.monitors[0];
        let run = RunId::new();
        let req = capture_request(m, &m.viewports[0], &run, "http://127.0.0.1:8080/hooks/capture");
        let parsed = crate::capture::request::parse(req.to_string().as_bytes()).expect("the API accepts it");
        let spec = parsed.validate().expect("valid");
        assert_eq!((spec.width, spec.height, spec.full_page), (1280, 800, true));
        assert_eq!(spec.delay, std::time::Duration::from_millis(250));
        assert_eq!(spec.mask_selectors, ["#clock"]);
        assert_eq!(spec.wait_for.as_deref(), Some("#main"));
        assert_eq!(req["metadata"]["run_id"], run.as_str());
        assert!(req.get("steps").is_none() && req.get("timezone").is_none());
    }

    #[test]
    fn page_setup_reaches_the_capture_api_whole() {
        let yaml = r##"monitors:
  - name: shop
    url: https://example.com/
    page_timezone: America/New_York
    locale: en-US
    geolocation: {latitude: 40.7, longitude: -74}
    block_banners: true
    click_accept: ["#ok"]
    remove: [".chat"]
    inject_css: "body { color: red }"
    inject_js: "document.title = 'x'"
    block_requests: ["*/analytics.js"]
    steps:
      - fill: "#q"
        value: shoes
      - press: Enter
      - wait_for: {text: "results"}
"##;
        let config = crate::config::parse(yaml, "m.yaml", &|_| None).unwrap();
        let m = &config.monitors[0];
        let req = capture_request(m, &m.viewports[0], &RunId::new(), "http://127.0.0.1:8080/hooks/capture");
        let spec = crate::capture::request::parse(req.to_string().as_bytes()).unwrap().validate().unwrap();
        assert_eq!(spec.page, m.page);
        assert_eq!(spec.page.timezone.as_deref(), Some("America/New_York"));
    }
}
