//! Configuration: one YAML file, validated as a whole.
//!
//! [`parse`] is pure (text and an environment lookup in, [`Config`] or every error out);
//! [`load`] adds the file read and the process environment. Errors read
//! `FILE:LINE:COL: monitors[2].threshold: expected a percentage like "2%" (got "two")`.

mod alerts;
mod ctx;
mod live;
mod model;
mod monitor;
mod node;
pub mod page;
pub mod report;
mod schedule;
mod session;
mod setup;
mod storage;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use alerts::SLACK as SLACK_DESTINATION;
pub use ctx::{ConfigError, ConfigErrors, EnvLookup};
pub use live::{Agreement, LiveMonitors};
pub use model::*;
pub use monitor::DEFAULT_THRESHOLD_RATIO;
pub use values::{InterpolateError, interpolate};

use ctx::{Ctx, Fields};
use monitor::{page_url, required};
use node::{Node, Pos};
use values::{duration, integer, list, size, text};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://vigil.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SLACK_API: &str = "https://slack.com/api/";

/// The default webhook retry schedule of docs/architecture.md §5 (jitter is applied at delivery time).
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Delays between retries of a Slack alert (jitter applied when sending); the last repeats
/// until the alert is dead-lettered after 30 attempts, about a day.
pub const DEFAULT_SLACK_RETRY_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];

const TOP_KEYS: &[&str] = &[
    "server", "storage", "capture", "webhook", "slack", "alerts", "auth", "sessions", "defaults", "monitors",
];

/// Reads and validates `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            pos: Pos { line: 0, column: 0 },
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse(&text, &file, &|name| std::env::var(name).ok())
}

/// Validates a configuration document. `file` only labels the errors.
pub fn parse(text: &str, file: &str, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let root = node::parse(text).map_err(|e| {
        let loc = e.location();
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            pos: Pos { line: loc.map_or(0, |l| l.line()), column: loc.map_or(0, |l| l.column()) },
            path: String::new(),
            // (The parser's advice to its own callers is not for someone editing the file.)
            message: format!("invalid YAML: {}", e.without_snippet())
                .replace(", set DuplicateKeyPolicy in Options if acceptable", ""),
        }])
    })?;
    let mut ctx = Ctx::new(file, env);
    let config = document(&mut ctx, &root);
    let errors = ctx.finish();
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(errors)),
    }
}

fn document(ctx: &mut Ctx<'_>, root: &Node) -> Option<Config> {
    let mut f = Fields::of(ctx, root, "")?;
    let server = section(ctx, &mut f, "server", server);
    let storage = section(ctx, &mut f, "storage", storage::storage);
    let capture = section(ctx, &mut f, "capture", capture);
    let webhook = section(ctx, &mut f, "webhook", webhook);
    let slack = match f.opt("slack") {
        Some(n) => slack(ctx, n, "slack").map(Some),
        None => Some(None),
    };
    let alerts = match f.opt("alerts") {
        Some(n) => alerts::alerts(ctx, n),
        None => Some(Vec::new()),
    };
    let auth = section(ctx, &mut f, "auth", auth);
    if let Some(sessions) = f.opt("sessions").and_then(|n| setup::sessions(ctx, n)) {
        ctx.sessions = sessions;
    }
    let defaults = match f.opt("defaults") {
        Some(n) => Fields::of(ctx, n, "defaults").map(|mut df| {
            let s = monitor::settings(ctx, &mut df);
            df.finish(ctx, monitor::SETTING_KEYS);
            s
        }),
        None => Some(Default::default()),
    };
    let monitors = match (f.opt("monitors"), &defaults) {
        (Some(n), Some(d)) => monitors(ctx, n, d),
        (Some(_), None) => None,
        (None, _) => Some(Vec::new()),
    };
    f.finish(ctx, TOP_KEYS);
    Some(Config {
        server: server?,
        storage: storage?,
        capture: capture?,
        webhook: webhook?,
        slack: slack?,
        alerts: alerts?,
        auth: auth?,
        monitors: monitors?,
    })
}

