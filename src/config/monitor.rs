//! `defaults:` and `monitors:`: per-monitor settings, merged with the defaults.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use url::Url;

use super::ctx::{Ctx, Fields};
use super::model::*;
use super::node::{Node, Pos, Value};
use super::page::{Geolocation, LoginSession, Step};
use super::values::{boolean, duration, integer, list, number, percentage, text, text_list, viewport};

/// Keys a monitor may set; `defaults:` takes the same ones except `name` and `url`.
pub const SETTING_KEYS: &[&str] = &[
    "schedule",
    "viewports",
    "full_page",
    "format",
    "wait_until",
    "wait_for",
    "delay",
    "timeout",
    "hide",
    "mask",
    "selector",
    "headers",
    "cookies",
    "basic_auth",
    "user_agent",
    "dark_mode",
    "reduced_motion",
    "max_height",
    "threshold",
    "max_diff_pixels",
    "pixel_threshold",
    "alert_on_text_change",
    "unstable_alert_after",
    "group_window",
    "retries_on_diff",
    "slack_channel",
    "alerts",
    "enabled",
    "jitter",
    "steps",
    "click_accept",
    "remove",
    "block_banners",
    "inject_css",
    "inject_js",
    "block_requests",
    "locale",
    "geolocation",
    "timezone",
    "page_timezone",
    "quiet_hours",
    "session",
];

pub const DEFAULT_SCHEDULE: &str = "0 * * * *";
pub const DEFAULT_VIEWPORT: Viewport = Viewport { width: 1280, height: 800, scale: 1.0, mobile: false };
pub const DEFAULT_THRESHOLD_RATIO: f64 = 0.001;
pub const DEFAULT_MAX_HEIGHT: u32 = 16_384;
/// How long a change alert may wait for the other runs of its tick, to go out as one message.
pub const DEFAULT_GROUP_WINDOW: Duration = Duration::from_secs(60);

/// Settings as written; `None` = not given here.
#[derive(Default, Clone)]
pub(crate) struct Settings {
    schedule: Option<Schedule>,
    viewports: Option<Vec<Viewport>>,
    full_page: Option<bool>,
    format: Option<Format>,
    wait_until: Option<WaitUntil>,
    wait_for: Option<String>,
    delay: Option<Duration>,
    timeout: Option<Duration>,
    hide: Option<Vec<String>>,
    mask: Option<Vec<Mask>>,
    selector: Option<String>,
    headers: Option<BTreeMap<String, Secret>>,
    cookies: Option<Vec<Cookie>>,
    basic_auth: Option<BasicAuth>,
    user_agent: Option<String>,
    dark_mode: Option<bool>,
    reduced_motion: Option<bool>,
    max_height: Option<u32>,
    threshold: Option<f64>,
    max_diff_pixels: Option<u64>,
    pixel_threshold: Option<f64>,
    alert_on_text_change: Option<bool>,
    unstable_alert_after: Option<u32>,
    group_window: Option<Duration>,
    retries_on_diff: Option<u32>,
    slack_channel: Option<String>,
    alerts: Option<Vec<String>>,
    enabled: Option<bool>,
    jitter: Option<Duration>,
    steps: Option<Vec<Step>>,
    click_accept: Option<Vec<String>>,
    remove: Option<Vec<String>>,
    block_banners: Option<bool>,
    inject_css: Option<String>,
    inject_js: Option<String>,
    block_requests: Option<Vec<String>>,
    locale: Option<String>,
    geolocation: Option<Geolocation>,
    timezone: Option<chrono_tz::Tz>,
    page_timezone: Option<chrono_tz::Tz>,
    quiet_hours: Option<Vec<QuietWindow>>,
    session: Option<LoginSession>,
}

