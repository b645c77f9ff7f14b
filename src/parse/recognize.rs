//! The fallback recognizer: reads the head of a statement sqlparser rejected, from its tokens,
//! far enough to know which lock it takes. It covers the lock-relevant forms sqlparser 0.63 does
//! not parse (`DROP INDEX CONCURRENTLY`, `REINDEX`, `CLUSTER`, `VACUUM FULL`, `ATTACH/DETACH
//! PARTITION`, `DO`, `ALTER SEQUENCE`, `ALTER CONSTRAINT`, PostgreSQL 18 `NOT NULL` constraints…)
//! and statements that take no lock ordinary queries wait on. Anything else is `None`, which the
//! caller reports as unrecognized: zdm fails closed.

use sqlparser::tokenizer::Token;

use super::model::*;
use crate::lock::LockMode;
use crate::source::SqlToken;

/// A cursor over a statement's significant tokens.
pub(super) struct Cursor<'a> {
    tokens: &'a [SqlToken],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(tokens: &'a [SqlToken]) -> Self {
        Cursor { tokens, pos: 0 }
    }

    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    /// Whether the current token is the unquoted keyword `kw` (case-insensitive).
    fn is(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    fn eat(&mut self, kw: &str) -> bool {
        let hit = self.is(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Eats a whole sequence of keywords, or nothing.
    fn eat_all(&mut self, kws: &[&str]) -> bool {
        let start = self.pos;
        if kws.iter().all(|kw| self.eat(kw)) {
            true
        } else {
            self.pos = start;
            false
        }
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn ident(&mut self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(w)) => {
                self.pos += 1;
                Some(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_lowercase()
                })
            }
            _ => None,
        }
    }

    /// A possibly qualified name: `a`, `s.a`, `"S"."A"`.
    fn name(&mut self) -> Option<Name> {
        let mut parts = vec![self.ident()?];
        while matches!(self.peek(), Some(Token::Period)) {
            self.pos += 1;
            parts.push(self.ident()?);
        }
        let last = parts.pop()?;
        Some(Name {
            schema: parts.pop(),
            name: last,
        })
    }

    fn names(&mut self) -> Vec<Name> {
        let mut out = Vec::new();
        while let Some(n) = self.name() {
            out.push(n);
            if !matches!(self.peek(), Some(Token::Comma)) {
                break;
            }
            self.pos += 1;
        }
        out
    }

    /// Skips a parenthesised group if one starts here, returning the words inside it.
    fn paren_words(&mut self) -> Vec<String> {
        let mut words = Vec::new();
        if !matches!(self.peek(), Some(Token::LParen)) {
            return words;
        }
        let mut depth = 0;
        while let Some(t) = self.bump() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Word(w) => words.push(w.value.to_uppercase()),
                _ => {}
            }
        }
        words
    }

    fn rest_has(&self, kw: &str) -> bool {
        self.tokens[self.pos.min(self.tokens.len())..].iter().any(|t| {
            matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
        })
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }
}

fn other(what: &str) -> Option<Change> {
    Some(Change::Other {
        what: what.to_owned(),
        creates: None,
    })
}

fn creates(what: &str, kind: ObjectKind, name: Option<Name>) -> Option<Change> {
    Some(Change::Other {
        what: what.to_owned(),
        creates: name.map(|n| (kind, n)),
    })
}

