//! Output formats for lint findings: human (excerpt with underline, colour on a terminal),
//! json, GitHub workflow annotations and SARIF 2.1.0.

pub mod rule_docs;

use std::collections::HashMap;
use std::io;
use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, Config, termcolor::WriteColor};
use serde_json::json;

use crate::lint::{Finding, LintReport, Severity, rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
    Sarif,
}

/// Renders a report in a format.
pub fn write_report(
    out: &mut dyn WriteColor,
    report: &LintReport,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Human => write_human(out, report),
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json_value(report))?
        ),
        Format::Github => write_github(out, report),
        Format::Sarif => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&sarif_value(report))?
        ),
    }
}

fn write_human(out: &mut dyn WriteColor, report: &LintReport) -> io::Result<()> {
    let mut files = SimpleFiles::new();
    let ids: Vec<usize> = report
        .sources
        .iter()
        .map(|(path, text)| files.add(path.display().to_string(), text.as_str()))
        .collect();
    // Findings find their file by path through a map: a search of the list per finding made
    // a corpus's report quadratic (a third of linting lemmy's 600 files).
    let mut index: HashMap<&Path, usize> = HashMap::new();
    for (i, (path, _)) in report.sources.iter().enumerate() {
        index.entry(path.as_path()).or_insert(i);
    }
    let config = Config::default();
    for f in &report.findings {
        let Some(&i) = index.get(f.path.as_path()) else {
            continue;
        };
        let diagnostic = match f.severity {
            Severity::Error => Diagnostic::error(),
            Severity::Warning => Diagnostic::warning(),
            Severity::Note => Diagnostic::note(),
        }
        .with_message(&f.message)
        .with_code(f.rule)
        .with_labels(vec![Label::primary(
            ids[i],
            excerpt_span(f, &report.sources[i].1),
        )])
        .with_notes(
            f.help
                .iter()
                .map(|h| format!("help: {h}"))
                .chain([format!("more: zdm explain {}", f.rule)])
                .collect(),
        );
        term::emit_to_write_style(out, &config, &files, &diagnostic).map_err(io::Error::other)?;
    }
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let notes = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Note)
        .count();
    let warnings = report.findings.len() - errors - notes;
    write!(
        out,
        "{} file{}, {} statement{}: {errors} error{}, {warnings} warning{}",
        report.files,
        plural(report.files),
        report.statements,
        plural(report.statements),
        plural(errors),
        plural(warnings)
    )?;
    if notes > 0 {
        write!(out, ", {notes} note{} on how zdm runs them", plural(notes))?;
    }
    writeln!(out)
}

/// Underlines at most the statement's first three lines, so long statements stay readable.
fn excerpt_span(f: &Finding, text: &str) -> std::ops::Range<usize> {
    let span = f.span.clone();
    let body = &text[span.clone()];
    match body.match_indices('\n').nth(2) {
        Some((i, _)) => span.start..span.start + body[..i].trim_end().len(),
        None => span,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Human output without colour, for snapshots and tests.
pub fn render_human_plain(report: &LintReport) -> String {
    let mut buffer = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
    write_human(&mut buffer, report).expect("writing to memory");
    String::from_utf8(buffer.into_inner()).expect("utf-8 output")
}

/// The documented JSON shape (`version` 1).
pub fn json_value(report: &LintReport) -> serde_json::Value {
    let findings: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "path": f.path.display().to_string(),
                "line": f.start.line,
                "column": f.start.column,
                "end_line": f.end.line,
                "end_column": f.end.column,
                "rule": f.rule,
                "severity": f.severity,
                "message": f.message,
                "help": f.help,
            })
        })
        .collect();
    json!({
        "version": 1,
        "files": report.files,
        "statements": report.statements,
        "unrecognized": report.unrecognized,
        "findings": findings,
    })
}

/// GitHub Actions workflow commands: each finding becomes an annotation on the PR diff.
/// <https://docs.github.com/actions/reference/workflow-commands-for-github-actions>
fn write_github(out: &mut dyn WriteColor, report: &LintReport) -> io::Result<()> {
    for f in &report.findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let mut message = f.message.clone();
        if let Some(help) = &f.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        writeln!(
            out,
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            escape_property(&f.path.display().to_string()),
            f.start.line,
            f.start.column,
            f.end.line,
            f.end.column,
            escape_property(&format!("zdm {}", f.rule)),
            escape_data(&message)
        )?;
    }
    Ok(())
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// SARIF 2.1.0, for GitHub code scanning and other static-analysis dashboards.
pub fn sarif_value(report: &LintReport) -> serde_json::Value {
    let rule_list: Vec<_> = rules::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.name,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.why },
                "help": { "text": r.help },
                "defaultConfiguration": { "level": match r.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Note => "note" } },
            })
        })
        .collect();
    let results: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let mut text = f.message.clone();
            if let Some(help) = &f.help {
                text.push_str("\nhelp: ");
                text.push_str(help);
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": rules::ALL.iter().position(|r| r.name == f.rule),
                "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Note => "note" },
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.path.display().to_string().replace('\\', "/") },
                        "region": {
                            "startLine": f.start.line,
                            "startColumn": f.start.column,
                            "endLine": f.end.line,
                            "endColumn": f.end.column,
                        }
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "zdm",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rule_list,
                }
            },
            "results": results,
        }]
    })
}
