//! Keeps the server's imports running downward (see ARCHITECTURE.md): reads
//! the crate's own source files, finds every `crate::X` reference, and fails
//! when a domain or a lower layer imports the gateway, the administration
//! API or `axum`, when a lower layer imports a domain, when the modules
//! import each other in a circle, or when code outside the SQLite backend
//! (`storage/sqlite*`) names `rusqlite`: every query sits behind the
//! storage traits, so a second backend can implement them.
//!
//! Test modules (`#[cfg(test)] mod tests` at the end of a file) are not
//! checked: a test may drive a domain through the writer or set up rows.
//!
//! A small reader of `crate::` paths is enough because the code refers to
//! other modules only that way (`super::` stays inside one module); the
//! crate root's re-exports (`pub use messaging::writer;`) are followed to
//! the module that owns the name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The transport, the HTTP administration API and the integration API
/// (`/api/v1`): nothing below imports them.
const TOP: &[&str] = &["gateway", "admin", "api"];

/// Below the domains: they import no domain, no gateway and no HTTP.
const BELOW: &[&str] = &["live", "storage", "config", "error", "util"];

/// Edges that close a circle today, each with the reason and what removes
/// it; none is left (files and accounts hand their writes to the writer
/// through `storage::WriteQueue`). Every other module not in `TOP` or
/// `BELOW` is treated as a domain.
const ALLOWED_CYCLE_EDGES: &[(&str, &str, &str)] = &[];

/// The crate root and the binary: they compose every layer, so only the
/// rule on `rusqlite` applies to them.
const ROOT: &[&str] = &["lib.rs", "main.rs"];

/// The only place that may name `rusqlite`: the SQLite backend.
const SQLITE_BACKEND: &[&str] = &["storage/sqlite.rs", "storage/sqlite/"];

/// Files that may still hold SQL of their own while it moves behind the
/// storage traits; the list only shrinks, and is empty: every file outside
/// the backend is checked.
const SQL_NOT_YET_MOVED: &[&str] = &[];

/// Problems with the layering of `files` (path relative to `src/`, text);
/// `lib_rs` is the crate root, whose re-exports name modules.
fn check(files: &[(String, String)], lib_rs: &str) -> Vec<String> {
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|(path, _)| !ROOT.contains(&path.as_str()))
        .map(|(path, _)| top_module(path))
        .collect();
    let aliases = root_aliases(lib_rs, &modules);
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let from = top_module(path);
        let code = strip_comments(without_tests(text));
        let is_top = TOP.contains(&from.as_str());
        let is_below = BELOW.contains(&from.as_str());
        if !is_top && (code.contains("axum::") || code.contains("use axum")) {
            problems.push(format!("{path}: `{from}` uses axum; only the gateway, admin and api speak HTTP"));
        }
        let in_backend = SQLITE_BACKEND.iter().any(|b| path.starts_with(b));
        if !in_backend && !SQL_NOT_YET_MOVED.contains(&path.as_str()) && names_rusqlite(&code) {
            problems.push(format!(
                "{path}: names rusqlite; SQL belongs in storage/sqlite behind the storage traits"
            ));
        }
        if ROOT.contains(&path.as_str()) {
            // The root composes every layer and is not one.
            continue;
        }
        for name in crate_references(&code) {
            let to = match aliases.get(&name) {
                Some(owner) => owner.clone(),
                None if modules.contains(&name) => name,
                // Items of the crate root itself (`crate::Shared`): the root
                // composes every layer and is not a layer.
                None => continue,
            };
            if to == from {
                continue;
            }
            if !is_top && TOP.contains(&to.as_str()) {
                problems.push(format!("{path}: `{from}` imports `{to}`, which is above it"));
            }
            if is_below && !BELOW.contains(&to.as_str()) {
                problems.push(format!("{path}: `{from}` is below the domains and imports `{to}`"));
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    for (from, to, _) in ALLOWED_CYCLE_EDGES {
        if let Some(targets) = graph.get_mut(*from) {
            targets.remove(*to);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!("modules import each other in a circle: {}", cycle.join(" -> ")));
    }
    problems
}

/// `messaging/writer.rs` → `messaging`; `files.rs` → `files`.
fn top_module(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// The file up to its test module (`#[cfg(test)]` followed by `mod`).
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "#[cfg(test)]" && text[at + line.len()..].trim_start().starts_with("mod ") {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

/// Whether code names the `rusqlite` crate (a `use`, a path, a type).
fn names_rusqlite(code: &str) -> bool {
    code.match_indices("rusqlite").any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + "rusqlite".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Drops `//` comments (doc comments included: their links are not imports).
fn strip_comments(text: &str) -> String {
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first segment after every `crate::`, the names of a `crate::{a, b}`
/// group included.
fn crate_references(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `hutong_crate::`, not ours
        }
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        names.push(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(identifier(after));
        }
    }
    names
}

fn identifier(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Names the crate root re-exports from a module (`pub use messaging::writer;`
/// → `writer` belongs to `messaging`).
fn root_aliases(lib_rs: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    for statement in strip_comments(lib_rs).split(';') {
        let statement = statement.trim();
        let Some((_, path)) = statement.split_once("use ") else { continue };
        let Some((owner, rest)) = path.trim().split_once("::") else { continue };
        if !modules.contains(owner) {
            continue;
        }
        let rest = rest.trim();
        let items: Vec<&str> = match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(group) => group.split(',').collect(),
            None => vec![rest],
        };
        for item in items {
            // `a::b as c` introduces `c`; `a::b` introduces `b`.
            let item = item.trim();
            let name = match item.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => item.rsplit("::").next().unwrap_or(item),
            };
            if !name.is_empty() && name != "*" && name != "self" {
                aliases.insert(name.to_owned(), owner.to_owned());
            }
        }
    }
    aliases
}

/// One circle in `graph`, as the modules along it (the first repeated last).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).expect("a source file is UTF-8")));
        }
    }
}