/// Recognizes a whole statement from its tokens. `alter_action` is called back for ALTER TABLE
/// actions, so the caller can try sqlparser on each action alone first.
pub(super) fn recognize(
    tokens: &[SqlToken],
    alter_action: &dyn Fn(&[SqlToken]) -> Option<AlterAction>,
) -> Option<Change> {
    let mut c = Cursor::new(tokens);
    if c.eat("DO") {
        let body = tokens.iter().find_map(|t| match &t.token {
            Token::DollarQuotedString(s) => {
                let tag = s.tag.as_ref().map_or(0, String::len);
                Some((t.range.start + tag + 2, s.value.clone()))
            }
            _ => None,
        });
        return Some(Change::DoBlock { body });
    }
    if c.eat("DROP") {
        return drop(&mut c);
    }
    if c.eat("REINDEX") {
        let options = c.paren_words();
        let target = if c.eat("INDEX") {
            ReindexTarget::Index
        } else if c.eat("TABLE") {
            ReindexTarget::Table
        } else if c.eat("SCHEMA") {
            ReindexTarget::Schema
        } else if c.eat("DATABASE") {
            ReindexTarget::Database
        } else if c.eat("SYSTEM") {
            ReindexTarget::System
        } else {
            return None;
        };
        let concurrently = c.eat("CONCURRENTLY") || options.iter().any(|w| w == "CONCURRENTLY");
        return Some(Change::Reindex {
            target,
            name: c.name(),
            concurrently,
        });
    }
    if c.eat("CLUSTER") {
        c.eat("VERBOSE");
        c.paren_words();
        return Some(Change::Cluster { table: c.name() });
    }
    if c.eat("VACUUM") {
        let mut full = false;
        loop {
            if c.eat("FULL") {
                full = true;
            } else if c.eat("FREEZE") || c.eat("VERBOSE") || c.eat("ANALYZE") || c.eat("ANALYSE") {
            } else if matches!(c.peek(), Some(Token::LParen)) {
                let words = c.paren_words();
                // `(FULL)`, `(FULL true)`, but not `(FULL false)` or `(FULL off)`.
                if let Some(i) = words.iter().position(|w| w == "FULL") {
                    full = !matches!(words.get(i + 1).map(String::as_str), Some("FALSE" | "OFF"));
                }
            } else {
                break;
            }
        }
        return Some(Change::Vacuum {
            full,
            tables: c.names(),
        });
    }
    if c.eat("ANALYZE") || c.eat("ANALYSE") {
        return other("ANALYZE");
    }
    if c.eat_all(&["REFRESH", "MATERIALIZED", "VIEW"]) {
        let concurrently = c.eat("CONCURRENTLY");
        return Some(Change::RefreshMaterializedView {
            name: c.name()?,
            concurrently,
        });
    }
    if c.eat("ALTER") {
        return alter(&mut c, tokens, alter_action);
    }
    if c.eat("CREATE") {
        return create(&mut c);
    }
    if c.eat("LOCK") {
        c.eat("TABLE");
        c.eat("ONLY");
        let tables = c.names();
        let mode = if c.eat("IN") {
            lock_mode(&mut c)?
        } else {
            LockMode::AccessExclusive
        };
        return Some(Change::LockTable { tables, mode });
    }
    if c.eat("COMMENT") {
        return other("COMMENT ON");
    }
    for (kw, what) in [
        ("GRANT", "GRANT"),
        ("REVOKE", "REVOKE"),
        ("SELECT", "SELECT"),
        ("NOTIFY", "NOTIFY"),
        ("LISTEN", "LISTEN"),
        ("DISCARD", "DISCARD"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("SECURITY", "SECURITY LABEL"),
        ("COPY", "COPY"),
        ("CALL", "CALL"),
        ("SAVEPOINT", "SAVEPOINT"),
        ("RELEASE", "RELEASE SAVEPOINT"),
    ] {
        if c.eat(kw) {
            return other(what);
        }
    }
    if c.eat("RESET") {
        return Some(Change::Set {
            name: c.ident().unwrap_or_default(),
            value: None,
            local: false,
        });
    }
    if c.eat("UPDATE") {
        c.eat("ONLY");
        return Some(Change::Dml {
            kind: DmlKind::Update,
            table: c.name()?,
            filtered: c.rest_has("WHERE"),
            pinned: Vec::new(),
        });
    }
    if c.eat_all(&["DELETE", "FROM"]) {
        c.eat("ONLY");
        return Some(Change::Dml {
            kind: DmlKind::Delete,
            table: c.name()?,
            filtered: c.rest_has("WHERE"),
            pinned: Vec::new(),
        });
    }
    if c.eat_all(&["INSERT", "INTO"]) {
        return Some(Change::Dml {
            kind: DmlKind::Insert,
            table: c.name()?,
            filtered: true,
            pinned: Vec::new(),
        });
    }
    None
}

fn lock_mode(c: &mut Cursor) -> Option<LockMode> {
    let mode = if c.eat_all(&["ACCESS", "SHARE"]) {
        LockMode::AccessShare
    } else if c.eat_all(&["ROW", "SHARE"]) {
        LockMode::RowShare
    } else if c.eat_all(&["ROW", "EXCLUSIVE"]) {
        LockMode::RowExclusive
    } else if c.eat_all(&["SHARE", "UPDATE", "EXCLUSIVE"]) {
        LockMode::ShareUpdateExclusive
    } else if c.eat_all(&["SHARE", "ROW", "EXCLUSIVE"]) {
        LockMode::ShareRowExclusive
    } else if c.eat("SHARE") {
        LockMode::Share
    } else if c.eat_all(&["ACCESS", "EXCLUSIVE"]) {
        LockMode::AccessExclusive
    } else if c.eat("EXCLUSIVE") {
        LockMode::Exclusive
    } else {
        return None;
    };
    Some(mode)
}

fn drop(c: &mut Cursor) -> Option<Change> {
    let kind = if c.eat("INDEX") {
        let concurrently = c.eat("CONCURRENTLY");
        c.eat_all(&["IF", "EXISTS"]);
        return Some(Change::DropIndex {
            names: c.names(),
            concurrently,
        });
    } else if c.eat("TABLE") {
        ObjectKind::Table
    } else if c.eat_all(&["MATERIALIZED", "VIEW"]) {
        ObjectKind::MaterializedView
    } else if c.eat("VIEW") {
        ObjectKind::View
    } else if c.eat("SCHEMA") {
        ObjectKind::Schema
    } else if c.eat("TYPE") || c.eat("DOMAIN") {
        ObjectKind::Type
    } else if c.eat("SEQUENCE") {
        ObjectKind::Sequence
    } else if c.eat("FUNCTION") || c.eat("PROCEDURE") || c.eat("AGGREGATE") || c.eat("ROUTINE") {
        ObjectKind::Function
    } else {
        // DROP TRIGGER / RULE / POLICY / EXTENSION / ROLE / …: brief, no table rewrite.
        return other("DROP");
    };
    c.eat_all(&["IF", "EXISTS"]);
    let names = c.names();
    Some(Change::Drop {
        kind,
        names,
        cascade: c.rest_has("CASCADE"),
    })
}

fn create(c: &mut Cursor) -> Option<Change> {
    c.eat_all(&["OR", "REPLACE"]);
    let unique = c.eat("UNIQUE");
    if c.eat("INDEX") {
        let concurrently = c.eat("CONCURRENTLY");
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        let name = if c.is("ON") { None } else { c.name() };
        if !c.eat("ON") {
            return None;
        }
        c.eat("ONLY");
        return Some(Change::CreateIndex {
            name,
            table: c.name()?,
            columns: Vec::new(),
            unique,
            concurrently,
            definition: None,
        });
    }
    for temp in ["TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL"] {
        c.eat(temp);
    }
    if c.eat("TABLE") {
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        let name = c.name()?;
        let partition_of = if c.eat_all(&["PARTITION", "OF"]) {
            c.name()
        } else {
            None
        };
        return Some(Change::CreateTable {
            name,
            columns: Vec::new(),
            constraints: Vec::new(),
            partition_of,
            partitioned: c.rest_has("PARTITION"),
        });
    }
    if c.eat_all(&["MATERIALIZED", "VIEW"]) || c.eat("VIEW") {
        let materialized = c.tokens.iter().take(c.pos).any(
            |t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("MATERIALIZED")),
        );
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        let name = c.name()?;
        // The query after the top-level AS: sqlparser reads it even when it rejects the
        // view's options (`WITH (security_barrier)` without a value).
        let mut depth = 0i32;
        let query = c.tokens[c.pos..]
            .iter()
            .position(|t| match &t.token {
                Token::LParen => {
                    depth += 1;
                    false
                }
                Token::RParen => {
                    depth -= 1;
                    false
                }
                Token::Word(w) => depth == 0 && w.value.eq_ignore_ascii_case("AS"),
                _ => false,
            })
            .map(|i| &c.tokens[c.pos + i + 1..]);
        return Some(Change::CreateView {
            name,
            materialized,
            reads: query
                .map(super::convert::relations_read)
                .unwrap_or_default(),
        });
    }
    if c.eat("SEQUENCE") {
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        return creates("CREATE SEQUENCE", ObjectKind::Sequence, c.name());
    }
    if c.eat("FUNCTION") || c.eat("PROCEDURE") || c.eat("AGGREGATE") {
        return creates("CREATE FUNCTION", ObjectKind::Function, c.name());
    }
    if c.eat("TYPE") || c.eat("DOMAIN") {
        return creates("CREATE TYPE", ObjectKind::Type, c.name());
    }
    if c.eat("SCHEMA") {
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        return creates("CREATE SCHEMA", ObjectKind::Schema, c.name());
    }
    // Objects that take no lock ordinary queries wait on (CREATE TRIGGER, RULE and POLICY take
    // a brief lock on their table; lock_timeout is what guards those).
    for kw in [
        "EXTENSION",
        "RULE",
        "TRIGGER",
        "CONSTRAINT",
        "POLICY",
        "ROLE",
        "USER",
        "COLLATION",
        "CAST",
        "OPERATOR",
        "TEXT",
        "CONVERSION",
        "STATISTICS",
        "PUBLICATION",
        "SUBSCRIPTION",
        "EVENT",
        "LANGUAGE",
        "TRUSTED",
        "PROCEDURAL",
        "SERVER",
        "FOREIGN",
        "TRANSFORM",
        "ACCESS",
    ] {
        if c.is(kw) {
            return other(&format!("CREATE {kw}"));
        }
    }
    None
}