/// A top-level section that may be absent (all defaults) or null.
fn section<T>(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'_>,
    key: &str,
    read: fn(&mut Ctx<'_>, &mut Fields<'_>) -> Option<T>,
) -> Option<T> {
    static EMPTY: Node = Node { pos: Pos { line: 1, column: 1 }, value: node::Value::Null };
    let n = f.opt(key).unwrap_or(&EMPTY);
    let mut sf = Fields::of(ctx, n, key)?;
    read(ctx, &mut sf)
}

/// Reads the optional key with `read`, falling back to `default` when absent.
fn or_default<T>(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'_>,
    key: &str,
    default: T,
    read: impl FnOnce(&mut Ctx<'_>, &Node, &str) -> Option<T>,
) -> Option<T> {
    let path = f.path(key);
    match f.opt(key) {
        Some(n) => read(ctx, n, &path),
        None => Some(default),
    }
}

fn server(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<ServerConfig> {
    let listen = or_default(ctx, f, "listen", DEFAULT_LISTEN.parse().expect("valid default"), |ctx, n, p| {
        let s = text(ctx, n, p)?;
        s.trim()
            .parse::<SocketAddr>()
            .map_err(|_| {
                ctx.expected(n, p, "an address and port like \"127.0.0.1:8080\" or \"0.0.0.0:8080\"")
            })
            .ok()
    });
    let public_url = match f.opt("public_url") {
        Some(n) => page_url(ctx, n, &f.path("public_url")),
        None => listen.map(default_public_url),
    };
    let shutdown_timeout = or_default(ctx, f, "shutdown_timeout", Duration::from_secs(10), |ctx, n, p| {
        duration(ctx, n, p, Duration::ZERO, Duration::from_secs(600))
    });
    let header_timeout = or_default(ctx, f, "header_timeout", Duration::from_secs(10), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_millis(100), Duration::from_secs(600))
    });
    let body_timeout = or_default(ctx, f, "body_timeout", Duration::from_secs(30), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_millis(100), Duration::from_secs(3600))
    });
    let max_connections = or_default(ctx, f, "max_connections", 512, |ctx, n, p| {
        integer(ctx, n, p, 1, 1_000_000).map(|v| v as usize)
    });
    f.finish(
        ctx,
        &["listen", "public_url", "shutdown_timeout", "header_timeout", "body_timeout", "max_connections"],
    );
    Some(ServerConfig {
        listen: listen?,
        public_url: public_url?,
        internal_url: None,
        shutdown_timeout: shutdown_timeout?,
        limits: ServerLimits {
            header_timeout: header_timeout?,
            body_timeout: body_timeout?,
            max_connections: max_connections?,
        },
    })
}

/// `http://<listen>/`, with an unspecified address (0.0.0.0) replaced by loopback.
pub fn default_public_url(listen: SocketAddr) -> Url {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Url::parse(&format!("http://{host}:{}/", listen.port())).expect("valid URL")
}

/// `capture.provider`: `builtin` (or absent), or `{url, api_key}` of another capture API.
fn provider(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<Option<ExternalProvider>> {
    match f.opt("provider") {
        None => Some(None),
        Some(n) if n.value == node::Value::Str("builtin".into()) => Some(None),
        Some(n) => {
            let path = f.path("provider");
            Fields::of(ctx, n, &path).and_then(|mut pf| {
                let url = required(ctx, &mut pf, n.pos, "url", "the capture API base URL")
                    .and_then(|(n, p)| page_url(ctx, n, &p));
                let api_key = required(ctx, &mut pf, n.pos, "api_key", "the provider's API key")
                    .and_then(|(n, p)| text(ctx, n, &p));
                pf.finish(ctx, &["url", "api_key"]);
                Some(Some(ExternalProvider { url: url?, api_key: Secret::new(api_key?) }))
            })
        }
    }
}

/// `capture.allow_private`: private address ranges (or single addresses) captures may reach.
fn allow_private(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Option<Vec<ipnet::IpNet>> {
    let items = list(ctx, n, p, "address ranges like 10.0.0.0/8")?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        let Some(s) = text(ctx, item, &ip) else {
            continue;
        };
        let s = s.trim();
        let net =
            s.parse::<ipnet::IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => out.push(net),
            Err(_) => ctx.expected(item, &ip, "an address range like \"10.0.0.0/8\" or an address"),
        }
    }
    Some(out)
}

