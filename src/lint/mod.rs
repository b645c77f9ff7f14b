//! The lint engine: runs every registered rule over every statement of a migration set, in
//! order, with the file's state (transactions, objects created in the file, lock_timeout) and
//! the catalog of earlier migrations, then applies ignores and configured severities.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

mod zdm_runner;

pub use crate::analysis::{
    Cx, FileState, Finding, Level, LintOptions, Rule, Runner, Severity, Violation, lock_phrase,
    rules,
};

use crate::analysis::{ParsedFile, severity_of, walk};
use crate::catalog::Catalog;
use crate::parse::{Change, parse_statement};
use crate::source::{DirectiveKind, MigrationSet, Position, SourceFile, split_statements};

/// The result of linting: findings plus the counts reports show.
#[derive(Debug, Default)]
pub struct LintReport {
    pub findings: Vec<Finding>,
    pub files: usize,
    pub statements: usize,
    pub unrecognized: usize,
    /// The files read, for excerpts in reports: path and text.
    pub sources: Vec<(PathBuf, String)>,
}

impl LintReport {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn merge(&mut self, other: LintReport) {
        self.findings.extend(other.findings);
        self.files += other.files;
        self.statements += other.statements;
        self.unrecognized += other.unrecognized;
        self.sources.extend(other.sources);
    }
}

/// Lints the sets of one command. Sets are independent (each has its own catalog): several
/// are linted side by side, one set at a time each; a single set reads its files side by
/// side instead (see [`lint_set`]).
pub fn lint_sets(sets: &[MigrationSet], options: &LintOptions) -> LintReport {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reports = match sets {
        [set] => vec![lint_set(set, options)],
        _ => side_by_side(sets, cores, |set| lint_set_on(set, options, 1)),
    };
    let mut report = LintReport::default();
    for r in reports {
        report.merge(r);
    }
    report
}

/// Lints a migration set: earlier files build the catalog, each file is checked in order.
/// Splitting and parsing, most of the work and independent of the catalog, run first for all
/// files side by side; the catalog is then replayed and the rules run in the files' order.
pub fn lint_set(set: &MigrationSet, options: &LintOptions) -> LintReport {
    // A thread costs tens of microseconds to start; a small set (a file named alone, a
    // folder of a few) is read faster on this one.
    let bytes: usize = set
        .forward
        .iter()
        .chain(&set.down)
        .map(|f| f.text.len())
        .sum();
    let threads = if bytes < SIDE_BY_SIDE_FROM_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    lint_set_on(set, options, threads)
}

/// [`lint_set`], reading the files on up to `threads` threads.
fn lint_set_on(set: &MigrationSet, options: &LintOptions, threads: usize) -> LintReport {
    let mut report = LintReport::default();
    let mut catalog = Catalog::default();
    let forward: Vec<(usize, &SourceFile)> = set.forward.iter().enumerate().collect();
    let read = side_by_side(&forward, threads, |&(i, file)| {
        if set.is_context(i) {
            Read::Context(changes_of(file))
        } else {
            Read::Linted(ParsedFile::read(file))
        }
    });
    let downs: Vec<&SourceFile> = match options.down {
        Level::Off => Vec::new(),
        _ => set.down.iter().collect(),
    };
    let parsed_downs = side_by_side(&downs, threads, |file| ParsedFile::read(file));
    // A down migration runs against the schema its up produced: each is linted with a copy of
    // the catalog as it stands after the last up of the same or an earlier version.
    let mut downs = parsed_downs.into_iter().peekable();
    for ((_, file), read) in forward.into_iter().zip(read) {
        while let Some(down) = downs.next_if(|d| runs_before(d.file, file)) {
            report.merge(lint_down(down, &catalog, options));
        }
        match read {
            Read::Context(changes) => {
                for change in &changes {
                    catalog.apply(change);
                }
            }
            Read::Linted(parsed) if options.runner == Runner::Zdm => {
                let before = catalog.clone();
                let mut linted = lint_parsed(parsed, &mut catalog, options);
                zdm_runner::as_run_by_zdm(&mut linted.findings, file, before, options);
                report.merge(linted);
            }
            Read::Linted(parsed) => report.merge(lint_parsed(parsed, &mut catalog, options)),
        }
    }
    for down in downs {
        report.merge(lint_down(down, &catalog, options));
    }
    report
}

