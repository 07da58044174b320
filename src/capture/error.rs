//! Why a capture failed, whether trying again may help, and the stable code clients see.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "no Chromium found (looked at {looked}); install it (Debian: apt-get install chromium) or set capture.chromium_path or $CHROME_PATH"
    )]
    NoChromium { looked: String },
    #[error("cannot start Chromium")]
    Launch(#[source] chromiumoxide::error::CdpError),
    #[error("the browser crashed or closed during the capture")]
    BrowserGone,
    #[error("the page did not finish loading within {0:?}")]
    NavigationTimeout(std::time::Duration),
    #[error("navigation failed: {0}")]
    Navigation(String),
    #[error("the page answered HTTP {status} {text}")]
    HttpStatus { status: u16, text: String },
    #[error("selector {0:?} did not appear before the timeout")]
    WaitForTimeout(String),
    #[error("selector {0:?} matches no element")]
    SelectorNotFound(String),
    #[error("the capture took longer than {0:?}")]
    JobTimeout(std::time::Duration),
    #[error("browser protocol error")]
    Cdp(#[source] chromiumoxide::error::CdpError),
    #[error("the browser returned an unreadable image")]
    BadImage(#[source] crate::diff::DiffError),
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
    /// `code`: `storage_full` or `storage_error`.
    #[error("cannot store the capture: {message}")]
    Storage { code: &'static str, message: String },
    #[error("the capture would be {pixels} device pixels; capture.max_pixels allows {max}")]
    TooLarge { pixels: u64, max: u64 },
    #[error("the page used more memory than capture.page_memory allows and was stopped")]
    PageMemory,
    #[error("cannot start the capture's proxy")]
    Egress(#[source] std::io::Error),
    /// A monitor's step (or `click_accept`, `remove`, `inject_js`) could not be done.
    #[error("{step}{}: {reason}", if .target.is_empty() { String::new() } else { format!(" on {}", .target) })]
    StepFailed { step: String, target: String, reason: String },
    /// Signing in through a `sessions:` entry failed.
    #[error("signing in through session {session:?} failed: {reason}")]
    LoginFailed { session: String, reason: String, retryable: bool },
}

impl CaptureError {
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::NoChromium { .. } => "browser_unavailable",
            CaptureError::Launch(_) => "browser_launch_failed",
            CaptureError::BrowserGone => "browser_crashed",
            CaptureError::NavigationTimeout(_) => "navigation_timeout",
            CaptureError::Navigation(_) => "navigation_failed",
            CaptureError::HttpStatus { .. } => "http_error",
            CaptureError::WaitForTimeout(_) => "wait_for_timeout",
            CaptureError::SelectorNotFound(_) => "selector_not_found",
            CaptureError::JobTimeout(_) => "capture_timeout",
            CaptureError::Cdp(_) => "browser_error",
            CaptureError::BadImage(_) => "bad_image",
            CaptureError::Policy(e) => e.code(),
            CaptureError::Storage { code, .. } => code,
            CaptureError::TooLarge { .. } => "capture_too_large",
            CaptureError::PageMemory => "page_memory_exceeded",
            CaptureError::Egress(_) => "browser_error",
            CaptureError::StepFailed { .. } => "step_failed",
            CaptureError::LoginFailed { .. } => "login_failed",
        }
    }

    /// Transient trouble worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::NoChromium { .. }
            | CaptureError::SelectorNotFound(_)
            | CaptureError::Policy(
                super::policy::PolicyError::Scheme
                | super::policy::PolicyError::Forbidden { .. }
                | super::policy::PolicyError::Private { .. }
                | super::policy::PolicyError::Reserved { .. },
            )
            | CaptureError::TooLarge { .. }
            | CaptureError::StepFailed { .. }
            | CaptureError::PageMemory => false,
            // A server error or rate limit may pass; a 404 or 401 will not by retrying.
            CaptureError::HttpStatus { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            // A login page that timed out or answered 503 may work next time; a wrong password not.
            CaptureError::LoginFailed { retryable, .. } => *retryable,
            _ => true,
        }
    }

    /// A failure whose page is worth a picture for the review page: where a step, a sign-in or
    /// a wait left it.
    pub fn shows_failing_state(&self) -> bool {
        matches!(
            self,
            CaptureError::StepFailed { .. }
                | CaptureError::LoginFailed { .. }
                | CaptureError::WaitForTimeout(_)
                | CaptureError::SelectorNotFound(_)
        )
    }

    /// The `error` object of a failed capture's result.
    pub fn to_api(&self) -> ApiCaptureError {
        ApiCaptureError {
            code: self.code().to_owned(),
            message: self.to_string(),
            retryable: self.is_retryable(),
        }
    }
}

impl From<crate::store::blobs::BlobError> for CaptureError {
    fn from(e: crate::store::blobs::BlobError) -> Self {
        let code = e.storage_fault().unwrap_or("storage_error");
        CaptureError::Storage { code, message: crate::http::client::error_chain(&e) }
    }
}

impl From<crate::store::StoreError> for CaptureError {
    fn from(e: crate::store::StoreError) -> Self {
        let code = e.storage_fault().unwrap_or("storage_error");
        CaptureError::Storage { code, message: crate::http::client::error_chain(&e) }
    }
}

impl From<chromiumoxide::error::CdpError> for CaptureError {
    fn from(e: chromiumoxide::error::CdpError) -> Self {
        use chromiumoxide::error::CdpError;
        match e {
            CdpError::ChannelSendError(_) | CdpError::NoResponse | CdpError::Ws(_) => {
                CaptureError::BrowserGone
            }
            other => CaptureError::Cdp(other),
        }
    }
}

/// A capture that failed, with a viewport picture of the page as the failure left it when
/// [`CaptureError::shows_failing_state`] and the browser could still draw it.
#[derive(Debug)]
pub struct CaptureFailure {
    pub error: CaptureError,
    pub failing_state: Option<Vec<u8>>,
}

impl From<CaptureError> for CaptureFailure {
    fn from(error: CaptureError) -> Self {
        CaptureFailure { error, failing_state: None }
    }
}

impl From<CaptureFailure> for CaptureError {
    fn from(f: CaptureFailure) -> Self {
        f.error
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ApiCaptureError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}