fn capture(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<CaptureConfig> {
    let provider = provider(ctx, f);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get() as i64);
    let workers =
        or_default(ctx, f, "workers", cpus as u32, |ctx, n, p| integer(ctx, n, p, 1, 64).map(|v| v as u32));
    let chromium_path = match f.opt("chromium_path") {
        Some(n) => text(ctx, n, &f.path("chromium_path")).map(|s| Some(PathBuf::from(s))),
        None => Some(None),
    };
    let max_attempts =
        or_default(ctx, f, "max_attempts", 3, |ctx, n, p| integer(ctx, n, p, 1, 20).map(|v| v as u32));
    let job_timeout = or_default(ctx, f, "job_timeout", Duration::from_secs(90), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(5), Duration::from_secs(1800))
    });
    let stability_timeout = or_default(ctx, f, "stability_timeout", Duration::from_secs(5), |ctx, n, p| {
        duration(ctx, n, p, Duration::ZERO, Duration::from_secs(120))
    });
    let recycle_after = or_default(ctx, f, "recycle_after", 200, |ctx, n, p| {
        integer(ctx, n, p, 1, 1_000_000).map(|v| v as u32)
    });
    let asset_ttl = or_default(ctx, f, "asset_ttl", Duration::from_secs(24 * 3600), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600))
    });
    let allow_private = or_default(ctx, f, "allow_private", Vec::new(), allow_private);
    let reconcile_after = or_default(ctx, f, "reconcile_after", Duration::from_secs(120), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(1), Duration::from_secs(24 * 3600))
    });
    // Long enough for every attempt of a capture plus a look by the reconciler.
    let floor = job_timeout.zip(max_attempts).zip(reconcile_after).map(|((t, n), r)| t * n + 2 * r);
    let run_deadline = or_default(ctx, f, "run_deadline", Duration::from_secs(3600), |ctx, n, p| {
        let d = duration(ctx, n, p, Duration::from_secs(10), Duration::from_secs(7 * 24 * 3600))?;
        match floor {
            Some(floor) if d < floor => {
                let floor = humantime::format_duration(floor);
                ctx.error(
                    n.pos,
                    p,
                    format!("must be at least job_timeout × max_attempts + 2 × reconcile_after ({floor})"),
                );
                None
            }
            _ => Some(d),
        }
    });
    let max_queued = or_default(ctx, f, "max_queued", 1000, |ctx, n, p| {
        integer(ctx, n, p, 1, 10_000_000).map(|v| v as u32)
    });
    let max_pixels = or_default(ctx, f, "max_pixels", 25_000_000, |ctx, n, p| {
        integer(ctx, n, p, 10_000, 500_000_000).map(|v| v as u64)
    });
    let page_memory =
        or_default(ctx, f, "page_memory", 1 << 30, |ctx, n, p| size(ctx, n, p, 128 << 20, 64 << 30));
    let warm_tabs = or_default(ctx, f, "warm_tabs", true, values::boolean);
    let session_key = f.opt("session_key").map(|n| text(ctx, n, "capture.session_key"));
    let session_key = match session_key {
        Some(Some(k)) if k.len() < 16 => {
            ctx.error(
                f.get("session_key").expect("given").pos,
                "capture.session_key",
                "at least 16 characters",
            );
            None
        }
        Some(k) => Some(k.map(Secret::new)),
        None => Some(None),
    };
    f.finish(
        ctx,
        &[
            "session_key",
            "warm_tabs",
            "max_pixels",
            "page_memory",
            "max_queued",
            "provider",
            "workers",
            "chromium_path",
            "max_attempts",
            "job_timeout",
            "stability_timeout",
            "recycle_after",
            "asset_ttl",
            "allow_private",
            "reconcile_after",
            "run_deadline",
        ],
    );
    Some(CaptureConfig {
        provider: provider?,
        workers: workers?,
        chromium_path: chromium_path?,
        max_attempts: max_attempts?,
        job_timeout: job_timeout?,
        stability_timeout: stability_timeout?,
        recycle_after: recycle_after?,
        asset_ttl: asset_ttl?,
        allow_private: allow_private?,
        reconcile_after: reconcile_after?,
        run_deadline: run_deadline?,
        max_queued: max_queued?,
        max_pixels: max_pixels?,
        page_memory: page_memory?,
        warm_tabs: warm_tabs?,
        session_key: session_key?,
    })
}

