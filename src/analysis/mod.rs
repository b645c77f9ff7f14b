//! The one pass over a migration file that lint and plan share.
//!
//! A file is read once ([`ParsedFile`]: split into statements, each parsed into a
//! [`Change`], the SQL written inside `DO` blocks found), then walked in order ([`walk`]): each
//! statement is classified against the catalog and the file's state before it (transactions,
//! objects created earlier in the file), every rule checks it, and its findings are settled
//! (ignores, configured levels). The consumer sees each statement with all of that
//! ([`Facts`]) before the statement's effect is applied, so `zdm lint` and `zdm plan` never
//! disagree on what a statement is or does.

pub mod do_block;
mod rule;
pub mod rules;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

pub use rule::{Cx, FileState, Rule, Severity, Violation, lock_phrase};

use crate::catalog::Catalog;
use crate::classify::{Classification, Env, classify};
use crate::parse::{Change, parse_statement};
use crate::source::{DirectiveKind, Position, SourceFile, SplitFile, Statement, split_statements};

/// How a rule is configured in `zdm.toml` `[lint.rules]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Off,
}

/// The tool that runs the migrations, which decides what the lint gate reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// Another tool runs the SQL as written (sqlx, Flyway, …): every hazard is reported.
    #[default]
    Other,
    /// `zdm expand` / `zdm contract` run it: what zdm plans online is a note.
    Zdm,
}

/// Analysis settings after config and flags are merged.
#[derive(Debug, Clone)]
pub struct LintOptions {
    pub pg_version: u32,
    pub levels: BTreeMap<String, Level>,
    /// Who runs the migrations: with zdm, a statement it plans online is a note on how it
    /// runs it rather than a hazard.
    pub runner: Runner,
    /// How down (revert) files are reported: `Error` as any file, `Warning` with their errors
    /// lowered to warnings, `Off` not linted. A down file runs only to undo a release, often
    /// on a database being rebuilt, and many teams do not gate on it.
    pub down: Level,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            pg_version: 14,
            levels: BTreeMap::new(),
            runner: Runner::Other,
            down: Level::Error,
        }
    }
}

/// One finding, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub start: Position,
    pub end: Position,
    /// Byte range in the file, for excerpts.
    pub span: Range<usize>,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
}

/// A statement of the file, or an SQL statement written inside one of its `DO` blocks.
#[derive(Debug, Clone)]
pub struct Unit {
    pub stmt: Statement,
    pub change: Change,
    pub in_do_block: bool,
}

/// A migration file read once: its statements, parsed, with what their `DO` blocks hold.
pub struct ParsedFile<'a> {
    pub file: &'a SourceFile,
    pub split: SplitFile,
    /// Every statement followed by the statements of its `DO` block, if any.
    pub units: Vec<Unit>,
}

impl<'a> ParsedFile<'a> {
    pub fn read(file: &'a SourceFile) -> ParsedFile<'a> {
        let split = split_statements(&file.text);
        let mut units = Vec::new();
        for stmt in &split.statements {
            let change = parse_statement(stmt);
            let nested = do_block::analyze(stmt, &change, &file.text).statements;
            units.push(Unit {
                stmt: stmt.clone(),
                change,
                in_do_block: false,
            });
            units.extend(nested.into_iter().map(|(stmt, change)| Unit {
                stmt,
                change,
                in_do_block: true,
            }));
        }
        ParsedFile { file, split, units }
    }

    /// The file's own statements, without those inside `DO` blocks.
    pub fn statements(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(|u| !u.in_do_block)
    }

    /// How many of the file's own statements zdm does not understand.
    pub fn unrecognized(&self) -> usize {
        self.statements()
            .filter(|u| matches!(u.change, Change::Unrecognized { .. }))
            .count()
    }
}

/// One of the file's own statements as the pass sees it, before its effect is applied.
pub struct Facts<'a> {
    /// Its position among the file's own statements.
    pub index: usize,
    pub stmt: &'a Statement,
    pub change: &'a Change,
    pub class: &'a Classification,
    /// The file's state before it.
    pub state: &'a FileState,
    /// The schema before it.
    pub catalog: &'a Catalog,
    /// Its findings and those of the statements in its `DO` block, settled (ignores and
    /// configured levels applied).
    pub findings: &'a [Finding],
}

