//! The code layout's two rules, checked on the source text:
//! - the imports between the top-level modules (`src/<name>.rs`, `src/<name>/`) form no cycle;
//! - the pure modules (the model, syntax, verdict, forecast and the sans-IO SMTP parts) touch no
//!   I/O: no tokio, rusqlite, sockets or files, and import only other pure modules.
//!
//! A text scan, not a compiler: comments, string literals and `#[cfg(test)]` items are removed
//! first (tests may use whatever fixtures they like), then every `crate::a::…`, grouped
//! `use crate::{a, b::c}` and file-level `super::…` path is an edge. A path to an item of the
//! crate root (`crate::VerifyConfig`) is an edge to the node `lib`; lib.rs itself only declares
//! the modules and re-exports, so its own edges are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure modules, as paths below `src/` (a directory stands for all its files).
const PURE: &[&str] = &[
    "model",
    "syntax",
    "verdict.rs",
    "forecast.rs",
    "calibration.rs",
    "clock.rs",
    "store/policy.rs",
    "smtp/reply.rs",
    "smtp/session.rs",
    "smtp/plan.rs",
    "smtp/egress.rs",
    "bounce",
    "preflight/bulk.rs",
    "preflight/check.rs",
    "preflight/dkim.rs",
    "preflight/dmarc.rs",
    "preflight/dnsbl.rs",
    "preflight/spf.rs",
];

/// What a pure module must not mention in its code.
const IMPURE: &[&str] = &["tokio", "rusqlite", "std::net", "std::fs", "TcpStream"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each file of the library (main.rs is another crate) with its path below `src/`, `/`-separated.
fn library_files() -> Vec<(String, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("below src/");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            (rel, text)
        })
        .filter(|(rel, _)| rel != "main.rs")
        .collect()
}

/// The length of the char literal starting at `b[i]` (a `'`), or None for a lifetime.
fn char_literal_len(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&b'\\') {
        let close = b[i + 2..].iter().position(|&c| c == b'\'')?;
        return Some(close + 3);
    }
    // One character of one to four bytes, then the closing quote.
    (2..=5)
        .find(|&n| b.get(i + n) == Some(&b'\'') && std::str::from_utf8(&b[i + 1..i + n]).is_ok())
        .map(|n| n + 1)
}

/// The code without comments and with string and char literals emptied, so that neither
/// braces nor words inside them count.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            i += rest
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2);
        } else if let Some(hashes) = raw_string_hashes(rest) {
            let open = 2 + hashes + usize::from(rest[0] == b'b');
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = rest[open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| open + p + close.len());
            out.extend_from_slice(b"\"\"");
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            out.extend_from_slice(b"\"\"");
            i += j + 1;
        } else if rest[0] == b'\'' {
            match char_literal_len(b, i) {
                Some(n) => {
                    out.extend_from_slice(b"' '");
                    i += n;
                }
                None => {
                    out.push(b'\'');
                    i += 1;
                }
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"`, `r#"`, `br##"` …: the number of `#`.
fn raw_string_hashes(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The code without the items marked `#[cfg(test)]` (a test module, a test-only function).
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let end = item.find([';', '{']).unwrap_or(item.len());
        rest = if item[end..].starts_with('{') {
            &item[end + matching_brace(&item[end..])..]
        } else {
            &item[(end + 1).min(item.len())..]
        };
    }
    out.push_str(rest);
    out
}

/// The length up to and including the brace that closes the one `s` starts with.
fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths named after each `crate::` in `code`, as their segments (`crate::smtp::reply::X`
/// gives `["smtp", "reply", "X"]`); a group `crate::{a, b::c}` gives one path per member.
fn crate_paths(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let after = &code[at + prefix.len()..];
        if after.starts_with('{') {
            let inner = &after[1..matching_brace(after) - 1];
            for member in split_top_level(inner) {
                paths.push(segments(member.trim()));
            }
        } else {
            paths.push(segments(after));
        }
    }
    paths.retain(|p| !p.is_empty());
    paths
}

/// `a, b::{c, d}, e` → `a`, `b::{c, d}`, `e`.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The leading `a::b::c` of `s`, split.
fn segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        out.push(rest[..len].to_owned());
        match rest[len..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// The top-level module a file belongs to: `verdict.rs` → verdict, `smtp/probe.rs` → smtp,
/// `lib.rs` → lib.
fn top_level(rel: &str) -> String {
    let first = rel.split('/').next().expect("a path");
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// Each library file's code with comments, literals and test items removed.
fn library_code() -> Vec<(String, String)> {
    library_files()
        .into_iter()
        .map(|(rel, text)| {
            let code = without_test_items(&code_only(&text));
            (rel, code)
        })
        .collect()
}

/// Who imports whom among the top-level modules.
fn import_graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| top_level(rel)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in files {
        let from = top_level(rel);
        graph.entry(from.clone()).or_default();
        if from == "lib" {
            continue;
        }
        let mut paths = crate_paths(code, "crate::");
        // In a file directly below src/, `super` is the crate root.
        if !rel.contains('/') {
            paths.extend(crate_paths(code, "super::"));
        }
        for path in paths {
            let to = if modules.contains(&path[0]) && path[0] != "lib" {
                path[0].clone()
            } else {
                "lib".to_owned()
            };
            if to != from {
                graph.get_mut(&from).expect("inserted above").insert(to);
            }
        }
    }
    graph
}

/// A cycle of the graph, as the modules along it (the first repeated at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn print_graph(graph: &BTreeMap<String, BTreeSet<String>>) {
    for (from, to) in graph {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        println!("{from} -> {}", to.join(", "));
    }
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let graph = import_graph(&library_code());
    print_graph(&graph);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the imports form a cycle: {}", cycle.join(" -> "));
    }
}

