//! `alerts:`: where alerts go besides Slack, by name. Each destination is a signed webhook
//! (Standard Webhooks), an email address list behind an SMTP server, or a Discord or Teams
//! incoming webhook, and receives the events
//! it subscribes to; monitors route to
//! destinations with their own `alerts:` list of names, `slack` being the `slack:` section.

use super::ctx::{Ctx, Fields};
use super::model::{AlertDestination, EmailTarget, EventType, Secret, SmtpTls, Target};
use super::monitor::{page_url, required};
use super::node::{Node, Value};
use super::values::{integer, list, text};
use base64::Engine as _;

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
    let kinds = ["webhook", "email", "discord", "teams"];
    let given: Vec<&str> = kinds.iter().copied().filter(|k| f.opt(k).is_some()).collect();
    let target = match (given.as_slice(), f.opt("webhook"), f.opt("email")) {
        (["discord"], ..) => {
            let key = f.path("discord");
            f.opt("discord").and_then(|n| page_url(ctx, n, &key)).map(Target::Discord)
        }
        (["teams"], ..) => {
            let key = f.path("teams");
            f.opt("teams").and_then(|n| page_url(ctx, n, &key)).map(Target::Teams)
        }
        (["webhook"], Some(url), _) => {
            let url = page_url(ctx, url, &f.path("webhook"));
            let secret =
                required(ctx, &mut f, node.pos, "secret", "a whsec_ secret, e.g. \"${OPS_WEBHOOK_SECRET}\"")
                    .and_then(|(n, p)| secret(ctx, n, &p));
            // (Not `?`: the rest of the destination is still checked.)
            url.zip(secret).map(|(url, secret)| Target::Webhook { url, secret })
        }
        (["email"], _, Some(mail)) => email(ctx, mail, &f.path("email")).map(Target::Email),
        _ => {
            ctx.error(
                node.pos,
                path,
                "expected exactly one of webhook: (a URL), email: (an SMTP server), discord: or teams: (their incoming-webhook URLs)",
            );
            None
        }
    };
    let events = match f.opt("events") {
        None => Some(EventType::ALL.to_vec()),
        Some(n) => events(ctx, n, &f.path("events")),
    };
    let known: &[&str] = match given.as_slice() {
        ["email"] => &["email", "events"],
        ["discord"] => &["discord", "events"],
        ["teams"] => &["teams", "events"],
        _ => &["webhook", "secret", "events"],
    };
    f.finish(ctx, known);
    Some(AlertDestination { name: name.to_owned(), target: target?, events: events? })
}

fn secret(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Option<Secret> {
    let s = text(ctx, n, p)?;
    let s = s.trim();
    let bytes =
        s.strip_prefix("whsec_").and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    match bytes {
        Some(key) if key.len() >= 16 && SigningKey::from_secret(s).is_ok() => Some(Secret::new(s)),
        _ => {
            ctx.error(
                n.pos,
                p,
                "expected \"whsec_\" and the base64 of at least 16 random bytes, e.g. whsec_$(openssl rand -base64 32)",
            );
            None
        }
    }
}

fn email(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<EmailTarget> {
    let mut f = Fields::of(ctx, node, path)?;
    let server = required(ctx, &mut f, node.pos, "server", "the SMTP server's host name")
        .and_then(|(n, p)| text(ctx, n, &p));
    let tls = match f.opt("tls") {
        None => Some(SmtpTls::Starttls),
        Some(n) => {
            let p = f.path("tls");
            match text(ctx, n, &p).as_deref() {
                Some("starttls") => Some(SmtpTls::Starttls),
                Some("tls") => Some(SmtpTls::Tls),
                Some("none") => Some(SmtpTls::None),
                Some(_) => {
                    ctx.expected(n, &p, "starttls, tls or none");
                    None
                }
                None => None,
            }
        }
    };
    let default_port = match tls {
        Some(SmtpTls::Tls) => 465,
        Some(SmtpTls::None) => 25,
        _ => 587,
    };
    let port = match f.opt("port") {
        None => Some(default_port),
        Some(n) => integer(ctx, n, &f.path("port"), 1, 65_535).map(|p| p as u16),
    };
    let username = match f.opt("username") {
        None => Some(None),
        Some(n) => text(ctx, n, &f.path("username")).map(Some),
    };
    let password = match f.opt("password") {
        None => Some(None),
        Some(n) => text(ctx, n, &f.path("password")).map(|p| Some(Secret::new(p))),
    };
    if matches!(username, Some(None)) != matches!(password, Some(None)) {
        ctx.error(node.pos, path, "username and password go together");
    }
    let from = required(ctx, &mut f, node.pos, "from", "the sender, e.g. \"vigil <vigil@example.com>\"")
        .and_then(|(n, p)| mailbox(ctx, n, &p));
    let to = required(ctx, &mut f, node.pos, "to", "a list of recipients").and_then(|(n, p)| {
        let items = list(ctx, n, &p, "addresses")?;
        let to: Vec<_> =
            items.iter().enumerate().map(|(i, item)| mailbox(ctx, item, &format!("{p}[{i}]"))).collect();
        if to.is_empty() {
            ctx.error(n.pos, &p, "at least one recipient");
        }
        to.into_iter().collect::<Option<Vec<_>>>().filter(|t| !t.is_empty())
    });
    f.finish(ctx, &["server", "port", "tls", "username", "password", "from", "to"]);
    Some(EmailTarget {
        server: server?,
        port: port?,
        tls: tls?,
        username: username?,
        password: password?,
        from: from?,
        to: to?,
    })
}

/// An address, `someone@example.com` or `Name <someone@example.com>`.
fn mailbox(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<String> {
    let s = text(ctx, node, path)?;
    match s.trim().parse::<lettre::message::Mailbox>() {
        Ok(_) => Some(s.trim().to_owned()),
        Err(e) => {
            ctx.error(node.pos, path, format!("not an email address ({e})"));
            None
        }
    }
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
    if items.is_empty() {
        ctx.error(node.pos, path, "at least one destination (\"slack\" for the slack: section, or the log)");
        ok = false;
    }
    ok.then_some(out)
}
