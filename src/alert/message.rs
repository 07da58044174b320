//! What an alert says: the payload frozen when the alert is queued, and the Slack Block Kit
//! message built from it. Pure: no I/O, so the wording is unit-tested.

use serde::{Deserialize, Serialize};
use slack_morphism::prelude::*;

use crate::config::Monitor;
use crate::diff::Region;
use crate::diff::pdf::PageReport;
use crate::diff::text::{HEADLINE_CHARS, RegionChange, headline};
use crate::store::{AlertKind, Run, Verdict};

/// Action id of the *Approve as baseline* button (`POST /hooks/slack` reads it).
pub const APPROVE_ACTION: &str = "vigil_approve";
/// Action id of the *Reject* button: the change is not accepted, the baseline stays.
pub const REJECT_ACTION: &str = "vigil_reject";
/// Action id of the *Mute 24 h* button: the monitor's alerts stop for a day.
pub const MUTE_ACTION: &str = "vigil_mute";
/// Regions listed in the message; the rest are summarised as "and N more".
const MAX_REGIONS: usize = 5;

/// Everything the alert needs, captured when the verdict is recorded, so a config reload or a
/// later approval does not change an alert waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub kind: AlertKind,
    pub monitor: String,
    pub url: String,
    pub viewport: String,
    pub run_id: String,
    /// The monitor's `slack_channel`; `None` means `slack.channel`.
    pub channel: Option<String>,
    /// Whether the monitor routes its alerts to Slack (or the log): `slack` in its `alerts:`.
    #[serde(default = "routed")]
    pub slack: bool,
    pub diff_pixels: Option<i64>,
    pub total_pixels: Option<i64>,
    pub diff_ratio: Option<f64>,
    pub size_changed: bool,
    #[serde(default)]
    pub regions: Vec<Region>,
    /// What the words in each changed region say changed (empty without words).
    #[serde(default)]
    pub changes: Vec<RegionChange>,
    /// The text changes in one line (`$49 → $79`), the alert's first words.
    #[serde(default)]
    pub headline: Option<String>,
    /// A PDF monitor's pages: counts on both sides, and which changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PageReport>,
    /// The capture was cut at `max_height`.
    #[serde(default)]
    pub clipped: bool,
    /// For `unstable`: how many unsettled captures in a row it took.
    #[serde(default)]
    pub unstable_runs: Option<u32>,
    /// The capture's error, for `failed`.
    pub error: Option<String>,
    /// `server.public_url` + `runs/{id}`.
    pub review_url: String,
    /// Uploaded into the message's thread, in this order.
    #[serde(default)]
    pub images: Vec<AlertImage>,
    /// A change alert that may go out with others of its tick: until when it may wait for them
    /// (epoch milliseconds; its monitor's `group_window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_until: Option<i64>,
    /// Held by the monitor's quiet hours: not sent before this (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<i64>,
    /// Once its group is formed: every run the message stands for, this one first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<super::group::GroupMember>>,
}

/// Which alert a verdict calls for, given the verdicts of the runs before (newest first): a change
/// alerts every time; failures alert when a streak starts, and once more when it ends; captures
/// that never settle alert once, when `unstable_after` of them come in a row.
pub fn alert_kind(verdict: Verdict, previous: &[Verdict], unstable_after: u32) -> Option<AlertKind> {
    let was_failing = previous.first() == Some(&Verdict::Failed);
    match verdict {
        // Captured again, if not settled: a failure streak ends here.
        Verdict::Unstable if was_failing && unstable_after > 1 => Some(AlertKind::Recovered),
        Verdict::Unstable => {
            let streak = 1 + previous.iter().take_while(|v| **v == Verdict::Unstable).count();
            (streak == unstable_after.max(1) as usize).then_some(AlertKind::Unstable)
        }
        Verdict::Changed => Some(AlertKind::Changed),
        Verdict::Failed if !was_failing => Some(AlertKind::Failed),
        Verdict::Unchanged | Verdict::BaselineCreated | Verdict::Ignored if was_failing => {
            Some(AlertKind::Recovered)
        }
        _ => None,
    }
}

