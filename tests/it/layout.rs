//! The shape of the source tree, checked so that it stays the way docs/architecture.md §11
//! describes it: top-level modules form no import cycle, no source file grows past what reads in
//! one sitting, and the storage conformance story calls every storage method.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file belongs to (`src/capture/api.rs` → `capture`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Top-level modules each module's code names through `crate::…` (comments left out).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(&src());
    let modules: BTreeSet<String> =
        files.iter().map(|f| module_of(f)).filter(|m| m != "lib" && m != "main").collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        let code: String =
            text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let mut names = BTreeSet::new();
        for part in code.split("crate::").skip(1) {
            if let Some(group) = part.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                names.extend(inner.split(',').map(|n| n.trim().split("::").next().unwrap_or("").to_owned()));
            } else {
                let name: String =
                    part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                names.insert(name);
            }
        }
        let edges = graph.entry(from.clone()).or_default();
        edges.extend(names.into_iter().filter(|n| modules.contains(n) && *n != from));
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_owned()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_no_cycle() {
    let graph = import_graph();
    assert!(graph.get("http").is_some_and(|e| e.contains("store")), "the scan sees imports: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let long: Vec<String> = rust_files(&src())
        .into_iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            (lines > 600).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by sub-feature: {long:?}");
}

#[test]
fn the_conformance_story_calls_every_storage_method() {
    let store = src().join("store");
    let story: String = rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/store"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut methods = BTreeSet::new();
    // pool.rs: the backends' dialect, not storage methods.
    for file in rust_files(&store).into_iter().filter(|f| !f.ends_with("pool.rs")) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Trait declarations: `fn name(…) …;` at one level of indentation.
        let mut decl = String::new();
        for line in text.lines() {
            if line.starts_with("    async fn ") || line.starts_with("    fn ") || !decl.is_empty() {
                decl.push_str(line);
                if line.trim_end().ends_with(';') {
                    let name = decl.split("fn ").nth(1).unwrap().split(['(', '<']).next().unwrap();
                    methods.insert(name.to_owned());
                    decl.clear();
                } else if line.trim_end().ends_with('{') {
                    decl.clear();
                }
            }
        }
    }
    assert!(methods.len() > 50, "the scan finds the storage methods: {methods:?}");
    let missing: Vec<&String> = methods.iter().filter(|m| !story.contains(&format!(".{m}("))).collect();
    assert!(missing.is_empty(), "storage methods the conformance story never calls: {missing:?}");
}
