//! Building SQL text safely: identifiers reach generated SQL only through [`Ident`] (always
//! quoted, `"` doubled), literals through [`literal`], and generated object names through
//! [`generated_name`], which keeps them within PostgreSQL's 63-byte limit.

use std::fmt;

pub mod backfill;
mod name;
pub mod swap;

pub use name::{Name, display_ident};

/// The SQL of one step zdm runs: statements built here (identifiers through [`Ident`],
/// literals through [`literal`]), or a user's statement as written. A type of its own so that
/// a step's SQL is never confused with a description, a name or a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sql(String);

impl Sql {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Sql {
    fn from(text: String) -> Sql {
        Sql(text)
    }
}

impl From<&str> for Sql {
    fn from(text: &str) -> Sql {
        Sql(text.to_owned())
    }
}

impl std::ops::Deref for Sql {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// An identifier, always rendered quoted so case, spaces, unicode and reserved words survive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.replace('"', "\"\""))
    }
}

/// A possibly schema-qualified relation, quoted.
pub struct Qualified<'a>(pub &'a Name);

impl fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.0.schema {
            write!(f, "{}.", Ident(schema))?;
        }
        write!(f, "{}", Ident(&self.0.name))
    }
}

/// A BEFORE row trigger zdm installs for the rollout, with its function in the table's schema
/// (named `name`). Triggers only assign `NEW.*`, so they never recurse.
///
/// PostgreSQL fires the BEFORE triggers of an event in the byte order of their names, and each
/// one sees the row as the previous ones left it. zdm's trigger must see the row as the user's
/// triggers finish it (a user trigger that sets `NEW.version := OLD.version + 1` must have its
/// value copied, not the one before), so the trigger's name starts with `~`, which sorts after
/// every ASCII letter, digit and `_`; only a user trigger whose name starts with a non-ASCII
/// character fires later.
pub struct RowTrigger<'a> {
    pub table: &'a Name,
    pub name: String,
    /// `INSERT` or `INSERT OR UPDATE`.
    pub events: &'static str,
    /// A condition on the row under which the trigger fires at all (its `WHEN`). PostgreSQL
    /// evaluates it in the executor before calling the function, so a row it excludes costs
    /// an expression, not a PL/pgSQL call: on a backfill's million rows that is about a fifth
    /// of the time.
    pub when: Option<String>,
}

impl RowTrigger<'_> {
    fn function(&self) -> Name {
        Name::in_schema_of(self.table, &self.name)
    }

    /// The trigger's name: the function's, after a `~` so that it fires last.
    pub fn trigger_name(&self) -> String {
        fit_name(&format!("~{}", self.name))
    }

    /// The function and the trigger; `body` is PL/pgSQL run before `RETURN NEW`.
    pub fn create(&self, body: &str) -> String {
        let f = Qualified(&self.function());
        format!(
            "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $zdm$\nBEGIN\n{body}  RETURN NEW;\nEND\n$zdm$;\nCREATE TRIGGER {} BEFORE {} ON {} FOR EACH ROW {}EXECUTE FUNCTION {f}()",
            Ident(&self.trigger_name()),
            self.events,
            Qualified(self.table),
            self.when
                .as_ref()
                .map_or(String::new(), |w| format!("WHEN ({w}) "))
        )
    }

    pub fn drop(&self) -> String {
        format!(
            "DROP TRIGGER IF EXISTS {} ON {};\nDROP FUNCTION IF EXISTS {}()",
            Ident(&self.trigger_name()),
            Qualified(self.table),
            Qualified(&self.function())
        )
    }
}

/// The trigger condition that lets the backfill's own updates pass: its transactions set
/// `zdm.backfill`, so values are never copied back through a reverse expression, and the
/// trigger's function is not even called for the rows it writes.
pub const NOT_DURING_BACKFILL: &str = "current_setting('zdm.backfill', true) IS DISTINCT FROM 'on'";

/// Checks that `text` is exactly one SQL expression (PostgreSQL dialect), nothing before or
/// after it: text zdm pastes into a trigger body or an UPDATE must not be able to close the
/// expression and add statements of its own.
pub fn one_expression(text: &str) -> Result<(), String> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    use sqlparser::tokenizer::Token;
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| e.to_string())?;
    parser.parse_expr().map_err(|e| e.to_string())?;
    match parser.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(format!("unexpected `{other}` after the expression")),
    }
}

