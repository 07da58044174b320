//! Reading the page keys of a monitor (`steps`, `click_accept`, `geolocation` …) from YAML with
//! positions; their meaning and checks are in [`super::page`].

use super::ctx::{Ctx, Fields};
use super::node::{Node, Value};
use super::page::{self, Geolocation, LoginSession, LoginWire, Step, StepWire, WaitForSpec, WaitForWire};
use super::values::{list, number, text};

/// `steps:`, each a mapping with one action key.
pub(crate) fn steps(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<Step>> {
    let items = list(ctx, node, path, "steps like {click: \"#accept\"}")?;
    if items.len() > page::MAX_STEPS {
        ctx.error(node.pos, path, format!("at most {} steps", page::MAX_STEPS));
        return None;
    }
    let steps: Vec<Option<Step>> =
        items.iter().enumerate().map(|(i, n)| step(ctx, n, &format!("{path}[{i}]"))).collect();
    steps.into_iter().collect()
}

fn step(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Step> {
    let mut f = Fields::of(ctx, node, path)?;
    let mut ok = true;
    let mut read = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, key: &str| -> Option<String> {
        let n = f.opt(key)?;
        let v = text(ctx, n, &f.path(key));
        ok &= v.is_some();
        v
    };
    let mut wire = StepWire {
        click: read(ctx, &mut f, "click"),
        fill: read(ctx, &mut f, "fill"),
        press: read(ctx, &mut f, "press"),
        select: read(ctx, &mut f, "select"),
        hover: read(ctx, &mut f, "hover"),
        scroll_to: read(ctx, &mut f, "scroll_to"),
        evaluate: read(ctx, &mut f, "evaluate"),
        goto: read(ctx, &mut f, "goto"),
        value: read(ctx, &mut f, "value"),
        timeout: read(ctx, &mut f, "timeout"),
        wait_for: None,
    };
    if let Some(n) = f.opt("wait_for") {
        wire.wait_for = wait_for(ctx, n, &f.path("wait_for"));
        ok &= wire.wait_for.is_some();
    }
    let mut known = page::ACTIONS.to_vec();
    known.extend(["value", "timeout"]);
    f.finish(ctx, &known);
    if !ok {
        return None;
    }
    wire.validate().map_err(|message| keyed_error(ctx, node, path, message)).ok()
}

/// Records a validation message at `node`: "key: what is wrong" names the key under `path`.
fn keyed_error(ctx: &mut Ctx<'_>, node: &Node, path: &str, message: String) {
    match page::split_key(&message) {
        Some((key, rest)) => ctx.error(node.pos, &format!("{path}.{key}"), rest),
        None => ctx.error(node.pos, path, message),
    }
}

fn wait_for(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<WaitForWire> {
    if !matches!(node.value, Value::Map(_)) {
        return text(ctx, node, path).map(WaitForWire::Selector);
    }
    let mut f = Fields::of(ctx, node, path)?;
    let mut get = |ctx: &mut Ctx<'_>, key: &str| f.opt(key).map(|n| text(ctx, n, &f.path(key)));
    let spec = WaitForSpec {
        selector: get(ctx, "selector").flatten(),
        text: get(ctx, "text").flatten(),
        duration: get(ctx, "duration").flatten(),
    };
    f.finish(ctx, &["selector", "text", "duration"]);
    Some(WaitForWire::Spec(spec))
}

/// `sessions:`: name → `{url, steps, check, reuse}`.
pub(crate) fn sessions(ctx: &mut Ctx<'_>, node: &Node) -> Option<Vec<LoginSession>> {
    let Value::Map(entries) = &node.value else {
        ctx.expected(node, "sessions", "a mapping of session names to {url, steps, check, reuse}");
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let name = match &k.value {
            Value::Str(s) if page::check_session_name(s).is_ok() => s.clone(),
            _ => {
                ctx.expected(k, "sessions", "a session name like \"shop-login\" (a-z, 0-9, - and _)");
                ok = false;
                continue;
            }
        };
        match session(ctx, v, &format!("sessions.{name}"), name) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn session(ctx: &mut Ctx<'_>, node: &Node, path: &str, name: String) -> Option<LoginSession> {
    let mut f = Fields::of(ctx, node, path)?;
    let url = super::monitor::required(ctx, &mut f, node.pos, "url", "the page where signing in starts")
        .and_then(|(n, p)| text(ctx, n, &p));
    let steps = super::monitor::required(ctx, &mut f, node.pos, "steps", "the steps that sign in")
        .and_then(|(n, p)| steps(ctx, n, &p));
    let check = super::monitor::required(
        ctx,
        &mut f,
        node.pos,
        "check",
        "a selector or {text: …} a signed-in page shows",
    )
    .and_then(|(n, p)| wait_for(ctx, n, &p));
    let reuse = f.opt("reuse").and_then(|n| text(ctx, n, &f.path("reuse")));
    f.finish(ctx, &["url", "steps", "check", "reuse"]);
    let steps = steps?.iter().map(Step::to_wire).collect();
    let wire = LoginWire { name, url: url?, steps, check: check?, reuse };
    wire.validate().map_err(|message| keyed_error(ctx, node, path, message)).ok()
}

/// A monitor's `session: NAME`, one of `sessions:`.
pub(crate) fn session_ref(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<LoginSession> {
    let name = text(ctx, node, path)?;
    if let Some(s) = ctx.sessions.iter().find(|s| s.name == name.trim()) {
        return Some(s.clone());
    }
    let known: Vec<&str> = ctx.sessions.iter().map(|s| s.name.as_str()).collect();
    let known =
        if known.is_empty() { "none is defined".to_owned() } else { format!("known: {}", known.join(", ")) };
    ctx.error(node.pos, path, format!("no session \"{name}\" in sessions: ({known})"));
    None
}

/// `block_requests:` URL patterns.
pub(crate) fn block_patterns(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = list(ctx, node, path, "URL patterns like \"*://*.doubleclick.net/*\"")?;
    if items.len() > 200 {
        ctx.error(node.pos, path, "at most 200 patterns");
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let s = text(ctx, item, &p)?;
        if let Err(e) = page::check_block_pattern(&s) {
            ctx.error(item.pos, &p, e);
            return None;
        }
        out.push(s.trim().to_owned());
    }
    Some(out)
}

/// `click_accept:`, `remove:`: CSS selectors, none blank.
pub(crate) fn selectors(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = list(ctx, node, path, "CSS selectors")?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let s = text(ctx, item, &p)?;
        if s.trim().is_empty() {
            ctx.error(item.pos, &p, "an empty selector");
            return None;
        }
        out.push(s);
    }
    Some(out)
}

/// `locale: de-DE`.
pub(crate) fn locale(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<String> {
    let s = text(ctx, node, path)?;
    match page::check_locale(s.trim()) {
        Ok(()) => Some(s.trim().to_owned()),
        Err(e) => {
            ctx.error(node.pos, path, e);
            None
        }
    }
}

/// `geolocation: {latitude, longitude, accuracy}`.
pub(crate) fn geolocation(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Geolocation> {
    let mut f = Fields::of(ctx, node, path)?;
    let mut coord = |ctx: &mut Ctx<'_>, key: &str, limit: f64| {
        let p = f.path(key);
        match f.opt(key) {
            Some(n) => number(ctx, n, &p, -limit, limit),
            None => {
                ctx.error(node.pos, &p, "missing (degrees)");
                None
            }
        }
    };
    let latitude = coord(ctx, "latitude", 90.0);
    let longitude = coord(ctx, "longitude", 180.0);
    let accuracy = match f.opt("accuracy") {
        Some(n) => number(ctx, n, &f.path("accuracy"), 0.0, 100_000.0),
        None => Some(10.0),
    };
    f.finish(ctx, &["latitude", "longitude", "accuracy"]);
    Some(Geolocation { latitude: latitude?, longitude: longitude?, accuracy: accuracy? })
}

#[cfg(test)]
mod tests {
    use crate::config::page::{Action, WaitFor};

    fn parse(yaml: &str) -> Result<crate::config::Config, String> {
        crate::config::parse(yaml, "m.yaml", &|name| (name == "PW").then(|| "hunter2".to_owned()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn steps_and_page_keys_read_from_yaml() {
        let c = parse(
            r##"
defaults:
  block_banners: true
  timezone: Europe/Berlin
monitors:
  - name: account
    url: https://example.com/login
    click_accept: ["#accept-all"]
    remove: [".chat-widget"]
    inject_css: ".ad { display: none }"
    block_requests: ["*://*.doubleclick.net/*"]
    locale: de-DE
    geolocation: {latitude: 52.52, longitude: 13.405}
    steps:
      - fill: "#user"
        value: ana
      - fill: "#password"
        value: ${PW}
      - click: "button[type=submit]"
      - wait_for: {text: "Welcome back"}
        timeout: 20s
"##,
        )
        .unwrap();
        let m = &c.monitors[0];
        assert!(m.page.block_banners);
        assert_eq!(m.timezone.map(|t| t.name()), Some("Europe/Berlin"));
        assert_eq!(m.page.steps.len(), 4);
        assert!(matches!(&m.page.steps[1].action, Action::Fill { value, .. } if value.expose() == "hunter2"));
        assert_eq!(m.page.steps[3].action, Action::WaitFor(WaitFor::Text("Welcome back".into())));
        assert_eq!(m.page.steps[3].timeout, std::time::Duration::from_secs(20));
        assert_eq!(m.page.locale.as_deref(), Some("de-DE"));
        assert_eq!(m.page.geolocation.map(|g| g.accuracy), Some(10.0));
        assert_eq!(m.schedule.tz.name(), "Europe/Berlin");
    }

    #[test]
    fn mistakes_point_at_the_line_and_the_key() {
        let e = parse(
            "monitors:\n  - name: a\n    url: https://example.com/\n    steps:\n      - click: \"#a\"\n      - fill: \"#b\"\n      - clik: \"#c\"\n",
        )
        .unwrap_err();
        assert!(e.contains("m.yaml:6:9: monitors[0].steps[1].value: missing (what to fill)"), "{e}");
        assert!(
            e.contains("m.yaml:7:9: monitors[0].steps[2].clik: unknown key; did you mean \"click\"?"),
            "{e}"
        );
        let e = parse("monitors:\n  - name: a\n    url: https://example.com/\n    timezone: Mars/Olympus\n    locale: german\n    quiet_hours: {from: \"22:00\", to: \"25:00\"}\n").unwrap_err();
        assert!(e.contains("m.yaml:4:15: monitors[0].timezone: expected an IANA time zone"), "{e}");
        assert!(e.contains("monitors[0].locale: expected a language tag"), "{e}");
        assert!(e.contains("monitors[0].quiet_hours.to: expected a local time"), "{e}");
        let e = parse("defaults: {format: pdf}\nmonitors:\n  - name: a\n    url: https://example.com/\n    mask: ['#clock', {x: 0, y: 0, width: 9, height: 9}]\n  - name: b\n    url: https://example.com/\n    mask: [{x: 0, y: 0, width: 9, height: 9}]\n  - name: c\n    url: https://example.com/\n    selector: main\n").unwrap_err();
        assert!(e.contains("m.yaml:3:5: monitors[0].mask: a PDF monitor cannot mask by selector"), "{e}");
        assert!(!e.contains("monitors[1]"), "rectangles are masks of the rendered pages: {e}");
        assert!(e.contains("monitors[2].selector: a PDF monitor prints the whole page"), "{e}");
    }
}
