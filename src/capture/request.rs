//! The capture request of `POST /v1/capture` (the common screenshot-API shape), and its
//! validation into a [`CaptureSpec`] with field paths in every error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use url::Url;

use crate::config::page::{self, Geolocation, LoginWire, PageSetup, StepWire};
use crate::config::{Format, WaitUntil};

pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const MAX_VIEWPORT_SIDE: u32 = 8192;
pub const MAX_CAPTURE_HEIGHT: u32 = 65_536;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    pub url: String,
    #[serde(default)]
    pub format: Option<FormatReq>,
    #[serde(default)]
    pub full_page: Option<bool>,
    #[serde(default)]
    pub viewport: Option<ViewportReq>,
    #[serde(default)]
    pub wait_until: Option<WaitUntilReq>,
    #[serde(default)]
    pub wait_for: Option<String>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub hide: Vec<String>,
    #[serde(default)]
    pub mask: Vec<MaskReq>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub cookies: Vec<CookieReq>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthReq>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub dark_mode: Option<bool>,
    #[serde(default)]
    pub reduced_motion: Option<bool>,
    #[serde(default)]
    pub max_height: Option<u32>,
    /// Record the words the capture shows, with their boxes, inside the PNG (`vigil:text`).
    #[serde(default)]
    pub text: Option<bool>,
    /// Steps before the capture (docs/monitors.md): `{click: "#accept"}`, `{fill, value}` …
    #[serde(default)]
    pub steps: Vec<StepWire>,
    /// Clicked when present, before the steps and after them.
    #[serde(default)]
    pub click_accept: Vec<String>,
    /// Removed from the page when present.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Common consent banners removed.
    #[serde(default)]
    pub block_banners: Option<bool>,
    #[serde(default)]
    pub inject_css: Option<String>,
    #[serde(default)]
    pub inject_js: Option<String>,
    /// URL patterns (`*` any characters) whose requests fail.
    #[serde(default)]
    pub block_requests: Vec<String>,
    /// An IANA time zone for the page's clock and `Intl`.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub geolocation: Option<Geolocation>,
    /// Signed in through this session first; its cookies are kept between captures.
    #[serde(default)]
    pub session: Option<LoginWire>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Echoed byte for byte in the result and the webhook.
    #[serde(default)]
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FormatReq {
    Png,
    Pdf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntilReq {
    Load,
    Domcontentloaded,
    Networkidle,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewportReq {
    pub width: u32,
    pub height: u32,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub mobile: bool,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MaskReq {
    Selector(String),
    Rect { x: u32, y: u32, width: u32, height: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieReq {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthReq {
    pub username: String,
    pub password: String,
}

/// A validated capture: what the worker executes.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub url: Url,
    pub format: Format,
    pub full_page: bool,
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    pub mobile: bool,
    pub wait_until: WaitUntil,
    pub wait_for: Option<String>,
    pub delay: Duration,
    pub timeout: Duration,
    pub hide: Vec<String>,
    pub mask_selectors: Vec<String>,
    pub mask_rects: Vec<crate::diff::Region>,
    pub selector: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub cookies: Vec<CookieReq>,
    pub basic_auth: Option<BasicAuthReq>,
    pub user_agent: Option<String>,
    pub dark_mode: bool,
    pub reduced_motion: bool,
    pub max_height: u32,
    /// Record the shown words in the PNG (src/diff/text.rs).
    pub text: bool,
    /// Steps, banners, injections, blocked requests, locale and position.
    pub page: PageSetup,
    /// The session's kept state, opened by the worker (never from the request).
    pub login_state: Option<super::login::LoginState>,
}

/// A request field that is not acceptable: `field` is its path, e.g. `viewport.width`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), message: message.into() }
}

/// A validation message of `config::page` under `path`: "key: what" names `path.key`.
fn keyed(path: &str, message: &str) -> FieldError {
    match page::split_key(message) {
        Some((key, rest)) => field_err(&format!("{path}.{key}"), rest),
        None => field_err(path, message),
    }
}

/// Parses the JSON body; unknown fields and wrong types name the field.
pub fn parse(body: &[u8]) -> Result<CaptureRequest, FieldError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        field_err(&field, e.into_inner().to_string())
    })
}

fn duration(
    field: &str,
    s: &Option<String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, FieldError> {
    let Some(s) = s else { return Ok(default) };
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        field_err(field, format!("expected a duration like \"500ms\" or \"30s\" (got \"{s}\")"))
    })?;
    if d > max {
        return Err(field_err(field, format!("at most {}", humantime::format_duration(max))));
    }
    Ok(d)
}