fn is_pure(rel: &str) -> bool {
    PURE.iter().any(|p| {
        rel == *p
            || rel
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The module path of a file below src/ (`smtp/reply.rs` → `smtp::reply`, `model/mod.rs` →
/// `model`).
fn module_path(rel: &str) -> String {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    rel.replace('/', "::")
}

#[test]
fn the_pure_modules_do_no_io_and_import_only_pure_modules() {
    let mut problems = Vec::new();
    for (rel, code) in library_code().iter().filter(|(rel, _)| is_pure(rel)) {
        for word in IMPURE {
            if code.contains(word) {
                problems.push(format!("src/{rel} mentions {word}"));
            }
        }
        // `super::x` in smtp/reply.rs is smtp::x; the syntax module's own files are pure.
        let parent = module_path(rel)
            .rsplit_once("::")
            .map(|(p, _)| p.to_owned())
            .filter(|_| !rel.ends_with("/mod.rs"));
        let mut imported: Vec<String> = crate_paths(code, "crate::")
            .into_iter()
            .map(|p| p.join("::"))
            .collect();
        if let Some(parent) = parent {
            imported.extend(
                crate_paths(code, "super::")
                    .into_iter()
                    .map(|p| format!("{parent}::{}", p.join("::"))),
            );
        }
        for path in imported {
            let as_file = |p: &str| p.replace("::", "/");
            let target_is_pure = PURE.iter().any(|pure| {
                let pure = pure.strip_suffix(".rs").unwrap_or(pure);
                let file = as_file(&path);
                file == pure || file.starts_with(&format!("{pure}/"))
            });
            if !target_is_pure {
                problems.push(format!(
                    "src/{rel} imports crate::{path}, which is not pure"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scan_sees_through_comments_literals_and_groups() {
    let code = code_only(
        "use crate::{a, b::{c, d}};\n// crate::commented\nlet s = \"crate::quoted\"; let c = '{';\n\
         let r = r#\"crate::raw\"#; fn f<'x>(v: &'x str) { crate::e::f(v) }\n",
    );
    let found: Vec<String> = crate_paths(&code, "crate::")
        .into_iter()
        .map(|p| p[0].clone())
        .collect();
    assert_eq!(found, ["a", "b", "e"]);
    let code = without_test_items(&code_only(
        "use crate::x;\n#[cfg(test)]\nmod tests { use crate::y; fn g() { '}'; } }\nuse crate::z;",
    ));
    let found: Vec<String> = crate_paths(&code, "crate::")
        .into_iter()
        .map(|p| p[0].clone())
        .collect();
    assert_eq!(found, ["x", "z"]);
}
