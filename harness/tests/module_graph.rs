//! The harness's modules form layers: no module of `harness/src` reaches, through
//! `crate::` paths, a module that reaches it back (issue 15 broke the knot around
//! `HostShared`). The test reads the sources, builds the graph of `crate::<module>`
//! references (comments and string literals left out) and fails on any cycle, naming it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

/// Each module and the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The sources of `harness/src`, by module name (`lib` is the crate root).
fn harness_sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        assert!(
            !path.is_dir(),
            "{} is a folder: this test reads only the flat files of harness/src",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            sources.insert(name, fs::read_to_string(&path).unwrap());
        }
    }
    sources
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code of a Rust source with comments and string, byte and char literals blanked
/// out, so that a `crate::` in a doc comment or a string is not a reference.
fn code_of(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while let Some(c) = at(i) {
        let next = at(i + 1);
        if c == '/' && next == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while let Some(c) = at(i) {
                if c == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while let Some(c) = at(i) {
                i += if c == '\\' { 2 } else { 1 };
                if c == '"' {
                    break;
                }
            }
            out.push_str("\"\"");
        } else if c == 'r' && matches!(next, Some('"' | '#')) && raw_prefix(&chars, i) {
            let hashes = (i + 1..).take_while(|&j| at(j) == Some('#')).count();
            if at(i + 1 + hashes) != Some('"') {
                // A raw identifier such as `r#type`.
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            while at(i).is_some() {
                if at(i) == Some('"') && (1..=hashes).all(|k| at(i + k) == Some('#')) {
                    i += hashes + 1;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: `'\''`, `'\\'`, `'\u{1F600}'`.
            i += 3;
            while at(i).is_some_and(|c| c != '\'') {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && at(i + 2) == Some('\'') {
            i += 3;
            out.push_str("' '");
        } else {
            // Code, or the quote of a lifetime or label.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` starts a raw string (`r"`, `r#"`, `br"`), not an identifier.
fn raw_prefix(chars: &[char], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).and_then(|j| chars.get(j).copied());
    match before(1) {
        None => true,
        Some('b') => !before(2).is_some_and(is_ident),
        Some(c) => !is_ident(c),
    }
}

/// The first path segment after each `crate::` in code: `crate::vm::Vm` gives `vm`,
/// `crate::{abi, engine::load}` gives `abi` and `engine`.
fn crate_references(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(pos) = rest.find("crate") {
        let before = rest.get(..pos).and_then(|s| s.chars().next_back());
        let after = rest.get(pos + "crate".len()..).unwrap_or_default();
        rest = after;
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue;
        }
        let Some(path) = after.trim_start().strip_prefix("::") else {
            continue;
        };
        let path = path.trim_start();
        if let Some(group) = path.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            items.push(item);
            for item in items {
                let name: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| is_ident(*c))
                    .collect();
                if !name.is_empty() && name != "self" {
                    found.push(name);
                }
            }
        } else {
            let name: String = path.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// The graph of modules (the crate root left out), and every `crate::` path whose first
/// segment is not a module, as `(module, name)`: such a path goes through the crate
/// root's re-exports and would hide an edge from the graph.
fn module_graph(sources: &BTreeMap<String, String>) -> (Graph, Vec<(String, String)>) {
    let modules: BTreeSet<&str> = sources
        .keys()
        .map(String::as_str)
        .filter(|m| *m != "lib")
        .collect();
    let mut graph = Graph::new();
    let mut through_root = Vec::new();
    for (module, source) in sources {
        if module == "lib" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        for name in crate_references(&code_of(source)) {
            if modules.contains(name.as_str()) {
                if name != *module {
                    edges.insert(name);
                }
            } else {
                through_root.push((module.clone(), name));
            }
        }
    }
    (graph, through_root)
}

/// One cycle per knot (strongly connected component of more than one module), as the
/// path `a -> b -> ... -> a`, shortest through the knot's first module, with the knot.
fn cycles(graph: &Graph) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([from.to_string()]);
        while let Some(m) = queue.pop_front() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    queue.push_back(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reaches(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for (module, from_module) in &reach {
        if done.contains(*module) || !from_module.contains(*module) {
            continue;
        }
        let knot: BTreeSet<String> = from_module
            .iter()
            .filter(|m| reach.get(m).is_some_and(|r| r.contains(*module)))
            .cloned()
            .collect();
        done.extend(knot.iter().cloned());
        found.push((shortest_cycle(graph, module, &knot), knot));
    }
    found
}

/// The shortest path from `start` back to itself inside the knot.
fn shortest_cycle(graph: &Graph, start: &str, knot: &BTreeSet<String>) -> Vec<String> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(m) = queue.pop_front() {
        for next in graph.get(&m).into_iter().flatten() {
            if !knot.contains(next) {
                continue;
            }
            if next == start {
                let mut path = vec![start.to_string(), m.clone()];
                let mut at = m.clone();
                while let Some(p) = parent.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return path;
            }
            if !parent.contains_key(next) && next != start {
                parent.insert(next.clone(), m.clone());
                queue.push_back(next.clone());
            }
        }
    }
    Vec::new()
}

/// Each module's layer in an acyclic graph: 0 for a module that refers to no other, else
/// one above the highest module it refers to. `None` if the graph has a cycle.
fn layers(graph: &Graph) -> Option<BTreeMap<String, usize>> {
    let mut layer: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..=graph.len() {
        for (module, edges) in graph {
            let below: Option<Vec<usize>> = edges.iter().map(|e| layer.get(e).copied()).collect();
            if let Some(below) = below {
                layer.insert(module.clone(), below.iter().max().map_or(0, |l| l + 1));
            }
        }
        if layer.len() == graph.len() {
            return Some(layer);
        }
    }
    None
}

fn describe(graph: &Graph, cycles: &[(Vec<String>, BTreeSet<String>)]) -> String {
    let mut text = String::new();
    for (cycle, knot) in cycles {
        text.push_str(&format!("cycle: {}\n", cycle.join(" -> ")));
        text.push_str(&format!(
            "  inside a knot of {} modules; its imports:\n",
            knot.len()
        ));
        for module in knot {
            let inside: Vec<&str> = graph
                .get(module)
                .into_iter()
                .flatten()
                .filter(|m| knot.contains(*m))
                .map(String::as_str)
                .collect();
            text.push_str(&format!("    {module} -> {}\n", inside.join(", ")));
        }
    }
    text
}

#[test]
fn harness_modules_import_each_other_without_cycles() {
    let (graph, _) = module_graph(&harness_sources());
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "harness/src has import cycles (crate::<module> paths); move what both sides need \
         into a module below them:\n{}",
        describe(&graph, &found)
    );
    // `cargo test --test module_graph -- --nocapture` shows the layers.
    let layers = layers(&graph).unwrap();
    let top = layers.values().max().copied().unwrap_or(0);
    for level in 0..=top {
        let at: Vec<&str> = layers
            .iter()
            .filter(|(_, l)| **l == level)
            .map(|(m, _)| m.as_str())
            .collect();
        println!("layer {level}: {}", at.join(", "));
    }
}

#[test]
fn harness_modules_name_the_module_they_import_from() {
    let (_, through_root) = module_graph(&harness_sources());
    assert!(
        through_root.is_empty(),
        "these crate:: paths go through the crate root instead of naming a module, which \
         hides them from the import graph: {through_root:?}"
    );
}

#[test]
fn finds_a_cycle_through_three_modules_and_ignores_comments_and_strings() {
    let sources: BTreeMap<String, String> = [
        ("lib", "mod a; mod b; mod c; mod d; pub use a::A;"),
        (
            "a",
            "use crate::b::B;\n/// See [`crate::d`].\npub struct A;",
        ),
        (
            "b",
            "use crate::{c::{self, C}, d};\npub(crate) struct B<'x>(&'x u8);",
        ),
        (
            "c",
            "fn f() { let _ = crate::a::A; let _ = \"crate::d\"; let _ = '\"'; }",
        ),
        ("d", "// crate::a\nconst D: &str = r#\"crate::a\"#;"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_string(), s.to_string()))
    .collect();
    let (graph, through_root) = module_graph(&sources);
    assert_eq!(graph.get("d"), Some(&BTreeSet::new()));
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, ["a", "b", "c", "a"]);
    assert!(through_root.is_empty());
    assert_eq!(layers(&graph), None);
    assert!(describe(&graph, &found).contains("cycle: a -> b -> c -> a"));
}

#[test]
fn an_acyclic_graph_gets_layers_from_its_leaves_up() {
    let sources: BTreeMap<String, String> = [
        ("a", "use crate::b::B; use crate::c::C;"),
        ("b", "use crate::c::C;"),
        ("c", "pub struct C;"),
        ("e", "fn f() -> crate::Host { todo!() }"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_string(), s.to_string()))
    .collect();
    let (graph, through_root) = module_graph(&sources);
    assert!(cycles(&graph).is_empty());
    let layers = layers(&graph).unwrap();
    assert_eq!(layers["c"], 0);
    assert_eq!(layers["b"], 1);
    assert_eq!(layers["a"], 2);
    assert_eq!(through_root, [("e".to_string(), "Host".to_string())]);
}
