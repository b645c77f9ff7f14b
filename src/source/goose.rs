//! goose keeps a migration's up and down in one file, in sections annotated `-- +goose Up` and
//! `-- +goose Down`; `-- +goose StatementBegin` / `StatementEnd` enclose a statement that holds
//! semicolons (a function body, a DO block), which zdm's splitter reads as one statement
//! anyway; `-- +goose NO TRANSACTION` runs the whole file outside a transaction.
//! <https://pressly.github.io/goose/documentation/annotations/>
//!
//! Only the annotated sections run: text before `-- +goose Up` is not part of either.
//! `-- +goose ENVSUB ON` substitutes environment variables into the SQL when goose runs it,
//! which zdm cannot know, so such a file is refused.

use std::path::Path;

use super::{Direction, SourceError, SourceFile, sections};

/// A goose annotation of a line, lower-cased (`up`, `down`, `statementbegin`,
/// `no transaction`, `envsub on`…), or `None` for any other line.
fn annotation(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("+goose")?;
    Some(rest.trim().to_lowercase())
}

/// Whether a file is a goose migration: it has an up section.
pub fn is_goose_file(text: &str) -> bool {
    text.lines().any(|l| annotation(l).as_deref() == Some("up"))
}

/// Splits a goose file into its up and down sections, both outside a transaction when the
/// file says `-- +goose NO TRANSACTION`.
pub fn split_sections(file: SourceFile) -> Result<Vec<SourceFile>, SourceError> {
    let mut no_transaction = false;
    for (i, line) in file.text.lines().enumerate() {
        match annotation(line).as_deref() {
            Some("no transaction") => no_transaction = true,
            Some("envsub on") => {
                return Err(SourceError::Unsupported {
                    path: file.path.clone(),
                    line: i + 1,
                    what: "`-- +goose ENVSUB ON` fills in environment variables when goose runs the file, which zdm cannot know; write the values into the SQL".to_owned(),
                });
            }
            _ => {}
        }
    }
    let is = |word: &'static str| move |line: &str| annotation(line).as_deref() == Some(word);
    let (up, down) = match sections::split(&file.text, is("up"), is("down"), false) {
        Some((up, down)) => (up, Some(down)),
        None => (file.text.clone(), None),
    };
    let mut out = vec![SourceFile {
        text: up,
        no_transaction,
        ..file.clone()
    }];
    if let Some(down) = down {
        out.push(SourceFile {
            text: down,
            no_transaction,
            direction: Direction::Down,
            ..file
        });
    }
    Ok(out)
}

/// A goose migration written in Go (`00002_backfill.go`) in the folder: zdm reads SQL only, so
/// the folder's order would have a hole.
pub fn go_migration_in(dir: &Path) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.into_iter().find(|p| {
        p.extension().is_some_and(|e| e == "go")
            && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(|c: char| c.is_ascii_digit()) && !n.ends_with("_test.go")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split_statements;

    #[test]
    fn up_and_down_sections_statement_blocks_and_no_transaction() {
        let text = "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n-- +goose StatementEnd\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n\n-- +goose Down\nDROP INDEX CONCURRENTLY t_a;\nDROP FUNCTION f();\n";
        let file = SourceFile::from_text(Path::new("00002_f.sql"), text.to_owned());
        let parts = split_sections(file).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.no_transaction));
        let up = split_statements(&parts[0].text).statements;
        assert_eq!(up.len(), 2, "the function is one statement");
        assert!(!parts[0].text.contains("DROP"));
        assert_eq!(parts[1].direction, Direction::Down);
        let down = split_statements(&parts[1].text).statements;
        assert_eq!((down.len(), down[0].start.line), (2, 9));
    }

    #[test]
    fn envsub_is_refused_with_its_line() {
        let file = SourceFile::from_text(
            Path::new("00003_x.sql"),
            "-- +goose Up\n-- +goose ENVSUB ON\nCREATE ROLE ${ROLE};\n".to_owned(),
        );
        let e = split_sections(file).unwrap_err().to_string();
        assert!(e.starts_with("00003_x.sql:2: "), "{e}");
    }
}
