//! Leaf values: text with `${VAR}` interpolation, numbers, durations, percentages, viewports.
//! Each reader records a positioned error and returns `None` when the value is unusable.

use std::time::Duration;

use super::ctx::{Ctx, Fields};
use super::model::{MinFree, Viewport};
use super::node::{Node, Value};

/// Expands `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`.
/// Returns the names of variables that are unset and have no default.
pub fn interpolate(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut missing = Vec::new();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(InterpolateError::Unclosed);
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(InterpolateError::BadName(body.to_owned()));
        }
        match (env(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_owned()),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() { Ok(out) } else { Err(InterpolateError::Unset(missing)) }
}

#[derive(Debug, PartialEq, Eq)]
pub enum InterpolateError {
    Unset(Vec<String>),
    BadName(String),
    Unclosed,
}

/// A string value with interpolation applied. Numbers and booleans are taken as their text.
pub(crate) fn text(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<String> {
    let raw = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            ctx.expected(node, path, "a text value");
            return None;
        }
    };
    match interpolate(&raw, ctx.env) {
        Ok(s) => Some(s),
        Err(InterpolateError::Unset(names)) => {
            for name in names {
                ctx.error(
                    node.pos,
                    path,
                    format!("environment variable {name} is not set (set it, or write ${{{name}:-default}})"),
                );
            }
            None
        }
        Err(InterpolateError::BadName(body)) => {
            ctx.error(
                node.pos,
                path,
                format!("\"${{{body}}}\" is not a valid variable reference; expected ${{NAME}} or ${{NAME:-default}}"),
            );
            None
        }
        Err(InterpolateError::Unclosed) => {
            ctx.error(node.pos, path, "unclosed \"${\"; write $${ for a literal");
            None
        }
    }
}

/// A scalar as text after interpolation, for values that are parsed further.
/// Native YAML scalars are rendered back to text so `30` and `"30"` behave the same.
fn scalar_text(ctx: &mut Ctx<'_>, node: &Node, path: &str, what: &str) -> Option<String> {
    match &node.value {
        Value::Seq(_) | Value::Map(_) | Value::Null => {
            ctx.expected(node, path, what);
            None
        }
        _ => text(ctx, node, path),
    }
}

pub(crate) fn boolean(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<bool> {
    if let Value::Bool(b) = node.value {
        return Some(b);
    }
    match scalar_text(ctx, node, path, "true or false")?.as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            ctx.expected(node, path, "true or false");
            None
        }
    }
}

/// An integer within `[min, max]`.
pub(crate) fn integer(ctx: &mut Ctx<'_>, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    let what = format!("a whole number from {min} to {max}");
    let n = match &node.value {
        Value::Int(i) => Some(*i),
        Value::Str(_) => scalar_text(ctx, node, path, &what)?.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            ctx.expected(node, path, &what);
            None
        }
    }
}

/// A number within `[min, max]`.
pub(crate) fn number(ctx: &mut Ctx<'_>, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
    let what = format!("a number from {min} to {max}");
    let n = match &node.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(_) => scalar_text(ctx, node, path, &what)?.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() && (min..=max).contains(&n) => Some(n),
        _ => {
            ctx.expected(node, path, &what);
            None
        }
    }
}

/// A duration written as text: `500ms`, `30s`, `5m`, `1h 30m`, within `[min, max]`.
pub(crate) fn duration(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let what = "a duration like \"30s\", \"5m\" or \"500ms\"";
    let parsed = match &node.value {
        Value::Str(_) => {
            let s = scalar_text(ctx, node, path, what)?;
            humantime::parse_duration(s.trim()).ok()
        }
        Value::Int(0) => Some(Duration::ZERO),
        _ => None,
    };
    let Some(d) = parsed else {
        ctx.expected(node, path, what);
        return None;
    };
    if d < min || d > max {
        ctx.error(
            node.pos,
            path,
            format!(
                "expected a duration from {} to {} (got {})",
                say_duration(min),
                say_duration(max),
                say_duration(d)
            ),
        );
        return None;
    }
    Some(d)
}

/// A bound as a person writes it: whole days as days ("3650d", not humantime's "9years 11months
/// 27days 21h 50m 24s", whose year is 365.25 days), the rest as humantime does.
fn say_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    match d.as_secs() {
        s if s >= DAY && s % DAY == 0 && d.subsec_nanos() == 0 => format!("{}d", s / DAY),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// A percentage written `2%` or `0.5%`, returned as a ratio (0.02, 0.005).
pub(crate) fn percentage(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<f64> {
    let what = "a percentage like \"2%\"";
    let ratio = match &node.value {
        Value::Str(_) => {
            let s = scalar_text(ctx, node, path, what)?;
            s.trim().strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok()).map(|p| p / 100.0)
        }
        Value::Int(0) => Some(0.0),
        _ => None,
    };
    match ratio {
        Some(r) if r.is_finite() && (0.0..=1.0).contains(&r) => Some(r),
        Some(_) => {
            ctx.expected(node, path, "a percentage from 0% to 100%");
            None
        }
        None => {
            ctx.expected(node, path, what);
            None
        }
    }
}

/// Free space: a share of the volume (`5%`) or a size (`500MB`, `2GiB`, `1048576`).
pub(crate) fn free_space(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<MinFree> {
    let what = "a size like \"2GiB\" or \"500MB\", or a share of the volume like \"5%\"";
    let parsed = match &node.value {
        Value::Int(i) if *i >= 0 => Some(MinFree::Bytes(*i as u64)),
        Value::Str(_) => {
            let s = scalar_text(ctx, node, path, what)?;
            let s = s.trim();
            match s.strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..100.0).contains(p))
                    .map(|p| MinFree::Ratio(p / 100.0)),
                None => byte_size(s).map(MinFree::Bytes),
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        ctx.expected(node, path, what);
    }
    parsed
}

/// A size in bytes within `[min, max]`: `1073741824`, `512MiB`, `1GB`.
pub(crate) fn size(ctx: &mut Ctx<'_>, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let what = format!("a size like \"1GiB\" or \"512MiB\", from {} MiB to {} MiB", min >> 20, max >> 20);
    let parsed = match &node.value {
        Value::Int(i) if *i >= 0 => Some(*i as u64),
        Value::Str(_) => byte_size(scalar_text(ctx, node, path, &what)?.trim()),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            ctx.expected(node, path, &what);
            None
        }
    }
}

