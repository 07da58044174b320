//! What is done to a page between its load and its capture (docs/monitors.md): steps (a
//! sign-in, a click, a wait), banners and popups out of the way, CSS and scripts injected,
//! requests blocked, and the browser's time zone, locale and position. Pure: the YAML side
//! reads it here, with positions; the capture API reads the same shapes from JSON and checks
//! them with the same [`StepWire::validate`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::Secret;
pub use super::session::{DEFAULT_REUSE, LoginSession, LoginWire, MAX_REUSE, check_session_name};

/// The longest a step may wait, and the default.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Steps a monitor may have.
pub const MAX_STEPS: usize = 50;

/// Everything done to the page before it is captured, in the order it is done.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PageSetup {
    /// Banners and popups first (an overlay would take a step's click), then `steps`, then
    /// banners again (a step may have loaded a page that shows one), then `inject_js`.
    pub click_accept: Vec<String>,
    pub remove: Vec<String>,
    /// The built-in list of consent banners ([`BANNER_SELECTORS`]) is removed.
    pub block_banners: bool,
    pub inject_css: Option<String>,
    pub steps: Vec<Step>,
    pub inject_js: Option<String>,
    /// URL patterns (`*` any run of characters) whose requests fail at once.
    pub block_requests: Vec<String>,
    /// `navigator.language`, `Intl` and `Accept-Language`, e.g. `de-DE`.
    pub locale: Option<String>,
    pub geolocation: Option<Geolocation>,
    /// The IANA zone of the page's clock (`Date`, `Intl`): `page_timezone` in the config,
    /// `timezone` in the capture API.
    pub timezone: Option<String>,
    /// Signed in through this session before anything else (`sessions:`).
    pub session: Option<LoginSession>,
}

impl PageSetup {
    /// Whether anything is done to the page beyond loading it.
    pub fn touches_page(&self) -> bool {
        !self.click_accept.is_empty()
            || !self.remove.is_empty()
            || self.block_banners
            || self.inject_css.is_some()
            || !self.steps.is_empty()
            || self.inject_js.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geolocation {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default = "default_accuracy")]
    pub accuracy: f64,
}

fn default_accuracy() -> f64 {
    10.0
}

impl Geolocation {
    pub fn check(&self) -> Result<(), String> {
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err("latitude must be from -90 to 90".into());
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err("longitude must be from -180 to 180".into());
        }
        if !(0.0..=100_000.0).contains(&self.accuracy) {
            return Err("accuracy must be from 0 to 100000 metres".into());
        }
        Ok(())
    }
}

/// One step before the capture; it fails the run (`step_failed`) if it cannot be done within
/// its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A real mouse click at the element's centre (scrolled into view first).
    Click(String),
    /// The field emptied and the text typed into it.
    Fill {
        selector: String,
        value: Secret,
    },
    /// A key (`Enter`, `Tab`, `Escape`, a letter) pressed on the focused element.
    Press(String),
    /// The `<select>` set to the option with this value (or label), with `input` and `change`.
    Select {
        selector: String,
        value: String,
    },
    Hover(String),
    ScrollTo(String),
    WaitFor(WaitFor),
    /// A JavaScript expression; a promise is awaited; `false` or a throw fails the step.
    Evaluate(String),
    Goto(Url),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Selector(String),
    /// Text anywhere in the page's visible text.
    Text(String),
    Duration(Duration),
}

