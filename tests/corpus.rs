//! Lints every project of the shared migration corpus (`../shared/corpus`, when it is there):
//! no panic, and at most 0.1% of statements unrecognized. Prints the figures and the time.
//! Run alone with `cargo test --release --test corpus -- --nocapture`.

use std::path::Path;
use std::time::Instant;

use zdm::lint::{LintOptions, lint_set};
use zdm::source::MigrationSet;

#[test]
fn corpus_is_understood() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("skipped: {} not found", corpus.display());
        return;
    }
    let mut projects: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    projects.sort();
    let options = LintOptions::default();
    let (mut files, mut statements, mut unrecognized, mut findings) = (0, 0, 0, 0);
    let started = Instant::now();
    for project in &projects {
        let t = Instant::now();
        let set = MigrationSet::load(project, None).unwrap();
        let report = lint_set(&set, &options);
        eprintln!(
            "{:<14} {:>4} files {:>5} statements {:>3} unrecognized {:>5} findings  {:>6.0} ms",
            project.file_name().unwrap().to_string_lossy(),
            report.files,
            report.statements,
            report.unrecognized,
            report.findings.len(),
            t.elapsed().as_secs_f64() * 1000.0
        );
        for f in report
            .findings
            .iter()
            .filter(|f| f.rule == "unrecognized-statement")
        {
            eprintln!(
                "  unrecognized: {}:{}: {}",
                f.path.display(),
                f.start.line,
                f.message
            );
        }
        files += report.files;
        statements += report.statements;
        unrecognized += report.unrecognized;
        findings += report.findings.len();
    }
    let elapsed = started.elapsed();
    let share = unrecognized as f64 / statements.max(1) as f64;
    eprintln!(
        "total: {files} files, {statements} statements, {unrecognized} unrecognized ({:.3}%), {findings} findings, linted in {:.2} s",
        share * 100.0,
        elapsed.as_secs_f64()
    );
    assert!(
        statements > 10_000,
        "expected the whole corpus, read {statements} statements"
    );
    assert!(
        share <= 0.001,
        "{unrecognized} of {statements} statements unrecognized (more than 0.1%)"
    );
}

/// Plans every file of the corpus, in order, with the catalog of the files before it: a plan
/// either succeeds or refuses with a reason and a line, and never panics.
#[test]
fn planner_never_panics_on_the_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("skipped: {} not found", corpus.display());
        return;
    }
    let options = LintOptions::default();
    let (mut planned, mut refused) = (0, 0);
    for project in std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        let set = MigrationSet::load(&project, None).unwrap();
        let mut catalog = zdm::catalog::Catalog::default();
        for file in &set.forward {
            let before = catalog.clone();
            match zdm::plan::plan_file(file, &mut catalog, &options) {
                Ok(plan) => {
                    planned += 1;
                    // Everything zdm generates must itself be SQL zdm understands.
                    for (name, text) in zdm::plan::render_sql_files(&plan) {
                        for stmt in zdm::source::split_statements(&text).statements {
                            let change = zdm::parse::parse_statement(&stmt);
                            assert!(
                                !matches!(change, zdm::parse::Change::Unrecognized { .. }),
                                "{name} of {}: {}",
                                file.path.display(),
                                stmt.text
                            );
                        }
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(
                        e.to_string().contains(&format!("{}:", file.path.display())),
                        "{e}"
                    );
                    // Keep the schema moving as the migration would.
                    catalog = before;
                    for stmt in zdm::source::split_statements(&file.text).statements {
                        catalog.apply(&zdm::parse::parse_statement(&stmt));
                    }
                }
            }
        }
    }
    eprintln!("planned {planned} corpus files, refused {refused} with a reason");
    assert!(planned > 0);
}
