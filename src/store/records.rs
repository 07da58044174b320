//! What the store keeps: one struct per table row, plus the inputs of the writing methods.

use serde::Serialize;

use crate::config::MonitorName;
use crate::ids::{AlertId, AssetId, BaselineId, IgnoreId, JobId, MaskId, MessageId, RunId};
use crate::time::Timestamp;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What started a run.
    Trigger { Schedule = "schedule", Manual = "manual", Recapture = "recapture" }
);
text_enum!(RunStatus { Pending = "pending", Done = "done" });
text_enum!(
    /// docs/architecture.md §6; `approved` and `rejected` come later, from a person;
    /// `skipped`: not captured, the disk was low or failing when the tick came; `unstable`: a
    /// change seen on a capture whose shots never settled; `ignored`: a change a person said to
    /// ignore, or the same change again while that lasts.
    Verdict {
        BaselineCreated = "baseline_created",
        Unchanged = "unchanged",
        Changed = "changed",
        Failed = "failed",
        Approved = "approved",
        Rejected = "rejected",
        Skipped = "skipped",
        Unstable = "unstable",
        Ignored = "ignored",
    }
);
text_enum!(JobStatus { Queued = "queued", Running = "running", Completed = "completed", Failed = "failed" });
text_enum!(
    /// State of an outbox row (webhook deliveries, alerts).
    OutboxStatus { Pending = "pending", Sent = "sent", Dead = "dead" }
);
text_enum!(
    /// How a baseline version came to be.
    BaselineSource {
        FirstCapture = "first_capture",
        Api = "api",
        Ui = "ui",
        Slack = "slack",
        Cli = "cli",
        Revert = "revert",
    }
);
text_enum!(AlertKind { Changed = "changed", Failed = "failed", Recovered = "recovered", Unstable = "unstable" });

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MonitorRecord {
    pub name: MonitorName,
    pub url: String,
    /// The resolved monitor as JSON (without secrets).
    pub config: String,
    pub enabled: bool,
    pub removed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A monitor whose alerts are not sent (dropped) until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Mute {
    pub monitor: MonitorName,
    pub until: Timestamp,
    pub muted_by: String,
    pub created_at: Timestamp,
}

/// A change a person said to ignore: a later run of `monitor` at `viewport` showing the same
/// change is judged `ignored` until `until` (`src/ignore/`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Ignore {
    pub id: IgnoreId,
    pub monitor: MonitorName,
    pub viewport: String,
    /// The words that changed ([`crate::diff::text::words_key`]).
    pub fingerprint: String,
    /// The changed regions (JSON), which a later change must lie within.
    pub regions: String,
    /// The changed pixels, which a later change may exceed by a quarter at most.
    pub diff_pixels: i64,
    /// What changed, in a few words (`$49 → $79`, or the regions).
    pub description: String,
    pub until: Timestamp,
    pub created_by: String,
    pub created_at: Timestamp,
    /// The run whose change it is.
    pub run_id: RunId,
    /// Runs judged `ignored` by it since.
    pub matched: i64,
    pub last_matched_at: Option<Timestamp>,
}

/// A rectangle a reviewer drew on a capture of `monitor` at `viewport`: not compared.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DrawnMask {
    pub id: MaskId,
    pub monitor: MonitorName,
    pub viewport: String,
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// A monitor as the config file has it now.
#[derive(Debug, Clone)]
pub struct MonitorUpsert {
    pub name: MonitorName,
    pub url: String,
    pub config: String,
    pub enabled: bool,
}