impl Step {
    /// The step's kind as written: `click`, `fill`, `wait_for` …
    pub fn kind(&self) -> &'static str {
        match self.action {
            Action::Click(_) => "click",
            Action::Fill { .. } => "fill",
            Action::Press(_) => "press",
            Action::Select { .. } => "select",
            Action::Hover(_) => "hover",
            Action::ScrollTo(_) => "scroll_to",
            Action::WaitFor(_) => "wait_for",
            Action::Evaluate(_) => "evaluate",
            Action::Goto(_) => "goto",
        }
    }

    /// What the step acts on or waits for, for its error message (never a filled value).
    pub fn target(&self) -> String {
        match &self.action {
            Action::Click(s) | Action::Hover(s) | Action::ScrollTo(s) => format!("selector {s:?}"),
            Action::Fill { selector, .. } | Action::Select { selector, .. } => {
                format!("selector {selector:?}")
            }
            Action::Press(k) => format!("key {k:?}"),
            Action::WaitFor(WaitFor::Selector(s)) => format!("selector {s:?}"),
            Action::WaitFor(WaitFor::Text(t)) => format!("text {t:?}"),
            Action::WaitFor(WaitFor::Duration(d)) => humantime::format_duration(*d).to_string(),
            // Neither a script's text nor a URL's query: either may hold an interpolated secret.
            Action::Evaluate(js) => format!("a script of {} characters", js.chars().count()),
            Action::Goto(u) => format!("URL {}{}", u.origin().ascii_serialization(), u.path()),
        }
    }
}

/// A step as written, in YAML and in the capture API's JSON: one action key, `value` for
/// `fill` and `select`, and an optional `timeout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub press: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hover: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scroll_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitForWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `wait_for: "#sel"`, or `{selector}`, `{text}` or `{duration}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WaitForWire {
    Selector(String),
    Spec(WaitForSpec),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// A validation message's key and the rest ("value: missing" → ("value", "missing")), when it
/// starts with one.
pub fn split_key(message: &str) -> Option<(&str, &str)> {
    message.split_once(": ").filter(|(key, _)| !key.contains(' '))
}

/// The action keys, for messages.
pub const ACTIONS: &[&str] =
    &["click", "fill", "press", "select", "hover", "scroll_to", "wait_for", "evaluate", "goto"];

pub(super) fn nonempty(key: &str, s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err(format!("{key}: must not be empty")),
        _ => Ok(s.to_owned()),
    }
}

pub(super) fn step_duration(key: &str, s: &str, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("{key}: expected a duration like \"500ms\" or \"10s\" (got \"{s}\")"))?;
    if d > max {
        return Err(format!("{key}: at most {}", humantime::format_duration(max)));
    }
    Ok(d)
}

