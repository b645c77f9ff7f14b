//! zdm's own small statement model. Only what matters for locks, rewrites and compatibility is
//! kept; the sqlparser AST stays inside `parse/`.

use std::fmt;

use crate::classify::LockMode;

/// A possibly schema-qualified object name, with unquoted identifiers folded to lower case as
/// PostgreSQL does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn new(schema: Option<&str>, name: &str) -> Name {
        Name {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// A name in the same schema as `other`.
    pub fn in_schema_of(other: &Name, name: &str) -> Name {
        Name {
            schema: other.schema.clone(),
            name: name.to_owned(),
        }
    }

    /// Reads back what `Display` writes: `schema.name`, each part bare or `"quoted"`.
    pub fn parse_display(text: &str) -> Option<Name> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    parts.last_mut()?.push('"');
                }
                '"' => quoted = !quoted,
                '.' if !quoted => parts.push(String::new()),
                c => parts.last_mut()?.push(c),
            }
        }
        match parts.as_slice() {
            [name] => Some(Name::new(None, name)),
            [schema, name] => Some(Name::new(Some(schema), name)),
            _ => None,
        }
    }

    /// The name without `public.`, so `public.users` and `users` compare equal.
    pub fn key(&self) -> Name {
        match self.schema.as_deref() {
            Some("public") | None => Name::new(None, &self.name),
            Some(_) => self.clone(),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", display_ident(schema))?;
        }
        write!(f, "{}", display_ident(&self.name))
    }
}

#[cfg(test)]
mod name_tests {
    use super::Name;

    #[test]
    fn display_reads_back() {
        for name in [
            Name::new(None, "users"),
            Name::new(Some("My Schema"), "a\"b.c"),
            Name::new(Some("app"), "名前"),
        ] {
            assert_eq!(Name::parse_display(&name.to_string()), Some(name));
        }
    }
}

/// Shows an identifier the way a user would write it: bare when that reads back the same.
pub fn display_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

/// A column type, normalized so that `character varying(20)` and `varchar(20)` compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    /// Canonical name: `varchar`, `bpchar`, `int4`, `int8`, `numeric`, `timestamptz`, …
    pub name: String,
    /// Type modifiers: length, precision and scale.
    pub modifiers: Vec<u32>,
    pub array: bool,
    /// As written, for messages.
    pub written: String,
}

