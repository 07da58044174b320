//! Ignoring a change (docs/review.md, *Ignoring a change*): a person says that a change of a
//! monitor is noise — a banner that rotates between two pictures, a price that flips during a
//! sale. The change is recognised by its key ([`change_key`]: the words that changed, else its
//! regions and pixel count), and until the ignore ends (7 days unless said otherwise) a run of
//! that monitor showing the same change is judged `ignored`: no alert, not in the review queue,
//! counted on the ignore. Other changes of the monitor alert as before.

pub mod api;

use std::time::Duration;

use crate::diff::Region;
use crate::diff::text::{HEADLINE_CHARS, RegionChange, change_key, headline};
use crate::ids::{IgnoreId, RunId};
use crate::store::{Ignore, Run, RunOutcome, Store, StoreError, Verdict};
use crate::time::Timestamp;

/// How long an ignore lasts unless said otherwise.
pub const DEFAULT_DAYS: u32 = 7;
/// The longest an ignore may last.
pub const MAX_DAYS: u32 = 90;

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

/// The key of a judged change, from the run's (or outcome's) recorded regions and words.
fn key_of(
    regions: Option<&str>,
    words: Option<&str>,
    diff_pixels: Option<i64>,
    size_changed: Option<bool>,
) -> Option<String> {
    let regions: Vec<Region> = regions.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    let words: Vec<RegionChange> = words.and_then(|w| serde_json::from_str(w).ok()).unwrap_or_default();
    change_key(&regions, &words, diff_pixels.unwrap_or(0), size_changed.unwrap_or(false))
}

/// The ignore in force for a `changed` outcome of `run`, if one matches its change.
pub async fn matching(
    store: &dyn Store,
    run: &Run,
    outcome: &RunOutcome,
) -> Result<Option<Ignore>, StoreError> {
    if outcome.verdict != Some(Verdict::Changed) {
        return Ok(None);
    }
    let key = key_of(
        outcome.regions.as_deref(),
        outcome.text_changes.as_deref(),
        outcome.diff_pixels,
        outcome.size_changed,
    );
    match key {
        Some(key) => store.active_ignore(&run.monitor, &key, Timestamp::now()).await,
        None => Ok(None),
    }
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

/// Ignores the change of `run` for `days` (a change awaiting review becomes `ignored`).
pub async fn ignore_run(store: &dyn Store, id: &RunId, days: u32, by: &str) -> Result<Ignore, IgnoreError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(IgnoreError::Days);
    }
    let run = store.get_run(id).await?.ok_or(IgnoreError::NoSuchRun)?;
    match run.verdict {
        Some(Verdict::Changed | Verdict::Unstable | Verdict::Rejected | Verdict::Ignored) => {}
        other => return Err(IgnoreError::NotAChange(other.map_or("pending".into(), |v| v.to_string()))),
    }
    let key = key_of(run.regions.as_deref(), run.text_changes.as_deref(), run.diff_pixels, run.size_changed)
        .ok_or(IgnoreError::NoKey)?;
    let now = Timestamp::now();
    let ignore = Ignore {
        id: IgnoreId::new(),
        monitor: run.monitor.clone(),
        fingerprint: key,
        description: description(&run),
        until: now.plus(Duration::from_secs(u64::from(days) * 86_400)),
        created_by: by.to_owned(),
        created_at: now,
        run_id: run.id.clone(),
        matched: 0,
        last_matched_at: None,
    };
    let stored = store.ignore_change(&ignore).await?;
    tracing::info!(run = %run.id, monitor = %run.monitor, until = %stored.until, %by, "change ignored");
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_has_one_key_whichever_run_shows_it() {
        let regions = r#"[{"x":0,"y":0,"width":300,"height":40}]"#;
        let words = r#"[{"region":{"x":0,"y":0,"width":300,"height":40},"text":[{"kind":"replaced","before":"$49","after":"$79"}]}]"#;
        let a = key_of(Some(regions), Some(words), Some(192), Some(false)).expect("a key");
        assert_eq!(
            key_of(Some(regions), Some(words), Some(200), Some(false)),
            Some(a.clone()),
            "words decide"
        );
        let image = key_of(Some(regions), None, Some(192), Some(false)).expect("pixels and regions");
        assert_ne!(image, a);
        assert_ne!(key_of(Some(regions), None, Some(193), Some(false)), Some(image));
        assert_eq!(key_of(Some(regions), Some(words), Some(192), Some(true)), None, "size changed");
        assert_eq!(key_of(None, None, Some(192), Some(false)), None, "no region");
    }
}