impl AlertPayload {
    /// The alert of a finished run (`monitor`: as configured now, if it still is), with the
    /// baseline, current and diff images of a change.
    pub fn for_run(
        run: &Run,
        monitor: Option<&Monitor>,
        kind: AlertKind,
        public_url: &url::Url,
    ) -> AlertPayload {
        let mut images = Vec::new();
        if matches!(kind, AlertKind::Changed | AlertKind::Unstable) {
            for (title, sha) in [
                ("baseline", &run.baseline_sha256),
                ("current", &run.current_sha256),
                ("diff", &run.diff_sha256),
            ] {
                if let Some(sha) = sha {
                    images.push(AlertImage {
                        title: format!("{} {} — {title}", run.monitor, run.viewport),
                        filename: format!("{}-{}-{title}.png", run.monitor, run.viewport),
                        sha256: sha.clone(),
                    });
                }
            }
        } else if let (AlertKind::Failed, Some(sha)) = (kind, &run.current_sha256) {
            // The page as the failed step or sign-in left it.
            images.push(AlertImage {
                title: format!("{} {} — the page when it failed", run.monitor, run.viewport),
                filename: format!("{}-{}-failed.png", run.monitor, run.viewport),
                sha256: sha.clone(),
            });
        }
        let words = run.word_changes();
        AlertPayload {
            kind,
            monitor: run.monitor.to_string(),
            url: monitor.map(|m| m.url.to_string()).unwrap_or_default(),
            viewport: run.viewport.clone(),
            run_id: run.id.to_string(),
            channel: monitor.and_then(|m| m.slack_channel.clone()),
            slack: monitor.is_none_or(|m| m.alerts.iter().any(|a| a == crate::config::SLACK_DESTINATION)),
            diff_pixels: run.diff_pixels,
            total_pixels: run.total_pixels,
            diff_ratio: run.diff_ratio,
            size_changed: run.size_changed.unwrap_or(false),
            regions: run.regions.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default(),
            headline: words.as_deref().and_then(|c| headline(c, HEADLINE_CHARS)),
            changes: words.unwrap_or_default(),
            pages: run.page_report(),
            clipped: run.clipped.unwrap_or(false),
            unstable_runs: (kind == AlertKind::Unstable)
                .then(|| monitor.map_or(3, |m| m.unstable_alert_after)),
            error: run.error.clone(),
            review_url: public_url.join(&format!("runs/{}", run.id)).expect("valid").to_string(),
            images,
            group_until: None,
            hold_until: None,
            group: None,
        }
    }
}

/// Alerts queued before `alerts:` existed went to Slack.
fn routed() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertImage {
    pub title: String,
    pub filename: String,
    pub sha256: String,
}

impl AlertPayload {
    /// One line for logs, notifications and Slack's `text` fallback.
    pub fn summary(&self) -> String {
        if let Some(group) = self.grouped() {
            return self.group_summary(group);
        }
        match self.kind {
            AlertKind::Changed => format!(
                "{} changed ({}): {}{} of pixels differ{}",
                self.monitor,
                self.viewport,
                self.headline.as_ref().map(|h| format!("{h} · ")).unwrap_or_default(),
                percent(self.diff_ratio.unwrap_or(0.0)),
                match (&self.pages, self.size_changed) {
                    (Some(pages), _) => format!(", {}", pages.said()),
                    (None, true) => ", page size changed".into(),
                    (None, false) => String::new(),
                }
            ),
            AlertKind::Failed => {
                format!("{} ({}) cannot be captured: {}", self.monitor, self.viewport, self.error_message())
            }
            AlertKind::Recovered => format!("{} ({}) is captured again", self.monitor, self.viewport),
            AlertKind::Unstable => format!(
                "{} ({}) never settled in {} captures in a row: {}{} of pixels differ, maybe the page moving",
                self.monitor,
                self.viewport,
                self.unstable_runs.unwrap_or(1),
                self.headline.as_ref().map(|h| format!("{h} · ")).unwrap_or_default(),
                percent(self.diff_ratio.unwrap_or(0.0)),
            ),
        }
    }