fn webhook_secret(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Option<Secret> {
    let s = text(ctx, n, p)?;
    let body = s.strip_prefix("whsec_").unwrap_or("");
    let decodes = crate::signing::SigningKey::from_secret(&s).is_ok();
    if body.len() < 24 || !decodes {
        // Never echo the value: it is a secret.
        ctx.error(n.pos, p, "expected a secret like \"whsec_\" followed by base64 of 32 random bytes (generate one with `openssl rand -base64 32`)");
        return None;
    }
    Some(Secret::new(s))
}

fn webhook(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<WebhookConfig> {
    let secret = match f.opt("secret") {
        Some(n) => webhook_secret(ctx, n, &f.path("secret")).map(Some),
        None => Some(None),
    };
    let previous_secrets = or_default(ctx, f, "previous_secrets", Vec::new(), |ctx, n, p| {
        let items = list(ctx, n, p, "webhook secrets")?;
        items.iter().enumerate().map(|(i, item)| webhook_secret(ctx, item, &format!("{p}[{i}]"))).collect()
    });
    let tolerance = or_default(ctx, f, "tolerance", Duration::from_secs(300), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(1), Duration::from_secs(3600))
    });
    let timeout = or_default(ctx, f, "timeout", Duration::from_secs(15), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_millis(100), Duration::from_secs(120))
    });
    let retry_schedule =
        or_default(ctx, f, "retry_schedule", DEFAULT_RETRY_SCHEDULE.to_vec(), |ctx, n, p| {
            schedule(ctx, n, p)
        });
    let hex_signature_header = match f.opt("hex_signature_header") {
        Some(n) => text(ctx, n, &f.path("hex_signature_header")).map(Some),
        None => Some(None),
    };
    let rate_limit =
        or_default(ctx, f, "rate_limit", 100, |ctx, n, p| integer(ctx, n, p, 0, 1_000_000).map(|v| v as u32));
    let max_in_flight =
        or_default(ctx, f, "max_in_flight", 8, |ctx, n, p| integer(ctx, n, p, 1, 256).map(|v| v as usize));
    f.finish(
        ctx,
        &[
            "max_in_flight",
            "secret",
            "previous_secrets",
            "tolerance",
            "timeout",
            "retry_schedule",
            "hex_signature_header",
            "rate_limit",
        ],
    );
    Some(WebhookConfig {
        max_in_flight: max_in_flight?,
        rate_limit: rate_limit?,
        secret: secret?,
        previous_secrets: previous_secrets?,
        tolerance: tolerance?,
        timeout: timeout?,
        retry_schedule: retry_schedule?,
        hex_signature_header: hex_signature_header?,
    })
}

/// A non-empty list of delays (a retry schedule), each under a week.
fn schedule(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Option<Vec<Duration>> {
    let items = list(ctx, n, p, "durations")?;
    if items.is_empty() {
        ctx.error(n.pos, p, "expected at least one attempt");
        return None;
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            duration(ctx, item, &format!("{p}[{i}]"), Duration::ZERO, Duration::from_secs(7 * 24 * 3600))
        })
        .collect()
}

fn slack(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<SlackConfig> {
    let mut f = Fields::of(ctx, node, path)?;
    let bot_token =
        required(ctx, &mut f, node.pos, "bot_token", "a bot token (xoxb-…), e.g. \"${SLACK_BOT_TOKEN}\"")
            .and_then(|(n, p)| text(ctx, n, &p));
    let signing_secret = match f.opt("signing_secret") {
        Some(n) => text(ctx, n, &f.path("signing_secret")).map(|s| Some(Secret::new(s))),
        None => Some(None),
    };
    let channel =
        required(ctx, &mut f, node.pos, "channel", "the channel for alerts, e.g. \"#alerts\" or an ID")
            .and_then(|(n, p)| text(ctx, n, &p));
    let api_url = match f.opt("api_url") {
        Some(n) => page_url(ctx, n, &f.path("api_url")),
        None => Some(Url::parse(DEFAULT_SLACK_API).expect("valid URL")),
    };
    let timeout = or_default(ctx, &mut f, "timeout", Duration::from_secs(10), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_millis(100), Duration::from_secs(120))
    });
    let retry_schedule =
        or_default(ctx, &mut f, "retry_schedule", DEFAULT_SLACK_RETRY_SCHEDULE.to_vec(), |ctx, n, p| {
            schedule(ctx, n, p)
        });
    f.finish(ctx, &["bot_token", "signing_secret", "channel", "api_url", "timeout", "retry_schedule"]);
    Some(SlackConfig {
        bot_token: Secret::new(bot_token?),
        signing_secret: signing_secret?,
        channel: channel?,
        api_url: api_url?,
        timeout: timeout?,
        retry_schedule: retry_schedule?,
    })
}

