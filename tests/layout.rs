//! The shape of the code, checked by reading the sources (nothing is built or run):
//!
//! - the library's files import each other without a loop: every `crate::` and `super::`
//!   path in a file (outside comments) is an edge to the file of the module it names, and the
//!   graph of those edges is acyclic;
//! - no file in `src/` or `www/` is over [`MAX_LINES`] lines.
//!
//! A module and the private submodules it declares are one unit for the first rule: a parent
//! names its children by relative paths (`edits::...`), which are not edges, so a child may use
//! its parent's items through `super::`.
//!
//! `cargo test --test layout -- --nocapture` prints the edges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 600;

/// Every file under `dir` (recursively) whose name ends with one of `extensions`.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if extensions.iter().any(|e| path.extension().is_some_and(|x| x == *e)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The module path of a library file: `src/lib.rs` is `[]`, `src/a.rs` and `src/a/mod.rs` are
/// `["a"]`, `src/a/b.rs` is `["a", "b"]`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The code of a file without comments (line comments and doc comments), where `crate::` in
/// prose would read as an edge.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` group or path starting at `text` spells, e.g. `{a, b::{c, d}}` gives `a`,
/// `b::c`, `b::d`; a plain path gives itself. Only identifier characters, `::` and braces count.
fn expand(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(inner) = text.strip_prefix('{') {
        // The group up to its closing brace, split at top-level commas.
        let (mut depth, mut items, mut item) = (1, Vec::new(), String::new());
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    items.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        items.push(item);
        return items.iter().filter(|i| !i.trim().is_empty()).flat_map(|i| expand(i)).collect();
    }
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(after) if after.trim_start().starts_with('{') => {
                return expand(after).into_iter().map(|tail| [path.clone(), tail].concat()).collect();
            }
            Some(after) => rest = after,
            None => break,
        }
    }
    vec![path]
}

/// The file's module paths it refers to by `crate::` and `super::` paths, each as the full
/// path from the crate root.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code = code(text);
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("crate::") {
        // `crate::` inside a longer identifier (`my_crate::`) is not the crate root.
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            continue;
        }
        out.extend(expand(&code[i + "crate::".len()..]));
    }
    // `super::` from a.rs or a/mod.rs is the parent of module a.
    let mut i = 0;
    while let Some(at) = code[i..].find("super::") {
        let start = i + at;
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':')
        {
            i = start + 1;
            continue;
        }
        let mut base = module.to_vec();
        let mut rest = &code[start..];
        while let Some(after) = rest.strip_prefix("super::") {
            base.pop();
            rest = after;
        }
        out.extend(expand(rest).into_iter().map(|tail| [base.clone(), tail].concat()));
        i = start + 1;
    }
    out
}

/// The longest prefix of `path` that is a module with a file of its own.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Vec<String> {
    let mut best = Vec::new();
    for n in 1..=path.len() {
        if modules.contains_key(&path[..n]) {
            best = path[..n].to_vec();
        } else {
            break;
        }
    }
    best
}

#[test]
fn the_library_has_no_import_loops() {
    let sources: Vec<PathBuf> =
        files(&root().join("src"), &["rs"]).into_iter().filter(|f| !f.starts_with(root().join("src/bin"))).collect();
    let modules: BTreeMap<Vec<String>, PathBuf> = sources.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<Vec<String>, Vec<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut targets: Vec<Vec<String>> = references(module, &text)
            .iter()
            .map(|p| resolve(p, &modules))
            // A module's own items, and its ancestors' items that only the parent-child unit
            // shares (see the file's comment), are not edges.
            .filter(|t| t != module && !module.starts_with(t))
            .collect();
        targets.sort();
        targets.dedup();
        edges.insert(module.clone(), targets);
    }
    let name = |m: &Vec<String>| modules[m].strip_prefix(root()).unwrap().display().to_string();
    for (from, to) in &edges {
        println!("{} -> {}", name(from), to.iter().map(name).collect::<Vec<_>>().join(", "));
    }
    // Depth-first search; a module met again while still on the stack closes a loop.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks: BTreeMap<&Vec<String>, Mark> = edges.keys().map(|m| (m, Mark::New)).collect();
    fn visit<'a>(
        m: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, Vec<Vec<String>>>,
        marks: &mut BTreeMap<&'a Vec<String>, Mark>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<&'a Vec<String>>> {
        marks.insert(m, Mark::OnStack);
        stack.push(m);
        for next in &edges[m] {
            match marks[next] {
                Mark::OnStack => {
                    let from = stack.iter().position(|s| *s == next).unwrap();
                    return Some([&stack[from..], &[next]].concat());
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, edges, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(m, Mark::Done);
        None
    }
    for m in edges.keys() {
        if marks[m] == Mark::New {
            if let Some(cycle) = visit(m, &edges, &mut marks, &mut Vec::new()) {
                let names: Vec<String> = cycle.into_iter().map(name).collect();
                panic!("an import loop: {}", names.join(" -> "));
            }
        }
    }
}

#[test]
fn no_source_file_is_over_the_limit() {
    let mut long = Vec::new();
    for (dir, extensions) in [("src", &["rs", "wgsl"][..]), ("www", &["js", "css", "html"][..])] {
        for file in files(&root().join(dir), extensions) {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {}", long.join(", "));
}

#[test]
fn the_reader_sees_groups_and_parents() {
    let paths = |m: &[&str], text: &str| -> Vec<String> {
        let module: Vec<String> = m.iter().map(|s| s.to_string()).collect();
        references(&module, text).iter().map(|p| p.join("::")).collect()
    };
    assert_eq!(
        paths(&["a"], "use crate::{b, c::{d, e::F}};\n// crate::g in a comment\nlet x = crate::h::i();"),
        ["b", "c::d", "c::e::F", "h::i"]
    );
    assert_eq!(paths(&["eval", "classifier"], "use super::super::nn::layers::Conv;"), ["nn::layers::Conv"]);
    assert_eq!(paths(&["eval", "classifier"], "fn f() -> super::weights::Info {}"), ["eval::weights::Info"]);
}