fn alter(
    c: &mut Cursor,
    tokens: &[SqlToken],
    alter_action: &dyn Fn(&[SqlToken]) -> Option<AlterAction>,
) -> Option<Change> {
    if c.eat("TABLE") {
        c.eat_all(&["IF", "EXISTS"]);
        c.eat("ONLY");
        let table = c.name()?;
        if matches!(c.peek(), Some(Token::Mul)) {
            c.bump();
        }
        let mut actions = Vec::new();
        for range in split_actions(&tokens[c.pos..]) {
            let action_tokens = &tokens[c.pos + range.start..c.pos + range.end];
            actions.push(alter_action(action_tokens).or_else(|| recognize_action(action_tokens))?);
        }
        if actions.is_empty() {
            return None;
        }
        return Some(Change::AlterTable { table, actions });
    }
    for kw in [
        "SEQUENCE",
        "INDEX",
        "TRIGGER",
        "FUNCTION",
        "PROCEDURE",
        "AGGREGATE",
        "ROUTINE",
        "ROLE",
        "USER",
        "DEFAULT",
        "EXTENSION",
        "DOMAIN",
        "DATABASE",
        "PUBLICATION",
        "SUBSCRIPTION",
        "TEXT",
        "OPERATOR",
        "COLLATION",
        "CONVERSION",
        "LANGUAGE",
        "LARGE",
        "POLICY",
        "RULE",
        "STATISTICS",
        "EVENT",
        "MATERIALIZED",
        "VIEW",
        "SCHEMA",
        "TYPE",
        "SERVER",
        "FOREIGN",
    ] {
        if c.is(kw) {
            return other(&format!("ALTER {kw}"));
        }
    }
    None
}

