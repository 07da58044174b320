//! The validated configuration. Values of these types exist only after validation, so the rest of
//! vigil never re-checks a name, a viewport or a threshold.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use url::Url;

pub use super::page::PageSetup;
pub use super::schedule::{QuietAction, QuietWindow, Schedule};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub capture: CaptureConfig,
    pub webhook: WebhookConfig,
    pub slack: Option<SlackConfig>,
    /// `alerts:`: webhooks, email lists and chat channels that receive events, by name.
    pub alerts: Vec<AlertDestination>,
    pub auth: AuthConfig,
    pub monitors: Vec<Monitor>,
}

impl Config {
    /// vigil's own endpoints, which the operator configured: `server.public_url` (where the
    /// capture API and the webhook receiver are reached) and the capture provider. Webhook
    /// deliveries and capture downloads to these are not put through the address policy.
    pub fn own_endpoints(&self) -> Vec<Url> {
        let mut own = vec![self.server.public_url.clone()];
        own.extend(self.server.internal_url.clone());
        own.extend(self.capture.provider.as_ref().map(|p| p.url.clone()));
        own
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL under which other machines (and Slack) reach this daemon.
    pub public_url: Url,
    /// Not a config key: where this process's own captures are requested and report back, when
    /// that is not `public_url` (`run --once`, on a private loopback port). Links for people
    /// (alerts, events) still use `public_url`.
    pub internal_url: Option<Url>,
    /// Upper bound on finishing in-flight requests after SIGTERM.
    pub shutdown_timeout: Duration,
    pub limits: ServerLimits,
}

/// What one client may hold of the server (docs/architecture.md §8).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time to send a request's head; also the longest a kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Time to send a request's whole body, from the end of its head.
    pub body_timeout: Duration,
    /// Connections served at once; the next one waits in the listen backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub database_url: Secret,
    pub data_dir: PathBuf,
    /// The approved baselines as plain files, an export: the database and the blob store are
    /// what vigil reads.
    pub baselines_dir: PathBuf,
    /// Where captures, diffs and baselines' images are kept.
    pub blobs: BlobLocation,
    pub max_connections: u32,
    /// Captures and diff images older than this are deleted; baselines never are.
    pub retention: Duration,
    /// The low-water mark of free space on each volume vigil writes; below it no capture starts.
    pub min_free: MinFree,
}

/// `storage.blobs`: where the content-addressed images live.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    /// `file://<dir>`, by default `<data_dir>/blobs`: `<dir>/sha256/ab/cd/abcd…`.
    Files(PathBuf),
    /// `s3://<bucket>/<prefix>`: `<prefix>/sha256/ab/cd/abcd…` in an S3-compatible store, shared
    /// by every replica.
    S3(S3Location),
}

/// An S3 bucket and what reaching it takes (`storage.s3`); what is `None` comes from the
/// `AWS_*` environment.
#[derive(Debug, Clone)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<Url>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
}

/// `storage.min_free`: free space to keep on each volume vigil writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// A share of the volume's size (0.05 for `5%`).
    Ratio(f64),
    /// The default: 5 % of the volume, but never more than 1 GiB.
    Default,
}

impl MinFree {
    pub const DEFAULT_RATIO: f64 = 0.05;
    pub const DEFAULT_CAP: u64 = 1 << 30;