impl CaptureRequest {
    /// Checks every field and fills in defaults.
    pub fn validate(&self) -> Result<CaptureSpec, FieldError> {
        let url = self.checked_url()?;
        let vp = self.viewport.unwrap_or(ViewportReq { width: 1280, height: 800, scale: 1.0, mobile: false });
        for (name, v) in [("viewport.width", vp.width), ("viewport.height", vp.height)] {
            if !(16..=MAX_VIEWPORT_SIDE).contains(&v) {
                return Err(field_err(name, format!("must be from 16 to {MAX_VIEWPORT_SIDE}")));
            }
        }
        if !(0.25..=4.0).contains(&vp.scale) {
            return Err(field_err("viewport.scale", "must be from 0.25 to 4"));
        }
        let max_height = self.max_height.unwrap_or(16_384);
        if !(100..=MAX_CAPTURE_HEIGHT).contains(&max_height) {
            return Err(field_err("max_height", format!("must be from 100 to {MAX_CAPTURE_HEIGHT}")));
        }
        self.check_webhook_and_headers()?;
        let (mask_selectors, mask_rects) = self.masks()?;
        let page = self.page_setup()?;
        Ok(CaptureSpec {
            url,
            format: match self.format {
                Some(FormatReq::Pdf) => Format::Pdf,
                _ => Format::Png,
            },
            full_page: self.full_page.unwrap_or(false),
            width: vp.width,
            height: vp.height,
            scale: vp.scale,
            mobile: vp.mobile,
            wait_until: match self.wait_until {
                Some(WaitUntilReq::Domcontentloaded) => WaitUntil::Domcontentloaded,
                Some(WaitUntilReq::Networkidle) => WaitUntil::Networkidle,
                _ => WaitUntil::Load,
            },
            wait_for: self.wait_for.clone().filter(|s| !s.trim().is_empty()),
            delay: duration("delay", &self.delay, Duration::ZERO, Duration::from_secs(60))?,
            timeout: duration("timeout", &self.timeout, Duration::from_secs(30), Duration::from_secs(600))?,
            hide: self.hide.clone(),
            mask_selectors,
            mask_rects,
            selector: self.selector.clone().filter(|s| !s.trim().is_empty()),
            headers: self.headers.clone(),
            cookies: self.cookies.clone(),
            basic_auth: self.basic_auth.clone(),
            user_agent: self.user_agent.clone(),
            dark_mode: self.dark_mode.unwrap_or(false),
            reduced_motion: self.reduced_motion.unwrap_or(false),
            max_height,
            text: self.text.unwrap_or(false),
            page,
            login_state: None,
        })
    }