/// Splits ALTER TABLE actions at top-level commas.
fn split_actions(tokens: &[SqlToken]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                out.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        out.push(start..tokens.len());
    }
    out
}

/// One ALTER TABLE action that sqlparser rejected.
fn recognize_action(tokens: &[SqlToken]) -> Option<AlterAction> {
    let mut c = Cursor::new(tokens);
    let act = |other: OtherAction| Some(AlterAction::Other(other));
    if c.eat_all(&["ATTACH", "PARTITION"]) {
        return Some(AlterAction::AttachPartition {
            partition: c.name()?,
        });
    }
    if c.eat_all(&["DETACH", "PARTITION"]) {
        let partition = c.name()?;
        return Some(AlterAction::DetachPartition {
            partition,
            concurrently: c.eat("CONCURRENTLY"),
            finalize: c.eat("FINALIZE"),
        });
    }
    if c.eat("ADD") {
        // PostgreSQL 18: `ADD [CONSTRAINT n] NOT NULL col [NO INHERIT] [NOT VALID]`.
        let name = if c.eat("CONSTRAINT") { c.ident() } else { None };
        if c.eat_all(&["NOT", "NULL"]) {
            let column = c.ident()?;
            c.eat_all(&["NO", "INHERIT"]);
            let not_valid = c.eat_all(&["NOT", "VALID"]);
            return c
                .at_end()
                .then_some(AlterAction::AddConstraint(ConstraintSpec {
                    name,
                    kind: ConstraintKind::NotNull { column },
                    not_valid,
                    definition: None,
                }));
        }
        return None;
    }
    if c.eat_all(&["ALTER", "CONSTRAINT"]) {
        return act(OtherAction::AlterConstraint);
    }
    if c.eat("ALTER") {
        c.eat("COLUMN");
        c.ident()?;
        if c.eat_all(&["SET", "STATISTICS"]) {
            return act(OtherAction::SetStatistics);
        }
        if (c.eat("SET") || c.eat("RESET")) && matches!(c.peek(), Some(Token::LParen)) {
            return act(OtherAction::SetAttributeOptions);
        }
        if c.eat_all(&["SET", "STORAGE"]) || c.eat_all(&["SET", "COMPRESSION"]) {
            return act(OtherAction::SetStorage);
        }
        if c.eat("DROP") && c.eat("EXPRESSION") || c.is("DROP") && c.eat_all(&["DROP", "IDENTITY"])
        {
            return act(OtherAction::DropExpressionOrIdentity);
        }
        if c.eat("SET") && (c.eat("GENERATED") || c.eat("INCREMENT") || c.eat("START")) {
            return act(OtherAction::SetIdentityOption);
        }
        if c.eat("RESTART") {
            return act(OtherAction::RestartIdentity);
        }
        return None;
    }
    if c.eat("SET") {
        if c.eat("TABLESPACE") {
            return Some(AlterAction::SetTablespace);
        }
        if c.eat_all(&["ACCESS", "METHOD"]) {
            return Some(AlterAction::SetAccessMethod);
        }
        if c.eat("SCHEMA") {
            return Some(AlterAction::SetSchema);
        }
        if c.eat("LOGGED") {
            return Some(AlterAction::SetLogged);
        }
        if c.eat("UNLOGGED") {
            return Some(AlterAction::SetUnlogged);
        }
        if c.eat_all(&["WITHOUT", "CLUSTER"]) {
            return act(OtherAction::SetWithoutCluster);
        }
        if c.eat("WITHOUT") || c.eat("WITH") {
            return act(OtherAction::SetWithOids);
        }
        if matches!(c.peek(), Some(Token::LParen)) {
            return act(OtherAction::SetStorageParameters);
        }
        return None;
    }
    if c.eat("RESET") {
        return act(OtherAction::ResetStorageParameters);
    }
    if c.eat_all(&["CLUSTER", "ON"]) {
        return act(OtherAction::ClusterOn);
    }
    if c.eat("RENAME") {
        if c.eat("CONSTRAINT") {
            let from = c.ident()?;
            c.eat("TO");
            return Some(AlterAction::RenameConstraint {
                from,
                to: c.ident()?,
            });
        }
        if c.eat("TO") {
            return Some(AlterAction::RenameTable { to: c.name()? });
        }
        c.eat("COLUMN");
        let from = c.ident()?;
        c.eat("TO");
        return Some(AlterAction::RenameColumn {
            from,
            to: c.ident()?,
        });
    }
    if c.eat("ENABLE") || c.eat("DISABLE") {
        let _ = c.eat("ALWAYS") || c.eat("REPLICA");
        return act(if c.is("TRIGGER") {
            OtherAction::EnableOrDisableTrigger
        } else {
            OtherAction::EnableOrDisableRuleOrRowSecurity
        });
    }
    for (kw, other) in [
        ("INHERIT", OtherAction::Inherit),
        ("NO", OtherAction::NoInherit),
        ("OF", OtherAction::OfType),
        ("NOT", OtherAction::NotOf),
        ("OWNER", OtherAction::OwnerTo),
        ("REPLICA", OtherAction::ReplicaIdentity),
        ("FORCE", OtherAction::ForceRowLevelSecurity),
    ] {
        if c.is(kw) {
            return act(other);
        }
    }
    None
}
