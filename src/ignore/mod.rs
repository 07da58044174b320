//! Ignoring a change (docs/review.md, *Ignoring a change*): a person says that a change of a
//! monitor is noise — a banner that rotates between two pictures, a price that flips during a
//! sale. Until the ignore ends (7 days unless said otherwise), a run of that monitor and
//! viewport showing the same change is judged `ignored`: no alert, not in the review queue,
//! counted on the ignore. The same change is strict, so that an ignore never hides a regression
//! beside it: the same words changed ([`words_key`], all of them), every changed region within
//! one of the ignored change's (a cell's margin), and at most a quarter more changed pixels.
//! Other changes of the page alert as before.

pub mod api;

use std::time::Duration;

use crate::diff::Region;
use crate::diff::text::{HEADLINE_CHARS, RegionChange, headline, words_key};
use crate::ids::{IgnoreId, RunId};
use crate::store::{Ignore, Run, RunOutcome, Store, StoreError, Verdict};
use crate::time::Timestamp;

/// How long an ignore lasts unless said otherwise.
pub const DEFAULT_DAYS: u32 = 7;
/// The longest an ignore may last.
pub const MAX_DAYS: u32 = 90;
/// Ended ignores stay listed this long.
const ENDED_SHOWN: Duration = Duration::from_secs(30 * 86_400);

/// The ignores to list at `now`: those in force, and those ended in the last 30 days.
pub async fn listed(store: &dyn Store, now: Timestamp) -> Result<Vec<Ignore>, StoreError> {
    store.list_ignores(now.minus(ENDED_SHOWN)).await
}

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("no such run")]
    NoSuchRun,
    #[error("only a change can be ignored (verdict: {0})")]
    NotAChange(String),
    #[error("this change cannot be recognised again: the page size changed, or no region changed")]
    NoKey,
    #[error("days must be 1 to {MAX_DAYS}")]
    Days,
    #[error("the database refused ({})", .0.code())]
    Store(#[from] StoreError),
}

impl IgnoreError {
    pub fn code(&self) -> &'static str {
        match self {
            IgnoreError::NoSuchRun => "not_found",
            IgnoreError::NotAChange(_) => "not_a_change",
            IgnoreError::NoKey => "no_change_key",
            IgnoreError::Days => "invalid",
            IgnoreError::Store(e) => e.code(),
        }
    }
}

/// A margin around an ignored region (one 16 px cell of the region grid) for a later region.
const MARGIN: u32 = 16;

/// A judged change as an ignore compares it: its words' key, regions and changed pixels;
/// `None` for a change that cannot be recognised (the page size changed, or no region).
fn change_of(
    regions: Option<&str>,
    words: Option<&str>,
    diff_pixels: Option<i64>,
    size_changed: Option<bool>,
) -> Option<(String, Vec<Region>, i64)> {
    let regions: Vec<Region> = regions.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    if size_changed == Some(true) || regions.is_empty() {
        return None;
    }
    let words: Vec<RegionChange> = words.and_then(|w| serde_json::from_str(w).ok()).unwrap_or_default();
    Some((words_key(&words), regions, diff_pixels.unwrap_or(0)))
}

/// Whether `ignore` covers a change with these regions and pixels (its words already match):
/// every region within one of the ignore's, give or take [`MARGIN`], and at most a quarter more
/// changed pixels.
fn covers(ignore: &Ignore, regions: &[Region], pixels: i64) -> bool {
    let ignored: Vec<Region> = serde_json::from_str(&ignore.regions).unwrap_or_default();
    let within = |r: &Region, i: &Region| {
        r.x + MARGIN >= i.x
            && r.y + MARGIN >= i.y
            && r.x + r.width <= i.x + i.width + MARGIN
            && r.y + r.height <= i.y + i.height + MARGIN
    };
    pixels <= ignore.diff_pixels + ignore.diff_pixels / 4
        && regions.iter().all(|r| ignored.iter().any(|i| within(r, i)))
}

/// The ignore in force that covers a `changed` (or `unstable`) outcome of `run`, if any.
pub async fn matching(
    store: &dyn Store,
    run: &Run,
    outcome: &RunOutcome,
) -> Result<Option<Ignore>, StoreError> {
    if !matches!(outcome.verdict, Some(Verdict::Changed | Verdict::Unstable)) {
        return Ok(None);
    }
    let change = change_of(
        outcome.regions.as_deref(),
        outcome.text_changes.as_deref(),
        outcome.diff_pixels,
        outcome.size_changed,
    );
    let Some((words, regions, pixels)) = change else { return Ok(None) };
    let ignores = store.active_ignores(&run.monitor, &run.viewport, &words, Timestamp::now()).await?;
    Ok(ignores.into_iter().find(|i| covers(i, &regions, pixels)))
}

