//! Prefixed identifiers (`run_01J…`, `job_01J…`): a type per kind, parsed once at the boundary.
//! The suffix is a ULID, so ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id (expected \"{prefix}_\" followed by 26 base32 characters)")]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(format!("{}_{}", $prefix, ulid::Ulid::new()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let err = InvalidId { kind: $kind, prefix: $prefix };
                let rest = s.strip_prefix($prefix).and_then(|r| r.strip_prefix('_')).ok_or(err.clone())?;
                ulid::Ulid::from_string(rest).map_err(|_| err)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// One capture of one monitor at one viewport, and its verdict.
    RunId, "run", "run"
);
prefixed_id!(
    /// A capture job in the capture API's queue.
    JobId, "job", "capture job"
);
prefixed_id!(
    /// A stored capture result (PNG or PDF) served by the capture API.
    AssetId, "ast", "asset"
);
prefixed_id!(
    /// A webhook message; its `webhook-id` header, the same on every retry.
    MessageId, "msg", "webhook message"
);
prefixed_id!(
    /// One version of an approved baseline.
    BaselineId, "bas", "baseline"
);
prefixed_id!(
    /// One alert in the alert outbox.
    AlertId, "alr", "alert"
);
prefixed_id!(
    /// A change a person said to ignore.
    IgnoreId, "ign", "ignore"
);
prefixed_id!(
    /// A rectangle a reviewer drew to leave out of the comparison.
    MaskId, "msk", "mask"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = RunId::new();
        assert!(id.as_str().starts_with("run_"));
        assert_eq!(id.as_str().parse::<RunId>().unwrap(), id);
        assert!(id.as_str().parse::<JobId>().is_err());
        for bad in ["run_", "run_../../etc/passwd", "run01J0000000000000000000000", ""] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RunId>("\"job_x\"").is_err());
    }
}
