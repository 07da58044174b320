//! Which parts of vigil a process runs (`vigil run --roles api,capture,monitor,ui`).
//!
//! - `capture`: the capture API (`/v1/capture`, `/v1/assets`, `/openapi.json`), the capture
//!   workers with their Chromium, and the delivery of completion webhooks. Deployable alone.
//! - `monitor`: the scheduler, the receiver of finished captures (`/hooks/capture`), the
//!   processor, the reconciler, alerts and retention. It sends captures to this process's own
//!   capture API when the `capture` role runs here, and to `capture.provider` otherwise.
//! - `api`: the monitors, runs and review API (`/api/…`) and the Slack button (`/hooks/slack`).
//! - `ui`: the web review UI.
//!
//! Every role serves `/healthz`, `/readyz` and `/metrics`.

use std::fmt;
use std::str::FromStr;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub capture: bool,
    pub monitor: bool,
    pub ui: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { api: true, capture: true, monitor: true, ui: true };

    /// Without `--roles`: everything, except the capture role when captures go to an external
    /// provider (`capture.provider`), where nothing would submit to this process's own API.
    pub fn default_for(config: &Config) -> Roles {
        Roles { capture: config.capture.provider.is_none(), ..Roles::ALL }
    }

    /// Whether this process keeps the `monitors` table in step with its config (at start and
    /// on reload): every role but a capture-only one does.
    pub fn records_monitors(&self) -> bool {
        self.monitor || self.api || self.ui
    }

    /// The monitor role needs a capture API: this process's, or `capture.provider`.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        if self.monitor && !self.capture && config.capture.provider.is_none() {
            return Err("the monitor role sends captures to a capture API: add the capture role \
                        (--roles …,capture) or set capture.provider to the capture API it should use"
                .into());
        }
        Ok(())
    }
}

impl FromStr for Roles {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut roles = Roles { api: false, capture: false, monitor: false, ui: false };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => roles = Roles::ALL,
                "api" => roles.api = true,
                // `worker`: the capture role's earlier name, still accepted.
                "capture" | "worker" => roles.capture = true,
                "monitor" => roles.monitor = true,
                "ui" => roles.ui = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?} (expected api, capture, monitor, ui or all)"
                    ));
                }
            }
        }
        if roles == (Roles { api: false, capture: false, monitor: false, ui: false }) {
            return Err("no role given (expected api, capture, monitor, ui or all)".into());
        }
        Ok(roles)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names =
            [(self.api, "api"), (self.capture, "capture"), (self.monitor, "monitor"), (self.ui, "ui")];
        let on: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        f.write_str(&on.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        let r: Roles = "capture".parse().unwrap();
        assert_eq!(r, Roles { api: false, capture: true, monitor: false, ui: false });
        assert_eq!("api, monitor,ui".parse::<Roles>().unwrap().to_string(), "api,monitor,ui");
        assert_eq!("worker".parse::<Roles>().unwrap(), r, "the capture role's earlier name");
        assert_eq!("all".parse::<Roles>().unwrap(), Roles::ALL);
        assert!("api,scheduler".parse::<Roles>().unwrap_err().contains("\"scheduler\""));
        assert!(",".parse::<Roles>().is_err());
    }

    #[test]
    fn the_monitor_role_needs_a_capture_api() {
        let local = crate::config::parse("monitors: []\n", "m.yaml", &|_| None).unwrap();
        let monitor_only: Roles = "monitor".parse().unwrap();
        assert!(monitor_only.check(&local).unwrap_err().contains("capture.provider"));
        assert!("monitor,capture".parse::<Roles>().unwrap().check(&local).is_ok());
        assert_eq!(Roles::default_for(&local), Roles::ALL);
        let remote = "capture:\n  provider:\n    url: http://127.0.0.1:9/\n    api_key: k\nmonitors: []\n";
        let remote = crate::config::parse(remote, "m.yaml", &|_| None).unwrap();
        assert!(monitor_only.check(&remote).is_ok());
        assert!(!Roles::default_for(&remote).capture);
    }
}