/// Walks the file's statements in order, updating `catalog` with what they do, and calls
/// `visit` for each of the file's own statements. Returns every finding, in statement order.
pub fn walk(
    parsed: &ParsedFile,
    catalog: &mut Catalog,
    options: &LintOptions,
    mut visit: impl FnMut(&Facts),
) -> Vec<Finding> {
    let file = parsed.file;
    let changes: Vec<Change> = parsed.units.iter().map(|u| u.change.clone()).collect();
    let mut file_ignores: HashSet<String> = HashSet::new();
    for d in &parsed.split.file_directives {
        if let DirectiveKind::IgnoreFile(names) = &d.kind {
            file_ignores.extend(names.iter().cloned());
        }
    }
    let mut all = Vec::new();
    let mut state = FileState::for_file(file);
    // A statement with a DO block is visited after the statements of its block are checked
    // (their findings are its own), with the schema and state from before it.
    let mut open: Option<Open> = None;
    let mut index = 0;
    for (i, unit) in parsed.units.iter().enumerate() {
        if !unit.in_do_block
            && let Some(o) = open.take()
        {
            o.visit(&mut visit, &parsed.units);
        }
        let is_new = |n: &crate::parse::Name| state.is_new(n);
        let env = Env {
            pg_version: options.pg_version,
            catalog,
            is_new: &is_new,
        };
        let class = classify(&unit.change, &env);
        let cx = Cx {
            stmt: &unit.stmt,
            change: &unit.change,
            class: &class,
            file: &state,
            catalog,
            pg_version: options.pg_version,
            later: &changes[i + 1..],
            is_last: i + 1 == changes.len(),
            file_text: &file.text,
        };
        let mut findings = Vec::new();
        for rule in rules::ALL {
            for v in (rule.check)(&cx) {
                if let Some(f) = settle(file, &unit.stmt, rule, v, &file_ignores, options) {
                    findings.push(f);
                }
            }
        }
        all.extend(findings.iter().cloned());
        let has_block = parsed.units.get(i + 1).is_some_and(|u| u.in_do_block);
        if unit.in_do_block {
            if let Some(o) = &mut open {
                o.findings.extend(findings);
            }
        } else if has_block {
            open = Some(Open {
                index,
                unit: i,
                class: class.clone(),
                state: state.clone(),
                catalog: catalog.clone(),
                findings,
            });
            index += 1;
        } else {
            visit(&Facts {
                index,
                stmt: &unit.stmt,
                change: &unit.change,
                class: &class,
                state: &state,
                catalog,
                findings: &findings,
            });
            index += 1;
        }
        state.apply(&unit.change, &class, unit.stmt.start.line);
        catalog.apply(&unit.change);
    }
    if let Some(o) = open.take() {
        o.visit(&mut visit, &parsed.units);
    }
    all
}

/// A statement with a DO block whose visit waits for the block's findings.
struct Open {
    index: usize,
    unit: usize,
    class: Classification,
    state: FileState,
    catalog: Catalog,
    findings: Vec<Finding>,
}

impl Open {
    fn visit(self, visit: &mut impl FnMut(&Facts), units: &[Unit]) {
        let unit = &units[self.unit];
        visit(&Facts {
            index: self.index,
            stmt: &unit.stmt,
            change: &unit.change,
            class: &self.class,
            state: &self.state,
            catalog: &self.catalog,
            findings: &self.findings,
        });
    }
}

/// A rule's violation as a finding, or `None` when an ignore or the configuration silences it.
fn settle(
    file: &SourceFile,
    stmt: &Statement,
    rule: &'static Rule,
    v: Violation,
    file_ignores: &HashSet<String>,
    options: &LintOptions,
) -> Option<Finding> {
    let ignored = file_ignores.contains(rule.name)
        || stmt.directives.iter().any(|d| {
            matches!(&d.kind, DirectiveKind::Ignore(names) if names.iter().any(|n| n == rule.name))
        });
    if ignored {
        return None;
    }
    let severity = severity_of(rule, v.certain, options)?;
    Some(Finding {
        path: file.path.clone(),
        start: stmt.start,
        end: stmt.end,
        span: stmt.span.clone(),
        rule: rule.name,
        severity,
        message: v.message,
        help: Some(rule.help.to_owned()).filter(|h| !h.is_empty()),
    })
}

/// A rule's severity after the configuration; `None` when it is off. An uncertain violation
/// is at most a warning.
pub fn severity_of(rule: &Rule, certain: bool, options: &LintOptions) -> Option<Severity> {
    let configured = match options.levels.get(rule.name) {
        Some(Level::Off) => return None,
        Some(Level::Error) => Severity::Error,
        Some(Level::Warning) => Severity::Warning,
        None => rule.severity,
    };
    Some(if certain {
        configured
    } else {
        Severity::Warning
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement is visited once, with the findings of the statements in its DO block, and
    /// before its own effect on the catalog.
    #[test]
    fn statements_are_visited_once_with_their_do_block_findings() {
        let catalog_sql = "CREATE TABLE t (id int PRIMARY KEY, a int);";
        let mut catalog = Catalog::from_sql(catalog_sql);
        let file = SourceFile::from_text(
            std::path::Path::new("0002_x.sql"),
            "DO $$ BEGIN CREATE INDEX t_a ON t (a); END $$;\nALTER TABLE t ADD COLUMN b int;\nSELECT 1;"
                .to_owned(),
        );
        let parsed = ParsedFile::read(&file);
        assert_eq!(
            parsed.units.len(),
            4,
            "three statements and one inside the DO block"
        );
        let mut seen = Vec::new();
        let all = walk(&parsed, &mut catalog, &LintOptions::default(), |f| {
            let has_b = f
                .catalog
                .table(&crate::parse::Name::new(None, "t"))
                .unwrap()
                .column("b")
                .is_some();
            seen.push((
                f.index,
                f.findings.iter().map(|x| x.rule).collect::<Vec<_>>(),
                has_b,
            ));
        });
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, 0);
        assert!(seen[0].1.contains(&"require-concurrent-index"), "{seen:?}");
        assert!(!seen[1].2, "the ADD COLUMN is visited before it applies");
        assert!(seen[2].2);
        assert!(all.iter().any(|f| f.rule == "require-concurrent-index"));
    }
}
