//! Turning one source statement into a [`Change`]: sqlparser (PostgreSqlDialect) first, then
//! the token recognizer for the forms sqlparser rejects, else [`Change::Unrecognized`].
//!
//! Statements are never re-printed from the AST for execution; sqlparser's `Display` is only
//! used here to read types and default expressions for analysis.

mod convert;
mod definition;
mod fold;
mod model;
mod recognize;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

pub use definition::{ConstraintDefinition, IndexDefinition, Substitute};
pub use model::*;

use crate::source::{SqlToken, Statement};

/// Understands one statement. Never fails: what cannot be understood is `Unrecognized`.
pub fn parse_statement(stmt: &Statement) -> Change {
    if let Some(error) = &stmt.tokenize_error {
        return Change::Unrecognized {
            reason: format!("cannot read the SQL: {error}"),
        };
    }
    // The statement's tokens are already there: parsing them saves a second tokenizer pass.
    let tokens = stmt
        .tokens
        .iter()
        .map(|t| TokenWithSpan {
            token: t.token.clone(),
            span: t.span,
        })
        .collect();
    let parsed = Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements();
    let error = match finish(parsed) {
        Ok(Some(parsed)) => return convert::convert(&parsed),
        Ok(None) => {
            return Change::Other {
                what: "empty statement".into(),
                creates: None,
            };
        }
        Err(e) => e,
    };
    if let Some(line) = joined_statement_line(stmt) {
        return Change::Unrecognized {
            reason: format!(
                "a second statement seems to start at line {line} without a `;` before it"
            ),
        };
    }
    if let Some(change) = create_table_with_not_null_constraints(stmt) {
        return change;
    }
    let alter_action = |tokens: &[SqlToken]| -> Option<AlterAction> {
        let (first, last) = (tokens.first()?, tokens.last()?);
        let text = format!(
            "ALTER TABLE _zdm_ {}",
            &stmt.text[first.range.start..last.range.end]
        );
        match parse_one(&text) {
            Ok(Some(sqlparser::ast::Statement::AlterTable(at))) if at.operations.len() == 1 => {
                match convert::convert(&sqlparser::ast::Statement::AlterTable(at)) {
                    Change::AlterTable { mut actions, .. } => actions.pop(),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    recognize::recognize(&stmt.tokens, &alter_action)
        .unwrap_or(Change::Unrecognized { reason: error })
}

/// Parses text holding at most one statement.
fn parse_one(text: &str) -> Result<Option<sqlparser::ast::Statement>, String> {
    finish(
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements()),
    )
}

/// At most one statement from a parse, with sqlparser's error as a message.
fn finish(
    parsed: Result<Vec<sqlparser::ast::Statement>, sqlparser::parser::ParserError>,
) -> Result<Option<sqlparser::ast::Statement>, String> {
    let mut parsed = parsed.map_err(|e| {
        let msg = e.to_string();
        msg.strip_prefix("sql parser error: ")
            .unwrap_or(&msg)
            .to_owned()
    })?;
    match parsed.len() {
        0 => Ok(None),
        1 => Ok(parsed.pop()),
        n => Err(format!(
            "{n} statements where one was expected (a missing `;`?)"
        )),
    }
}

/// Where a statement sqlparser rejected seems to contain a second one: a statement keyword
/// that starts a line outside parentheses, the usual shape of a forgotten `;`.
fn joined_statement_line(stmt: &Statement) -> Option<usize> {
    const HEADS: &[&str] = &[
        "CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "GRANT", "REVOKE",
        "COMMENT", "BEGIN", "COMMIT", "REINDEX", "VACUUM", "CLUSTER", "REFRESH", "LOCK",
    ];
    let head = match stmt.tokens.first().map(|t| &t.token) {
        Some(Token::Word(w)) => w.value.to_uppercase(),
        _ => return None,
    };
    let second = match stmt.tokens.get(1).map(|t| &t.token) {
        Some(Token::Word(w)) => w.value.to_uppercase(),
        _ => String::new(),
    };
    // CREATE SCHEMA may contain CREATE TABLE elements; CREATE RULE an action statement.
    if head == "CREATE" && matches!(second.as_str(), "SCHEMA" | "RULE" | "OR") {
        return None;
    }
    // ALTER and DROP also begin ALTER TABLE actions (`ALTER COLUMN`, `DROP CONSTRAINT`): they
    // start a statement only when an object kind follows.
    let starts_statement = |i: usize| -> bool {
        let word = |i: usize| {
            stmt.tokens
                .get(i)
                .and_then(SqlToken::keyword)
                .unwrap_or_default()
        };
        match word(i).as_str() {
            "ALTER" | "DROP" => matches!(
                word(i + 1).as_str(),
                "TABLE"
                    | "INDEX"
                    | "VIEW"
                    | "SEQUENCE"
                    | "TYPE"
                    | "FUNCTION"
                    | "SCHEMA"
                    | "TRIGGER"
                    | "MATERIALIZED"
                    | "EXTENSION"
                    | "DOMAIN"
                    | "POLICY"
            ),
            w => HEADS.contains(&w),
        }
    };
    let mut depth = 0i32;
    for (i, pair) in stmt.tokens.windows(2).enumerate() {
        let (prev, t) = (&pair[0], &pair[1]);
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(_)
                if depth == 0
                    && starts_statement(i + 1)
                    && stmt.text[prev.range.end..t.range.start].contains('\n') =>
            {
                return Some(stmt.start.line + stmt.text[..t.range.start].matches('\n').count());
            }
            _ => {}
        }
    }
    None
}

/// PostgreSQL 18 allows `CONSTRAINT n NOT NULL col` as a table element, which sqlparser
/// rejects. Such elements are cut from a copy of the text, the rest is parsed, and the columns
/// are marked NOT NULL.
fn create_table_with_not_null_constraints(stmt: &Statement) -> Option<Change> {
    let words: Vec<Option<String>> = stmt.tokens.iter().map(SqlToken::keyword).collect();
    if words.first()?.as_deref() != Some("CREATE")
        || !words.iter().any(|w| w.as_deref() == Some("TABLE"))
    {
        return None;
    }
    let is = |i: usize, kw: &str| words.get(i).and_then(|w| w.as_deref()) == Some(kw);
    let mut cut: Vec<std::ops::Range<usize>> = Vec::new();
    let mut columns = Vec::new();
    let mut depth = 0;
    let mut element_start = None;
    for (i, t) in stmt.tokens.iter().enumerate() {
        match t.token {
            Token::LParen => {
                depth += 1;
                if depth == 1 {
                    element_start = Some(i + 1);
                }
                continue;
            }
            Token::RParen => depth -= 1,
            Token::Comma if depth == 1 => {
                element_start = Some(i + 1);
                continue;
            }
            _ => {}
        }
        if depth == 1
            && element_start == Some(i)
            && is(i, "CONSTRAINT")
            && is(i + 2, "NOT")
            && is(i + 3, "NULL")
            && let Some(Token::Word(col)) = stmt.tokens.get(i + 4).map(|t| &t.token)
        {
            columns.push(if col.quote_style.is_some() {
                col.value.clone()
            } else {
                col.value.to_lowercase()
            });
            let mut end = i + 5;
            if is(end, "NO") && is(end + 1, "INHERIT") {
                end += 2;
            }
            // Remove the element together with the comma before it.
            let from = stmt.tokens[i - 1].range.start;
            let keep_paren = matches!(stmt.tokens[i - 1].token, Token::LParen);
            let start = if keep_paren {
                stmt.tokens[i].range.start
            } else {
                from
            };
            let stop = if keep_paren {
                stmt.tokens
                    .get(end)
                    .map_or(stmt.text.len(), |t| t.range.end)
            } else {
                stmt.tokens[end - 1].range.end
            };
            cut.push(start..stop);
        }
    }
    if cut.is_empty() {
        return None;
    }
    let mut text = String::new();
    let mut at = 0;
    for r in &cut {
        text.push_str(&stmt.text[at..r.start]);
        at = r.end;
    }
    text.push_str(&stmt.text[at..]);
    let mut change = convert::convert(&parse_one(&text).ok()??);
    if let Change::CreateTable { columns: specs, .. } = &mut change {
        for spec in specs.iter_mut().filter(|s| columns.contains(&s.name)) {
            spec.not_null = true;
        }
    }
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split_statements;

    fn parse(sql: &str) -> Change {
        parse_statement(&split_statements(sql).statements[0])
    }

    #[test]
    fn sqlparser_forms() {
        assert!(matches!(
            parse("CREATE INDEX CONCURRENTLY i ON t (a)"),
            Change::CreateIndex {
                concurrently: true,
                ..
            }
        ));
        let Change::AlterTable { actions, .. } =
            parse("ALTER TABLE t ADD COLUMN c bigserial, ALTER COLUMN d TYPE text")
        else {
            panic!()
        };
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn recognizer_forms() {
        assert_eq!(
            parse("DROP INDEX CONCURRENTLY IF EXISTS a, s.b"),
            Change::DropIndex {
                names: vec![Name::new(None, "a"), Name::new(Some("s"), "b")],
                concurrently: true
            }
        );
        assert!(matches!(
            parse("REINDEX (VERBOSE) TABLE CONCURRENTLY t"),
            Change::Reindex {
                target: ReindexTarget::Table,
                concurrently: true,
                ..
            }
        ));
        assert!(matches!(
            parse("VACUUM (FULL, ANALYZE) t"),
            Change::Vacuum { full: true, .. }
        ));
        assert!(matches!(
            parse("VACUUM ANALYZE t"),
            Change::Vacuum { full: false, .. }
        ));
        assert_eq!(
            parse("DO $x$ BEGIN END $x$"),
            Change::DoBlock {
                body: Some((6, " BEGIN END ".into()))
            }
        );
        let Change::AlterTable { actions, .. } =
            parse("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY")
        else {
            panic!()
        };
        assert!(matches!(
            actions[0],
            AlterAction::DetachPartition {
                concurrently: true,
                ..
            }
        ));
        let Change::AlterTable { actions, .. } =
            parse("ALTER TABLE t ADD CONSTRAINT n NOT NULL c NOT VALID, ADD COLUMN x int")
        else {
            panic!()
        };
        assert!(matches!(
            &actions[0],
            AlterAction::AddConstraint(ConstraintSpec {
                kind: ConstraintKind::NotNull { .. },
                not_valid: true,
                ..
            })
        ));
        assert!(matches!(&actions[1], AlterAction::AddColumn(_)));
    }

    #[test]
    fn pg18_not_null_table_constraints() {
        let Change::CreateTable { columns, .. } =
            parse("CREATE TABLE t (a int, b text, CONSTRAINT a_nn NOT NULL a)")
        else {
            panic!()
        };
        assert!(columns[0].not_null);
        assert!(!columns[1].not_null);
    }

    #[test]
    fn unknown_statements_fail_closed() {
        assert!(matches!(
            parse("FROBNICATE TABLE t"),
            Change::Unrecognized { .. }
        ));
        assert!(matches!(
            parse("ALTER TABLE t DROP CONSTRAINT c ALTER TABLE t ALTER COLUMN d TYPE text"),
            Change::Unrecognized { .. }
        ));
    }

    #[test]
    fn types_normalize() {
        assert_eq!(SqlType::parse("CHARACTER VARYING(20)").name, "varchar");
        assert_eq!(SqlType::parse("CHARACTER VARYING(20)").modifiers, vec![20]);
        let t = SqlType::parse("TIMESTAMP(3) WITH TIME ZONE");
        assert_eq!(
            (t.name.as_str(), t.modifiers.as_slice()),
            ("timestamptz", &[3][..])
        );
        assert_eq!(SqlType::parse("NUMERIC(10,2)").modifiers, vec![10, 2]);
        assert!(SqlType::parse("INT[]").array);
    }
}
