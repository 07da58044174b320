//! One alert for one change (docs/architecture.md §7): when several monitors, or viewports,
//! change the same way in the same tick, their change alerts go out as one message, with one
//! *Approve all* button, and one event per destination listing every run.
//!
//! A change alert gets a **fingerprint** when it is queued: the words that changed (`Acme` →
//! `Acme Corp`), or, when no word did, the changed regions and their pixel count — with where
//! it goes (channel, Slack or not), so one message can stand for all. It then waits, at most its
//! monitor's `group_window` (60 s), while runs begun in that window before its own are still
//! being captured. The oldest alert of a fingerprint then gathers the others still queued into it
//! (they are marked sent, `grouped_into` it) and its events are queued for the whole group; a
//! younger one waits for the oldest while both are queued, so two senders make one group.
//! Waiting never counts as an attempt, and the window bounds it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slack_morphism::prelude::*;

use super::message::{escape, md, percent, truncate, verbatim_section};
use super::{AlertPayload, Alerter};
use crate::diff::text::change_key;
use crate::store::{Alert, AlertKind, GroupForming, StoreError};
use crate::time::Timestamp;

/// Action id of the *Approve all* button of a grouped alert (its value: the first run's id).
pub const APPROVE_ALL_ACTION: &str = "vigil_approve_all";
/// How often a waiting alert looks again whether its tick's runs are judged.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Runs listed in a grouped message; the rest are counted.
const MAX_LISTED: usize = 12;

/// One run a grouped alert stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub run_id: String,
    pub monitor: String,
    pub viewport: String,
    pub url: String,
    pub diff_ratio: Option<f64>,
    pub review_url: String,
}

impl GroupMember {
    pub fn of(p: &AlertPayload) -> Self {
        GroupMember {
            run_id: p.run_id.clone(),
            monitor: p.monitor.clone(),
            viewport: p.viewport.clone(),
            url: p.url.clone(),
            diff_ratio: p.diff_ratio,
            review_url: p.review_url.clone(),
        }
    }
}

/// The fingerprint of a change alert: what changed ([`change_key`]) and where the alert goes;
/// `None` for other kinds and for changes without a key.
pub fn fingerprint(p: &AlertPayload) -> Option<String> {
    if p.kind != AlertKind::Changed {
        return None;
    }
    let what = change_key(&p.regions, &p.changes, p.diff_pixels.unwrap_or(0), p.size_changed)?;
    let whither = format!("{}\0{}", p.slack, p.channel.as_deref().unwrap_or(""));
    let digest = Sha256::digest(format!("{whither}\0{what}").as_bytes());
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

impl AlertPayload {
    /// The other runs this alert stands for (empty unless it gathered some).
    pub fn grouped(&self) -> Option<&[GroupMember]> {
        self.group.as_deref().filter(|g| g.len() > 1)
    }

    /// [`AlertPayload::summary`] of a grouped alert.
    pub(super) fn group_summary(&self, group: &[GroupMember]) -> String {
        let pages: Vec<String> = group.iter().take(MAX_LISTED).map(member_name).collect();
        let more = group.len().saturating_sub(MAX_LISTED);
        format!(
            "{} pages changed the same way: {}({}{})",
            group.len(),
            self.headline.as_ref().map(|h| format!("{h} ")).unwrap_or_default(),
            pages.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        )
    }

    /// [`AlertPayload::blocks`] of a grouped alert: the runs, what changed, *Approve all*.
    pub(super) fn group_blocks(&self, group: &[GroupMember]) -> Vec<SlackBlock> {
        let header = match &self.headline {
            Some(h) => format!("{} pages: {h}", group.len()),
            None => format!("The same visual change on {} pages", group.len()),
        };
        let mut listed = format!("*The same change on {} pages*\n", group.len());
        for m in group.iter().take(MAX_LISTED) {
            let name = escape(&truncate(&member_name(m), 80));
            let review = m.review_url.replace('|', "%7C").replace('<', "%3C").replace('>', "%3E");
            listed.push_str(&format!("• <{review}|{name}> — {}\n", percent(m.diff_ratio.unwrap_or(0.0))));
        }
        if group.len() > MAX_LISTED {
            listed.push_str(&format!("• and {} more\n", group.len() - MAX_LISTED));
        }
        let mut blocks: Vec<SlackBlock> = vec![
            SlackHeaderBlock::new(truncate(&header, 150).into()).into(),
            // (A long `public_url` makes long links: cut within the section's 3,000.)
            SlackSectionBlock::new().with_text(md(truncate(&listed, 2_900))).into(),
        ];
        let regions = self.regions_text();
        if !regions.is_empty() {
            blocks.push(verbatim_section(format!("In {}:\n{regions}", escape(&member_name(&group[0])))));
        }
        let approve = SlackBlockButtonElement::new(format!("Approve all {}", group.len()).into())
            .with_action_id(APPROVE_ALL_ACTION.into())
            .with_value(self.run_id.clone())
            .with_style(SlackBlockButtonStyle::Primary);
        let open = SlackBlockButtonElement::new(pt!("Open review"))
            .with_action_id("vigil_open".into())
            .with_url(self.review_url.parse().expect("review URLs are built from a valid base"));
        blocks.push(
            SlackActionsBlock::new(vec![
                SlackActionBlockElement::Button(approve),
                SlackActionBlockElement::Button(open),
            ])
            .into(),
        );
        blocks.push(
            SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(
                format!("{} runs, first `{}`", group.len(), self.run_id),
            ))])
            .into(),
        );
        blocks
    }
}

