//! One run as the API shows it (`GET /api/runs/{id}` and every list of runs).

use serde::Serialize;
use serde_json::{Value, json};

use crate::diff::text::{HEADLINE_CHARS, RegionChange, headline};
use crate::store::Run;

/// One run as the API shows it: `verdict` is `null` while the run is pending.
#[derive(Serialize)]
pub struct RunView {
    pub id: String,
    pub monitor: String,
    pub viewport: String,
    pub status: String,
    pub verdict: Option<String>,
    pub trigger: String,
    pub diff_pixels: Option<i64>,
    pub total_pixels: Option<i64>,
    pub diff_ratio: Option<f64>,
    pub size_changed: Option<bool>,
    pub regions: Value,
    /// What the words in each changed region say changed; `null` without words on both sides.
    pub text_changes: Option<Vec<RegionChange>>,
    /// The text changes in one line (`$49 → $79`); `null` when no word changed.
    pub headline: Option<String>,
    /// A PDF monitor's run: the page counts of the baseline and the capture, and the pages that
    /// changed; `null` for image captures.
    pub pages: Option<crate::diff::pdf::PageReport>,
    /// The capture's shots settled; `null` before it was judged or when nothing was checked.
    pub stable: Option<bool>,
    /// The capture was cut at `max_height`.
    pub clipped: Option<bool>,
    pub error: Option<Value>,
    pub attempt: i32,
    pub reviewed_by: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub images: Images,
    /// `GET /api/runs/{id}` only: the runs alerted as one with this one (the same change on
    /// several pages in one tick), this one included; absent when it was alerted alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct Images {
    pub baseline: Option<String>,
    pub current: Option<String>,
    pub diff: Option<String>,
}

impl RunView {
    pub fn new(run: &Run) -> Self {
        let link = |name: &str, present: bool| present.then(|| format!("/api/runs/{}/{name}.png", run.id));
        let words = run.word_changes();
        RunView {
            id: run.id.to_string(),
            monitor: run.monitor.to_string(),
            viewport: run.viewport.clone(),
            status: run.status.to_string(),
            verdict: run.verdict.map(|v| v.to_string()),
            trigger: run.trigger.to_string(),
            diff_pixels: run.diff_pixels,
            total_pixels: run.total_pixels,
            diff_ratio: run.diff_ratio,
            size_changed: run.size_changed,
            regions: run.regions.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(json!([])),
            headline: words.as_deref().and_then(|c| headline(c, HEADLINE_CHARS)),
            text_changes: words,
            pages: run.page_report(),
            stable: run.stable,
            clipped: run.clipped,
            error: run.error.as_deref().map(|e| serde_json::from_str(e).unwrap_or_else(|_| json!(e))),
            attempt: run.attempt,
            reviewed_by: run.reviewed_by.clone(),
            created_at: run.created_at.to_string(),
            completed_at: run.completed_at.map(|t| t.to_string()),
            images: Images {
                baseline: link("baseline", run.baseline_sha256.is_some()),
                current: link("current", run.current_sha256.is_some()),
                diff: link("diff", run.diff_sha256.is_some()),
            },
            group: None,
        }
    }
}
