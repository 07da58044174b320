//! The monitors in force: read by every part of the daemon, replaced as a whole when the
//! configuration is reloaded. Readers take a snapshot (`current()`), so one piece of work sees
//! one consistent list even if a reload happens meanwhile.

use std::sync::{Arc, RwLock};

use super::{Monitor, MonitorName};

#[derive(Clone, Debug, Default)]
pub struct LiveMonitors(Arc<RwLock<Arc<Vec<Monitor>>>>);

impl LiveMonitors {
    pub fn new(monitors: Vec<Monitor>) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(monitors))))
    }

    /// A snapshot of the list as it is now.
    pub fn current(&self) -> Arc<Vec<Monitor>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn find(&self, name: &MonitorName) -> Option<Monitor> {
        self.current().iter().find(|m| &m.name == name).cloned()
    }

    pub fn find_str(&self, name: &str) -> Option<Monitor> {
        self.current().iter().find(|m| m.name.as_str() == name).cloned()
    }

    /// Puts a new list in force; returns the previous one.
    pub fn replace(&self, monitors: Vec<Monitor>) -> Arc<Vec<Monitor>> {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, Arc::new(monitors))
    }
}

/// The monitors whose definition in this process differs from the one in the database, which
/// the last replica to start or reload wrote (docs/operations.md, replicas). Such a monitor's
/// runs are left to the replicas that agree; `/readyz` and a metric say which.
#[derive(Clone, Debug, Default)]
pub struct Agreement(Arc<RwLock<std::collections::BTreeSet<String>>>);

impl Agreement {
    /// Records whether this process agrees on `monitor`; whether that changed.
    pub fn set(&self, monitor: &str, agrees: bool) -> bool {
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if agrees { set.remove(monitor) } else { set.insert(monitor.to_owned()) }
    }

    /// The monitors this process disagrees on, by name.
    pub fn disagreeing(&self) -> Vec<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_a_replacement() {
        let yaml = "monitors:\n  - name: a\n    url: https://example.com/\n";
        let config = crate::config::parse(yaml, "t.yaml", &|_| None).unwrap();
        let live = LiveMonitors::new(config.monitors.clone());
        let before = live.current();
        let old = live.replace(Vec::new());
        assert_eq!(before.len(), 1);
        assert_eq!(old.len(), 1);
        assert!(live.current().is_empty());
        assert!(live.find_str("a").is_none());
    }
}