fn auth(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<AuthConfig> {
    // Each token is a string, or `{name, token}`: the name is who a review made with it is
    // recorded as.
    let api_tokens = or_default(ctx, f, "api_tokens", Vec::new(), |ctx, n, p| {
        let items = list(ctx, n, p, "tokens")?;
        let mut ok = true;
        let mut tokens = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{p}[{i}]");
            let (name, token, at) = match &item.value {
                node::Value::Map(_) => {
                    let Some(mut t) = Fields::of(ctx, item, &path) else {
                        ok = false;
                        continue;
                    };
                    let name = required(ctx, &mut t, item.pos, "name", "who uses the token")
                        .and_then(|(n, p)| reviewer_name(ctx, n, &p));
                    let token = required(ctx, &mut t, item.pos, "token", "the token")
                        .and_then(|(n, p)| text(ctx, n, &p).map(|s| (s, n.pos, p)));
                    t.finish(ctx, &["name", "token"]);
                    match (name, token) {
                        (Some(name), Some((token, pos, path))) => (Some(name), token, (pos, path)),
                        _ => {
                            ok = false;
                            continue;
                        }
                    }
                }
                _ => match text(ctx, item, &path) {
                    Some(token) => (None, token, (item.pos, path)),
                    None => {
                        ok = false;
                        continue;
                    }
                },
            };
            if token.len() < 16 {
                ctx.error(at.0, &at.1, "expected a token of at least 16 characters");
                ok = false;
            }
            tokens.push((name, Secret::new(token)));
        }
        // One token, one holder: the same token twice would make who reviewed ambiguous.
        for (i, (_, t)) in tokens.iter().enumerate() {
            if tokens[..i].iter().any(|(_, u)| u.expose() == t.expose()) {
                ctx.error(n.pos, p, format!("the token at [{i}] is given twice"));
                ok = false;
            }
        }
        ok.then_some(tokens)
    });
    let session_ttl = or_default(ctx, f, "session_ttl", Duration::from_secs(12 * 3600), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(60), Duration::from_secs(90 * 24 * 3600))
    });
    f.finish(ctx, &["api_tokens", "session_ttl"]);
    let (reviewers, api_tokens) = api_tokens?.into_iter().unzip();
    Some(AuthConfig { api_tokens, reviewers, session_ttl: session_ttl? })
}

/// A reviewer's name: 1 to 64 characters, no control or format characters.
fn reviewer_name(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<String> {
    let given = text(ctx, node, path)?;
    // No control or format characters: a bidi override would make a name read as another's.
    let name = crate::diff::text::clean(given.trim());
    if name.is_empty() || name.chars().count() > 64 || name != given.trim() {
        ctx.expected(node, path, "a name of 1 to 64 characters");
        return None;
    }
    Some(name.to_owned())
}

fn monitors(ctx: &mut Ctx<'_>, node: &Node, defaults: &monitor::Settings) -> Option<Vec<Monitor>> {
    let items = list(ctx, node, "monitors", "monitors")?;
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<MonitorName, u64> = HashMap::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("monitors[{i}]");
        match monitor::monitor(ctx, item, &path, defaults) {
            Some(m) => {
                if let Some(first) = seen.insert(m.name.clone(), item.pos.line) {
                    ctx.error(
                        item.pos,
                        &format!("{path}.name"),
                        format!("duplicate monitor name \"{}\" (first used on line {first})", m.name),
                    );
                    ok = false;
                }
                out.push(m);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests;