    /// The mark in bytes on a volume of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Ratio(r) => (total as f64 * r) as u64,
            MinFree::Default => ((total as f64 * Self::DEFAULT_RATIO) as u64).min(Self::DEFAULT_CAP),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// `None`: the built-in capture API of this process.
    pub provider: Option<ExternalProvider>,
    pub workers: u32,
    pub chromium_path: Option<PathBuf>,
    pub max_attempts: u32,
    pub job_timeout: Duration,
    pub stability_timeout: Duration,
    pub recycle_after: u32,
    pub asset_ttl: Duration,
    pub allow_private: Vec<ipnet::IpNet>,
    /// A pending run untouched this long is looked up in the capture API (the reconciler).
    pub reconcile_after: Duration,
    /// A run still pending this long after it started is failed (the reconciler), so no run
    /// stays pending for ever and none silences its monitor's schedule.
    pub run_deadline: Duration,
    /// Jobs waiting (queued or running) beyond which `POST /v1/capture` answers 429.
    pub max_queued: u32,
    /// Device pixels (width × height × scale²) a capture may have; checked before the
    /// screenshot is taken.
    pub max_pixels: u64,
    /// Resident memory one page's renderer process may use before it is killed.
    pub page_memory: u64,
    /// A worker keeps its tab for its next capture of the same origin (docs/capture.md).
    pub warm_tabs: bool,
    /// Encrypts the kept state (cookies, localStorage) of `sessions:`; a key file in `data_dir` when unset.
    pub session_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct ExternalProvider {
    pub url: Url,
    pub api_key: Secret,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `whsec_…`; signs outgoing and verifies incoming capture webhooks.
    pub secret: Option<Secret>,
    /// Still accepted when verifying, during a rotation.
    pub previous_secrets: Vec<Secret>,
    pub tolerance: Duration,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    /// For external providers that sign with a plain hex HMAC of the body in this header.
    pub hex_signature_header: Option<String>,
    /// Requests per second each client address may make to `POST /hooks/capture` (bursts of
    /// twice that); 0 turns the limit off.
    pub rate_limit: u32,
    /// Deliveries in flight at once, at most one per origin (scheme, host, port).
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub bot_token: Secret,
    pub signing_secret: Option<Secret>,
    pub channel: String,
    pub api_url: Url,
    /// Per Slack API call.
    pub timeout: Duration,
    /// Delay before each retry of an alert Slack refused for a passing reason (5xx, 429 without
    /// `Retry-After`, network); the last entry repeats.
    pub retry_schedule: Vec<Duration>,
}

/// One entry of `alerts:`: where events go, and which.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDestination {
    pub name: String,
    pub target: Target,
    /// The events it receives (all by default).
    pub events: Vec<EventType>,
}

/// How a destination is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// POSTed, signed with `secret` (`whsec_…`).
    Webhook {
        url: Url,
        secret: Secret,
    },
    Email(EmailTarget),
    /// A Discord incoming webhook (`https://discord.com/api/webhooks/…`).
    Discord(Url),
    /// A Microsoft Teams incoming webhook (a Workflows "when a webhook request is received" URL).
    Teams(Url),
}

/// `email:`: an SMTP server and who the messages are from and to.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailTarget {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

impl EmailTarget {
    /// Where it goes, without credentials (the outbox row's URL).
    pub fn address(&self) -> String {
        format!("smtp://{}:{}", self.server, self.port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection, upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same machine or network.
    None,
}

/// The `type` of an event sent to an `alerts:` destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    RunChanged,
    RunFailed,
    RunRecovered,
    RunUnstable,
    BaselineApproved,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::RunChanged,
        EventType::RunFailed,
        EventType::RunRecovered,
        EventType::RunUnstable,
        EventType::BaselineApproved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RunChanged => "run.changed",
            EventType::RunFailed => "run.failed",
            EventType::RunRecovered => "run.recovered",
            EventType::RunUnstable => "run.unstable",
            EventType::BaselineApproved => "baseline.approved",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub api_tokens: Vec<Secret>,
    /// The name given to each token (`{name, token}`), in the same order: who a review made
    /// with it is recorded as; `None` for a bare token (recorded by its fingerprint).
    pub reviewers: Vec<Option<String>>,
    pub session_ttl: Duration,
}

/// One page to watch, with `defaults:` already applied.
#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub name: MonitorName,
    pub url: Url,
    pub schedule: Schedule,
    pub viewports: Vec<Viewport>,
    pub full_page: bool,
    pub format: Format,
    pub wait_until: WaitUntil,
    pub wait_for: Option<String>,
    #[serde(with = "humantime_serde_compat")]
    pub delay: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    pub hide: Vec<String>,
    pub mask: Vec<Mask>,
    pub selector: Option<String>,
    #[serde(skip)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(skip)]
    pub cookies: Vec<Cookie>,
    #[serde(skip)]
    pub basic_auth: Option<BasicAuth>,
    pub user_agent: Option<String>,
    pub dark_mode: bool,
    pub reduced_motion: bool,
    pub max_height: u32,
    pub threshold: Threshold,
    pub pixel_threshold: f64,
    /// A changed region whose words differ is a change whatever the threshold says. Default: on
    /// when neither `threshold` nor `max_diff_pixels` is set (in the monitor or `defaults:`).
    pub alert_on_text_change: bool,
    /// `unstable` runs in a row (captures that never settled showing a change) before one alert.
    pub unstable_alert_after: u32,
    /// The longest a change alert waits for the other runs of its tick (still being captured)
    /// so that the same change on several monitors is one message; zero: never grouped.
    #[serde(with = "humantime_serde_compat")]
    pub group_window: Duration,
    pub retries_on_diff: u32,
    pub slack_channel: Option<String>,
    /// Where its alerts go: `slack` and names from `alerts:` (all of them unless set).
    pub alerts: Vec<String>,
    pub enabled: bool,
    /// A random delay of up to this much before each scheduled capture, so monitors sharing a
    /// schedule do not all hit the capture pool (or one site) in the same second.
    #[serde(with = "humantime_serde_compat")]
    pub jitter: Duration,
    /// Steps, banners, injections, blocked requests, locale and position (docs/monitors.md).
    pub page: PageSetup,
    /// The zone of `schedule` and `quiet_hours`; UTC when unset. (The page's clock is
    /// `page_timezone`, in `page`.)
    #[serde(serialize_with = "zone_name")]
    pub timezone: Option<chrono_tz::Tz>,
    pub quiet_hours: Vec<QuietWindow>,
}

