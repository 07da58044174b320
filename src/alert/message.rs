//! What an alert says: the payload frozen when the alert is queued, and the Slack Block Kit
//! message built from it. Pure: no I/O, so the wording is unit-tested.

use serde::{Deserialize, Serialize};
use slack_morphism::prelude::*;

use crate::config::Monitor;
use crate::diff::Region;
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
        Verdict::Unchanged | Verdict::BaselineCreated if was_failing => Some(AlertKind::Recovered),
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
            clipped: run.clipped.unwrap_or(false),
            unstable_runs: (kind == AlertKind::Unstable)
                .then(|| monitor.map_or(3, |m| m.unstable_alert_after)),
            error: run.error.clone(),
            review_url: public_url.join(&format!("runs/{}", run.id)).expect("valid").to_string(),
            images,
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
        match self.kind {
            AlertKind::Changed => format!(
                "{} changed ({}): {}{} of pixels differ{}",
                self.monitor,
                self.viewport,
                self.headline.as_ref().map(|h| format!("{h} · ")).unwrap_or_default(),
                percent(self.diff_ratio.unwrap_or(0.0)),
                if self.size_changed { ", page size changed" } else { "" }
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
                if self.size_changed {
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
    fn regions_text(&self) -> String {
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
fn verbatim_section(text: String) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText { text, verbatim: Some(true) }))
        .into()
}

fn md(text: String) -> SlackBlockText {
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

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        s.chars().take(max_chars - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_always_alert_failures_once_per_streak_and_recoveries_once() {
        use Verdict::*;
        assert_eq!(alert_kind(Changed, &[Changed], 3), Some(AlertKind::Changed));
        assert_eq!(alert_kind(Failed, &[Unchanged], 3), Some(AlertKind::Failed), "a streak starts");
        assert_eq!(alert_kind(Failed, &[], 3), Some(AlertKind::Failed));
        assert_eq!(alert_kind(Failed, &[Failed], 3), None, "the streak goes on");
        assert_eq!(alert_kind(Unchanged, &[Failed], 3), Some(AlertKind::Recovered));
        assert_eq!(alert_kind(BaselineCreated, &[Failed], 3), Some(AlertKind::Recovered));
        assert_eq!(alert_kind(Unchanged, &[Unchanged], 3), None);
        assert_eq!(alert_kind(Approved, &[Failed], 3), None, "a person's decision alerts no one");
        assert_eq!(alert_kind(Unstable, &[Unchanged], 3), None, "one unsettled capture");
        assert_eq!(alert_kind(Unstable, &[Unstable, Unchanged], 3), None);
        assert_eq!(
            alert_kind(Unstable, &[Unstable, Unstable, Unchanged], 3),
            Some(AlertKind::Unstable),
            "the third"
        );
        assert_eq!(alert_kind(Unstable, &[Unstable, Unstable, Unstable], 3), None, "once a streak");
        assert_eq!(alert_kind(Unstable, &[], 1), Some(AlertKind::Unstable));
        assert_eq!(alert_kind(Unchanged, &[Unstable], 3), None, "no recovery alert for settling");
        assert_eq!(alert_kind(Unstable, &[Failed], 3), Some(AlertKind::Recovered), "captured again");
        assert_eq!(
            alert_kind(Unstable, &[Failed], 1),
            Some(AlertKind::Unstable),
            "it says more than recovered"
        );
        assert_eq!(alert_kind(Unchanged, &[Unstable, Failed], 3), None, "recovered already");
        assert_eq!(alert_kind(Failed, &[Unstable, Failed], 3), Some(AlertKind::Failed), "a new streak");
    }

    fn changed() -> AlertPayload {
        AlertPayload {
            kind: AlertKind::Changed,
            monitor: "pricing".into(),
            url: "https://example.com/pricing?a=1&b=2".into(),
            viewport: "1280x800".into(),
            run_id: "run_01J0000000000000000000000".into(),
            channel: None,
            slack: true,
            diff_pixels: Some(4096),
            total_pixels: Some(1_024_000),
            diff_ratio: Some(0.004),
            size_changed: false,
            regions: (0..7).map(|i| Region { x: i * 10, y: 20, width: 30, height: 40 }).collect(),
            changes: Vec::new(),
            headline: None,
            clipped: false,
            unstable_runs: None,
            error: None,
            review_url: "http://vigil.local:8080/runs/run_01J0000000000000000000000".into(),
            images: Vec::new(),
        }
    }

    #[test]
    fn an_alert_says_first_what_the_words_say_changed() {
        use crate::diff::text::TextChange;
        let regions =
            vec![Region { x: 0, y: 20, width: 30, height: 40 }, Region { x: 0, y: 90, width: 9, height: 9 }];
        let changes = vec![
            RegionChange {
                region: regions[0],
                text: vec![TextChange::Replaced { before: "$49".into(), after: "<!channel> $79".into() }],
                too_many_words: false,
            },
            RegionChange { region: regions[1], text: Vec::new(), too_many_words: false },
        ];
        let alert =
            AlertPayload { headline: headline(&changes, HEADLINE_CHARS), changes, regions, ..changed() };
        assert!(
            alert.summary().starts_with("pricing changed (1280x800): $49 → <!channel> $79 · "),
            "{}",
            alert.summary()
        );
        assert!(
            alert.fallback_text().contains("$49 → &lt;!channel&gt; $79"),
            "page text escaped: {}",
            alert.fallback_text()
        );
        let json = serde_json::to_value(alert.blocks()).unwrap();
        assert_eq!(json[0]["type"], "header");
        assert_eq!(json[0]["text"]["type"], "plain_text", "no mrkdwn, no mentions from the page");
        assert_eq!(json[0]["text"]["text"], "pricing: $49 → <!channel> $79");
        let listed = json[2]["text"]["text"].as_str().unwrap();
        assert!(listed.contains("• 0, 20 — 30 × 40: $49 → &lt;!channel&gt; $79\n"), "{listed}");
        assert!(listed.contains("• 0, 90 — 9 × 9: image or graphic change\n"), "{listed}");
    }

    #[test]
    fn a_page_full_of_ampersands_keeps_the_alert_within_slacks_limits() {
        use crate::diff::text::TextChange;
        let regions: Vec<Region> = (0..7).map(|i| Region { x: i, y: 0, width: 1, height: 1 }).collect();
        let amps = "&".repeat(100);
        let changes = regions
            .iter()
            .map(|r| RegionChange {
                region: *r,
                text: (0..10)
                    .map(|_| TextChange::Replaced { before: amps.clone(), after: amps.clone() })
                    .collect(),
                too_many_words: false,
            })
            .collect::<Vec<_>>();
        let alert = AlertPayload {
            headline: headline(&changes, HEADLINE_CHARS),
            changes,
            regions,
            size_changed: true,
            ..changed()
        };
        let json = serde_json::to_value(alert.blocks()).unwrap();
        let section = json[2]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() <= 3000, "{} characters", section.chars().count());
        assert_eq!(json[2]["text"]["verbatim"], true);
        assert!(json[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        assert!(alert.fallback_text().chars().count() < 4000);
    }

    #[test]
    fn changed_alert_has_facts_regions_and_its_buttons() {
        let json = serde_json::to_value(changed().blocks()).unwrap();
        let blocks = json.as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Visual change: pricing");
        let fields: Vec<&str> =
            blocks[1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
        assert!(fields.contains(&"*Viewport*\n1280x800"), "{fields:?}");
        assert!(fields.contains(&"*Changed*\n0.40% (4096 of 1024000 px)"), "{fields:?}");
        assert!(fields.iter().any(|f| f.contains("a=1&amp;b=2")), "URL text escaped: {fields:?}");
        let regions = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(regions.contains("• 0, 20 — 30 × 40"), "{regions}");
        assert!(regions.contains("and 2 more"), "{regions}");
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        let buttons = actions["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["action_id"], APPROVE_ACTION);
        assert_eq!(buttons[0]["value"], "run_01J0000000000000000000000");
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], REJECT_ACTION);
        assert_eq!(
            (buttons[1]["value"].as_str(), buttons[1]["style"].as_str()),
            (buttons[0]["value"].as_str(), Some("danger"))
        );
        assert_eq!(
            (buttons[2]["action_id"].as_str(), buttons[2]["value"].as_str()),
            (Some(MUTE_ACTION), Some("pricing"))
        );
        assert_eq!(buttons[3]["url"], "http://vigil.local:8080/runs/run_01J0000000000000000000000");
    }

    #[test]
    fn failed_alert_explains_the_error_and_offers_no_approval() {
        let mut p = changed();
        p.kind = AlertKind::Failed;
        p.error = Some(r#"{"code":"navigation_timeout","message":"page did not load in 30s"}"#.into());
        assert_eq!(
            p.summary(),
            "pricing (1280x800) cannot be captured: page did not load in 30s (navigation_timeout)"
        );
        let json = serde_json::to_string(&p.blocks()).unwrap();
        assert!(json.contains("page did not load in 30s"));
        assert!(!json.contains(APPROVE_ACTION));
    }

    #[test]
    fn percentages_never_round_a_change_to_zero() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.0000123), "0.0012%");
        assert_eq!(percent(0.0345), "3.45%");
        assert_eq!(percent(1.0), "100.00%");
    }

    #[test]
    fn payload_round_trips_through_the_outbox() {
        let p = changed();
        let back: AlertPayload = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(p.summary().starts_with("pricing changed (1280x800): 0.40%"));
    }

    #[test]
    fn page_derived_text_is_escaped_and_every_part_stays_within_slacks_limits() {
        // A 1,236-character URL with a `|`, and an error a hostile page wrote.
        let url = format!("https://example.com/a|b?q={}", "&".repeat(1200));
        let failed = AlertPayload {
            kind: AlertKind::Failed,
            url: url.clone(),
            error: Some(
                serde_json::json!({
                    "code": "http_error",
                    "message": format!("the page answered HTTP 500 <!channel> <https://evil.example|Approve now> {}", "&".repeat(5000))
                })
                .to_string(),
            ),
            ..changed()
        };
        let json = serde_json::to_value(failed.blocks()).unwrap();
        let blocks = json.as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        for field in blocks[1]["fields"].as_array().unwrap() {
            assert!(field["text"].as_str().unwrap().chars().count() <= 2000, "{field}");
        }
        let text = json.to_string();
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://evil"),
            "page text reached Slack as markup"
        );
        for block in blocks.iter().filter(|b| b["type"] == "section") {
            if let Some(t) = block["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000, "section text of {}", t.chars().count());
            }
        }
        let fallback = failed.fallback_text();
        assert!(!fallback.contains("<!channel>") && fallback.contains("&lt;!channel&gt;"), "{fallback}");
        assert!(fallback.chars().count() <= 3000);
        // A URL short enough is a link whose target keeps its `|` encoded.
        let short = AlertPayload { url: "https://example.com/a|b".into(), ..changed() };
        let json = serde_json::to_value(short.blocks()).unwrap().to_string();
        assert!(json.contains("<https://example.com/a%7Cb|https://example.com/a|b>"), "{json}");
    }
}