/// What a change says changed, in a few words, for the list of ignores.
fn description(run: &Run) -> String {
    if let Some(words) = run.word_changes().as_deref().and_then(|c| headline(c, HEADLINE_CHARS)) {
        return words;
    }
    let regions: Vec<Region> =
        run.regions.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    let listed: Vec<String> =
        regions.iter().take(3).map(|r| format!("{}, {} — {} × {}", r.x, r.y, r.width, r.height)).collect();
    let more = regions.len().saturating_sub(3);
    format!(
        "image change ({} px) at {}{}",
        run.diff_pixels.unwrap_or(0),
        listed.join("; "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

/// Ignores the change of `run` for `days` (a change awaiting review becomes `ignored`); an
/// ignore in force that covers it already is extended instead.
pub async fn ignore_run(store: &dyn Store, id: &RunId, days: u32, by: &str) -> Result<Ignore, IgnoreError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(IgnoreError::Days);
    }
    let run = store.get_run(id).await?.ok_or(IgnoreError::NoSuchRun)?;
    let not_a_change =
        |run: &Run| IgnoreError::NotAChange(run.verdict.map_or("pending".into(), |v| v.to_string()));
    if !matches!(
        run.verdict,
        Some(Verdict::Changed | Verdict::Unstable | Verdict::Rejected | Verdict::Ignored)
    ) {
        return Err(not_a_change(&run));
    }
    let (words, regions, pixels) =
        change_of(run.regions.as_deref(), run.text_changes.as_deref(), run.diff_pixels, run.size_changed)
            .ok_or(IgnoreError::NoKey)?;
    let now = Timestamp::now();
    let existing = store.active_ignores(&run.monitor, &run.viewport, &words, now).await?;
    let extend = existing.iter().find(|i| covers(i, &regions, pixels)).map(|i| i.id.clone());
    let ignore = Ignore {
        id: IgnoreId::new(),
        monitor: run.monitor.clone(),
        viewport: run.viewport.clone(),
        fingerprint: words,
        regions: serde_json::to_string(&regions).expect("serialises"),
        diff_pixels: pixels,
        description: description(&run),
        until: now.plus(Duration::from_secs(u64::from(days) * 86_400)),
        created_by: by.to_owned(),
        created_at: now,
        run_id: run.id.clone(),
        matched: 0,
        last_matched_at: None,
    };
    let Some(stored) = store.ignore_change(&ignore, extend.as_ref()).await? else {
        // Decided meanwhile (approved from Slack while this page was open, say).
        let now = store.get_run(id).await?.ok_or(IgnoreError::NoSuchRun)?;
        return Err(not_a_change(&now));
    };
    tracing::info!(run = %run.id, monitor = %run.monitor, until = %stored.until, %by, "change ignored");
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(regions: &str, pixels: i64) -> Ignore {
        Ignore {
            id: IgnoreId::new(),
            monitor: "shop".parse().unwrap(),
            viewport: "1280x800".into(),
            fingerprint: String::new(),
            regions: regions.into(),
            diff_pixels: pixels,
            description: String::new(),
            until: Timestamp::from_millis(0),
            created_by: String::new(),
            created_at: Timestamp::from_millis(0),
            run_id: RunId::new(),
            matched: 0,
            last_matched_at: None,
        }
    }

    #[test]
    fn only_the_same_change_in_the_same_place_is_covered() {
        let banner = ignore(r#"[{"x":100,"y":0,"width":300,"height":40}]"#, 2000);
        let at = |x, y, width, height| vec![Region { x, y, width, height }];
        assert!(covers(&banner, &at(100, 0, 300, 40), 2000), "the same");
        assert!(covers(&banner, &at(90, 0, 310, 50), 2400), "a cell's margin, a quarter more pixels");
        assert!(covers(&banner, &at(150, 10, 20, 20), 100), "a part of it");
        assert!(!covers(&banner, &at(100, 0, 300, 40), 2501), "more than a quarter more pixels");
        assert!(!covers(&banner, &at(100, 0, 300, 80), 2000), "reaching past the banner");
        let two = [at(100, 0, 300, 40), at(0, 600, 50, 50)].concat();
        assert!(!covers(&banner, &two, 2000), "and something else changed");
    }

    #[test]
    fn a_change_is_known_by_all_its_words_its_regions_and_pixels() {
        let regions = r#"[{"x":0,"y":0,"width":300,"height":40}]"#;
        let words = r#"[{"region":{"x":0,"y":0,"width":300,"height":40},"text":[{"kind":"replaced","before":"$49","after":"$79"}]}]"#;
        let (key, found, pixels) =
            change_of(Some(regions), Some(words), Some(192), Some(false)).expect("a change");
        assert_eq!((found.len(), pixels), (1, 192));
        let (none, ..) = change_of(Some(regions), None, Some(192), Some(false)).expect("without words");
        assert_ne!(key, none, "other words");
        assert_eq!(change_of(Some(regions), Some(words), Some(192), Some(true)), None, "size changed");
        assert_eq!(change_of(None, None, Some(192), Some(false)), None, "no region");
    }
}