impl MonitorUpsert {
    /// The rows for the monitors of a config.
    pub fn from_monitors(monitors: &[crate::config::Monitor]) -> Vec<MonitorUpsert> {
        monitors
            .iter()
            .map(|m| MonitorUpsert {
                name: m.name.clone(),
                url: m.url.to_string(),
                config: serde_json::to_string(m).expect("a monitor serialises"),
                enabled: m.enabled,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncSummary {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: RunId,
    pub monitor: MonitorName,
    pub viewport: String,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub verdict: Option<Verdict>,
    pub job_id: Option<JobId>,
    /// Re-captures made so far for `retries_on_diff`.
    pub attempt: i32,
    pub current_sha256: Option<String>,
    pub baseline_sha256: Option<String>,
    pub diff_sha256: Option<String>,
    pub diff_pixels: Option<i64>,
    pub total_pixels: Option<i64>,
    pub diff_ratio: Option<f64>,
    pub size_changed: Option<bool>,
    /// JSON array of `{x, y, width, height}`.
    pub regions: Option<String>,
    /// JSON array of `{region, text}`: what the words in each changed region say changed
    /// (`crate::diff::text::RegionChange`); `None` without words on both sides.
    pub text_changes: Option<String>,
    /// JSON `{before, after, changed}` for a PDF monitor's run (`crate::diff::pdf::PageReport`):
    /// the page counts of the baseline and the capture, and the pages that changed.
    pub pages: Option<String>,
    /// The capture's shots settled (two identical in a row); `None` before it was judged, or
    /// when nothing was checked (a zero stability timeout, a PDF, a provider that does not say).
    pub stable: Option<bool>,
    /// The page was taller than `max_height` and the capture was cut there.
    pub clipped: Option<bool>,
    /// JSON `{code, message, retryable}` when the verdict is `failed`.
    pub error: Option<String>,
    pub reviewed_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl Run {
    /// What the words in each changed region say changed, when the run has words on both sides.
    pub fn word_changes(&self) -> Option<Vec<crate::diff::text::RegionChange>> {
        self.text_changes.as_deref().and_then(|c| serde_json::from_str(c).ok())
    }

    /// The pages of a PDF monitor's run: counts on both sides, and which changed.
    pub fn page_report(&self) -> Option<crate::diff::pdf::PageReport> {
        self.pages.as_deref().and_then(|p| serde_json::from_str(p).ok())
    }
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub monitor: MonitorName,
    pub viewport: String,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub now: Timestamp,
}

/// The processor's result for a pending run.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub verdict: Option<Verdict>,
    pub current_sha256: Option<String>,
    pub baseline_sha256: Option<String>,
    pub diff_sha256: Option<String>,
    pub diff_pixels: Option<i64>,
    pub total_pixels: Option<i64>,
    pub diff_ratio: Option<f64>,
    pub size_changed: Option<bool>,
    pub regions: Option<String>,
    pub text_changes: Option<String>,
    pub pages: Option<String>,
    pub stable: Option<bool>,
    pub clipped: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CaptureJob {
    pub id: JobId,
    /// The request document as received (JSON).
    pub request: String,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: Timestamp,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub idempotency_key: Option<String>,
    pub asset_id: Option<AssetId>,
    /// The completion document (JSON) once finished.
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub request: String,
    pub idempotency_key: Option<String>,
    pub max_attempts: i32,
    pub now: Timestamp,
}

/// `insert_job` answers with the job it created, or the earlier job with the same idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum JobInsert {
    Created(CaptureJob),
    Existing(CaptureJob),
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Asset {
    pub id: AssetId,
    pub job_id: JobId,
    pub sha256: String,
    pub content_type: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub size: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: MessageId,
    /// The capture job whose result this is, or the run an event is about.
    #[sqlx(rename = "job_id")]
    pub subject: String,
    pub url: String,
    /// The `alerts:` destination whose secret signs it; empty for a capture result.
    pub sender: String,
    pub payload: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub lease_expires_at: Option<Timestamp>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: MessageId,
    /// The capture job, or the run an event is about.
    pub subject: String,
    pub url: String,
    /// The `alerts:` destination (its secret signs it); empty for a capture result.
    pub sender: String,
    pub payload: String,
    pub now: Timestamp,
}

/// The result of one attempt at an outbox row.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Delivered; `reference` is e.g. Slack's message `ts`.
    Sent {
        status: Option<i32>,
        reference: Option<String>,
    },
    Retry {
        at: Timestamp,
        status: Option<i32>,
        error: String,
    },
    Dead {
        status: Option<i32>,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ReceivedWebhook {
    /// The sender's id: ours are `msg_…`, an external provider's are its own.
    pub webhook_id: String,
    pub job_id: String,
    pub payload: String,
    pub received_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    /// Failed processing attempts so far (see [`DeliveryStore::defer_webhook`]).
    ///
    /// [`DeliveryStore::defer_webhook`]: super::DeliveryStore::defer_webhook
    pub attempts: i32,
    /// Of those, failed downloads of its capture: the budget before its run fails.
    pub fetch_failures: i32,
    /// Not processed again before this.
    pub retry_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Baseline {
    pub id: BaselineId,
    pub monitor: MonitorName,
    pub viewport: String,
    pub sha256: String,
    pub run_id: Option<RunId>,
    pub source: BaselineSource,
    pub approved_by: String,
    pub active: bool,
    pub created_at: Timestamp,
    pub reverted_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewBaseline {
    pub monitor: MonitorName,
    pub viewport: String,
    pub sha256: String,
    pub run_id: Option<RunId>,
    pub source: BaselineSource,
    pub approved_by: String,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Alert {
    pub id: AlertId,
    pub run_id: RunId,
    pub monitor: MonitorName,
    pub kind: AlertKind,
    pub payload: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub lease_expires_at: Option<Timestamp>,
    pub slack_ts: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// Set before the message is posted; with `slack_ts` once it is (a retry then only uploads
    /// the images). Set without `slack_ts`: an attempt may have posted it, unrecorded.
    pub slack_channel: Option<String>,
    /// A change alert's fingerprint: alerts with the same one in the same tick are one message.
    pub fingerprint: Option<String>,
    /// This alert went out as part of that alert's message.
    pub grouped_into: Option<AlertId>,
}

#[derive(Debug, Clone)]
pub struct NewAlert {
    pub id: AlertId,
    pub run_id: RunId,
    pub monitor: MonitorName,
    pub kind: AlertKind,
    pub payload: String,
    pub now: Timestamp,
    /// Events for `alerts:` destinations, queued in the same transaction.
    pub events: Vec<NewDelivery>,
    /// Set on a change alert that may go out with others ([`Alert::fingerprint`]); its events
    /// are then queued when its group is formed.
    pub fingerprint: Option<String>,
}
