//! The house rules of the code layout (README, "Code layout"): the imports between the
//! top-level modules of src/ form no cycle, and the pure modules touch no I/O. A text scan of
//! the sources is enough for both, and needs no extra tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure modules: logic tested exhaustively without sockets, files or a runtime.
const PURE: &[&str] = &[
    "src/model",
    "src/syntax",
    "src/verdict.rs",
    "src/forecast.rs",
    "src/clock.rs",
    "src/smtp/reply.rs",
    "src/smtp/session.rs",
    "src/smtp/plan.rs",
    "src/store/policy.rs",
];

/// What a pure module may not mention outside its tests.
const IO: &[&str] = &[
    "tokio",
    "rusqlite",
    "std::net",
    "std::fs",
    "TcpStream",
    "File::",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its `#[cfg(test)]` module (by convention the last item) and
/// without comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to: `src/a.rs` and `src/a/…` are `a`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a piece of code names through `crate::`, including grouped imports
/// such as `use crate::{a, b::c}`.
fn crate_references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(name) {
                    found.insert(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
        }
    }
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(&src, f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        if from == "lib" || from == "main" || from == "cmd" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let to = graph.entry(from.clone()).or_default();
        to.extend(
            crate_references(&code, &modules)
                .into_iter()
                .filter(|m| *m != from),
        );
    }
    graph
}

/// A cycle through `node`, if any, as the path of modules.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\nthe graph: {graph:#?}", cycle.join(" → "));
        }
    }
    // The core stays at the bottom: it imports no other module.
    assert_eq!(graph.get("model"), Some(&BTreeSet::new()), "{graph:#?}");
}

#[test]
fn the_pure_modules_touch_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offences = Vec::new();
    for pure in PURE {
        let path = root.join(pure);
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.exists() {
            files.push(path);
        }
        for file in files {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for word in IO {
                if code.contains(word) {
                    offences.push(format!("{} mentions {word}", file.display()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_scan_sees_grouped_and_nested_imports() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    let code = "use crate::{a, b::x};\nfn f() { crate::c::g(); }\n// crate::d::h()";
    assert_eq!(
        crate_references(&code_of(code), &modules),
        ["a", "b", "c"].map(String::from).into()
    );
}