#[test]
fn the_server_imports_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    // This file names the layers (and rusqlite) in its own text.
    files.retain(|(path, _)| path != "layering.rs");
    assert!(files.len() > 10, "found only {} source files under {}", files.len(), src.display());
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let problems = check(&files, &lib_rs);
    assert!(problems.is_empty(), "the layering is broken:\n{}", problems.join("\n"));
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

#[test]
fn a_domain_importing_the_gateway_admin_or_axum_is_refused() {
    let files = [
        file("gateway.rs", "use crate::messaging::handlers;"),
        file("admin.rs", "use axum::Router;"),
        file("messaging.rs", "pub mod writer;"),
        file("messaging/writer.rs", "use crate::{error::ServiceError, gateway::Connection};"),
        file("accounts.rs", "fn f(caller: crate::admin::Caller) -> u64 { caller.user_id }"),
        file("audit.rs", "use axum::Json;"),
        file("error.rs", ""),
    ];
    let problems = check(&files, "mod gateway;");
    let expected = [
        "messaging/writer.rs: `messaging` imports `gateway`",
        "accounts.rs: `accounts` imports `admin`",
        "audit.rs: `audit` uses axum",
        "modules import each other in a circle: gateway -> messaging -> gateway",
    ];
    for e in expected {
        assert!(problems.iter().any(|p| p.starts_with(e)), "no `{e}` in {problems:?}");
    }
    assert_eq!(problems.len(), expected.len(), "{problems:?}");
}

#[test]
fn a_circle_is_found_through_the_root_aliases() {
    let files = [
        file("directory.rs", "use crate::audit::record;"),
        // `crate::writer` is `messaging::writer`, re-exported by the root.
        file("audit.rs", "fn f() { crate::writer::submit(); }"),
        file("messaging/writer.rs", "// crate::accounts in a comment is no import\nuse crate::directory;"),
        file("accounts.rs", ""),
    ];
    let problems = check(&files, "pub(crate) use messaging::{handlers, writer};");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("audit -> messaging -> directory -> audit"), "{problems:?}");
}

#[test]
fn a_lower_layer_importing_a_domain_is_refused() {
    let files = [file("config.rs", "fn f() { crate::files::blob_root(); }"), file("files.rs", "")];
    let problems = check(&files, "");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("config.rs: `config` is below the domains"), "{problems:?}");
}

#[test]
fn sql_outside_the_sqlite_backend_is_refused() {
    let files = [
        file("accounts.rs", "use rusqlite::Connection;\nfn f(c: &Connection) {}"),
        file("live/hub.rs", "fn f() -> rusqlite::Result<()> { Ok(()) }"),
        // The writer once was exempt; it reaches the database through the traits too.
        file("messaging/writer.rs", "fn f(tx: &rusqlite::Transaction<'_>) {}"),
        // A comment or a test module may name it; the backend may use it.
        file(
            "util.rs",
            "// rusqlite is not used here\n#[cfg(test)]\nmod tests {\n    use rusqlite::Connection;\n}",
        ),
        file("storage/sqlite/accounts.rs", "use rusqlite::{params, Connection};"),
        file("storage/sqlite.rs", "use rusqlite::Connection;"),
    ];
    let problems = check(&files, "");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("accounts.rs: names rusqlite"), "{problems:?}");
    assert!(problems[1].starts_with("live/hub.rs: names rusqlite"), "{problems:?}");
    assert!(problems[2].starts_with("messaging/writer.rs: names rusqlite"), "{problems:?}");
}

#[test]
fn a_test_module_may_import_upward() {
    let files = [
        file("accounts.rs", "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::writer::Writer;\n}"),
        file("messaging/writer.rs", "use crate::accounts;"),
    ];
    let problems = check(&files, "pub use messaging::writer;");
    assert!(problems.is_empty(), "{problems:?}");
}
