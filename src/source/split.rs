//! Splitting a file into statements with sqlparser's tokenizer, which understands dollar quotes,
//! `E''` strings and nested comments, so a `;` inside a function body never splits a statement.
//! Each statement keeps its exact source text, byte range and line, and the `-- zdm:` directives
//! written on it or just before it.

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer, Whitespace};

use super::directive::{Directive, DirectiveKind, parse_directive};
pub use super::position::Position;

/// One SQL statement as written in the file.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The exact source text, without the terminating `;`.
    pub text: String,
    /// Byte range of `text` in the file.
    pub span: Range<usize>,
    /// Where the first token starts.
    pub start: Position,
    /// Where the last token ends (the column just past its last character).
    pub end: Position,
    /// The significant tokens (no whitespace or comments).
    pub tokens: Vec<SqlToken>,
    /// `-- zdm:` directives written just before the statement, inside it, or after it on the
    /// line of its `;`.
    pub directives: Vec<Directive>,
    /// Set when the tokenizer could not read the file from this statement on (an unterminated
    /// string or comment); the statement then covers the rest of the file.
    pub tokenize_error: Option<String>,
}

/// A significant token and its byte range within [`Statement::text`].
#[derive(Debug, Clone, PartialEq)]
pub struct SqlToken {
    pub token: Token,
    pub range: Range<usize>,
    /// Line and column in the file, so parse errors point into the file.
    pub span: Span,
}

impl SqlToken {
    /// The keyword this token is, upper-cased, when it is an unquoted word.
    pub fn keyword(&self) -> Option<String> {
        match &self.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        }
    }
}

/// A file split into statements, plus the directives that apply to the whole file.
#[derive(Debug, Clone, Default)]
pub struct SplitFile {
    pub statements: Vec<Statement>,
    pub file_directives: Vec<Directive>,
}

/// Maps sqlparser's (line, column) locations to byte offsets.
struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    fn offset(&self, line: u64, column: u64) -> usize {
        let Some(&start) = self.line_starts.get((line as usize).saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let chars = (column as usize).saturating_sub(1);
        start
            + rest
                .char_indices()
                .nth(chars)
                .map_or(rest.len(), |(i, _)| i)
    }

    fn position(&self, offset: usize) -> Position {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        Position { line, column }
    }
}

/// The line and column of a byte offset in `text`.
pub fn position_at(text: &str, offset: usize) -> Position {
    LineIndex::new(text).position(offset)
}

/// Splits `text` into statements. Never fails: text the tokenizer cannot read becomes a final
/// statement carrying the tokenizer's error, which lint reports as unrecognized.
pub fn split_statements(text: &str) -> SplitFile {
    let index = LineIndex::new(text);
    let (tokens, error) = match Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location()
    {
        Ok(tokens) => (tokens, None),
        Err(e) => {
            // Tokenize the part before the error so the statements there are still checked.
            let cut = index.offset(e.location.line, e.location.column);
            let mut prefix_end = cut.min(text.len());
            let tokens = loop {
                match Tokenizer::new(&PostgreSqlDialect {}, &text[..prefix_end])
                    .tokenize_with_location()
                {
                    Ok(t) => break t,
                    Err(_) if prefix_end > 0 => {
                        prefix_end = text[..prefix_end].rfind(';').unwrap_or(0);
                    }
                    Err(_) => break Vec::new(),
                }
            };
            (tokens, Some(e.message))
        }
    };

    // Byte start of every token; a token ends where the next begins, because the tokenizer
    // also yields whitespace and comments.
    let starts: Vec<usize> = tokens
        .iter()
        .map(|t| index.offset(t.span.start.line, t.span.start.column))
        .collect();
    let consumed_end = match &error {
        Some(_) => tokens
            .last()
            .map(|_| {
                let i = tokens.len() - 1;
                token_end(&tokens, &starts, i, text.len())
            })
            .unwrap_or(0),
        None => text.len(),
    };

    let mut out = SplitFile::default();
    let mut current: Vec<usize> = Vec::new();
    let mut pending: Vec<Directive> = Vec::new();
    let mut last_terminator_line: Option<usize> = None;
    let mut atomic = AtomicBody::default();

    for (i, tok) in tokens.iter().enumerate() {
        match &tok.token {
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. })
            | Token::Whitespace(Whitespace::MultiLineComment(comment)) => {
                let start = starts[i];
                let end = token_end(&tokens, &starts, i, text.len());
                let pos = index.position(start);
                if let Some(mut d) = parse_directive(comment, pos, start..end) {
                    // Atlas reads a nolint at the top of the file, a blank line before the
                    // first statement, as the file's: https://atlasgo.io/lint/analyzers
                    if out.statements.is_empty()
                        && current.is_empty()
                        && comment.trim().starts_with("atlas:nolint")
                        && blank_line_after(text, end)
                        && let DirectiveKind::Ignore(rules) = d.kind
                    {
                        d.kind = DirectiveKind::IgnoreFile(rules);
                    }
                    if d.kind.is_file_wide() {
                        out.file_directives.push(d);
                    } else if current.is_empty() && last_terminator_line == Some(pos.line) {
                        // `ALTER …; -- zdm:ignore x` belongs to the statement it follows.
                        if let Some(prev) = out.statements.last_mut() {
                            prev.directives.push(d);
                        }
                    } else {
                        pending.push(d);
                    }
                }
            }
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon if !atomic.inside() => {
                if !current.is_empty() {
                    let stmt = build(text, &index, &tokens, &starts, &current, &mut pending);
                    out.statements.push(stmt);
                    current.clear();
                }
                last_terminator_line = Some(index.position(starts[i]).line);
                atomic = AtomicBody::default();
            }
            _ => {
                atomic.observe(&tokens, &current, &tok.token);
                current.push(i);
            }
        }
    }
    if !current.is_empty() {
        let mut stmt = build(text, &index, &tokens, &starts, &current, &mut pending);
        if error.is_some() {
            extend_to(&mut stmt, text, &index, consumed_end);
        }
        stmt.tokenize_error = error.clone();
        out.statements.push(stmt);
    } else if let Some(message) = error {
        // The unreadable text starts after the last complete statement.
        let start = text[consumed_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(text.len(), |i| consumed_end + i);
        let span = start..text.trim_end().len().max(start);
        out.statements.push(Statement {
            text: text[span.clone()].to_owned(),
            start: index.position(span.start),
            end: index.position(span.end),
            span,
            tokens: Vec::new(),
            directives: std::mem::take(&mut pending),
            tokenize_error: Some(message),
        });
    }
    out
}