fn member_name(m: &GroupMember) -> String {
    format!("{} {}", m.monitor, m.viewport)
}

/// What the grouping step decided.
pub(super) enum Grouping {
    /// Look again at this time: runs of the tick are still being captured, or an older alert
    /// of the same change will gather this one.
    Wait(Timestamp),
    /// This alert went out in another's group: nothing to send.
    Absorbed,
    /// The group is formed (perhaps of this alert alone) and recorded; send it.
    Formed,
}

impl Alerter {
    /// Forms the group of a change alert that may have one (its payload has `group_until` and
    /// no `group` yet), recording it with its events; or says to wait.
    pub(super) async fn form_group(
        &self,
        alert: &Alert,
        payload: &mut AlertPayload,
    ) -> Result<Grouping, StoreError> {
        let now = Timestamp::now();
        let until = payload.group_until.unwrap_or(0);
        let later = Timestamp::from_millis(now.plus(POLL).millis().min(until));
        let waiting = now.millis() < until;
        if waiting {
            // The runs of its tick began about when its own run did (a window before, at most),
            // and before its alert was queued.
            let window = std::time::Duration::from_millis((until - alert.created_at.millis()).max(0) as u64);
            let begun = self.store.get_run(&alert.run_id).await?.map_or(alert.created_at, |r| r.created_at);
            if self.store.runs_awaiting_alert_since(begun.minus(window), alert.created_at, now).await? > 0 {
                return Ok(Grouping::Wait(later));
            }
        }
        // (The leader's payload is the one read for this attempt: it changes only here.)
        let (events, leader) = (self.events.clone(), payload.clone());
        let build = move |_: &Alert, members: &[Alert]| {
            let mut payloads = vec![leader.clone()];
            for a in members {
                match serde_json::from_str::<AlertPayload>(&a.payload) {
                    Ok(p) => payloads.push(p),
                    Err(e) => {
                        tracing::error!(alert = %a.id, error = %e, "an alert of the group has an unreadable payload; left out of its message")
                    }
                }
            }
            let mut first = leader.clone();
            first.group = Some(payloads.iter().map(GroupMember::of).collect());
            let saved = serde_json::to_string(&first).expect("serialises");
            (saved, events.for_group(&payloads, Timestamp::now()))
        };
        match self.store.form_alert_group(alert, now, waiting, &build).await? {
            GroupForming::Wait => Ok(Grouping::Wait(later)),
            GroupForming::Absorbed => Ok(Grouping::Absorbed),
            GroupForming::Formed(formed) => {
                if let Ok(p) = serde_json::from_str::<AlertPayload>(&formed.payload) {
                    *payload = p;
                }
                let runs = payload.group.as_ref().map_or(1, Vec::len);
                if runs > 1 {
                    tracing::info!(alert = %alert.id, runs, "the same change on several pages: one alert");
                }
                self.deliveries.notify_one();
                Ok(Grouping::Formed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::message::tests::changed;
    use crate::diff::Region;
    use crate::diff::text::{RegionChange, TextChange};

    fn words(before: &str, after: &str) -> AlertPayload {
        words_at(Region { x: 0, y: 0, width: 300, height: 40 }, before, after)
    }

    fn words_at(region: Region, before: &str, after: &str) -> AlertPayload {
        let text = vec![TextChange::Replaced { before: before.into(), after: after.into() }];
        AlertPayload {
            regions: vec![region],
            changes: vec![RegionChange { region, text, too_many_words: false }],
            headline: Some(format!("{before} → {after}")),
            ..changed()
        }
    }

    #[test]
    fn the_same_words_or_the_same_pixels_going_to_the_same_place_make_one_fingerprint() {
        let header = words("Acme", "Acme Corp");
        let elsewhere = AlertPayload {
            monitor: "about".into(),
            run_id: "run_2".into(),
            diff_pixels: Some(77),
            ..words_at(Region { x: 5, y: 900, width: 10, height: 10 }, "Acme", "Acme Corp")
        };
        let f = fingerprint(&header).expect("a change with words");
        assert_eq!(fingerprint(&elsewhere), Some(f.clone()), "same words, other page and pixels");
        assert_ne!(fingerprint(&words("Acme", "Acme Inc")), Some(f.clone()), "other words");
        let channel = AlertPayload { channel: Some("#web".into()), ..header.clone() };
        assert_ne!(fingerprint(&channel), Some(f.clone()), "another channel: another message");
        assert_ne!(fingerprint(&AlertPayload { slack: false, ..header.clone() }), Some(f.clone()));
        // The same new word next to a broken image elsewhere is another change.
        let mut broken = elsewhere.clone();
        broken.regions.push(Region { x: 0, y: 400, width: 300, height: 200 });
        assert_ne!(fingerprint(&broken), Some(f.clone()), "a region without words counts");
        let mut reflowed = header.clone();
        reflowed.changes[0].too_many_words = true;
        reflowed.changes[0].text.clear();
        assert_ne!(fingerprint(&reflowed), Some(f));

        // Without words: the same regions with the same pixel count.
        let pixels = changed();
        let g = fingerprint(&pixels).expect("a change with regions");
        let shuffled = AlertPayload { regions: pixels.regions.iter().rev().cloned().collect(), ..changed() };
        assert_eq!(fingerprint(&shuffled), Some(g.clone()));
        assert_ne!(fingerprint(&AlertPayload { diff_pixels: Some(4097), ..changed() }), Some(g));
        assert_eq!(fingerprint(&AlertPayload { size_changed: true, ..changed() }), None);
        assert_eq!(fingerprint(&AlertPayload { regions: Vec::new(), ..changed() }), None);
        assert_eq!(fingerprint(&AlertPayload { kind: AlertKind::Failed, ..changed() }), None);
    }

    #[test]
    fn a_grouped_alert_lists_its_pages_and_approves_them_all() {
        let mut alert = words("$49", "$79");
        assert!(alert.grouped().is_none());
        alert.group = Some(vec![GroupMember::of(&alert)]);
        assert!(alert.grouped().is_none(), "a group of one is an ordinary alert");
        assert!(alert.summary().starts_with("pricing changed"));
        let pages: Vec<GroupMember> = (0..14)
            .map(|i| GroupMember {
                monitor: format!("page-{i}"),
                run_id: format!("run_{i}"),
                review_url: format!("http://vigil.local/runs/run_{i}?a|b<c>"),
                ..GroupMember::of(&alert)
            })
            .collect();
        alert.group = Some(pages);
        assert_eq!(
            alert.summary(),
            "14 pages changed the same way: $49 → $79 (page-0 1280x800, page-1 1280x800, page-2 1280x800, \
             page-3 1280x800, page-4 1280x800, page-5 1280x800, page-6 1280x800, page-7 1280x800, \
             page-8 1280x800, page-9 1280x800, page-10 1280x800, page-11 1280x800 and 2 more)"
        );
        let blocks = serde_json::to_value(alert.blocks()).unwrap();
        let text = blocks.to_string();
        assert_eq!(blocks[0]["text"]["text"], "14 pages: $49 → $79");
        assert!(text.contains("<http://vigil.local/runs/run_0?a%7Cb%3Cc%3E|page-0 1280x800>"), "{text}");
        assert!(text.contains("• and 2 more"), "{text}");
        let buttons = blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(buttons["elements"][0]["action_id"], APPROVE_ALL_ACTION);
        assert_eq!(buttons["elements"][0]["value"], alert.run_id.as_str());
        assert_eq!(buttons["elements"][0]["text"]["text"], "Approve all 14");
        assert_eq!(buttons["elements"].as_array().unwrap().len(), 2, "no per-run Reject or Mute");
    }
}
