//! Login sessions (`sessions:`): a sign-in that monitors share, whose cookies the capture side
//! keeps (sealed) and reuses until they expire or the check fails (src/capture/login.rs). Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::page::{MAX_STEPS, Step, StepWire, WaitFor, WaitForSpec, WaitForWire, nonempty, step_duration};

/// A sign-in that monitors share (`sessions:`): its cookies are kept, encrypted, and reused until
/// `reuse` runs out or `check` fails on a monitor's page; then `steps` run again from `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginSession {
    pub name: String,
    pub url: Url,
    pub steps: Vec<Step>,
    /// What a signed-in page shows: a selector or a text.
    pub check: WaitFor,
    pub reuse: Duration,
}

/// The longest a session's cookies are reused, and the default.
pub const MAX_REUSE: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_REUSE: Duration = Duration::from_secs(12 * 3600);

/// A session as the capture API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginWire {
    pub name: String,
    pub url: String,
    pub steps: Vec<StepWire>,
    pub check: WaitForWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<String>,
}

/// A session name: a slug, like a monitor's.
pub fn check_session_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok { Ok(()) } else { Err(format!("a session name is a slug like \"shop-login\" (got \"{name}\")")) }
}

impl LoginWire {
    /// The session, or what is wrong with it (the message starts with the key at fault).
    pub fn validate(&self) -> Result<LoginSession, String> {
        check_session_name(&self.name).map_err(|e| format!("name: {e}"))?;
        let url = match Url::parse(self.url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => return Err(format!("url: expected an http:// or https:// URL (got \"{}\")", self.url)),
        };
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("steps: from 1 to {MAX_STEPS} steps that sign in"));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, w) in self.steps.iter().enumerate() {
            steps.push(w.validate().map_err(|e| format!("steps[{i}].{e}"))?);
        }
        let check = match &self.check {
            WaitForWire::Selector(s) => WaitFor::Selector(nonempty("check", s)?),
            WaitForWire::Spec(WaitForSpec { selector: Some(s), text: None, duration: None }) => {
                WaitFor::Selector(nonempty("check", s)?)
            }
            WaitForWire::Spec(WaitForSpec { selector: None, text: Some(t), duration: None }) => {
                WaitFor::Text(nonempty("check", t)?)
            }
            _ => return Err("check: a selector or {text: …} that a signed-in page shows".into()),
        };
        let reuse = match &self.reuse {
            Some(r) => step_duration("reuse", r, MAX_REUSE)?,
            None => DEFAULT_REUSE,
        };
        if reuse < Duration::from_secs(60) {
            return Err("reuse: at least 1m".into());
        }
        Ok(LoginSession { name: self.name.clone(), url, steps, check, reuse })
    }
}

impl LoginSession {
    /// The session as the capture API takes it (filled values included).
    pub fn to_wire(&self) -> LoginWire {
        let check = match &self.check {
            WaitFor::Text(t) => {
                WaitForWire::Spec(WaitForSpec { text: Some(t.clone()), ..Default::default() })
            }
            WaitFor::Selector(s) => WaitForWire::Selector(s.clone()),
            // Never made by `validate`.
            WaitFor::Duration(_) => WaitForWire::Selector(String::new()),
        };
        LoginWire {
            name: self.name.clone(),
            url: self.url.to_string(),
            steps: self.steps.iter().map(Step::to_wire).collect(),
            check,
            reuse: Some(format!("{}s", self.reuse.as_secs())),
        }
    }

    /// The row its cookies are kept under: the name and the definition's fingerprint, so that a
    /// capture-API request naming the same session with another sign-in keeps its own row and
    /// can neither replace nor wipe the monitors' one.
    pub fn store_key(&self) -> String {
        format!("{}/{}", self.name, &self.fingerprint()[..32])
    }

    /// What the kept state is bound to: the whole definition, filled values included, so
    /// that only a request that knows the sign-in can use (or replace) what it left.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let wire = serde_json::to_vec(&self.to_wire()).expect("serialises");
        hex::encode(sha2::Sha256::digest(&wire))
    }
}

/// As stored with a monitor's settings: its name and where it signs in, no values.
impl Serialize for LoginSession {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({"name": self.name, "url": self.url}).serialize(s)
    }
}