fn token_end(tokens: &[TokenWithSpan], starts: &[usize], i: usize, len: usize) -> usize {
    if i + 1 < tokens.len() {
        starts[i + 1]
    } else {
        len
    }
}

fn build(
    text: &str,
    index: &LineIndex,
    tokens: &[TokenWithSpan],
    starts: &[usize],
    indices: &[usize],
    pending: &mut Vec<Directive>,
) -> Statement {
    let first = indices[0];
    let last = *indices.last().expect("a statement has at least one token");
    let span = starts[first]..token_end(tokens, starts, last, text.len());
    let tokens: Vec<SqlToken> = indices
        .iter()
        .map(|&i| SqlToken {
            token: tokens[i].token.clone(),
            range: starts[i] - span.start..token_end(tokens, starts, i, text.len()) - span.start,
            span: tokens[i].span,
        })
        .collect();
    Statement {
        text: text[span.clone()].to_owned(),
        start: index.position(span.start),
        end: index.position(span.end),
        span,
        tokens,
        directives: std::mem::take(pending),
        tokenize_error: None,
    }
}

fn extend_to(stmt: &mut Statement, text: &str, index: &LineIndex, _from: usize) {
    let end = text.trim_end().len().max(stmt.span.start);
    stmt.span.end = end;
    stmt.text = text[stmt.span.clone()].to_owned();
    stmt.end = index.position(end);
}

/// Tracks SQL-standard function bodies (`BEGIN ATOMIC … END`, PostgreSQL 14+), whose
/// statements end in `;` without ending the CREATE FUNCTION.
#[derive(Default)]
struct AtomicBody {
    depth: usize,
    case_depth: usize,
}

impl AtomicBody {
    fn inside(&self) -> bool {
        self.depth > 0
    }

    fn observe(&mut self, tokens: &[TokenWithSpan], current: &[usize], token: &Token) {
        let Token::Word(w) = token else { return };
        let previous = current.last().map(|&i| &tokens[i].token);
        match w.keyword {
            Keyword::ATOMIC if matches!(previous, Some(Token::Word(p)) if p.keyword == Keyword::BEGIN) => {
                self.depth += 1
            }
            Keyword::CASE if self.depth > 0 => self.case_depth += 1,
            Keyword::END if self.depth > 0 => {
                if self.case_depth > 0 {
                    self.case_depth -= 1;
                } else {
                    self.depth -= 1;
                }
            }
            _ => {}
        }
    }
}

