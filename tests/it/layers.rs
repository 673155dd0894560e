//! The import graph of `src/` has no cycle, and the web layer depends one
//! way: `web` (mod.rs) and its OpenAPI document -> the handler files -> what
//! handlers share -> the layers below. Read from the source files, so a new
//! `use` that points the wrong way fails here before anyone has to find it
//! in review.
//!
//! An edge is any path a module's code names through `crate::`, `super::`
//! or (in a module with children) a child's name, `use` or not: a call to
//! `crate::metrics::record(..)` ties two modules as much as an import does.
//! Comments, strings and `#[cfg(test)] mod tests` blocks are not code here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root, e.g. `["web", "error"]`.
type ModPath = Vec<String>;

/// The web layer's files by tier; a web file in none of them fails the
/// test, so that a new file is placed on purpose.
const WEB_TOP: &[&str] = &["web", "web::openapi"];
const WEB_HANDLERS: &[&str] = &[
    "web::seed",
    "web::ops",
    "web::counters",
    "web::admin",
    "web::badges",
    "web::pages",
    "web::live",
];
const WEB_SHARED: &[&str] = &[
    "web::error",
    "web::state",
    "web::extract",
    "web::auth",
    "web::bodies",
    "web::compat",
];

/// The only modules outside `web` that may name it: the server serves it.
const ABOVE_WEB: &[&str] = &["server"];

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

/// `src/web/mod.rs` -> `["web"]`, `src/store/fake.rs` -> `["store", "fake"]`;
/// None for the crate roots (lib.rs, main.rs), which only declare modules.
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: ModPath = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.strip_suffix(".rs").unwrap();
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    Some(parts)
}

/// The code of a file with comments removed and every string or char
/// literal emptied, so that neither can hold a path.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
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
        } else if (c == 'r' || c == 'b')
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_string_start(&chars, i).unwrap();
            i = body;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`, `r"`, `r#"`, `br"`...: the number of `#` and where the body starts.
fn raw_string_start(chars: &[char], mut i: usize) -> Option<(usize, usize)> {
    if chars[i] == 'b' {
        i += 1;
    }
    if chars.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (chars.get(i) == Some(&'"')).then_some((hashes, i + 1))
}