    /// `steps`, `click_accept` … `geolocation`, checked as the config checks them.
    fn page_setup(&self) -> Result<PageSetup, FieldError> {
        if self.steps.len() > page::MAX_STEPS {
            return Err(field_err("steps", format!("at most {} steps", page::MAX_STEPS)));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, w) in self.steps.iter().enumerate() {
            let step = w.validate().map_err(|m| keyed(&format!("steps[{i}]"), &m))?;
            steps.push(step);
        }
        let selectors = [("click_accept", &self.click_accept), ("remove", &self.remove)];
        for (name, list) in selectors {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err(field_err(&format!("{name}[{i}]"), "empty selector"));
            }
        }
        if self.block_requests.len() > 200 {
            return Err(field_err("block_requests", "at most 200 patterns"));
        }
        for (i, p) in self.block_requests.iter().enumerate() {
            page::check_block_pattern(p).map_err(|m| field_err(&format!("block_requests[{i}]"), m))?;
        }
        if let Some(l) = &self.locale {
            page::check_locale(l).map_err(|m| field_err("locale", m))?;
        }
        if let Some(g) = &self.geolocation {
            g.check().map_err(|m| field_err("geolocation", m))?;
        }
        Ok(PageSetup {
            click_accept: self.click_accept.clone(),
            remove: self.remove.clone(),
            block_banners: self.block_banners.unwrap_or(false),
            inject_css: self.inject_css.clone().filter(|s| !s.trim().is_empty()),
            steps,
            inject_js: self.inject_js.clone().filter(|s| !s.trim().is_empty()),
            block_requests: self.block_requests.iter().map(|p| p.trim().to_owned()).collect(),
            locale: self.locale.clone(),
            geolocation: self.geolocation,
            timezone: match self.timezone.as_deref().map(str::trim) {
                Some(tz) if tz.parse::<chrono_tz::Tz>().is_err() => {
                    return Err(field_err("timezone", format!("not an IANA time zone name: \"{tz}\"")));
                }
                tz => tz.map(str::to_owned),
            },
            session: match &self.session {
                Some(w) => Some(w.validate().map_err(|m| keyed("session", &m))?),
                None => None,
            },
        })
    }

    /// `url`: http or https, with a host.
    fn checked_url(&self) -> Result<Url, FieldError> {
        let url = Url::parse(self.url.trim()).map_err(|e| field_err("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(field_err(
                "url",
                format!("only http and https URLs can be captured (got \"{}:\")", url.scheme()),
            ));
        }
        if url.host().is_none() {
            return Err(field_err("url", "the URL has no host"));
        }
        Ok(url)
    }

    fn check_webhook_and_headers(&self) -> Result<(), FieldError> {
        if let Some(w) = &self.webhook_url {
            let u = Url::parse(w).map_err(|e| field_err("webhook_url", format!("not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(field_err("webhook_url", "must be an http or https URL"));
            }
        }
        for (i, (name, _)) in self.headers.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(field_err(&format!("headers[{i}]"), "not a valid header name"));
            }
        }
        Ok(())
    }

    /// `mask`: selectors, and rectangles with a positive size.
    fn masks(&self) -> Result<(Vec<String>, Vec<crate::diff::Region>), FieldError> {
        let mut selectors = Vec::new();
        let mut rects = Vec::new();
        for (i, m) in self.mask.iter().enumerate() {
            match m {
                MaskReq::Selector(s) if s.trim().is_empty() => {
                    return Err(field_err(&format!("mask[{i}]"), "empty selector"));
                }
                MaskReq::Selector(s) => selectors.push(s.clone()),
                MaskReq::Rect { width: 0, .. } | MaskReq::Rect { height: 0, .. } => {
                    return Err(field_err(&format!("mask[{i}]"), "width and height must be positive"));
                }
                MaskReq::Rect { x, y, width, height } => {
                    rects.push(crate::diff::Region { x: *x, y: *y, width: *width, height: *height })
                }
            }
        }
        Ok((selectors, rects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_parses_and_validates() {
        let body = br##"{ "url": "https://example.com/report/482", "format": "png", "full_page": true,
  "viewport": {"width": 1280, "height": 800, "scale": 1}, "wait_until": "networkidle",
  "wait_for": "#main", "delay": "500ms", "hide": [".cookie-banner"], "mask": ["#clock"],
  "webhook_url": "http://127.0.0.1:8080/hooks/capture",
  "metadata": {"monitor": "home", "run_id": "run_01J..."} }"##;
        let req = parse(body).unwrap();
        assert_eq!(req.metadata.as_ref().unwrap().get(), r#"{"monitor": "home", "run_id": "run_01J..."}"#);
        let spec = req.validate().unwrap();
        assert_eq!((spec.width, spec.height, spec.full_page), (1280, 800, true));
        assert_eq!(spec.delay, Duration::from_millis(500));
        assert_eq!(spec.mask_selectors, ["#clock"]);
        assert_eq!(spec.wait_until, WaitUntil::Networkidle);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(br#"{"url": "https://a.example/", "viewport": {"width": "wide", "height": 1}}"#)
            .unwrap_err();
        assert_eq!(e.field, "viewport.width");
        let e = parse(br#"{"url": "https://a.example/", "colour": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        let bad = |json: &str| parse(json.as_bytes()).unwrap().validate().unwrap_err().field;
        assert_eq!(bad(r#"{"url": "file:///etc/passwd"}"#), "url");
        assert_eq!(bad(r#"{"url": "javascript:alert(1)"}"#), "url");
        assert_eq!(
            bad(r#"{"url": "https://a.example/", "viewport": {"width": 99999, "height": 800}}"#),
            "viewport.width"
        );
        assert_eq!(bad(r#"{"url": "https://a.example/", "delay": "forever"}"#), "delay");
        assert_eq!(
            bad(r#"{"url": "https://a.example/", "mask": [{"x":0,"y":0,"width":0,"height":1}]}"#),
            "mask[0]"
        );
        assert_eq!(bad(r#"{"url": "https://a.example/", "webhook_url": "ftp://x/"}"#), "webhook_url");
        assert_eq!(
            bad(r#"{"url": "https://a.example/", "steps": [{"click": "a"}, {"fill": "b"}]}"#),
            "steps[1].value"
        );
        assert_eq!(bad(r#"{"url": "https://a.example/", "steps": [{}]}"#), "steps[0]");
        assert_eq!(bad(r#"{"url": "https://a.example/", "block_requests": ["*"]}"#), "block_requests[0]");
        assert_eq!(bad(r#"{"url": "https://a.example/", "timezone": "Europe/Atlantis"}"#), "timezone");
        assert_eq!(bad(r#"{"url": "https://a.example/", "click_accept": [""]}"#), "click_accept[0]");
        assert_eq!(
            bad(r#"{"url": "https://a.example/", "geolocation": {"latitude": 99, "longitude": 0}}"#),
            "geolocation"
        );
    }
}