impl StepWire {
    /// The step, or what is wrong with it (the message starts with the key at fault).
    pub fn validate(&self) -> Result<Step, String> {
        let given: Vec<&str> = [
            self.click.is_some(),
            self.fill.is_some(),
            self.press.is_some(),
            self.select.is_some(),
            self.hover.is_some(),
            self.scroll_to.is_some(),
            self.wait_for.is_some(),
            self.evaluate.is_some(),
            self.goto.is_some(),
        ]
        .iter()
        .zip(ACTIONS)
        .filter(|(on, _)| **on)
        .map(|(_, k)| *k)
        .collect();
        let kind = match given[..] {
            [kind] => kind,
            [] => return Err(format!("a step needs one action: one of {}", ACTIONS.join(", "))),
            _ => return Err(format!("one action per step (this one has {})", given.join(" and "))),
        };
        let takes_value = matches!(kind, "fill" | "select");
        match (&self.value, takes_value) {
            (None, true) => return Err(format!("value: missing (what to {kind})")),
            (Some(_), false) => return Err(format!("value: only fill and select take a value, not {kind}")),
            _ => {}
        }
        let value = self.value.clone().unwrap_or_default();
        let text = |s: &Option<String>| nonempty(kind, s.as_deref().unwrap_or_default());
        let action = match kind {
            "click" => Action::Click(text(&self.click)?),
            "fill" => Action::Fill { selector: text(&self.fill)?, value: Secret::new(value) },
            "press" => {
                let key = text(&self.press)?;
                if chromiumoxide::keys::get_key_definition(&key).is_none() {
                    return Err(format!(
                        "press: {key:?} is not a key name (Enter, Tab, Escape, ArrowDown, a …)"
                    ));
                }
                Action::Press(key)
            }
            "select" => Action::Select { selector: text(&self.select)?, value },
            "hover" => Action::Hover(text(&self.hover)?),
            "scroll_to" => Action::ScrollTo(text(&self.scroll_to)?),
            "evaluate" => Action::Evaluate(text(&self.evaluate)?),
            "goto" => {
                let s = text(&self.goto)?;
                match Url::parse(s.trim()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Action::Goto(u),
                    _ => {
                        return Err(format!(
                            "goto: expected an absolute http:// or https:// URL (got \"{s}\")"
                        ));
                    }
                }
            }
            _ => Action::WaitFor(match self.wait_for.as_ref().expect("given") {
                WaitForWire::Selector(s) => WaitFor::Selector(nonempty("wait_for", s)?),
                WaitForWire::Spec(spec) => match (&spec.selector, &spec.text, &spec.duration) {
                    (Some(s), None, None) => WaitFor::Selector(nonempty("wait_for.selector", s)?),
                    (None, Some(t), None) => WaitFor::Text(nonempty("wait_for.text", t)?),
                    (None, None, Some(d)) => {
                        WaitFor::Duration(step_duration("wait_for.duration", d, MAX_STEP_TIMEOUT)?)
                    }
                    _ => return Err("wait_for: give one of selector, text or duration".into()),
                },
            }),
        };
        let waits = match &action {
            Action::WaitFor(WaitFor::Duration(d)) => *d,
            _ => Duration::ZERO,
        };
        let timeout = match &self.timeout {
            Some(t) => step_duration("timeout", t, MAX_STEP_TIMEOUT)?,
            None => DEFAULT_STEP_TIMEOUT.max(waits),
        };
        if timeout.is_zero() {
            return Err("timeout: must be more than zero".into());
        }
        if waits > timeout {
            return Err("timeout: shorter than the wait_for duration".into());
        }
        Ok(Step { action, timeout })
    }
}

/// As stored with the monitor's settings: a filled value shows as `***`.
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut w = self.to_wire();
        if matches!(self.action, Action::Fill { .. }) {
            w.value = Some("***".into());
        }
        w.serialize(s)
    }
}

impl Step {
    /// The step as the capture API takes it.
    pub fn to_wire(&self) -> StepWire {
        let mut w =
            StepWire { timeout: Some(format!("{}ms", self.timeout.as_millis())), ..Default::default() };
        match &self.action {
            Action::Click(s) => w.click = Some(s.clone()),
            Action::Fill { selector, value } => {
                w.fill = Some(selector.clone());
                w.value = Some(value.expose().to_owned());
            }
            Action::Press(k) => w.press = Some(k.clone()),
            Action::Select { selector, value } => {
                w.select = Some(selector.clone());
                w.value = Some(value.clone());
            }
            Action::Hover(s) => w.hover = Some(s.clone()),
            Action::ScrollTo(s) => w.scroll_to = Some(s.clone()),
            Action::WaitFor(WaitFor::Selector(s)) => w.wait_for = Some(WaitForWire::Selector(s.clone())),
            Action::WaitFor(WaitFor::Text(t)) => {
                w.wait_for =
                    Some(WaitForWire::Spec(WaitForSpec { text: Some(t.clone()), ..Default::default() }))
            }
            Action::WaitFor(WaitFor::Duration(d)) => {
                let duration = Some(format!("{}ms", d.as_millis()));
                w.wait_for = Some(WaitForWire::Spec(WaitForSpec { duration, ..Default::default() }))
            }
            Action::Evaluate(js) => w.evaluate = Some(js.clone()),
            Action::Goto(u) => w.goto = Some(u.to_string()),
        }
        w
    }
}