/// `1048576`, `500KB`, `500MB`, `2GB`, `1TB` (powers of 1000) or `KiB` … `TiB` (powers of 1024).
fn byte_size(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = match unit.trim() {
        "" | "B" => 1u64,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    let bytes = number * unit as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A list of items; a single scalar is not silently promoted.
pub(crate) fn list<'n>(ctx: &mut Ctx<'_>, node: &'n Node, path: &str, what: &str) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => {
            ctx.expected(node, path, &format!("a list of {what}"));
            None
        }
    }
}

/// Text items of a list, each interpolated.
pub(crate) fn text_list(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Vec<String> {
    let Some(items) = list(ctx, node, path, "text values") else {
        return Vec::new();
    };
    items.iter().enumerate().filter_map(|(i, item)| text(ctx, item, &format!("{path}[{i}]"))).collect()
}

pub const MIN_VIEWPORT: u32 = 16;
pub const MAX_VIEWPORT: u32 = 8192;

const fn device(width: u32, height: u32, scale: f64) -> Viewport {
    Viewport { width, height, scale, mobile: true }
}

/// Device presets, as viewport shorthands (CSS size, device pixel ratio, a mobile viewport).
pub const DEVICES: &[(&str, Viewport)] = &[
    ("iphone-se", device(375, 667, 2.0)),
    ("iphone-15", device(393, 852, 3.0)),
    ("iphone-15-pro-max", device(430, 932, 3.0)),
    ("pixel-8", device(412, 915, 2.625)),
    ("galaxy-s23", device(360, 780, 3.0)),
    ("ipad", device(820, 1180, 2.0)),
    ("ipad-pro-12", device(1024, 1366, 2.0)),
];

/// `1280x800`, a device preset (`iphone-15`), or `{width, height, scale, mobile}`.
pub(crate) fn viewport(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Viewport> {
    let what = "a viewport like \"1280x800\" or {width: 1280, height: 800}";
    if let Value::Map(_) = node.value {
        let mut f = Fields::of(ctx, node, path)?;
        let dim = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, key: &str| {
            let path = f.path(key);
            match f.get(key) {
                Some(n) => integer(ctx, n, &path, MIN_VIEWPORT.into(), MAX_VIEWPORT.into()),
                None => {
                    ctx.error(node.pos, &path, "missing (a number of CSS pixels)");
                    None
                }
            }
        };
        let width = dim(ctx, &mut f, "width");
        let height = dim(ctx, &mut f, "height");
        let scale = match f.get("scale") {
            Some(n) => number(ctx, n, &f.path("scale"), 0.25, 4.0),
            None => Some(1.0),
        };
        let mobile = match f.get("mobile") {
            Some(n) => boolean(ctx, n, &f.path("mobile")),
            None => Some(false),
        };
        f.finish(ctx, &["width", "height", "scale", "mobile"]);
        return Some(Viewport {
            width: u32::try_from(width?).ok()?,
            height: u32::try_from(height?).ok()?,
            scale: scale?,
            mobile: mobile?,
        });
    }
    let s = scalar_text(ctx, node, path, what)?;
    if let Some((_, v)) = DEVICES.iter().find(|(name, _)| *name == s.trim()) {
        return Some(*v);
    }
    if s.trim().chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        let names: Vec<&str> = DEVICES.iter().map(|(n, _)| *n).collect();
        ctx.expected(node, path, &format!("a viewport like \"1280x800\" or a device: {}", names.join(", ")));
        return None;
    }
    let parsed = s
        .trim()
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h))
            if (MIN_VIEWPORT..=MAX_VIEWPORT).contains(&w) && (MIN_VIEWPORT..=MAX_VIEWPORT).contains(&h) =>
        {
            Some(Viewport { width: w, height: h, scale: 1.0, mobile: false })
        }
        Some(_) => {
            ctx.expected(node, path, &format!("viewport sides from {MIN_VIEWPORT} to {MAX_VIEWPORT} pixels"));
            None
        }
        None => {
            ctx.expected(node, path, what);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_forms() {
        assert_eq!(interpolate("Bearer ${TOKEN}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(interpolate("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("cost $5 $${TOKEN}", &env).unwrap(), "cost $5 ${TOKEN}");
        assert_eq!(
            interpolate("${A}-${B}", &env),
            Err(InterpolateError::Unset(vec!["A".into(), "B".into()]))
        );
        assert_eq!(interpolate("${1X}", &env), Err(InterpolateError::BadName("1X".into())));
        assert_eq!(interpolate("${TOKEN", &env), Err(InterpolateError::Unclosed));
    }
}
