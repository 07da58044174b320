//! A failed capture's run: the capture's error, and the picture of the page as a failed step,
//! sign-in or wait left it, when the capture kept one (the review page shows it as the run's
//! current image; approving a failed run is refused).

use super::{Processor, Result_};
use crate::diff::{Limits, decode_png};
use crate::store::{RunOutcome, Verdict};

impl Processor {
    pub(super) async fn failed(&self, result: &Result_) -> RunOutcome {
        let error =
            result.error.as_ref().map_or_else(|| r#"{"code":"capture_failed"}"#.into(), |e| e.to_string());
        let picture = match result.asset_url.as_deref() {
            Some(url) => self.failing_state(url).await,
            None => None,
        };
        RunOutcome {
            verdict: Some(Verdict::Failed),
            error: Some(error),
            current_sha256: picture,
            ..Default::default()
        }
    }

    /// Downloaded once and kept when it is a PNG within the diff's limits (a provider is not
    /// trusted with the disk). A picture that cannot be had is logged and done without: the
    /// failure is the run's news, and is not held up for it.
    async fn failing_state(&self, url: &str) -> Option<String> {
        let png = match self.fetch(url).await {
            Ok(png) => png,
            Err(e) => {
                tracing::warn!(error = %e, "cannot download the picture of the failed page; the run goes without");
                return None;
            }
        };
        let (checked, png) =
            tokio::task::spawn_blocking(move || (decode_png(&png, &Limits::default()).map(drop), png))
                .await
                .ok()?;
        if let Err(e) = checked {
            tracing::warn!(error = %e, "the picture of the failed page is not a usable PNG; the run goes without");
            return None;
        }
        match self.put(png).await {
            Ok(sha) => Some(sha),
            Err(e) => {
                tracing::warn!(error = %e, "cannot store the picture of the failed page; the run goes without");
                None
            }
        }
    }
}