/// Removes `#[cfg(test)] mod name { ... }` blocks: what tests import is
/// not a dependency of the module.
fn without_test_modules(code: &str) -> String {
    let mut code = code.to_string();
    while let Some(start) = code.find("#[cfg(test)]") {
        let rest = &code[start + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        let Some(after_mod) = trimmed.strip_prefix("mod ") else {
            // `#[cfg(test)]` on something else: keep it, look further.
            code.replace_range(start..start + 1, " ");
            continue;
        };
        let open = start + (code.len() - start - after_mod.len()) + after_mod.find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (offset, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        code.replace_range(start..end, " ");
    }
    code
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads `a::b::c`, or a `{...}` group of such paths, from `text`; returns
/// every path named (relative to the prefix already read).
fn read_paths(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 1;
        let mut end = group.len();
        for (offset, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &group[..end];
        let mut items = Vec::new();
        let (mut depth, mut from) = (0, 0);
        for (offset, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[from..offset]);
                    from = offset + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[from..]);
        return items
            .into_iter()
            .flat_map(|item| {
                let item = item.trim();
                if item.is_empty() || item == "*" || item == "self" {
                    return vec![vec![]];
                }
                read_paths(item)
            })
            .collect();
    }
    let ident: String = text.chars().take_while(|c| is_ident_char(*c)).collect();
    if ident.is_empty() {
        return vec![vec![]];
    }
    let rest = &text[ident.len()..];
    match rest.strip_prefix("::") {
        Some(rest) => read_paths(rest)
            .into_iter()
            .map(|mut tail| {
                tail.insert(0, ident.clone());
                tail
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// Every absolute module path the code of `module` names.
fn references(module: &ModPath, children: &BTreeSet<String>, code: &str) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes: Vec<(usize, char)> = code.char_indices().collect();
    for (index, &(at, _)) in bytes.iter().enumerate() {
        let before = index
            .checked_sub(1)
            .map(|i| bytes[i].1)
            .filter(|c| is_ident_char(*c) || *c == ':');
        if before.is_some() {
            continue;
        }
        let rest = &code[at..];
        if let Some(tail) = rest.strip_prefix("crate::") {
            found.extend(read_paths(tail));
        } else if rest.starts_with("super::") {
            let mut base = module.clone();
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                base.pop();
                tail = t;
            }
            for path in read_paths(tail) {
                let mut full = base.clone();
                full.extend(path);
                found.push(full);
            }
        } else if let Some(tail) = rest.strip_prefix("self::") {
            for path in read_paths(tail) {
                let mut full = module.clone();
                full.extend(path);
                found.push(full);
            }
        } else {
            let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
            if children.contains(&ident) && rest[ident.len()..].starts_with("::") {
                for path in read_paths(rest) {
                    let mut full = module.clone();
                    full.extend(path);
                    found.push(full);
                }
            }
        }
    }
    found
}

struct Graph {
    /// Module -> the modules its code names (never itself).
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn name(path: &[String]) -> String {
    path.join("::")
}

/// The crate's module graph, read from `src/`.
fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .filter_map(|file| module_of(&src, file).map(|m| (m, file.clone())))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        let code = without_test_modules(&code_only(&std::fs::read_to_string(file).unwrap()));
        let mut targets = BTreeSet::new();
        for path in references(module, &children, &code) {
            // The longest prefix that is a module: `web::error::AppError`
            // is `web::error`.
            let target = (1..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|prefix| modules.contains_key(*prefix));
            if let Some(target) = target
                && target != module.as_slice()
            {
                targets.insert(name(target));
            }
        }
        edges.insert(name(module), targets);
    }
    Graph { edges }
}

/// A cycle in `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

fn top_level(module: &str) -> String {
    module.split("::").next().unwrap().to_string()
}

#[test]
fn the_reader_sees_the_edges_the_code_has() {
    // Guards the guard: a parser that found nothing would pass every rule.
    let graph = crate_graph();
    let has = |from: &str, to: &str| graph.edges[from].contains(to);
    assert!(has("web", "web::seed"), "{:?}", graph.edges["web"]);
    assert!(has("web::counters", "web::error"));
    assert!(has("web::counters", "engine") || has("web::state", "engine"));
    assert!(has("web::openapi", "web::admin"));
    assert!(has("server", "web"));
    assert!(has("engine", "writer"));
    assert!(has("writer", "store"));
    assert!(has("store::sqlite", "store"));
}

#[test]
fn the_web_layer_depends_one_way() {
    let graph = crate_graph();
    let tier = |module: &str| {
        if WEB_TOP.contains(&module) {
            Some(0)
        } else if WEB_HANDLERS.contains(&module) {
            Some(1)
        } else if WEB_SHARED.contains(&module) {
            Some(2)
        } else {
            None
        }
    };
    let mut wrong = Vec::new();
    for (from, targets) in &graph.edges {
        let from_web = from == "web" || from.starts_with("web::");
        if from_web && tier(from).is_none() {
            wrong.push(format!(
                "{from} is in no tier: add it to WEB_TOP, WEB_HANDLERS or WEB_SHARED"
            ));
        }
        for to in targets {
            let to_web = to == "web" || to.starts_with("web::");
            if !to_web {
                continue;
            }
            if !from_web {
                if !ABOVE_WEB.contains(&from.as_str()) {
                    wrong.push(format!(
                        "{from} -> {to}: only {ABOVE_WEB:?} may use the web layer"
                    ));
                }
                continue;
            }
            match (tier(from), tier(to)) {
                (Some(1), Some(1)) => {
                    wrong.push(format!("{from} -> {to}: a handler file imports another"))
                }
                (Some(f), Some(t)) if t < f => {
                    wrong.push(format!("{from} -> {to}: points up, to what routes it"))
                }
                (Some(0), Some(0)) if to == "web" => {
                    wrong.push(format!("{from} -> {to}: only mod.rs routes"))
                }
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let web: BTreeMap<String, BTreeSet<String>> = graph
        .edges
        .iter()
        .filter(|(from, _)| from.as_str() == "web" || from.starts_with("web::"))
        .map(|(from, to)| (from.clone(), to.clone()))
        .collect();
    assert_eq!(find_cycle(&web), None, "a cycle inside the web layer");
}

#[test]
fn no_cycle_between_top_level_modules() {
    // Between top-level modules only: inside one (the store's `mod.rs` and
    // its backends) a parent and its children may name each other.
    let graph = crate_graph();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &graph.edges {
        let entry = top.entry(top_level(from)).or_default();
        for to in targets {
            if top_level(to) != top_level(from) {
                entry.insert(top_level(to));
            }
        }
    }
    assert_eq!(
        find_cycle(&top),
        None,
        "a cycle between top-level modules; their edges: {top:#?}"
    );
}

/// The edges issue #11 removed stay removed: below the web layer, nothing
/// names a layer above it or a sibling it should not know. `counter` (the
/// rules) names nothing; the record and the cache know only the rules and
/// their own helpers; the engine gets its settings as an `EngineConfig`
/// from the server, not from `config`.
#[test]
fn lower_layers_never_name_the_layers_above() {
    let graph = crate_graph();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &graph.edges {
        let entry = top.entry(top_level(from)).or_default();
        for to in targets {
            if top_level(to) != top_level(from) {
                entry.insert(top_level(to));
            }
        }
    }
    let may_name: &[(&str, &[&str])] = &[
        ("counter", &[]),
        ("live", &["counter", "metrics"]),
        // Unique visitors: the hash and the sketch, over the rules only.
        ("visitors", &["counter"]),
        ("store", &["counter", "metrics", "visitors"]),
        ("cache", &["counter", "breaker", "metrics"]),
        (
            "writer",
            &[
                "alarm", "breaker", "cache", "counter", "live", "metrics", "store", "visitors",
            ],
        ),
        (
            "engine",
            &[
                "breaker", "cache", "counter", "live", "metrics", "store", "visitors", "writer",
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (module, allowed) in may_name {
        assert!(top.contains_key(*module), "no module {module} in src/");
        for to in &top[*module] {
            if !allowed.contains(&to.as_str()) {
                wrong.push(format!("{module} -> {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges that point the wrong way: {wrong:?}"
    );
}
