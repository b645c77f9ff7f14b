//! Cutting pieces of a user's statement out of its source text by token positions, so generated
//! SQL reuses what the user wrote (expressions, column definitions) byte for byte instead of
//! re-printing sqlparser's AST.

use sqlparser::tokenizer::Token;

use std::collections::HashSet;

use crate::source::{SqlToken, Statement, split_statements};

fn is_word(t: &SqlToken, kw: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// The source text of each action of an ALTER TABLE statement, in order.
pub fn alter_actions(stmt: &Statement) -> Vec<String> {
    let t = &stmt.tokens;
    let mut i = 2; // ALTER TABLE
    if t.len() > i + 1 && is_word(&t[i], "IF") && is_word(&t[i + 1], "EXISTS") {
        i += 2;
    }
    if t.len() > i && is_word(&t[i], "ONLY") {
        i += 1;
    }
    // The table name: identifiers joined by periods.
    i += 1;
    while i + 1 < t.len() && matches!(t[i].token, Token::Period) {
        i += 2;
    }
    if i < t.len() && matches!(t[i].token, Token::Mul) {
        i += 1;
    }
    split_top_level(stmt, i, t.len())
}

/// The text of tokens `from..to`, split at top-level commas.
fn split_top_level(stmt: &Statement, from: usize, to: usize) -> Vec<String> {
    let t = &stmt.tokens;
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = from;
    for (i, tok) in t.iter().enumerate().take(to).skip(from) {
        match tok.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                out.push(slice(stmt, start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < to {
        out.push(slice(stmt, start, to));
    }
    out
}

/// The source text from token `from` up to (not including) token `to`.
pub fn slice(stmt: &Statement, from: usize, to: usize) -> String {
    if from >= to || from >= stmt.tokens.len() {
        return String::new();
    }
    stmt.text[stmt.tokens[from].range.start..stmt.tokens[to - 1].range.end].to_owned()
}

/// An UPDATE's `column = expression` pairs, its WHERE condition, its alias and its FROM list,
/// as written.
pub struct UpdateParts {
    pub set: Vec<(String, String)>,
    pub filter: Option<String>,
    pub alias: Option<String>,
    pub from: Option<String>,
}

/// `UPDATE t [AS] [alias] SET a = x, b = y [FROM …] [WHERE cond]`: its parts, as written.
/// `None` for forms zdm does not batch (WITH, RETURNING, WHERE CURRENT OF, `(a, b) = …`).
pub fn update_parts(stmt: &Statement) -> Option<UpdateParts> {
    let t = &stmt.tokens;
    if !is_word(t.first()?, "UPDATE") {
        return None; // WITH … UPDATE
    }
    let set = t.iter().position(|x| is_word(x, "SET"))?;
    // UPDATE [ONLY] name [[AS] alias] SET
    let mut i = if is_word(t.get(1)?, "ONLY") { 2 } else { 1 };
    i += 1;
    while i + 1 < set && matches!(t[i].token, Token::Period) {
        i += 2;
    }
    if i < set && is_word(&t[i], "AS") {
        i += 1;
    }
    let alias = (i < set).then(|| slice(stmt, i, set));
    let mut depth = 0i32;
    let mut from_at = None;
    let mut where_at = None;
    for (i, tok) in t.iter().enumerate().skip(set + 1) {
        match tok.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && is_word(tok, "RETURNING") => return None,
            _ if depth == 0 && is_word(tok, "FROM") && from_at.is_none() => from_at = Some(i),
            _ if depth == 0 && is_word(tok, "WHERE") => {
                where_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = where_at.unwrap_or(t.len());
    let set_end = from_at.unwrap_or(end);
    let from = from_at.map(|f| slice(stmt, f + 1, end));
    let mut assignments = Vec::new();
    for part in split_top_level(stmt, set + 1, set_end) {
        let (column, expr) = part.split_once('=')?;
        let column = column.trim();
        if column.starts_with('(') {
            return None;
        }
        // A quoted column keeps its case; a bare one folds to lower case.
        let column = match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => column.to_lowercase(),
        };
        assignments.push((column, expr.trim().to_owned()));
    }
    let filter = where_at.map(|w| slice(stmt, w + 1, t.len()));
    if filter
        .as_deref()
        .is_some_and(|f| f.to_uppercase().starts_with("CURRENT OF"))
    {
        return None;
    }
    Some(UpdateParts {
        set: assignments,
        filter,
        alias,
        from,
    })
}

/// The expression after `DEFAULT` in a column definition, as written.
pub fn default_expr(column_definition: &str) -> Option<String> {
    let stmt = crate::source::split_statements(column_definition)
        .statements
        .into_iter()
        .next()?;
    let t = &stmt.tokens;
    let at = t.iter().position(|x| is_word(x, "DEFAULT"))?;
    let stops = [
        "NOT",
        "NULL",
        "CONSTRAINT",
        "CHECK",
        "UNIQUE",
        "PRIMARY",
        "REFERENCES",
        "GENERATED",
        "COLLATE",
    ];
    let mut depth = 0i32;
    let mut end = t.len();
    for (i, tok) in t.iter().enumerate().skip(at + 1) {
        match tok.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && stops.iter().any(|s| is_word(tok, s)) => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    Some(slice(&stmt, at + 1, end))
}

/// The expression after a top-level `USING` in an ALTER COLUMN … TYPE action, as written.
pub fn using_expr(action: &str) -> Option<String> {
    let stmt = crate::source::split_statements(action)
        .statements
        .into_iter()
        .next()?;
    let mut depth = 0i32;
    let at = stmt.tokens.iter().position(|t| {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        depth == 0 && is_word(t, "USING")
    })?;
    Some(slice(&stmt, at + 1, stmt.tokens.len()))
}

/// A column definition with an inline foreign key, taken apart: the definition without it,
/// the `REFERENCES …` clause (with its ON DELETE/ON UPDATE/MATCH/DEFERRABLE parts), and the
/// name from a `CONSTRAINT name` before it.
pub struct InlineReference {
    pub definition: String,
    pub references: String,
    pub name: Option<String>,
}

/// Splits `email text REFERENCES users (email) ON DELETE SET NULL NOT NULL` into its parts.
pub fn split_inline_references(definition: &str) -> Option<InlineReference> {
    let stmt = crate::source::split_statements(definition)
        .statements
        .into_iter()
        .next()?;
    let t = &stmt.tokens;
    let at = t.iter().position(|x| is_word(x, "REFERENCES"))?;
    let named = at >= 2 && is_word(&t[at - 2], "CONSTRAINT");
    let start = if named { at - 2 } else { at };
    let stops = [
        "NOT",
        "NULL",
        "DEFAULT",
        "CONSTRAINT",
        "CHECK",
        "UNIQUE",
        "PRIMARY",
        "GENERATED",
        "COLLATE",
    ];
    let mut depth = 0i32;
    let mut end = t.len();
    for (i, tok) in t.iter().enumerate().skip(at + 1) {
        match tok.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && stops.iter().any(|s| is_word(tok, s)) => {
                // `ON DELETE SET NULL` and `NOT DEFERRABLE` belong to the clause.
                let after_set = is_word(&t[i - 1], "SET");
                let not_deferrable =
                    is_word(tok, "NOT") && t.get(i + 1).is_some_and(|n| is_word(n, "DEFERRABLE"));
                if !after_set && !not_deferrable {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let before = slice(&stmt, 0, start);
    let after = slice(&stmt, end, t.len());
    Some(InlineReference {
        definition: format!("{before} {after}").trim().to_owned(),
        references: slice(&stmt, at, end),
        name: named.then(|| match &t[at - 1].token {
            Token::Word(w) if w.quote_style.is_some() => w.value.clone(),
            Token::Word(w) => w.value.to_lowercase(),
            _ => String::new(),
        }),
    })
}

/// Inserts `text` after token `index` of the statement (e.g. `CONCURRENTLY` after `INDEX`).
pub fn insert_after(stmt: &Statement, index: usize, text: &str) -> String {
    let at = stmt.tokens[index].range.end;
    format!("{} {text}{}", &stmt.text[..at], &stmt.text[at..])
}

/// The index of the first token that is the keyword `kw`.
/// Whether the statement's `i`th token is the keyword `kw`.
pub fn is_word_at(stmt: &Statement, i: usize, kw: &str) -> bool {
    stmt.tokens.get(i).is_some_and(|t| is_word(t, kw))
}

pub fn find_word(stmt: &Statement, kw: &str) -> Option<usize> {
    stmt.tokens.iter().position(|t| is_word(t, kw))
}

/// The identifiers of a piece of SQL as PostgreSQL resolves them: unquoted words folded to
/// lower case, quoted ones as written. Keywords are included; callers compare against names.
pub fn identifiers(sql: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for stmt in split_statements(sql).statements {
        for t in stmt.tokens {
            if let Token::Word(w) = t.token {
                out.insert(if w.quote_style.is_some() {
                    w.value
                } else {
                    w.value.to_lowercase()
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split_statements;

    fn stmt(sql: &str) -> Statement {
        split_statements(sql).statements.remove(0)
    }

    #[test]
    fn splits_alter_table_actions_as_written() {
        let s = stmt(
            "ALTER TABLE ONLY \"My\".t ADD COLUMN a numeric(10, 2) DEFAULT 0, ADD CONSTRAINT c CHECK (a > 0)",
        );
        assert_eq!(
            alter_actions(&s),
            [
                "ADD COLUMN a numeric(10, 2) DEFAULT 0",
                "ADD CONSTRAINT c CHECK (a > 0)"
            ]
        );
    }

    #[test]
    fn reads_update_assignments_and_condition() {
        let s = stmt("UPDATE users SET \"Plan\" = coalesce(plan, 'free'), n = (a, b) WHERE id > 5");
        let UpdateParts { set, filter, .. } = update_parts(&s).unwrap();
        assert_eq!(set[0], ("Plan".into(), "coalesce(plan, 'free')".into()));
        assert_eq!(set[1].0, "n");
        assert_eq!(filter.as_deref(), Some("id > 5"));
        let joined = update_parts(&stmt(
            "UPDATE ONLY s.a AS x SET n = b.n FROM b WHERE x.id = b.id",
        ))
        .unwrap();
        assert_eq!(joined.alias.as_deref(), Some("x"));
        assert_eq!(joined.from.as_deref(), Some("b"));
        assert_eq!(joined.filter.as_deref(), Some("x.id = b.id"));
        assert!(update_parts(&stmt("UPDATE a SET x = 1 RETURNING id")).is_none());
        assert!(update_parts(&stmt("UPDATE a SET (x, y) = (1, 2)")).is_none());
    }

    #[test]
    fn takes_inline_references_apart() {
        let r = split_inline_references(
            "user_id bigint CONSTRAINT o_fk REFERENCES users (id) ON DELETE SET NULL NOT NULL",
        )
        .unwrap();
        assert_eq!(r.definition, "user_id bigint NOT NULL");
        assert_eq!(r.references, "REFERENCES users (id) ON DELETE SET NULL");
        assert_eq!(r.name.as_deref(), Some("o_fk"));
        let r = split_inline_references("user_id bigint REFERENCES users").unwrap();
        assert_eq!((r.definition.as_str(), r.name), ("user_id bigint", None));
    }

    #[test]
    fn cuts_default_expressions() {
        assert_eq!(
            default_expr("token uuid DEFAULT gen_random_uuid() NOT NULL").as_deref(),
            Some("gen_random_uuid()")
        );
        assert_eq!(
            default_expr("n int DEFAULT (1 + 2)").as_deref(),
            Some("(1 + 2)")
        );
        assert_eq!(default_expr("n int"), None);
    }
}
