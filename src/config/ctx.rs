//! Error collection while walking the YAML tree: every problem is recorded with its position
//! and path, and the walk goes on so the user sees all of them at once.

use std::fmt;

use super::node::{Node, Pos, Value};

/// One problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Pos,
    /// Where in the document, e.g. `monitors[2].threshold`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Looks up an environment variable; injected so parsing stays free of I/O.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Ctx<'a> {
    file: &'a str,
    pub(crate) env: EnvLookup<'a>,
    errors: Vec<ConfigError>,
    /// The names in the `alerts:` section, for checking monitors' `alerts:` lists.
    pub(crate) destinations: Vec<String>,
    /// The `sessions:` section, for monitors' `session:`.
    pub(crate) sessions: Vec<super::page::LoginSession>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &'a str, env: EnvLookup<'a>) -> Self {
        Self { file, env, errors: Vec::new(), destinations: Vec::new(), sessions: Vec::new() }
    }

    pub(crate) fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records "expected X (got Y)" for `node`.
    pub(crate) fn expected(&mut self, node: &Node, path: &str, what: &str) {
        let got = node.value.describe();
        self.error(node.pos, path, format!("expected {what} (got {got})"));
    }

    pub(crate) fn finish(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.pos.line, e.pos.column));
        self.errors
    }
}

/// Joins a path and a key: `monitors[2]` + `threshold`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The entries of a mapping, handed out by key; keys never asked for are reported as unknown.
pub(crate) struct Fields<'n> {
    path: String,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    /// `None` (with an error recorded) when `node` is not a mapping. `null` counts as empty.
    pub(crate) fn of(ctx: &mut Ctx<'_>, node: &'n Node, path: &str) -> Option<Self> {
        let items: &'n [(Node, Node)] = match &node.value {
            Value::Map(items) => items,
            Value::Null => &[],
            _ => {
                ctx.expected(node, path, "a mapping of keys to values");
                return None;
            }
        };
        let mut entries = Vec::with_capacity(items.len());
        for (k, v) in items {
            match &k.value {
                Value::Str(name) => entries.push((name.as_str(), k, v)),
                _ => ctx.expected(k, path, "a text key"),
            }
        }
        let used = vec![false; entries.len()];
        Some(Self { path: path.to_owned(), entries, used })
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _, _)| *k == key)?;
        self.used[i] = true;
        Some(self.entries[i].2)
    }

    /// Like [`get`](Self::get), but an explicit `null` counts as absent.
    pub(crate) fn opt(&mut self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|n| n.value != Value::Null)
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reports every key that was not asked for, suggesting the closest known one.
    pub(crate) fn finish(&self, ctx: &mut Ctx<'_>, known: &[&str]) {
        for ((key, knode, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let suggestion = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("did you mean \"{k}\"? "))
                .unwrap_or_default();
            ctx.error(
                knode.pos,
                &join(&self.path, key),
                format!("unknown key; {suggestion}expected one of: {}", known.join(", ")),
            );
        }
    }
}
