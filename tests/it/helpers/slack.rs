//! A fake Slack Web API on loopback — the one thing these tests cannot reach for real. It checks
//! the bot token and the request shapes the real API requires, records every call, and can be
//! scripted to answer 429 (with `Retry-After`) or 500 before it succeeds, or to post a message
//! and never answer (a timeout after the fact). `conversations.history` returns what was posted,
//! with its metadata, for the channel ID only (as Slack: history is not read by channel name).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const BOT_TOKEN: &str = "xoxb-test-token";
pub const CHANNEL_ID: &str = "C0VIGIL";

/// One message posted with `chat.postMessage`.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub text: String,
    pub blocks: Value,
    pub ts: String,
    pub metadata: Value,
}

/// Scripted answer to a `chat.postMessage` call.
pub const HANG: u16 = 0;

/// One file shared with `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct Shared {
    pub title: String,
    pub filename: String,
    pub bytes: Bytes,
    pub channel_id: String,
    pub thread_ts: String,
}

#[derive(Default)]
struct Inner {
    posted: Vec<Posted>,
    /// Answers to the next `chat.postMessage` calls: (status, Retry-After); [`HANG`] posts the
    /// message and then answers nothing for a minute.
    script: VecDeque<(u16, Option<u64>)>,
    /// Every call: method name and whether it was answered with success.
    calls: Vec<(String, bool)>,
    /// file id → (filename, declared length, uploaded bytes)
    files: Vec<(String, String, usize, Option<Bytes>)>,
    shared: Vec<Shared>,
    /// `chat.update` calls: (channel, ts, text, blocks).
    updates: Vec<(String, String, String, Value)>,
    /// Bodies posted to the interaction `response_url`.
    replies: Vec<Value>,
    /// Requests refused for a bad token or shape (the test fails on any).
    refused: Vec<String>,
}

#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    pub api_url: String,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {BOT_TOKEN}"))
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slack = FakeSlack {
            inner: Arc::default(),
            api_url: format!("http://{}/api", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/files.getUploadURLExternal", get(upload_url))
            .route("/upload/{id}", post(upload))
            .route("/api/files.completeUploadExternal", post(complete))
            .route("/api/chat.update", post(update))
            .route("/api/conversations.history", get(history))
            .route("/response", post(response_url))
            .with_state(slack.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        slack
    }

    /// Answer the next `chat.postMessage` calls with these statuses (and `Retry-After` seconds).
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.inner.lock().unwrap().script.extend(answers.iter().copied());
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.inner.lock().unwrap().posted.clone()
    }

    pub fn shared(&self) -> Vec<Shared> {
        self.inner.lock().unwrap().shared.clone()
    }

    /// Calls of `method` answered with an error status.
    pub fn failed_calls(&self, method: &str) -> usize {
        self.inner.lock().unwrap().calls.iter().filter(|(m, ok)| m == method && !ok).count()
    }

    /// Calls of `method`, answered or not.
    pub fn calls(&self, method: &str) -> usize {
        self.inner.lock().unwrap().calls.iter().filter(|(m, _)| m == method).count()
    }

    /// `chat.update` calls: (channel, ts, text, blocks).
    pub fn updates(&self) -> Vec<(String, String, String, Value)> {
        self.inner.lock().unwrap().updates.clone()
    }

    pub fn replies(&self) -> Vec<Value> {
        self.inner.lock().unwrap().replies.clone()
    }

    /// Where interaction payloads say to answer.
    pub fn response_url(&self) -> String {
        format!("{}/response", self.api_url.trim_end_matches("/api"))
    }

    pub fn refused(&self) -> Vec<String> {
        self.inner.lock().unwrap().refused.clone()
    }

    fn refuse(&self, why: String) -> Response {
        self.inner.lock().unwrap().refused.push(why.clone());
        (StatusCode::OK, axum::Json(json!({"ok": false, "error": why}))).into_response()
    }
}

async fn post_message(State(s): State<FakeSlack>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return s.refuse("invalid_auth".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return s.refuse("invalid_json".into());
    };
    let scripted = s.inner.lock().unwrap().script.pop_front();
    if let Some((status, retry_after)) = scripted
        && status != 200
        && status != HANG
    {
        s.inner.lock().unwrap().calls.push(("chat.postMessage".into(), false));
        let mut r =
            (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"ok": false, "error": "ratelimited"})))
                .into_response();
        if let Some(secs) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
        }
        return r;
    }
    let (Some(channel), Some(blocks)) = (v["channel"].as_str(), v["blocks"].as_array()) else {
        return s.refuse(format!("missing channel or blocks: {v}"));
    };
    if blocks.is_empty() || blocks.len() > 50 || v["text"].as_str().is_none_or(str::is_empty) {
        return s.refuse(format!("blocks must be 1..=50 with a text fallback: {v}"));
    }
    let (ts, hang) = {
        let mut inner = s.inner.lock().unwrap();
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let ts = format!("{secs}.{:06}", inner.posted.len() + 1);
        inner.posted.push(Posted {
            channel: channel.to_owned(),
            text: v["text"].as_str().unwrap().to_owned(),
            blocks: v["blocks"].clone(),
            ts: ts.clone(),
            metadata: v["metadata"].clone(),
        });
        let hang = matches!(scripted, Some((HANG, _)));
        inner.calls.push(("chat.postMessage".into(), !hang));
        (ts, hang)
    };
    if hang {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    axum::Json(json!({"ok": true, "channel": CHANNEL_ID, "ts": ts, "message": {"ts": ts, "text": v["text"]}}))
        .into_response()
}