/// Reads every setting key present in `f`.
pub(crate) fn settings(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Settings {
    let mut s = Settings::default();
    macro_rules! read {
        ($key:ident, |$n:ident, $p:ident| $body:expr) => {
            if let Some($n) = f.opt(stringify!($key)) {
                let $p = f.path(stringify!($key));
                let $p = $p.as_str();
                s.$key = $body;
            }
        };
    }
    read!(schedule, |n, p| {
        let src = text(ctx, n, p);
        src.and_then(|src| Schedule::parse(&src).map_err(|e| ctx.error(n.pos, p, e)).ok())
    });
    read!(viewports, |n, p| {
        let items = list(ctx, n, p, "viewports").unwrap_or_default();
        if items.is_empty() && matches!(n.value, Value::Seq(_)) {
            ctx.error(n.pos, p, "expected at least one viewport");
        }
        let vs: Vec<_> =
            items.iter().enumerate().map(|(i, v)| viewport(ctx, v, &format!("{p}[{i}]"))).collect();
        let mut seen = HashMap::new();
        for (v, node) in vs.iter().zip(items) {
            if let Some(v) = v
                && let Some(first) = seen.insert(v.key(), node.pos.line)
            {
                let msg = format!("viewport {} is listed twice (first on line {first})", v.key());
                ctx.error(node.pos, p, msg);
            }
        }
        vs.into_iter().collect::<Option<Vec<_>>>().filter(|v| !v.is_empty())
    });
    read!(full_page, |n, p| boolean(ctx, n, p));
    read!(format, |n, p| choice(ctx, n, p, &[("png", Format::Png), ("pdf", Format::Pdf)]));
    read!(wait_until, |n, p| choice(
        ctx,
        n,
        p,
        &[
            ("load", WaitUntil::Load),
            ("domcontentloaded", WaitUntil::Domcontentloaded),
            ("networkidle", WaitUntil::Networkidle)
        ]
    ));
    read!(wait_for, |n, p| text(ctx, n, p));
    read!(delay, |n, p| duration(ctx, n, p, Duration::ZERO, Duration::from_secs(60)));
    read!(timeout, |n, p| duration(ctx, n, p, Duration::from_secs(1), Duration::from_secs(600)));
    read!(hide, |n, p| Some(text_list(ctx, n, p)));
    read!(mask, |n, p| masks(ctx, n, p));
    read!(selector, |n, p| text(ctx, n, p));
    read!(headers, |n, p| headers(ctx, n, p));
    read!(cookies, |n, p| cookies(ctx, n, p));
    read!(basic_auth, |n, p| basic_auth(ctx, n, p));
    read!(user_agent, |n, p| text(ctx, n, p));
    read!(dark_mode, |n, p| boolean(ctx, n, p));
    read!(reduced_motion, |n, p| boolean(ctx, n, p));
    read!(max_height, |n, p| integer(ctx, n, p, 100, 65_536).map(|v| v as u32));
    read!(threshold, |n, p| percentage(ctx, n, p));
    read!(max_diff_pixels, |n, p| integer(ctx, n, p, 0, i64::MAX).map(|v| v as u64));
    read!(pixel_threshold, |n, p| number(ctx, n, p, 0.0, 1.0));
    read!(alert_on_text_change, |n, p| boolean(ctx, n, p));
    read!(unstable_alert_after, |n, p| integer(ctx, n, p, 1, 100).map(|v| v as u32));
    read!(group_window, |n, p| duration(ctx, n, p, Duration::ZERO, Duration::from_secs(600)));
    read!(retries_on_diff, |n, p| integer(ctx, n, p, 0, 10).map(|v| v as u32));
    read!(slack_channel, |n, p| text(ctx, n, p));
    read!(alerts, |n, p| super::alerts::routes(ctx, n, p));
    read!(enabled, |n, p| boolean(ctx, n, p));
    read!(jitter, |n, p| duration(ctx, n, p, Duration::ZERO, Duration::from_secs(3600)));
    read!(steps, |n, p| super::setup::steps(ctx, n, p));
    read!(click_accept, |n, p| super::setup::selectors(ctx, n, p));
    read!(remove, |n, p| super::setup::selectors(ctx, n, p));
    read!(block_banners, |n, p| boolean(ctx, n, p));
    read!(inject_css, |n, p| text(ctx, n, p));
    read!(inject_js, |n, p| text(ctx, n, p));
    read!(block_requests, |n, p| super::setup::block_patterns(ctx, n, p));
    read!(locale, |n, p| super::setup::locale(ctx, n, p));
    read!(geolocation, |n, p| super::setup::geolocation(ctx, n, p));
    read!(timezone, |n, p| super::schedule::timezone(ctx, n, p));
    read!(page_timezone, |n, p| super::schedule::timezone(ctx, n, p));
    read!(quiet_hours, |n, p| super::schedule::quiet_hours(ctx, n, p));
    read!(session, |n, p| super::setup::session_ref(ctx, n, p));
    s
}

/// One entry of `monitors:`; `None` when it has errors (already recorded).
pub(crate) fn monitor(ctx: &mut Ctx<'_>, node: &Node, path: &str, defaults: &Settings) -> Option<Monitor> {
    let mut f = Fields::of(ctx, node, path)?;
    let name = required(ctx, &mut f, node.pos, "name", "a monitor name").and_then(|(n, p)| {
        let s = text(ctx, n, &p)?;
        s.parse::<MonitorName>().map_err(|e| ctx.expected(n, &p, e)).ok()
    });
    let url = required(ctx, &mut f, node.pos, "url", "the page URL").and_then(|(n, p)| page_url(ctx, n, &p));
    let own = settings(ctx, &mut f);
    let mut known = vec!["name", "url"];
    known.extend_from_slice(SETTING_KEYS);
    f.finish(ctx, &known);
    let s = own.or(defaults);
    if s.format == Some(Format::Pdf) {
        // The capture reports where a selector is on the screen, not on the printed pages.
        if s.mask.iter().flatten().any(|m| matches!(m, Mask::Selector(_))) {
            ctx.error(
                node.pos,
                &format!("{path}.mask"),
                "a PDF monitor cannot mask by selector (its pages are printed, not shot): hide the \
                 element before printing with hide:, or mask a rectangle of the rendered pages (x, y in their pixels)",
            );
        }
        if s.selector.is_some() {
            ctx.error(
                node.pos,
                &format!("{path}.selector"),
                "a PDF monitor prints the whole page; selector is for screenshots",
            );
        }
    }
    let threshold = match (s.threshold, s.max_diff_pixels) {
        (None, None) => Threshold { ratio: Some(DEFAULT_THRESHOLD_RATIO), max_diff_pixels: None },
        (ratio, max_diff_pixels) => Threshold { ratio, max_diff_pixels },
    };
    Some(Monitor {
        name: name?,
        url: url?,
        schedule: s
            .schedule
            .unwrap_or_else(|| Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses"))
            .in_zone(s.timezone.unwrap_or(chrono_tz::Tz::UTC)),
        viewports: s.viewports.unwrap_or_else(|| vec![DEFAULT_VIEWPORT]),
        full_page: s.full_page.unwrap_or(true),
        format: s.format.unwrap_or(Format::Png),
        wait_until: s.wait_until.unwrap_or(WaitUntil::Networkidle),
        wait_for: s.wait_for,
        delay: s.delay.unwrap_or(Duration::ZERO),
        timeout: s.timeout.unwrap_or(Duration::from_secs(30)),
        hide: s.hide.unwrap_or_default(),
        mask: s.mask.unwrap_or_default(),
        selector: s.selector,
        headers: s.headers.unwrap_or_default(),
        cookies: s.cookies.unwrap_or_default(),
        basic_auth: s.basic_auth,
        user_agent: s.user_agent,
        dark_mode: s.dark_mode.unwrap_or(false),
        reduced_motion: s.reduced_motion.unwrap_or(true),
        max_height: s.max_height.unwrap_or(DEFAULT_MAX_HEIGHT),
        threshold,
        pixel_threshold: s.pixel_threshold.unwrap_or(0.1),
        // Limits set on purpose decide alone, unless words are asked for too (docs/diff.md).
        alert_on_text_change: s
            .alert_on_text_change
            .unwrap_or(s.threshold.is_none() && s.max_diff_pixels.is_none()),
        unstable_alert_after: s.unstable_alert_after.unwrap_or(3),
        group_window: s.group_window.unwrap_or(DEFAULT_GROUP_WINDOW),
        retries_on_diff: s.retries_on_diff.unwrap_or(1),
        slack_channel: s.slack_channel,
        alerts: s.alerts.unwrap_or_else(|| {
            let mut all = vec![super::alerts::SLACK.to_owned()];
            all.extend(ctx.destinations.iter().cloned());
            all
        }),
        enabled: s.enabled.unwrap_or(true),
        jitter: s.jitter.unwrap_or(Duration::ZERO),
        page: PageSetup {
            click_accept: s.click_accept.unwrap_or_default(),
            remove: s.remove.unwrap_or_default(),
            block_banners: s.block_banners.unwrap_or(false),
            inject_css: s.inject_css,
            steps: s.steps.unwrap_or_default(),
            inject_js: s.inject_js,
            block_requests: s.block_requests.unwrap_or_default(),
            locale: s.locale,
            geolocation: s.geolocation,
            timezone: s.page_timezone.map(|tz| tz.name().to_owned()),
            session: s.session,
        },
        timezone: s.timezone,
        quiet_hours: s.quiet_hours.unwrap_or_default(),
    })
}

impl Settings {
    /// Own values win; missing ones come from `defaults`. The two threshold keys travel together
    /// so a monitor that sets only `max_diff_pixels` does not inherit a default `threshold`.
    fn or(self, d: &Settings) -> Settings {
        let own_limits = self.threshold.is_some() || self.max_diff_pixels.is_some();
        let (threshold, max_diff_pixels) = if own_limits {
            (self.threshold, self.max_diff_pixels)
        } else {
            (d.threshold, d.max_diff_pixels)
        };
        Settings {
            schedule: self.schedule.or_else(|| d.schedule.clone()),
            viewports: self.viewports.or_else(|| d.viewports.clone()),
            full_page: self.full_page.or(d.full_page),
            format: self.format.or(d.format),
            wait_until: self.wait_until.or(d.wait_until),
            wait_for: self.wait_for.or_else(|| d.wait_for.clone()),
            delay: self.delay.or(d.delay),
            timeout: self.timeout.or(d.timeout),
            hide: self.hide.or_else(|| d.hide.clone()),
            mask: self.mask.or_else(|| d.mask.clone()),
            selector: self.selector.or_else(|| d.selector.clone()),
            headers: self.headers.or_else(|| d.headers.clone()),
            cookies: self.cookies.or_else(|| d.cookies.clone()),
            basic_auth: self.basic_auth.or_else(|| d.basic_auth.clone()),
            user_agent: self.user_agent.or_else(|| d.user_agent.clone()),
            dark_mode: self.dark_mode.or(d.dark_mode),
            reduced_motion: self.reduced_motion.or(d.reduced_motion),
            max_height: self.max_height.or(d.max_height),
            threshold,
            max_diff_pixels,
            pixel_threshold: self.pixel_threshold.or(d.pixel_threshold),
            alert_on_text_change: self.alert_on_text_change.or(d.alert_on_text_change),
            unstable_alert_after: self.unstable_alert_after.or(d.unstable_alert_after),
            group_window: self.group_window.or(d.group_window),
            retries_on_diff: self.retries_on_diff.or(d.retries_on_diff),
            slack_channel: self.slack_channel.or_else(|| d.slack_channel.clone()),
            alerts: self.alerts.or_else(|| d.alerts.clone()),
            enabled: self.enabled.or(d.enabled),
            jitter: self.jitter.or(d.jitter),
            steps: self.steps.or_else(|| d.steps.clone()),
            click_accept: self.click_accept.or_else(|| d.click_accept.clone()),
            remove: self.remove.or_else(|| d.remove.clone()),
            block_banners: self.block_banners.or(d.block_banners),
            inject_css: self.inject_css.or_else(|| d.inject_css.clone()),
            inject_js: self.inject_js.or_else(|| d.inject_js.clone()),
            block_requests: self.block_requests.or_else(|| d.block_requests.clone()),
            locale: self.locale.or_else(|| d.locale.clone()),
            geolocation: self.geolocation.or(d.geolocation),
            timezone: self.timezone.or(d.timezone),
            page_timezone: self.page_timezone.or(d.page_timezone),
            quiet_hours: self.quiet_hours.or_else(|| d.quiet_hours.clone()),
            session: self.session.or_else(|| d.session.clone()),
        }
    }
}

pub(crate) fn required<'n>(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'n>,
    at: Pos,
    key: &str,
    what: &str,
) -> Option<(&'n Node, String)> {
    let path = f.path(key);
    match f.opt(key) {
        Some(n) => Some((n, path)),
        None => {
            ctx.error(at, &path, format!("missing (expected {what})"));
            None
        }
    }
}

/// An `http`/`https` URL with a host.
pub(crate) fn page_url(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Url> {
    let s = text(ctx, node, path)?;
    match Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            ctx.error(
                node.pos,
                path,
                format!("expected an http:// or https:// URL (got scheme \"{}\")", u.scheme()),
            );
            None
        }
        Err(e) => {
            ctx.error(node.pos, path, format!("expected an http:// or https:// URL ({e}: \"{s}\")"));
            None
        }
    }
}

