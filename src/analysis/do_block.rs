//! Seeing into `DO $$ … $$` blocks. Migrations often guard DDL with PL/pgSQL
//! (`IF NOT EXISTS (…) THEN ALTER TABLE … END IF;`); the SQL statements written in the body run
//! in the migration's transaction and take the same locks as at top level, so lint checks them
//! at their own lines. Dynamic SQL (`EXECUTE`) and statements zdm does not understand stay
//! opaque, which the `opaque-do-block` rule reports.

use sqlparser::tokenizer::{Span, Token};

use crate::parse::{Change, parse_statement};
use crate::source::{SqlToken, Statement, position_at, split_statements};

/// Keywords that start an SQL statement inside PL/pgSQL.
const HEADS: &[&str] = &[
    "ALTER", "CREATE", "DROP", "TRUNCATE", "UPDATE", "DELETE", "INSERT", "REINDEX", "CLUSTER",
    "VACUUM", "LOCK", "REFRESH", "COMMENT", "GRANT", "REVOKE",
];

/// Keywords after which a PL/pgSQL block may start a statement in the same `;` piece.
const OPENERS: &[&str] = &["THEN", "ELSE", "LOOP", "BEGIN"];

/// What a DO block's body holds.
#[derive(Debug, Default)]
pub struct DoBody {
    /// SQL statements written in the body, located in the file.
    pub statements: Vec<(Statement, Change)>,
    /// Why parts of the body stay unseen (dynamic SQL, statements zdm does not understand).
    pub opaque: Vec<String>,
}

/// Finds the SQL statements in a DO block. `file_text` is the whole file, for positions.
pub fn analyze(stmt: &Statement, change: &Change, file_text: &str) -> DoBody {
    let mut out = DoBody::default();
    let Change::DoBlock { body } = change else {
        return out;
    };
    let Some((offset, body)) = body else {
        out.opaque
            .push("its body is not a dollar-quoted string".into());
        return out;
    };
    let body_start = stmt.span.start + offset;
    for inner in split_statements(body).statements {
        let words: Vec<Option<String>> = inner.tokens.iter().map(SqlToken::keyword).collect();
        if words.iter().any(|w| w.as_deref() == Some("EXECUTE")) {
            let line = position_at(file_text, body_start + inner.span.start).line;
            out.opaque
                .push(format!("dynamic SQL (EXECUTE) at line {line}"));
            continue;
        }
        let mut depth = 0i32;
        let head = inner.tokens.iter().enumerate().position(|(i, t)| {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            let opens = i == 0
                || words[i - 1]
                    .as_deref()
                    .is_some_and(|w| OPENERS.contains(&w));
            depth == 0 && opens && words[i].as_deref().is_some_and(|w| HEADS.contains(&w))
        });
        let Some(head) = head else { continue };
        let cut = inner.tokens[head].range.start;
        let start = body_start + inner.span.start + cut;
        let end = body_start + inner.span.end;
        let embedded = Statement {
            text: inner.text[cut..].to_owned(),
            span: start..end,
            start: position_at(file_text, start),
            end: position_at(file_text, end),
            tokens: inner.tokens[head..]
                .iter()
                .map(|t| SqlToken {
                    token: t.token.clone(),
                    range: t.range.start - cut..t.range.end - cut,
                    // Body-relative locations would mislead; nested parse errors are not shown.
                    span: Span::empty(),
                })
                .collect(),
            directives: stmt.directives.clone(),
            tokenize_error: None,
        };
        let change = parse_statement(&embedded);
        if matches!(change, Change::Unrecognized { .. }) {
            out.opaque.push(format!(
                "a statement zdm does not understand at line {}",
                embedded.start.line
            ));
            continue;
        }
        out.statements.push((embedded, change));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, lint_sql};

    #[test]
    fn statements_in_do_blocks_are_checked_at_their_lines() {
        let sql = "DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'i') THEN\n    CREATE INDEX i ON users (email);\n  END IF;\n  ALTER TABLE users ADD COLUMN c int;\nEND\n$$;";
        let report = lint_sql(
            "CREATE TABLE users (id int, email text);",
            sql,
            &LintOptions::default(),
        );
        let rules: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.rule, f.start.line))
            .collect();
        assert!(
            rules.contains(&("require-concurrent-index", 4)),
            "{rules:?}"
        );
        assert!(
            !rules.iter().any(|(r, _)| *r == "opaque-do-block"),
            "{rules:?}"
        );
        let f = report
            .findings
            .iter()
            .find(|f| f.rule == "require-concurrent-index")
            .unwrap();
        assert_eq!(&sql[f.span.clone()], "CREATE INDEX i ON users (email)");
    }

    #[test]
    fn dynamic_sql_stays_opaque() {
        let sql = "DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD c int', 't'); END $$;";
        let report = lint_sql("", sql, &LintOptions::default());
        let f = report
            .findings
            .iter()
            .find(|f| f.rule == "opaque-do-block")
            .unwrap();
        assert!(
            f.message.contains("dynamic SQL (EXECUTE) at line 1"),
            "{}",
            f.message
        );
    }
}