async fn upload_url(
    State(s): State<FakeSlack>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return s.refuse("invalid_auth".into());
    }
    let (Some(filename), Some(length)) = (q.get("filename"), q.get("length").and_then(|l| l.parse().ok()))
    else {
        return s.refuse(format!("getUploadURLExternal needs filename and length: {q:?}"));
    };
    let base = s.api_url.trim_end_matches("/api").to_owned();
    let mut inner = s.inner.lock().unwrap();
    let id = format!("F{:04}", inner.files.len() + 1);
    inner.files.push((id.clone(), filename.clone(), length, None));
    inner.calls.push(("files.getUploadURLExternal".into(), true));
    axum::Json(json!({"ok": true, "upload_url": format!("{base}/upload/{id}"), "file_id": id}))
        .into_response()
}

async fn upload(
    State(s): State<FakeSlack>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return s.refuse("the bot token was sent to the upload URL".into());
    }
    let mut inner = s.inner.lock().unwrap();
    let Some(file) = inner.files.iter_mut().find(|f| f.0 == id) else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    if file.2 != body.len() {
        let why = format!("upload of {id}: declared {} bytes, got {}", file.2, body.len());
        drop(inner);
        return s.refuse(why);
    }
    file.3 = Some(body.clone());
    inner.calls.push(("upload".into(), true));
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}

async fn complete(State(s): State<FakeSlack>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return s.refuse("invalid_auth".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return s.refuse("invalid_json".into());
    };
    let (Some(channel), Some(thread), Some(files)) =
        (v["channel_id"].as_str(), v["thread_ts"].as_str(), v["files"].as_array())
    else {
        return s.refuse(format!("completeUploadExternal without channel_id/thread_ts/files: {v}"));
    };
    let mut inner = s.inner.lock().unwrap();
    let mut out = Vec::new();
    for f in files {
        let id = f["id"].as_str().unwrap_or_default();
        let Some((_, filename, _, Some(bytes))) = inner.files.iter().find(|x| x.0 == id).cloned() else {
            drop(inner);
            return s.refuse(format!("file {id} was never uploaded"));
        };
        inner.shared.push(Shared {
            title: f["title"].as_str().unwrap_or_default().to_owned(),
            filename,
            bytes,
            channel_id: channel.to_owned(),
            thread_ts: thread.to_owned(),
        });
        out.push(json!({"id": id}));
    }
    inner.calls.push(("files.completeUploadExternal".into(), true));
    axum::Json(json!({"ok": true, "files": out})).into_response()
}

async fn update(State(s): State<FakeSlack>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return s.refuse("invalid_auth".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return s.refuse("invalid_json".into());
    };
    let (Some(channel), Some(ts)) = (v["channel"].as_str(), v["ts"].as_str()) else {
        return s.refuse(format!("chat.update needs channel and ts: {v}"));
    };
    let mut inner = s.inner.lock().unwrap();
    inner.updates.push((
        channel.to_owned(),
        ts.to_owned(),
        v["text"].as_str().unwrap_or("").to_owned(),
        v["blocks"].clone(),
    ));
    inner.calls.push(("chat.update".into(), true));
    // As Slack answers: the updated message comes back.
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "text": v["text"],
                      "message": {"text": v["text"], "blocks": v["blocks"]}}))
    .into_response()
}

async fn response_url(State(s): State<FakeSlack>, body: Bytes) -> Response {
    let v = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    s.inner.lock().unwrap().replies.push(v);
    (StatusCode::OK, "ok").into_response()
}

async fn history(
    State(s): State<FakeSlack>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return s.refuse("invalid_auth".into());
    }
    s.inner.lock().unwrap().calls.push(("conversations.history".into(), true));
    if q.get("channel").map(String::as_str) != Some(CHANNEL_ID) {
        return axum::Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    let oldest: f64 = q.get("oldest").and_then(|o| o.parse().ok()).unwrap_or(0.0);
    let with_metadata = q.get("include_all_metadata").map(String::as_str) == Some("true");
    let inner = s.inner.lock().unwrap();
    let messages: Vec<Value> = inner
        .posted
        .iter()
        .rev()
        .filter(|p| p.ts.parse::<f64>().unwrap() >= oldest)
        .map(|p| {
            let mut m = json!({"type": "message", "ts": p.ts, "text": p.text});
            if with_metadata && !p.metadata.is_null() {
                m["metadata"] = p.metadata.clone();
            }
            m
        })
        .collect();
    axum::Json(json!({"ok": true, "messages": messages, "has_more": false})).into_response()
}