pub(crate) fn choice<T: Copy>(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
    options: &[(&str, T)],
) -> Option<T> {
    let s = text(ctx, node, path)?;
    match options.iter().find(|(name, _)| *name == s.trim()) {
        Some((_, v)) => Some(*v),
        None => {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            ctx.expected(node, path, &format!("one of {}", names.join(", ")));
            None
        }
    }
}

fn masks(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<Mask>> {
    let items = list(ctx, node, path, "CSS selectors or {x, y, width, height} rectangles")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let m = if let Value::Map(_) = item.value {
            rect(ctx, item, &p)
        } else {
            text(ctx, item, &p).map(Mask::Selector)
        };
        match m {
            Some(m) => out.push(m),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn rect(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Mask> {
    let mut f = Fields::of(ctx, node, path)?;
    let mut side = |ctx: &mut Ctx<'_>, key: &str, min: i64| {
        let (n, p) = required(ctx, &mut f, node.pos, key, "a number of pixels")?;
        integer(ctx, n, &p, min, 1_000_000).map(|v| v as u32)
    };
    let x = side(ctx, "x", 0);
    let y = side(ctx, "y", 0);
    let width = side(ctx, "width", 1);
    let height = side(ctx, "height", 1);
    f.finish(ctx, &["x", "y", "width", "height"]);
    Some(Mask::Rect { x: x?, y: y?, width: width?, height: height? })
}

fn headers(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<BTreeMap<String, Secret>> {
    let Value::Map(entries) = &node.value else {
        ctx.expected(node, path, "a mapping of header names to values");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let name = match &k.value {
            Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {
                s.clone()
            }
            _ => {
                ctx.expected(k, path, "an HTTP header name");
                ok = false;
                continue;
            }
        };
        match text(ctx, v, &format!("{path}.{name}")) {
            Some(val) => {
                out.insert(name, Secret::new(val));
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn cookies(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<Cookie>> {
    let items = list(ctx, node, path, "cookies {name, value, domain, path}")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut f) = Fields::of(ctx, item, &p) else {
            ok = false;
            continue;
        };
        let name =
            required(ctx, &mut f, item.pos, "name", "the cookie name").and_then(|(n, p)| text(ctx, n, &p));
        let value =
            required(ctx, &mut f, item.pos, "value", "the cookie value").and_then(|(n, p)| text(ctx, n, &p));
        let domain = f.opt("domain").and_then(|n| text(ctx, n, &format!("{p}.domain")));
        let cpath = f.opt("path").and_then(|n| text(ctx, n, &format!("{p}.path")));
        f.finish(ctx, &["name", "value", "domain", "path"]);
        match (name, value) {
            (Some(name), Some(value)) => {
                out.push(Cookie { name, value: Secret::new(value), domain, path: cpath })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn basic_auth(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<BasicAuth> {
    let mut f = Fields::of(ctx, node, path)?;
    let username =
        required(ctx, &mut f, node.pos, "username", "a user name").and_then(|(n, p)| text(ctx, n, &p));
    let password =
        required(ctx, &mut f, node.pos, "password", "a password").and_then(|(n, p)| text(ctx, n, &p));
    f.finish(ctx, &["username", "password"]);
    Some(BasicAuth { username: username?, password: Secret::new(password?) })
}