impl SqlType {
    /// Parses a type as written (`VARCHAR(20)`, `timestamp(3) with time zone`, `int[]`).
    pub fn parse(written: &str) -> SqlType {
        let lower = written.trim().to_ascii_lowercase();
        let array = lower.ends_with("[]") || lower.contains("[]") || lower.ends_with(" array");
        let mut modifiers = Vec::new();
        let mut words = String::new();
        let mut depth = 0;
        let mut arg = String::new();
        for c in lower.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    modifiers.extend(arg.trim().parse::<u32>().ok());
                    arg.clear();
                }
                ',' if depth > 0 => {
                    modifiers.extend(arg.trim().parse::<u32>().ok());
                    arg.clear();
                }
                '[' | ']' => {}
                _ if depth > 0 => arg.push(c),
                _ => words.push(c),
            }
        }
        let words = words
            .split_whitespace()
            .filter(|w| *w != "array")
            .collect::<Vec<_>>()
            .join(" ");
        let words = words
            .strip_prefix("pg_catalog.")
            .or_else(|| words.strip_prefix("public."))
            .unwrap_or(&words);
        let name = match words.trim_matches('"') {
            "character varying" | "varchar" => "varchar",
            "character" | "char" | "bpchar" => "bpchar",
            "int" | "integer" | "int4" => "int4",
            "bigint" | "int8" => "int8",
            "smallint" | "int2" => "int2",
            "serial" | "serial4" => "serial",
            "bigserial" | "serial8" => "bigserial",
            "smallserial" | "serial2" => "smallserial",
            "decimal" | "numeric" => "numeric",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "time" | "time without time zone" => "time",
            "timetz" | "time with time zone" => "timetz",
            "double precision" | "float8" | "double" => "float8",
            "real" | "float4" => "float4",
            "boolean" | "bool" => "bool",
            "bit varying" | "varbit" => "varbit",
            other => other,
        }
        .to_owned();
        SqlType {
            name,
            modifiers,
            array,
            written: written.trim().to_lowercase(),
        }
    }

    /// `serial` columns are integers whose default is `nextval(…)`.
    pub fn is_serial(&self) -> bool {
        matches!(self.name.as_str(), "serial" | "bigserial" | "smallserial")
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// One statement, as far as zdm needs to understand it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CreateTable {
        name: Name,
        columns: Vec<ColumnSpec>,
        constraints: Vec<ConstraintSpec>,
        /// `PARTITION OF parent`: takes ACCESS EXCLUSIVE on the parent.
        partition_of: Option<Name>,
        partitioned: bool,
    },
    CreateIndex {
        name: Option<Name>,
        table: Name,
        columns: Vec<String>,
        unique: bool,
        concurrently: bool,
    },
    AlterTable {
        table: Name,
        actions: Vec<AlterAction>,
    },
    DropIndex {
        names: Vec<Name>,
        concurrently: bool,
    },
    Drop {
        kind: ObjectKind,
        names: Vec<Name>,
        cascade: bool,
    },
    Truncate {
        tables: Vec<Name>,
        cascade: bool,
    },
    Reindex {
        target: ReindexTarget,
        name: Option<Name>,
        concurrently: bool,
    },
    Vacuum {
        full: bool,
        tables: Vec<Name>,
    },
    Cluster {
        table: Option<Name>,
    },
    LockTable {
        tables: Vec<Name>,
        mode: LockMode,
    },
    RefreshMaterializedView {
        name: Name,
        concurrently: bool,
    },
    CreateView {
        name: Name,
        materialized: bool,
        /// The relations its query reads.
        reads: Vec<Name>,
    },
    AlterTypeAddValue {
        type_name: Name,
        value: String,
    },
    /// `ALTER TYPE from RENAME TO to`: catalog only, but columns of the type now go by the new
    /// name, which SQL zdm writes for them (a shadow column's type) must use.
    RenameType {
        from: Name,
        to: String,
    },
    /// INSERT, UPDATE, DELETE, MERGE.
    Dml {
        kind: DmlKind,
        table: Name,
        /// Whether a WHERE clause limits the rows (UPDATE/DELETE).
        filtered: bool,
    },
    Begin,
    Commit,
    Rollback,
    /// `SET [LOCAL] name = value`, `RESET name`.
    Set {
        name: String,
        value: Option<String>,
        local: bool,
    },
    /// `DO $$ … $$`: an anonymous code block. Its body (and where the body starts in the
    /// statement's text) is kept so lint can check the SQL statements written in it.
    DoBlock {
        body: Option<(usize, String)>,
    },
    /// Understood, and takes no lock that ordinary queries wait on: comments, grants,
    /// functions, sequences, types, extensions, SELECT, ANALYZE…
    Other {
        what: String,
        /// The object it creates, so later DDL on it counts as DDL on a new object.
        creates: Option<(ObjectKind, Name)>,
    },
    /// Neither sqlparser nor the fallback recognizer understood it.
    Unrecognized {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Table,
    View,
    MaterializedView,
    Index,
    Schema,
    Type,
    Sequence,
    Function,
    Other,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Index => "index",
            ObjectKind::Schema => "schema",
            ObjectKind::Type => "type",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Function => "function",
            ObjectKind::Other => "object",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexTarget {
    Index,
    Table,
    Schema,
    Database,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    Insert,
    Update,
    Delete,
    Merge,
}

/// A column as declared in CREATE TABLE or ADD COLUMN.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    /// The DEFAULT expression as written.
    pub default: Option<String>,
    pub generated: Option<Generated>,
    pub primary_key: bool,
    pub unique: bool,
    pub references: Option<Name>,
    pub check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// `GENERATED ALWAYS AS (…) STORED`: computed for every row when added.
    Stored,
    /// `GENERATED ALWAYS AS (…) [VIRTUAL]`: PostgreSQL 18 computes it on read.
    Virtual,
    /// `GENERATED … AS IDENTITY`.
    Identity,
}

/// One action of an ALTER TABLE.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction {
    AddColumn(ColumnSpec),
    DropColumn {
        column: String,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: Name,
    },
    SetSchema,
    AlterColumnType {
        column: String,
        ty: SqlType,
        using: Option<String>,
    },
    SetNotNull {
        column: String,
    },
    DropNotNull {
        column: String,
    },
    SetDefault {
        column: String,
        default: String,
    },
    DropDefault {
        column: String,
    },
    AddConstraint(ConstraintSpec),
    ValidateConstraint {
        name: String,
    },
    DropConstraint {
        name: String,
    },
    RenameConstraint {
        from: String,
        to: String,
    },
    SetLogged,
    SetUnlogged,
    SetTablespace,
    SetAccessMethod,
    AttachPartition {
        partition: Name,
    },
    DetachPartition {
        partition: Name,
        concurrently: bool,
        finalize: bool,
    },
    /// Any other action, with the lock PostgreSQL takes for it.
    Other {
        what: String,
        lock: LockMode,
    },
}

/// A table constraint, or a column constraint written inline.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintSpec {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    pub not_valid: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintKind {
    PrimaryKey {
        columns: Vec<String>,
        using_index: Option<String>,
    },
    Unique {
        columns: Vec<String>,
        using_index: Option<String>,
    },
    ForeignKey {
        columns: Vec<String>,
        references: Name,
    },
    Check {
        /// The column a `CHECK (col IS NOT NULL)` proves non-null, if that is its form.
        proves_not_null: Option<String>,
    },
    /// PostgreSQL 18: `CONSTRAINT n NOT NULL col`.
    NotNull {
        column: String,
    },
    Exclude,
}
