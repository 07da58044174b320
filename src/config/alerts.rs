//! `alerts:`: where alerts go besides Slack, by name. Each destination is a signed webhook
//! (Standard Webhooks) that receives the events it subscribes to; monitors route to
//! destinations with their own `alerts:` list of names, `slack` being the `slack:` section.

use super::ctx::{Ctx, Fields};
use super::model::{AlertDestination, EventType, Secret};
use super::monitor::{page_url, required};
use super::node::{Node, Value};
use super::values::{list, text};
use crate::signing::SigningKey;

/// The name that stands for the `slack:` section (or the log, without one) in a monitor's list.
pub const SLACK: &str = "slack";

/// Reads the section: a mapping of names to destinations.
pub(crate) fn alerts(ctx: &mut Ctx<'_>, node: &Node) -> Option<Vec<AlertDestination>> {
    let Value::Map(entries) = &node.value else {
        ctx.expected(node, "alerts", "a mapping of destination names to destinations");
        return None;
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (key, value) in entries {
        let Value::Str(name) = &key.value else {
            ctx.expected(key, "alerts", "a destination name");
            ok = false;
            continue;
        };
        let path = format!("alerts.{name}");
        if name == SLACK {
            ctx.error(key.pos, &path, "\"slack\" is the name of the slack: section; choose another name");
            ok = false;
            continue;
        }
        if !valid_name(name) {
            ctx.error(key.pos, &path, "a destination name is 1-64 letters, digits, '-' or '_'");
            ok = false;
            continue;
        }
        // Known to monitors' lists even if its body has mistakes (reported on their own).
        ctx.destinations.push(name.clone());
        match destination(ctx, value, &path, name) {
            Some(d) => out.push(d),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn destination(ctx: &mut Ctx<'_>, node: &Node, path: &str, name: &str) -> Option<AlertDestination> {
    let mut f = Fields::of(ctx, node, path)?;
    let webhook = required(ctx, &mut f, node.pos, "webhook", "the URL events are POSTed to")
        .and_then(|(n, p)| page_url(ctx, n, &p));
    let secret = required(ctx, &mut f, node.pos, "secret", "a whsec_ secret, e.g. \"${OPS_WEBHOOK_SECRET}\"")
        .and_then(|(n, p)| {
            let s = text(ctx, n, &p)?;
            match SigningKey::from_secret(s.trim()) {
                Ok(_) if s.trim().len() >= 24 => Some(Secret::new(s.trim())),
                _ => {
                    ctx.error(
                        n.pos,
                        &p,
                        "expected \"whsec_\" and the base64 of at least 16 random bytes, e.g. whsec_$(openssl rand -base64 32)",
                    );
                    None
                }
            }
        });
    let events = match f.opt("events") {
        None => Some(EventType::ALL.to_vec()),
        Some(n) => events(ctx, n, &f.path("events")),
    };
    f.finish(ctx, &["webhook", "secret", "events"]);
    Some(AlertDestination { name: name.to_owned(), webhook: webhook?, secret: secret?, events: events? })
}

fn events(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<EventType>> {
    let items = list(ctx, node, path, "event types")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(s) = text(ctx, item, &p) else {
            ok = false;
            continue;
        };
        match EventType::ALL.iter().find(|e| e.as_str() == s) {
            Some(e) if !out.contains(e) => out.push(*e),
            Some(_) => {}
            None => {
                let names: Vec<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
                ctx.error(
                    item.pos,
                    &p,
                    format!("unknown event \"{s}\"; expected one of: {}", names.join(", ")),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A monitor's (or `defaults`') `alerts:` list: names of destinations, checked against the
/// section read before it.
pub(crate) fn routes(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = list(ctx, node, path, "destination names")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(name) = text(ctx, item, &p) else {
            ok = false;
            continue;
        };
        if name != SLACK && !ctx.destinations.contains(&name) {
            let mut known = vec![SLACK.to_owned()];
            known.extend(ctx.destinations.iter().cloned());
            ctx.error(
                item.pos,
                &p,
                format!("no destination \"{name}\" in the alerts: section; known: {}", known.join(", ")),
            );
            ok = false;
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    ok.then_some(out)
}
