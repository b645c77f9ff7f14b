//! The gate as a new user meets it: every file under `fixtures/hazards/dangerous` holds a
//! table-locking or breaking statement and must get the error-level findings its
//! `-- expect: rule@line` header names; every file under `fixtures/hazards/safe` is the safe form
//! and must get no error. Each file is linted alone, as `zdm lint <file>` does (its earlier
//! siblings are replayed for context).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use zdm::lint::{LintOptions, Severity, lint_set};
use zdm::source::MigrationSet;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hazards")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn errors(path: &Path) -> BTreeSet<String> {
    let set = MigrationSet::load(path, None).unwrap();
    lint_set(&set, &LintOptions::default())
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}@{}", f.rule, f.start.line))
        .collect()
}

#[test]
fn dangerous_statements_get_errors_on_their_lines() {
    let mut failures = Vec::new();
    for path in files("dangerous") {
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(expect) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- expect: "))
        else {
            continue; // context for later files
        };
        let expected: BTreeSet<String> = expect.split(", ").map(str::to_owned).collect();
        let got = errors(&path);
        if got != expected {
            failures.push(format!(
                "{}: expected {expected:?}, got {got:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn safe_forms_get_no_errors() {
    let mut failures = Vec::new();
    for path in files("safe") {
        let got = errors(&path);
        if !got.is_empty() {
            failures.push(format!("{}: {got:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