/// Whether the line after a comment ending at `end` is empty.
fn blank_line_after(text: &str, end: usize) -> bool {
    let rest = &text[end.min(text.len())..];
    // A `--` comment's token may or may not hold its own newline.
    let rest = match text[..end.min(text.len())].ends_with('\n') {
        true => rest,
        false => rest.split_once('\n').map_or("", |(_, r)| r),
    };
    rest.split_once('\n')
        .is_some_and(|(line, _)| line.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split_statements(sql)
            .statements
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_bodies() {
        let sql = "CREATE TABLE a (x text DEFAULT ';');\n\
                   CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
                   -- a comment; with a semicolon\n\
                   SELECT E'it\\'s;' ;;\n\
                   /* block; /* nested; */ */ DROP TABLE b";
        assert_eq!(
            texts(sql),
            vec![
                "CREATE TABLE a (x text DEFAULT ';')",
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                "SELECT E'it\\'s;'",
                "DROP TABLE b",
            ]
        );
    }

    #[test]
    fn keeps_positions_and_byte_ranges() {
        let sql = "-- header\nALTER TABLE t\n  ADD COLUMN é text;\n\nDROP TABLE u;";
        let split = split_statements(sql);
        let first = &split.statements[0];
        assert_eq!(first.start, Position { line: 2, column: 1 });
        assert_eq!(
            first.end,
            Position {
                line: 3,
                column: 20
            }
        );
        assert_eq!(&sql[first.span.clone()], first.text);
        assert_eq!(split.statements[1].start.line, 5);
    }

    #[test]
    fn crlf_tabs_and_wide_characters_keep_exact_ranges() {
        let sql = "\tCOMMENT ON TABLE t IS 'héllo 🐘';\r\nALTER TABLE \"tâble\"\r\n\tADD COLUMN c text;\r\n";
        let split = split_statements(sql);
        assert_eq!(split.statements.len(), 2);
        for s in &split.statements {
            assert_eq!(&sql[s.span.clone()], s.text);
        }
        assert_eq!(
            split.statements[1].text,
            "ALTER TABLE \"tâble\"\r\n\tADD COLUMN c text"
        );
        assert_eq!(split.statements[1].start, Position { line: 2, column: 1 });
        assert_eq!(split.statements[1].end.line, 3);
    }

    #[test]
    fn never_panics_on_truncated_input() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 'a;b' $body$ LANGUAGE sql;\n\
                   /* c /* nested */ */ SELECT E'x\\'y', \"q\"\"id\" -- tail\n; DO $$ BEGIN END $$;";
        for (cut, _) in sql.char_indices() {
            let split = split_statements(&sql[..cut]);
            for s in &split.statements {
                assert_eq!(&sql[..cut][s.span.clone()], s.text);
            }
        }
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3;";
        assert_eq!(texts(sql).len(), 2);
    }

    #[test]
    fn an_atlas_nolint_at_the_top_before_a_blank_line_is_the_files() {
        let file = split_statements(
            "-- atlas:nolint DS103\n\nALTER TABLE a DROP COLUMN x;\nALTER TABLE a DROP COLUMN y;\n",
        );
        assert_eq!(file.file_directives.len(), 1);
        assert!(file.statements.iter().all(|s| s.directives.is_empty()));
        let statement = split_statements(
            "-- atlas:nolint DS103\nALTER TABLE a DROP COLUMN x;\n\nALTER TABLE a DROP COLUMN y;\n",
        );
        assert!(statement.file_directives.is_empty());
        assert_eq!(statement.statements[0].directives.len(), 1);
        let later =
            split_statements("SELECT 1;\n-- atlas:nolint DS103\n\nALTER TABLE a DROP COLUMN x;\n");
        assert!(
            later.file_directives.is_empty(),
            "only at the top of the file"
        );
    }

    #[test]
    fn attaches_directives_to_the_right_statement() {
        let sql = "ALTER TABLE a DROP COLUMN x; -- zdm:ignore drop-column\n\
                   -- zdm:ignore rename-table -- reviewed\n\
                   ALTER TABLE b RENAME TO c;\n\
                   -- zdm:ignore-file truncate\n";
        let split = split_statements(sql);
        assert_eq!(split.statements[0].directives.len(), 1);
        assert_eq!(split.statements[1].directives.len(), 1);
        assert_eq!(split.file_directives.len(), 1);
    }

    #[test]
    fn unterminated_string_keeps_earlier_statements() {
        let split = split_statements("SELECT 1;\nSELECT 'oops");
        assert_eq!(split.statements.len(), 2);
        assert!(split.statements[0].tokenize_error.is_none());
        assert!(split.statements[1].tokenize_error.is_some());
        assert_eq!(split.statements[1].text, "SELECT 'oops");
    }
}
