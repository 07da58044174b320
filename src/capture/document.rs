//! The capture result document: what `GET /v1/capture/{id}` answers and the completion webhook
//! carries (docs/architecture.md §4). `metadata` is the client's JSON, echoed byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiCaptureError;
use crate::diff::Region;
use crate::ids::{AssetId, JobId};
use crate::signing::SigningKey;
use crate::store::{CaptureJob, JobStatus};

/// Stored in the job row once it finished successfully.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResult {
    pub duration_ms: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sha256: String,
    pub content_type: String,
    pub masks: Vec<Region>,
    /// `None`: not checked (a zero `stability_timeout` takes one shot).
    #[serde(default)]
    pub stable: Option<bool>,
    pub clipped: bool,
    /// JavaScript dialogs the page opened, dismissed so the capture could go on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dialogs: Vec<super::tab::Dialog>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CaptureDocument {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub job_id: JobId,
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masks: Option<Vec<Region>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clipped: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dialogs: Vec<super::tab::Dialog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiCaptureError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
}

/// Signs and checks the expiring asset URLs `…/v1/assets/{id}?exp=…&sig=…`.
#[derive(Debug, Clone)]
pub struct AssetUrls {
    pub base: url::Url,
    pub key: SigningKey,
    pub ttl: std::time::Duration,
}

impl AssetUrls {
    fn sig(&self, id: &str, exp: i64) -> String {
        hex::encode(self.key.hmac(format!("{id}.{exp}").as_bytes()))
    }

    /// A URL valid until `now + ttl`, and that expiry (unix seconds).
    pub fn sign(&self, id: &AssetId, now_unix: i64) -> (String, i64) {
        let exp = now_unix + self.ttl.as_secs() as i64;
        let mut url = self.base.join(&format!("v1/assets/{id}")).expect("valid path");
        url.query_pairs_mut()
            .append_pair("exp", &exp.to_string())
            .append_pair("sig", &self.sig(id.as_str(), exp));
        (url.to_string(), exp)
    }

    /// Constant-time check of the signature, then of the expiry.
    pub fn verify(&self, id: &str, exp: i64, sig: &str, now_unix: i64) -> bool {
        use subtle::ConstantTimeEq;
        let ok: bool = self.sig(id, exp).as_bytes().ct_eq(sig.as_bytes()).into();
        ok && exp >= now_unix
    }
}

fn rfc3339(unix: i64) -> String {
    crate::time::Timestamp::from_millis(unix * 1000).to_string()
}

/// The document for a job in any state.
pub fn document(job: &CaptureJob, urls: &AssetUrls, now_unix: i64) -> CaptureDocument {
    let metadata = super::request::parse(job.request.as_bytes()).ok().and_then(|r| r.metadata);
    let mut doc = CaptureDocument {
        kind: None,
        job_id: job.id.clone(),
        status: job.status,
        asset_url: None,
        expires_at: None,
        content_type: None,
        duration_ms: None,
        width: None,
        height: None,
        sha256: None,
        masks: None,
        stable: None,
        clipped: None,
        dialogs: Vec::new(),
        error: None,
        attempts: Some(job.attempts),
        metadata,
    };
    match job.status {
        JobStatus::Completed => {
            doc.kind = Some("capture.completed".into());
            if let (Some(asset), Some(result)) = (
                &job.asset_id,
                job.result.as_deref().and_then(|r| serde_json::from_str::<StoredResult>(r).ok()),
            ) {
                let (url, exp) = urls.sign(asset, now_unix);
                doc.asset_url = Some(url);
                doc.expires_at = Some(rfc3339(exp));
                doc.content_type = Some(result.content_type);
                doc.duration_ms = Some(result.duration_ms);
                doc.width = result.width;
                doc.height = result.height;
                doc.sha256 = Some(result.sha256);
                doc.masks = Some(result.masks);
                doc.stable = result.stable;
                doc.clipped = Some(result.clipped);
                doc.dialogs = result.dialogs;
            }
        }
        JobStatus::Failed => {
            doc.kind = Some("capture.failed".into());
            doc.error = job.error.as_deref().and_then(|e| serde_json::from_str(e).ok());
            // The page as the failure left it (a step, a sign-in, a wait), when it was kept.
            if let Some(asset) = &job.asset_id {
                let (url, exp) = urls.sign(asset, now_unix);
                doc.asset_url = Some(url);
                doc.expires_at = Some(rfc3339(exp));
                doc.content_type = Some("image/png".into());
            }
        }
        JobStatus::Queued | JobStatus::Running => {
            doc.error = job.error.as_deref().and_then(|e| serde_json::from_str(e).ok());
        }
    }
    doc
}
