//! The module graph runs one way: no two modules of `src/` import each other (siblings
//! compared at the level where their paths part: `plan::model` and `plan::order`, or `parse`
//! and `sql`). A module may use its ancestors' re-exports and its own children. Test code
//! (after `#[cfg(test)]`) is not counted. See docs/architecture.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of the library with its source text, test code cut off.
fn modules() -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("bin") && !path.ends_with("snapshots") {
                    dirs.push(path);
                }
                continue;
            }
            let Some(rel) = path.strip_prefix(&src).unwrap().to_str() else {
                continue;
            };
            let Some(rel) = rel.strip_suffix(".rs") else {
                continue;
            };
            let mut module: Module = rel.split('/').map(str::to_owned).collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            out.insert(module, code);
        }
    }
    out
}

/// The paths after each `prefix` in `code` (`crate::plan::ops::Step` → plan, ops, Step).
fn paths<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    code.match_indices(prefix).filter_map(move |(i, _)| {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &code[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        Some(rest[..end].split("::").filter(|p| !p.is_empty()).collect())
    })
}

#[test]
fn no_two_modules_import_each_other() {
    let modules = modules();
    let mut edges: BTreeSet<(Module, Module)> = BTreeSet::new();
    for (module, code) in &modules {
        let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
        let mut targets: Vec<Module> = Vec::new();
        for path in paths(code, "crate::") {
            targets.push(path.iter().map(|s| s.to_string()).collect());
        }
        for path in paths(code, "super::") {
            let mut full = parent.clone();
            full.extend(path.iter().map(|s| s.to_string()));
            targets.push(full);
        }
        for target in targets {
            // The longest prefix that is a module.
            let Some(to) = (1..=target.len())
                .rev()
                .map(|k| target[..k].to_vec())
                .find(|m| modules.contains_key(m))
            else {
                continue;
            };
            if module.starts_with(&to) || to.starts_with(module) {
                continue;
            }
            let common = module.iter().zip(&to).take_while(|(a, b)| a == b).count();
            edges.insert((
                module[..=common].to_vec(),
                to[..=common.min(to.len() - 1)].to_vec(),
            ));
        }
    }
    let mutual: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
        .collect();
    assert!(
        mutual.is_empty(),
        "modules that import each other (move what both need into a third): {mutual:?}"
    );
    assert!(edges.len() > 20, "the import graph was not read: {edges:?}");
}