/// A statement that fails, naming them, when anything depends on `table.column` that dropping
/// the column would silently take with it and that the swap does not put back: an index, a
/// constraint, extended statistics, a view, a policy, a trigger. `DROP COLUMN` drops indexes
/// and constraints on the column without a word, so a contract that replaces a column runs
/// this first, in its transaction, with the indexes and the table's constraints it rebuilt as
/// `kept`. The column's default (re-created on the new column) and a NOT NULL constraint
/// (PostgreSQL 18) do not count.
pub fn guard_dependents(
    table: &Name,
    column: &str,
    kept: &[Name],
    kept_constraints: &[String],
) -> String {
    let table_literal = literal(&Qualified(table).to_string());
    // Kept indexes as a subquery without NULLs: `x IN (NULL)` is NULL, which would hide
    // every index from the check.
    let kept_list = format!(
        "SELECT to_regclass(k)::oid FROM unnest(ARRAY[{}]::text[]) AS k WHERE to_regclass(k) IS NOT NULL",
        kept.iter()
            .map(|n| literal(&Qualified(n).to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kept_constraints = format!(
        "ARRAY[{}]::text[]",
        kept_constraints
            .iter()
            .map(|c| literal(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // RAISE reads `%` as a placeholder: the names' own are doubled.
    let message = literal(&format!(
        "zdm: the contract would drop % with {}.{}, and it does not rebuild them; nothing was changed: drop them (and create them again after contract), then run zdm contract again",
        table.to_string().replace('%', "%%"),
        column.replace('%', "%%")
    ));
    format!(
        "DO $zdm$\nDECLARE\n  lost text;\nBEGIN\n  SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), ', ') INTO lost\n  FROM pg_depend d\n  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = {table_literal}::regclass\n    AND d.refobjsubid = (SELECT attnum FROM pg_attribute WHERE attrelid = {table_literal}::regclass AND attname = {column_literal})\n    AND d.deptype IN ('n', 'a')\n    AND d.classid <> 'pg_attrdef'::regclass\n    AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN ({kept_list}))\n    AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (SELECT 1 FROM pg_constraint c WHERE c.oid = d.objid AND (c.contype = 'n' OR c.conrelid = {table_literal}::regclass AND c.conname = ANY({kept_constraints}))));\n  IF lost IS NOT NULL THEN\n    RAISE EXCEPTION {message}, lost;\n  END IF;\nEND\n$zdm$",
        column_literal = literal(column),
    )
}

/// A string literal, with `'` doubled (standard_conforming_strings is on since 9.1).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A deterministic name for an object zdm creates: `_zdm_` and the parts joined by `_`. Names
/// over 63 bytes are cut at a character boundary and end in a hash of the full name, so two
/// long names never collide after PostgreSQL would have truncated them.
pub fn generated_name(parts: &[&str]) -> String {
    fit_name(&format!("_zdm_{}", parts.join("_")))
}

/// A name cut to 63 bytes with a hash of the full name at the end when it is longer, for
/// objects that take PostgreSQL-style default names (`orders_user_id_fkey`).
pub fn fit_name(full: &str) -> String {
    if full.len() <= MAX_IDENTIFIER_BYTES {
        return full.to_owned();
    }
    let hash = format!("_{:08x}", fnv1a(full.as_bytes()) as u32);
    let mut cut = MAX_IDENTIFIER_BYTES - hash.len();
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{hash}", &full[..cut])
}

/// FNV-1a: a small, stable hash (the name must not change between zdm versions or runs).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(Ident("users").to_string(), "\"users\"");
        assert_eq!(Ident("we\"ird name").to_string(), "\"we\"\"ird name\"");
        assert_eq!(
            Qualified(&Name::new(Some("App"), "user")).to_string(),
            "\"App\".\"user\""
        );
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn one_expression_accepts_expressions_and_nothing_more() {
        assert!(one_expression("lower(email)").is_ok());
        assert!(one_expression("coalesce(a, 'x;y') || b::text").is_ok());
        assert!(one_expression("(SELECT max(x) FROM t WHERE t.id = 1)").is_ok());
        for bad in [
            "",
            "lower(email);",
            "0 FROM (SELECT NEW.*) AS q); DELETE FROM victim; NEW.z := (SELECT 0",
            "1; DROP TABLE t",
            "lower(nmae",
        ] {
            assert!(one_expression(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_fit_in_63_bytes_and_stay_distinct() {
        assert_eq!(generated_name(&["users", "email"]), "_zdm_users_email");
        let long_a = generated_name(&[&"é".repeat(40), "a"]);
        let long_b = generated_name(&[&"é".repeat(40), "b"]);
        assert!(long_a.len() <= MAX_IDENTIFIER_BYTES && long_b.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(long_a, long_b);
        assert_eq!(long_a, generated_name(&[&"é".repeat(40), "a"]));
    }
}
