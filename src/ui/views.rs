//! What each page shows, prepared for the templates (strings and flags; the templates stay
//! free of logic).

use askama::Template;

use crate::alert::message::percent;
use crate::config::{Monitor, MonitorName};
use crate::diff::Region;
use crate::store::{Baseline, Run, RunStatus, Verdict};

/// Dashboard filters: value and label.
pub const FILTERS: &[(&str, &str)] = &[
    ("", "All"),
    ("changed", "Changed"),
    ("failed", "Failed"),
    ("unchanged", "Unchanged"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("baseline_created", "New baseline"),
    ("skipped", "Skipped"),
    ("unstable", "Unstable"),
    ("ignored", "Ignored"),
    ("pending", "Running"),
    ("never", "Never run"),
];

pub struct Layout {
    pub csrf: String,
    pub pending: i64,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub error: Option<String>,
    pub next: String,
}

pub struct MonitorRow {
    pub name: String,
    pub url: String,
    pub viewport: String,
    /// A verdict, `pending` or `never`.
    pub status: String,
    pub last_run: String,
    pub diff: String,
    pub run_id: String,
    pub thumbnail: Option<String>,
    pub to_review: i64,
    pub enabled: bool,
    /// "muted until …" when its alerts are muted.
    pub muted: Option<String>,
}

/// How much a verdict needs attention: the dashboard shows a monitor's most urgent viewport.
fn urgency(r: &Run) -> u8 {
    match (r.status, r.verdict) {
        (_, Some(Verdict::Failed)) => 0,
        (_, Some(Verdict::Changed | Verdict::Unstable)) => 1,
        (RunStatus::Pending, _) | (_, None) => 2,
        (_, Some(Verdict::Rejected)) => 3,
        _ => 4,
    }
}

impl MonitorRow {
    /// `latest`: the newest run of each of the monitor's viewports.
    pub fn new(m: &Monitor, latest: &[&Run], to_review: i64, mute: Option<&crate::store::Mute>) -> Self {
        let latest = latest.iter().copied().min_by_key(|r| (urgency(r), std::cmp::Reverse(r.created_at)));
        MonitorRow {
            name: m.name.to_string(),
            url: m.url.to_string(),
            viewport: latest.map_or_else(
                || m.viewports.first().map(|v| v.key()).unwrap_or_default(),
                |r| r.viewport.clone(),
            ),
            status: match latest {
                None => "never".into(),
                Some(r) if r.status == RunStatus::Pending => "pending".into(),
                Some(r) => r.verdict.map_or("pending".into(), |v| v.to_string()),
            },
            last_run: latest.map_or("never".into(), |r| short_time(&r.created_at.to_string())),
            diff: latest.and_then(|r| r.diff_ratio).map(percent).unwrap_or_default(),
            run_id: latest.map(|r| r.id.to_string()).unwrap_or_default(),
            thumbnail: latest
                .filter(|r| r.current_sha256.is_some())
                .map(|r| format!("/api/runs/{}/current.png", r.id)),
            to_review,
            enabled: m.enabled,
            muted: mute.map(|x| {
                format!("alerts muted until {} by {}", short_time(&x.until.to_string()), x.muted_by)
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard {
    pub layout: Layout,
    pub rows: Vec<MonitorRow>,
    pub filter: String,
    pub filters: &'static [(&'static str, &'static str)],
    pub page: usize,
    pub pages: usize,
    pub shown: usize,
    pub total: usize,
}

pub struct RunRow {
    pub id: String,
    pub viewport: String,
    pub status: String,
    pub diff: String,
    pub when: String,
    pub trigger: String,
    pub reviewed_by: String,
}

impl RunRow {
    pub fn new(r: &Run) -> Self {
        RunRow {
            id: r.id.to_string(),
            viewport: r.viewport.clone(),
            status: r.verdict.map_or("pending".into(), |v| v.to_string()),
            diff: r.diff_ratio.map(percent).unwrap_or_default(),
            when: short_time(&r.created_at.to_string()),
            trigger: r.trigger.to_string(),
            reviewed_by: r.reviewed_by.clone().unwrap_or_default(),
        }
    }
}

pub struct HistoryView {
    pub viewport: String,
    pub revert_url: String,
    pub entries: Vec<HistoryEntry>,
    pub can_revert: bool,
}

pub struct HistoryEntry {
    pub when: String,
    pub source: String,
    pub by: String,
    pub run_id: String,
    pub active: bool,
    pub reverted: bool,
}

impl HistoryView {
    pub fn new(monitor: &MonitorName, viewport: &str, history: &[Baseline]) -> Self {
        let usable = history.iter().filter(|b| b.reverted_at.is_none()).count();
        HistoryView {
            viewport: viewport.to_owned(),
            revert_url: format!("/baselines/{monitor}/{viewport}/revert"),
            can_revert: usable > 1,
            entries: history
                .iter()
                .map(|b| HistoryEntry {
                    when: short_time(&b.created_at.to_string()),
                    source: b.source.to_string(),
                    by: b.approved_by.clone(),
                    run_id: b.run_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                    active: b.active,
                    reverted: b.reverted_at.is_some(),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "monitor.html")]
pub struct MonitorPage {
    pub layout: Layout,
    pub name: String,
    pub url: String,
    pub schedule: String,
    pub runs: Vec<RunRow>,
    pub histories: Vec<HistoryView>,
    pub changes: usize,
    pub older: Option<String>,
    /// The masks drawn on the review page, and as YAML for the config.
    pub masks: Vec<MaskRow>,
    pub masks_yaml: String,
}

pub struct MaskRow {
    pub id: String,
    pub viewport: String,
    pub rect: String,
    pub created_by: String,
    /// Drawn on a viewport the monitor no longer has: not applied.
    pub stale: bool,
}

impl MaskRow {
    pub fn new(m: &crate::store::DrawnMask, viewports: &[String]) -> Self {
        MaskRow {
            id: m.id.to_string(),
            viewport: m.viewport.clone(),
            rect: rect(m),
            created_by: m.created_by.clone(),
            stale: !viewports.contains(&m.viewport),
        }
    }
}

/// `x, y — w × h`.
pub fn rect(m: &crate::store::DrawnMask) -> String {
    format!("{}, {} — {} × {}", m.x, m.y, m.width, m.height)
}

pub struct RegionView {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// What its words say changed; empty when the run has no words.
    pub said: String,
}

pub struct RunDetail {
    pub id: String,
    pub monitor: String,
    pub url: String,
    pub viewport: String,
    pub status: String,
    pub diff: String,
    pub diff_pixels: String,
    pub size_changed: bool,
    /// A PDF monitor's run: which pages changed (`page 2 of 3 changed`); empty otherwise.
    pub pages: String,
    /// The capture never settled (`stable: false`).
    pub unsettled: bool,
    pub clipped: bool,
    pub when: String,
    pub reviewed_by: String,
    pub error: String,
    pub baseline: Option<String>,
    pub current: Option<String>,
    /// A failed run's picture of the page as the failed step, sign-in or wait left it.
    pub failing_state: Option<String>,
    pub diff_image: Option<String>,
    pub regions: Vec<RegionView>,
    /// The text changes in one line (`$49 → $79`); empty when no word changed.
    pub headline: String,
    pub can_approve: bool,
    pub can_reject: bool,
    /// A change that can be ignored: one recorded with regions and no page-size change.
    pub can_ignore: bool,
}

impl RunDetail {
    pub fn new(r: &Run, url: String) -> Self {
        let image =
            |name: &str, sha: &Option<String>| sha.as_ref().map(|_| format!("/api/runs/{}/{name}.png", r.id));
        let regions: Vec<Region> =
            r.regions.as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
        let status = r.verdict.map_or("pending".into(), |v| v.to_string());
        let failed = r.verdict == Some(crate::store::Verdict::Failed);
        let changes = r.word_changes();
        let said = |g: &Region| {
            let change = changes.as_ref().and_then(|c| c.iter().find(|c| c.region == *g));
            change.map(|c| c.said(400)).unwrap_or_default()
        };
        RunDetail {
            id: r.id.to_string(),
            monitor: r.monitor.to_string(),
            url,
            viewport: r.viewport.clone(),
            diff: r.diff_ratio.map(percent).unwrap_or_default(),
            diff_pixels: r.diff_pixels.map(|p| p.to_string()).unwrap_or_default(),
            size_changed: r.size_changed.unwrap_or(false),
            // (An unchanged run's regions were below the threshold: no page "changed".)
            pages: r
                .page_report()
                .filter(|_| r.verdict != Some(crate::store::Verdict::Unchanged))
                .map(|p| p.said())
                .unwrap_or_default(),
            unsettled: r.stable == Some(false),
            clipped: r.clipped.unwrap_or(false),
            when: short_time(&r.created_at.to_string()),
            reviewed_by: r.reviewed_by.clone().unwrap_or_default(),
            error: r
                .error
                .as_deref()
                .map(|e| {
                    serde_json::from_str::<serde_json::Value>(e)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| e.to_owned())
                })
                .unwrap_or_default(),
            baseline: image("baseline", &r.baseline_sha256),
            current: image("current", &r.current_sha256).filter(|_| !failed),
            failing_state: image("current", &r.current_sha256).filter(|_| failed),
            diff_image: image("diff", &r.diff_sha256),
            regions: regions
                .iter()
                .map(|g| RegionView { x: g.x, y: g.y, width: g.width, height: g.height, said: said(g) })
                .collect(),
            headline: changes
                .and_then(|c| crate::diff::text::headline(&c, crate::diff::text::HEADLINE_CHARS))
                .unwrap_or_default(),
            can_approve: r.current_sha256.is_some()
                && matches!(status.as_str(), "changed" | "rejected" | "unstable" | "ignored"),
            can_reject: status == "changed",
            can_ignore: matches!(status.as_str(), "changed" | "rejected" | "unstable" | "ignored")
                && r.size_changed != Some(true)
                && !regions.is_empty(),
            status,
        }
    }
}

#[derive(Template)]
#[template(path = "run.html")]
pub struct ReviewPage {
    pub layout: Layout,
    pub run: RunDetail,
    /// The change awaiting review created just after / before this run (keys `k` / `j`).
    pub newer: Option<String>,
    pub older: Option<String>,
    pub monitor_changes: usize,
    /// The runs alerted as one with this one (the same change in the same tick), this one
    /// included; empty when it stood alone.
    pub group: Vec<GroupLink>,
    /// How many runs the group has (more than are listed, past 100).
    pub group_total: usize,
    /// The masks drawn on this monitor and viewport, as `x, y — w × h`.
    pub masks: Vec<String>,
}

/// A run of a change group on the review page.
pub struct GroupLink {
    pub id: String,
    pub monitor: String,
    pub viewport: String,
    pub status: String,
}

impl GroupLink {
    pub fn new(r: &Run) -> Self {
        GroupLink {
            id: r.id.to_string(),
            monitor: r.monitor.to_string(),
            viewport: r.viewport.clone(),
            status: r.verdict.map_or("pending".into(), |v| v.to_string()),
        }
    }
}

/// `2026-11-27T10:07:05.731Z` → `2026-11-27 10:07:05 UTC`.
pub(super) fn short_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_owned(),
    }
}