/// A file of the set, read: a context file's changes to replay, or a linted file's statements.
enum Read<'a> {
    Context(Vec<Change>),
    Linted(ParsedFile<'a>),
}

/// Sets of less SQL than this are read on one thread: about a millisecond of parsing.
const SIDE_BY_SIDE_FROM_BYTES: usize = 32 * 1024;

/// `read` of every item, in order, on up to `threads` threads (each takes a run of
/// consecutive items).
fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    read: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads < 2 || items.len() < 2 {
        return items.iter().map(&read).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let read = &read;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(read).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Lints a down file against a copy of the schema its up produced, as `[lint] down` says.
fn lint_down(down: ParsedFile, catalog: &Catalog, options: &LintOptions) -> LintReport {
    match options.down {
        Level::Off => LintReport::default(),
        Level::Error => lint_parsed(down, &mut catalog.clone(), options),
        Level::Warning => {
            let mut report = lint_parsed(down, &mut catalog.clone(), options);
            for finding in &mut report.findings {
                finding.severity = finding.severity.min(Severity::Warning);
            }
            report
        }
    }
}

/// Whether a down migration's schema is complete before `up` runs (its version is earlier).
fn runs_before(down: &SourceFile, up: &SourceFile) -> bool {
    match (&down.version, &up.version) {
        (Some(d), Some(u)) => d < u,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// What a file's statements change, to replay into the catalog without checking them.
fn changes_of(file: &SourceFile) -> Vec<Change> {
    split_statements(&file.text)
        .statements
        .iter()
        .map(parse_statement)
        .collect()
}

/// Lints one file, updating the catalog with what it does.
pub fn lint_file(file: &SourceFile, catalog: &mut Catalog, options: &LintOptions) -> LintReport {
    lint_parsed(ParsedFile::read(file), catalog, options)
}

/// Lints one file already split and parsed, updating the catalog with what it does.
fn lint_parsed(parsed: ParsedFile, catalog: &mut Catalog, options: &LintOptions) -> LintReport {
    let file = parsed.file;
    let mut report = LintReport {
        files: 1,
        statements: parsed.split.statements.len(),
        unrecognized: parsed.unrecognized(),
        ..LintReport::default()
    };
    report.findings = walk(&parsed, catalog, options, |_| {});
    let split = &parsed.split;
    let known: HashSet<&str> = rules::ALL.iter().map(|r| r.name).collect();

    // Directives that name unknown rules or kinds would silently do nothing: report them.
    let directives = split
        .file_directives
        .iter()
        .chain(split.statements.iter().flat_map(|s| &s.directives));
    for d in directives {
        let problem = match &d.kind {
            DirectiveKind::Ignore(names) | DirectiveKind::IgnoreFile(names) if names.is_empty() => {
                Some("zdm:ignore names no rule; write the rule to ignore, e.g. `-- zdm:ignore drop-column -- reason`".to_owned())
            }
            DirectiveKind::Ignore(names) | DirectiveKind::IgnoreFile(names) => names
                .iter()
                .find(|n| !known.contains(n.as_str()))
                .map(|n| format!("zdm:ignore names unknown rule `{n}`{}", suggestion(n))),
            DirectiveKind::Unknown(word) => Some(format!(
                "unknown directive `zdm:{word}`; known: ignore, ignore-file, backfill, down, allow-locking"
            )),
            _ => None,
        };
        let Some(message) = problem else { continue };
        let rule = &rules::invalid_directive::RULE;
        let Some(severity) = severity_of(rule, true, options) else {
            continue;
        };
        let text = &file.text[d.span.clone()];
        let end = Position {
            line: d.position.line,
            column: d.position.column + text.trim_end().chars().count(),
        };
        report.findings.push(Finding {
            path: file.path.clone(),
            start: d.position,
            end,
            span: d.span.start..d.span.start + text.trim_end().len(),
            rule: rule.name,
            severity,
            message,
            help: Some(rule.help.to_owned()),
        });
    }
    report
        .findings
        .sort_by(|a, b| (a.start, b.severity, a.rule).cmp(&(b.start, a.severity, b.rule)));
    report.sources.push((file.path.clone(), file.text.clone()));
    report
}

/// "; did you mean `drop-column`?" for a near miss.
fn suggestion(name: &str) -> String {
    rules::ALL
        .iter()
        .map(|r| (edit_distance(name, r.name), r.name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Lints SQL text as a single file after an optional earlier migration: for tests and docs.
pub fn lint_sql(setup: &str, sql: &str, options: &LintOptions) -> LintReport {
    let mut catalog = Catalog::default();
    let setup = SourceFile::from_text(Path::new("setup.sql"), setup.to_owned());
    for change in &changes_of(&setup) {
        catalog.apply(change);
    }
    lint_file(
        &SourceFile::from_text(Path::new("migration.sql"), sql.to_owned()),
        &mut catalog,
        options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_fired(setup: &str, sql: &str) -> Vec<(&'static str, Severity)> {
        lint_sql(setup, sql, &LintOptions::default())
            .findings
            .iter()
            .map(|f| (f.rule, f.severity))
            .collect()
    }

    #[test]
    fn ignores_silence_the_named_rule_only() {
        let sql = "SET lock_timeout = '2s';\n-- zdm:ignore drop-column -- column unused since v2\nALTER TABLE t DROP COLUMN c;\nALTER TABLE t DROP COLUMN d;";
        assert_eq!(rules_fired("", sql), vec![("drop-column", Severity::Error)]);
    }

    #[test]
    fn unknown_rule_in_ignore_is_a_finding() {
        let sql = "-- zdm:ignore drop-colum\nSELECT 1;";
        let report = lint_sql("", sql, &LintOptions::default());
        assert_eq!(report.findings[0].rule, "invalid-directive");
        assert!(
            report.findings[0]
                .message
                .contains("did you mean `drop-column`")
        );
    }

    #[test]
    fn configured_levels_apply() {
        let mut options = LintOptions::default();
        options.levels.insert("drop-column".into(), Level::Warning);
        options
            .levels
            .insert("require-lock-timeout".into(), Level::Off);
        let report = lint_sql("", "ALTER TABLE t DROP COLUMN c;", &options);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn never_panics_on_truncated_migrations() {
        let setup = "CREATE TABLE t (id int PRIMARY KEY, a varchar(10));";
        let sql = "SET lock_timeout = '1s';\nBEGIN;\nALTER TABLE t ADD COLUMN b int DEFAULT random()::int, ALTER COLUMN a TYPE text;\n\
                   -- zdm:ignore drop-column, nope -- why\nALTER TABLE t DROP COLUMN a;\nCOMMIT;\n\
                   CREATE UNIQUE INDEX CONCURRENTLY i ON t (b);\nALTER TABLE t ADD CONSTRAINT p PRIMARY KEY USING INDEX i;\n\
                   DROP INDEX CONCURRENTLY IF EXISTS j; REINDEX (VERBOSE) TABLE CONCURRENTLY t;\n\
                   ALTER TYPE e ADD VALUE 'x'; UPDATE t SET a = 'x'; DO $$ BEGIN END $$;";
        for (cut, _) in sql.char_indices() {
            let report = lint_sql(setup, &sql[..cut], &LintOptions::default());
            for f in &report.findings {
                assert!(f.start <= f.end, "{f:?}");
            }
        }
    }

    #[test]
    fn ddl_on_tables_created_in_the_same_file_is_harmless() {
        let sql = "CREATE TABLE t (id bigint PRIMARY KEY, a int);\n\
                   CREATE INDEX t_a ON t (a);\n\
                   ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0);\n\
                   ALTER TABLE t ALTER COLUMN a TYPE bigint;\n\
                   ALTER TABLE t RENAME COLUMN a TO b;";
        assert_eq!(rules_fired("", sql), vec![]);
    }
}