    /// [`AlertPayload::summary`] for Slack's `text` (also parsed for mentions and links): the
    /// parts that come from the page (an HTTP reason phrase, an error) are escaped, so a page
    /// cannot make it say `<!channel>` or add a link of its own.
    pub fn fallback_text(&self) -> String {
        escape(&truncate(&self.summary(), MAX_ERROR_CHARS))
    }

    /// The `message` of the capture's `{code, message}` error, or the raw text.
    fn error_message(&self) -> String {
        let Some(raw) = &self.error else { return "unknown error".into() };
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) => match (v["code"].as_str(), v["message"].as_str()) {
                (Some(code), Some(message)) => format!("{message} ({code})"),
                (Some(code), None) => code.to_owned(),
                _ => raw.clone(),
            },
            Err(_) => raw.clone(),
        }
    }

    /// The Block Kit message: header, facts, changed regions, and the two buttons.
    pub fn blocks(&self) -> Vec<SlackBlock> {
        if let Some(group) = self.grouped() {
            return self.group_blocks(group);
        }
        let header = match self.kind {
            AlertKind::Changed => match &self.headline {
                Some(h) => format!("{}: {h}", self.monitor),
                None => format!("Visual change: {}", self.monitor),
            },
            AlertKind::Failed => format!("Capture failing: {}", self.monitor),
            AlertKind::Recovered => format!("Capture recovered: {}", self.monitor),
            AlertKind::Unstable => format!("Capture not settling: {}", self.monitor),
        };
        let mut fields = vec![
            md(format!("*Monitor*\n{}", self.monitor)),
            md(format!("*Viewport*\n{}", self.viewport)),
            md(format!("*URL*\n{}", link(&self.url))),
        ];
        if matches!(self.kind, AlertKind::Changed | AlertKind::Unstable) {
            fields.push(md(format!(
                "*Changed*\n{} ({} of {} px)",
                percent(self.diff_ratio.unwrap_or(0.0)),
                self.diff_pixels.unwrap_or(0),
                self.total_pixels.unwrap_or(0)
            )));
        }
        let mut blocks: Vec<SlackBlock> = vec![
            SlackHeaderBlock::new(truncate(&header, 150).into()).into(),
            SlackSectionBlock::new().with_fields(fields).into(),
        ];
        match self.kind {
            AlertKind::Changed => {
                let mut text = String::new();
                if let Some(pages) = &self.pages {
                    text.push_str(&format!("*PDF*: {}.\n", pages.said()));
                } else if self.size_changed {
                    text.push_str("The page size changed.\n");
                }
                if self.clipped {
                    text.push_str("The page is taller than `max_height`: the capture was cut there.\n");
                }
                text.push_str(&self.regions_text());
                if !text.is_empty() {
                    blocks.push(verbatim_section(text));
                }
            }
            AlertKind::Unstable => {
                let text = format!(
                    "The last {} captures never settled: their shots kept changing for the whole \
                     `stability_timeout`, and each differed from the baseline. Something on the page moves \
                     (a clock, a carousel, a video): mask or hide it (`mask:`, `hide:`). Until it settles, \
                     further changes of this page do not alert.\n",
                    self.unstable_runs.unwrap_or(1)
                );
                blocks.push(verbatim_section(text + &self.regions_text()));
            }
            AlertKind::Failed => {
                let error = truncate(&self.error_message(), MAX_ERROR_CHARS);
                blocks.push(
                    SlackSectionBlock::new().with_text(md(format!("*Error*\n{}", escape(&error)))).into(),
                );
            }
            AlertKind::Recovered => {}
        }
        let open = SlackBlockButtonElement::new(pt!("Open review"))
            .with_action_id("vigil_open".into())
            .with_url(self.review_url.parse().expect("review URLs are built from a valid base"));
        let mut buttons = Vec::new();
        if matches!(self.kind, AlertKind::Changed | AlertKind::Unstable) {
            buttons.push(SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(pt!("Approve as baseline"))
                    .with_action_id(APPROVE_ACTION.into())
                    .with_value(self.run_id.clone())
                    .with_style(SlackBlockButtonStyle::Primary),
            ));
        }
        if self.kind == AlertKind::Changed {
            buttons.push(SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(pt!("Reject"))
                    .with_action_id(REJECT_ACTION.into())
                    .with_value(self.run_id.clone())
                    .with_style(SlackBlockButtonStyle::Danger),
            ));
        }
        if self.kind != AlertKind::Recovered {
            buttons.push(SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(pt!("Mute 24 h"))
                    .with_action_id(MUTE_ACTION.into())
                    .with_value(self.monitor.clone()),
            ));
        }
        buttons.push(SlackActionBlockElement::Button(open));
        blocks.push(SlackActionsBlock::new(buttons).into());
        blocks.push(
            SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(
                format!("run `{}`", self.run_id),
            ))])
            .into(),
        );
        blocks
    }
}