fn zone_name<S: serde::Serializer>(tz: &Option<chrono_tz::Tz>, s: S) -> Result<S::Ok, S::Error> {
    match tz {
        Some(tz) => s.serialize_str(tz.name()),
        None => s.serialize_none(),
    }
}

impl Monitor {
    /// The quiet window in force at `at`, if any: its end and what it does to alerts.
    pub fn quiet_at(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<(chrono::DateTime<chrono::Utc>, QuietAction)> {
        super::schedule::quiet_at(&self.quiet_hours, self.timezone.unwrap_or(chrono_tz::Tz::UTC), at)
    }
}

/// When a change is big enough to alert: either limit crossed fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    /// Share of pixels that differ, 0.0–1.0 (`threshold: 2%` → 0.02).
    pub ratio: Option<f64>,
    pub max_diff_pixels: Option<u64>,
}

impl Threshold {
    pub fn is_exceeded(&self, diff_pixels: u64, total_pixels: u64) -> bool {
        let ratio = if total_pixels == 0 { 0.0 } else { diff_pixels as f64 / total_pixels as f64 };
        match (self.ratio, self.max_diff_pixels) {
            (None, None) => diff_pixels > 0,
            (r, m) => r.is_some_and(|r| ratio > r) || m.is_some_and(|m| diff_pixels > m),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ratio, self.max_diff_pixels) {
            (Some(r), Some(p)) => write!(f, "{}% or {p} px", r * 100.0),
            (Some(r), None) => write!(f, "{}%", r * 100.0),
            (None, Some(p)) => write!(f, "{p} px"),
            (None, None) => f.write_str("any change"),
        }
    }
}

/// A monitor name: a slug `[a-z0-9][a-z0-9_-]{0,63}`, safe in file names and URLs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct MonitorName(String);

impl MonitorName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MonitorName {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 64
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err("a name of 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
        }
    }
}

impl fmt::Display for MonitorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Browser window size in CSS pixels, device scale factor, and mobile emulation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    pub mobile: bool,
}

impl Viewport {
    /// Stable key used in file names and URLs: `1280x800`, `390x844@3x-mobile`.
    pub fn key(&self) -> String {
        let mut k = format!("{}x{}", self.width, self.height);
        if self.scale != 1.0 {
            k.push_str(&format!("@{}x", self.scale));
        }
        if self.mobile {
            k.push_str("-mobile");
        }
        k
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Png,
    Pdf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntil {
    Load,
    Domcontentloaded,
    Networkidle,
}

/// Excluded from the diff, still visible in the pictures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Mask {
    Selector(String),
    Rect { x: u32, y: u32, width: u32, height: u32 },
}

#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    pub value: Secret,
    pub domain: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Durations serialise as human text (`30s`) in `vigil check --json` style output.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_names_are_slugs() {
        assert!("home".parse::<MonitorName>().is_ok());
        assert!("0-og_image".parse::<MonitorName>().is_ok());
        for bad in ["", "Home", "-x", "../etc", "a b", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<MonitorName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn viewport_keys() {
        let v = Viewport { width: 1280, height: 800, scale: 1.0, mobile: false };
        assert_eq!(v.key(), "1280x800");
        let m = Viewport { width: 390, height: 844, scale: 3.0, mobile: true };
        assert_eq!(m.key(), "390x844@3x-mobile");
    }

    #[test]
    fn thresholds_fire_on_either_limit() {
        let t = Threshold { ratio: Some(0.02), max_diff_pixels: Some(500) };
        assert!(!t.is_exceeded(100, 10_000));
        assert!(t.is_exceeded(201, 10_000));
        assert!(t.is_exceeded(501, 1_000_000));
        let any = Threshold { ratio: None, max_diff_pixels: None };
        assert!(any.is_exceeded(1, 10));
        assert!(!any.is_exceeded(0, 10));
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