/// A URL pattern of `block_requests`: `*` stands for any run of characters; anything else is
/// itself. At most 200 patterns of 500 characters.
pub fn check_block_pattern(p: &str) -> Result<(), String> {
    let p = p.trim();
    if p.is_empty() {
        return Err("an empty pattern would block nothing".into());
    }
    if p.len() > 500 {
        return Err("at most 500 characters".into());
    }
    // `*`, `**`, `*://*/*`: every request, the page's own included.
    if p.chars().all(|c| matches!(c, '*' | ':' | '/' | '.')) {
        return Err(format!("\"{p}\" would block every request, the page's own included"));
    }
    Ok(())
}

/// Whether `url` matches a `block_requests` pattern (`*`: any run of characters).
pub fn matches_pattern(pattern: &str, url: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return url == pattern;
    }
    if !url.starts_with(first) || url.len() < first.len() + last.len() || !url.ends_with(last) {
        return false;
    }
    let mut rest = &url[first.len()..url.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A BCP 47 language tag as browsers take it: `de`, `de-DE`, `zh-Hant-TW`.
pub fn check_locale(s: &str) -> Result<(), String> {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or_default();
    let ok = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok { Ok(()) } else { Err(format!("expected a language tag like \"de-DE\" (got \"{s}\")")) }
}

/// Consent-management platforms' banners and their backdrops (`block_banners: true`), removed
/// from the page. Each names one product's own element, so none matches a page's content.
pub const BANNER_SELECTORS: &[&str] = &[
    "#onetrust-consent-sdk",
    "#onetrust-banner-sdk",
    "#CybotCookiebotDialog",
    "#CybotCookiebotDialogBodyUnderlay",
    "#didomi-host",
    ".didomi-popup-backdrop",
    "#qc-cmp2-container",
    ".qc-cmp2-container",
    "#truste-consent-track",
    ".truste_overlay",
    ".truste_box_overlay",
    "#consent_blackbar",
    "#usercentrics-root",
    "#usercentrics-cmp-ui",
    ".cc-window",
    ".cc-banner",
    ".cc-revoke",
    "#cookie-law-info-bar",
    ".cky-consent-container",
    ".cky-overlay",
    "#cmplz-cookiebanner-container",
    ".cmplz-cookiebanner",
    "#klaro",
    ".klaro",
    "#iubenda-cs-banner",
    "[id^='sp_message_container_']",
    ".fc-consent-root",
    "#cookie-notice",
    "#moove_gdpr_cookie_info_bar",
    "#hs-eu-cookie-confirmation",
    "#_evidon_banner",
    ".evidon-banner",
    "#axeptio_overlay",
    "#tarteaucitronRoot",
    "#termly-code-snippet-support",
    "#cookiescript_injected",
    "#BorlabsCookieBox",
    "#gdpr-cookie-message",
    ".osano-cm-window",
    "[aria-label='cookieconsent']",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(json: &str) -> StepWire {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_step_has_one_action_and_a_value_only_where_it_takes_one() {
        let s = wire(r##"{"fill": "#user", "value": "ana", "timeout": "5s"}"##).validate().unwrap();
        assert_eq!(s.kind(), "fill");
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(wire(r##"{"click": "#go"}"##).validate().unwrap().timeout, DEFAULT_STEP_TIMEOUT);
        let err = |json: &str| wire(json).validate().unwrap_err();
        assert!(err(r#"{}"#).contains("needs one action"));
        assert!(err(r##"{"click": "#a", "hover": "#b"}"##).contains("click and hover"));
        assert!(err(r##"{"fill": "#a"}"##).starts_with("value: missing"));
        assert!(err(r##"{"click": "#a", "value": "x"}"##).starts_with("value: only fill and select"));
        assert!(err(r##"{"click": "  "}"##).starts_with("click: must not be empty"));
        assert!(err(r##"{"goto": "file:///etc/passwd"}"##).starts_with("goto:"));
        assert!(err(r##"{"click": "#a", "timeout": "1h"}"##).starts_with("timeout: at most"));
        assert!(err(r##"{"click": "#a", "timeout": "0s"}"##).starts_with("timeout: must be"));
        assert!(err(r##"{"wait_for": {"text": "a", "selector": "b"}}"##).starts_with("wait_for:"));
        assert!(err(r##"{"press": "enter"}"##).starts_with("press:"), "key names are checked early");
        assert!(
            err(r##"{"wait_for": {"duration": "30s"}, "timeout": "5s"}"##).starts_with("timeout: shorter")
        );
        let long = wire(r##"{"wait_for": {"duration": "30s"}}"##).validate().unwrap();
        assert_eq!(long.timeout, Duration::from_secs(30), "a long wait is its own timeout");
    }

    #[test]
    fn steps_go_to_the_capture_api_and_back_unchanged() {
        for json in [
            r##"{"click": "#go", "timeout": "2s"}"##,
            r##"{"fill": "#pw", "value": "s3cret"}"##,
            r##"{"press": "Enter"}"##,
            r##"{"select": "#size", "value": "L"}"##,
            r##"{"hover": ".menu"}"##,
            r##"{"scroll_to": "footer"}"##,
            r##"{"wait_for": "#done"}"##,
            r##"{"wait_for": {"text": "Welcome back"}}"##,
            r##"{"wait_for": {"duration": "1500ms"}}"##,
            r##"{"evaluate": "document.title = 'x'"}"##,
            r##"{"goto": "https://example.com/account"}"##,
        ] {
            let step = wire(json).validate().unwrap();
            let back = serde_json::to_string(&step.to_wire()).unwrap();
            assert_eq!(wire(&back).validate().unwrap(), step, "{json}");
        }
    }

    #[test]
    fn a_filled_value_never_shows_in_messages() {
        let s = wire(r##"{"fill": "#pw", "value": "hunter2"}"##).validate().unwrap();
        let stored = serde_json::to_string(&s).unwrap();
        assert!(!format!("{s:?} {} {stored}", s.target()).contains("hunter2"), "{stored}");
        let goto = wire(r##"{"goto": "https://a.example/p?token=s3cret"}"##).validate().unwrap();
        let script = wire(r##"{"evaluate": "login('s3cret')"}"##).validate().unwrap();
        assert!(!format!("{} {}", goto.target(), script.target()).contains("s3cret"));
    }

    #[test]
    fn block_patterns_match_with_stars() {
        assert!(matches_pattern("*://*.doubleclick.net/*", "https://ad.doubleclick.net/x?y"));
        assert!(!matches_pattern("*://*.doubleclick.net/*", "https://example.com/doubleclick.net"));
        assert!(matches_pattern("*/analytics.js", "https://cdn.example.com/js/analytics.js"));
        assert!(!matches_pattern("*/analytics.js", "https://cdn.example.com/analytics.js.map"));
        assert!(matches_pattern("https://a.example/exact", "https://a.example/exact"));
        assert!(matches_pattern("*chat*widget*", "https://x.example/chat/v2/widget.js"));
        assert!(!matches_pattern("*chat*widget*", "https://x.example/widget/chat.js"));
        assert!(check_block_pattern("*").is_err());
        assert!(check_block_pattern("*://*/*").is_err());
        assert!(check_block_pattern("**").is_err());
        assert!(check_block_pattern(" ").is_err());
    }

    #[test]
    fn locales_and_positions_are_checked() {
        for ok in ["de", "de-DE", "zh-Hant-TW", "es-419"] {
            assert!(check_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "german", "de_DE", "d", "de-"] {
            assert!(check_locale(bad).is_err(), "{bad}");
        }
        assert!(Geolocation { latitude: 52.5, longitude: 13.4, accuracy: 10.0 }.check().is_ok());
        assert!(Geolocation { latitude: 91.0, longitude: 0.0, accuracy: 1.0 }.check().is_err());
        assert!(Geolocation { latitude: 0.0, longitude: 0.0, accuracy: f64::NAN }.check().is_err());
    }
}