impl AlertPayload {
    /// The changed regions (at most [`MAX_REGIONS`]), each with what its words say changed;
    /// the page's words cut before escaping, so five regions of `&` (five characters each,
    /// escaped) stay inside a section's 3,000.
    pub(super) fn regions_text(&self) -> String {
        let mut text = String::new();
        if self.regions.is_empty() {
            return text;
        }
        text.push_str("*Changed regions* (x, y, width × height):\n");
        for r in self.regions.iter().take(MAX_REGIONS) {
            text.push_str(&format!("• {}, {} — {} × {}", r.x, r.y, r.width, r.height));
            if let Some(c) = self.changes.iter().find(|c| c.region == *r) {
                text.push_str(&format!(": {}", escape(&c.said(MAX_SAID_CHARS))));
            }
            text.push('\n');
        }
        if self.regions.len() > MAX_REGIONS {
            text.push_str(&format!("• and {} more\n", self.regions.len() - MAX_REGIONS));
        }
        text
    }
}

/// A section of text that quotes the page: a URL or a channel name in the page's words stays
/// text, not a link (`*`, `_` and `~` still format).
pub(super) fn verbatim_section(text: String) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText { text, verbatim: Some(true) }))
        .into()
}

pub(super) fn md(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))
}

/// `0.0345` → `3.45%`; small changes keep their digits (`0.004%`), so a real change never reads 0%.
pub fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 0.01 {
        format!("{p:.4}%")
    } else {
        format!("{p:.2}%")
    }
}

/// Slack's limits: a section field's text (2,000), a section's text (3,000). The page-derived
/// parts are cut so that even escaped (`&` becomes five characters) they stay inside them.
const MAX_URL_CHARS: usize = 900;
const MAX_SHOWN_URL_CHARS: usize = 150;
const MAX_ERROR_CHARS: usize = 550;
/// The words of one listed region: 5 × (90 × 5 escaped + the region's figures) < 3,000.
const MAX_SAID_CHARS: usize = 90;

/// A link to `url` for a mrkdwn field, within Slack's 2,000-character field limit: `|`, `<`
/// and `>` cannot appear in a link's target (they would end it), so they are percent-encoded; a
/// URL too long to link is shown as text, cut.
fn link(url: &str) -> String {
    let target = url.replace('|', "%7C").replace('<', "%3C").replace('>', "%3E");
    let shown = escape(&truncate(url, MAX_SHOWN_URL_CHARS));
    if target.chars().count() <= MAX_URL_CHARS {
        format!("<{target}|{shown}>")
    } else {
        escape(&truncate(url, MAX_URL_CHARS / 3))
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(super) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        s.chars().take(max_chars - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
pub(super) mod tests;
