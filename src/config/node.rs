//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-saphyr parses the text (and reports syntax errors with line and column); we keep the
//! result as an untyped tree so that validation can walk all of it and report *every* mistake at
//! once, each at its own line and column, instead of stopping at the first one as a derived
//! `Deserialize` would.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Line and column (1-based) of a node in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position so an unknown key can be pointed at.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What the user wrote, as a short description for "expected X (got Y)" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "nothing".into(),
            Value::Bool(b) => format!("{b}"),
            Value::Int(i) => format!("{i}"),
            Value::Float(f) => format!("{f}"),
            Value::Str(s) if s.chars().count() > 60 => {
                let short: String = s.chars().take(57).collect();
                format!("\"{short}...\"")
            }
            Value::Str(s) => format!("\"{s}\""),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

/// Parses YAML text into a [`Node`] tree. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    if text.trim().is_empty() {
        return Ok(Node { pos: Pos { line: 1, column: 1 }, value: Value::Map(Vec::new()) });
    }
    // YAML 1.2 booleans only: `y`, `no`, `on` stay text (`{x: 0, y: 0}` is a rectangle, and
    // `country: NO` is Norway).
    // The parser's default budget (250,000 nodes) stops near 5,000 monitors; allow well beyond
    // the 10,000 we promise while keeping its alias-bomb and depth limits.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 20_000_000;
    budget.max_events = 40_000_000;
    let options = serde_saphyr::options! { strict_booleans: true, budget: Some(budget) };
    let spanned: Spanned<RawNode> = serde_saphyr::from_str_with_options(text, options)?;
    Ok(into_node(spanned))
}

fn into_node(s: Spanned<RawNode>) -> Node {
    let pos = Pos { line: s.referenced.line(), column: s.referenced.column() };
    let value = match s.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b),
        RawNode::Int(i) => Value::Int(i),
        RawNode::Float(f) => Value::Float(f),
        RawNode::Str(s) => Value::Str(s),
        RawNode::Seq(items) => Value::Seq(items.into_iter().map(into_node).collect()),
        RawNode::Map(entries) => {
            Value::Map(entries.into_iter().map(|(k, v)| (into_node(k), into_node(v))).collect())
        }
    };
    Node { pos, value }
}

/// The shape serde-saphyr fills in; children are `Spanned` so every node gets a position.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v).map(RawNode::Int).map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_values_and_keys() {
        let root = parse("server:\n  listen: 127.0.0.1:8080\nmonitors:\n  - name: home\n").unwrap();
        let Value::Map(top) = &root.value else { panic!("not a map") };
        let (k, v) = &top[0];
        assert_eq!(k.value, Value::Str("server".into()));
        assert_eq!(k.pos, Pos { line: 1, column: 1 });
        let Value::Map(server) = &v.value else { panic!() };
        assert_eq!(server[0].1.pos, Pos { line: 2, column: 11 });
        let Value::Seq(monitors) = &top[1].1.value else { panic!() };
        assert_eq!(monitors[0].pos.line, 4);
    }

    #[test]
    fn scalars_keep_their_types() {
        let root = parse("a: 1\nb: 0.5\nc: true\nd: ~\ne: 2%\ny: no\n").unwrap();
        let Value::Map(m) = root.value else { panic!() };
        let vals: Vec<_> = m.into_iter().map(|(_, v)| v.value).collect();
        assert_eq!(
            vals,
            vec![
                Value::Int(1),
                Value::Float(0.5),
                Value::Bool(true),
                Value::Null,
                Value::Str("2%".into()),
                Value::Str("no".into())
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location().is_some());
    }
}
