//! zdm's own small statement model. Only what matters for locks, rewrites and compatibility is
//! kept; the sqlparser AST stays inside `parse/`.

use std::fmt;

use super::definition::{ConstraintDefinition, IndexDefinition};
use crate::lock::LockMode;

pub use crate::sql::Name;

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
            written: fold_outside_quotes(written.trim()),
        }
    }

    /// Whether PostgreSQL provides the type (by its canonical name), rather than a migration
    /// creating it (an enum, a domain, a composite).
    pub fn is_builtin(&self) -> bool {
        matches!(
            self.name.as_str(),
            "int2"
                | "int4"
                | "int8"
                | "serial"
                | "bigserial"
                | "smallserial"
                | "numeric"
                | "float4"
                | "float8"
                | "money"
                | "text"
                | "varchar"
                | "bpchar"
                | "name"
                | "bytea"
                | "bool"
                | "date"
                | "time"
                | "timetz"
                | "timestamp"
                | "timestamptz"
                | "interval"
                | "json"
                | "jsonb"
                | "uuid"
                | "xml"
                | "inet"
                | "cidr"
                | "macaddr"
                | "macaddr8"
                | "bit"
                | "varbit"
                | "tsvector"
                | "tsquery"
                | "oid"
                | "int4range"
                | "int8range"
                | "numrange"
                | "tsrange"
                | "tstzrange"
                | "daterange"
                | "point"
                | "line"
                | "lseg"
                | "box"
                | "path"
                | "polygon"
                | "circle"
                | "citext"
        )
    }

    /// `serial` columns are integers whose default is `nextval(…)`.
    pub fn is_serial(&self) -> bool {
        matches!(self.name.as_str(), "serial" | "bigserial" | "smallserial")
    }
}

/// Lower-cases what is outside double quotes, as PostgreSQL folds unquoted names: a quoted
/// type name (`"MonitorSeverity"`) keeps its case.
fn fold_outside_quotes(text: &str) -> String {
    let mut quoted = false;
    text.chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted { c } else { c.to_ascii_lowercase() }
        })
        .collect()
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
        /// The statement, when sqlparser read it (the recognizer's forms have none).
        definition: Option<IndexDefinition>,
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
        /// The columns the WHERE clause pins to constants, ANDed at its top level
        /// (`id = 5`, `id IN (1, 2)`, `(a, b) = (1, 2)`): when they cover a key, the statement
        /// touches a few known rows.
        pinned: Vec<String>,
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
    /// The constraints written in the column's definition (PRIMARY KEY, UNIQUE, REFERENCES,
    /// CHECK), as table constraints on the column.
    pub inline: Vec<ConstraintSpec>,
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
    /// An action no operation plans and no rule looks into; `classify` says which lock it
    /// takes.
    Other(OtherAction),
}

/// The ALTER TABLE actions zdm knows only by name: what the statement does, never which lock
/// it takes (that is `classify`'s to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherAction {
    AlterConstraint,
    /// `ALTER COLUMN … SET STATISTICS`.
    SetStatistics,
    /// `ALTER COLUMN … SET (n_distinct = …)` and `RESET (…)`.
    SetAttributeOptions,
    /// `ALTER COLUMN … SET STORAGE` or `SET COMPRESSION`.
    SetStorage,
    /// `ALTER COLUMN … DROP EXPRESSION` or `DROP IDENTITY`.
    DropExpressionOrIdentity,
    /// `ALTER COLUMN … ADD GENERATED … AS IDENTITY`.
    AddIdentity {
        column: String,
    },
    /// `ALTER COLUMN … SET GENERATED / INCREMENT / START`.
    SetIdentityOption,
    /// `ALTER COLUMN … RESTART`.
    RestartIdentity,
    SetWithoutCluster,
    SetWithOids,
    /// `SET (fillfactor = …)` and other storage parameters.
    SetStorageParameters,
    ResetStorageParameters,
    ClusterOn,
    Inherit,
    NoInherit,
    OfType,
    NotOf,
    OwnerTo,
    ReplicaIdentity,
    /// `ENABLE [ALWAYS | REPLICA] TRIGGER …` / `DISABLE TRIGGER …`.
    EnableOrDisableTrigger,
    /// `ENABLE` / `DISABLE` of a rule or of row level security.
    EnableOrDisableRuleOrRowSecurity,
    ForceRowLevelSecurity,
    /// Another action sqlparser understood, as written.
    Unlisted(String),
}

impl OtherAction {
    /// What it is, for messages.
    pub fn what(&self) -> String {
        match self {
            OtherAction::AlterConstraint => "ALTER CONSTRAINT".into(),
            OtherAction::SetStatistics => "ALTER COLUMN … SET STATISTICS".into(),
            OtherAction::SetAttributeOptions => "ALTER COLUMN … SET (attribute options)".into(),
            OtherAction::SetStorage => "ALTER COLUMN … SET STORAGE".into(),
            OtherAction::DropExpressionOrIdentity => {
                "ALTER COLUMN … DROP EXPRESSION/IDENTITY".into()
            }
            OtherAction::AddIdentity { column } => {
                format!("ALTER COLUMN {column} ADD GENERATED … AS IDENTITY")
            }
            OtherAction::SetIdentityOption => "ALTER COLUMN … SET identity option".into(),
            OtherAction::RestartIdentity => "ALTER COLUMN … RESTART".into(),
            OtherAction::SetWithoutCluster => "SET WITHOUT CLUSTER".into(),
            OtherAction::SetWithOids => "SET WITH/WITHOUT OIDS".into(),
            OtherAction::SetStorageParameters => "SET (storage parameters)".into(),
            OtherAction::ResetStorageParameters => "RESET (storage parameters)".into(),
            OtherAction::ClusterOn => "CLUSTER ON".into(),
            OtherAction::Inherit => "INHERIT".into(),
            OtherAction::NoInherit => "NO INHERIT".into(),
            OtherAction::OfType => "OF type".into(),
            OtherAction::NotOf => "NOT OF".into(),
            OtherAction::OwnerTo => "OWNER TO".into(),
            OtherAction::ReplicaIdentity => "REPLICA IDENTITY".into(),
            OtherAction::EnableOrDisableTrigger => "ENABLE/DISABLE TRIGGER".into(),
            OtherAction::EnableOrDisableRuleOrRowSecurity => {
                "ENABLE/DISABLE RULE or ROW LEVEL SECURITY".into()
            }
            OtherAction::ForceRowLevelSecurity => "FORCE ROW LEVEL SECURITY".into(),
            OtherAction::Unlisted(text) => text.clone(),
        }
    }
}

/// A table constraint, or a column constraint written inline.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintSpec {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    pub not_valid: bool,
    /// The clause, when sqlparser read it.
    pub definition: Option<ConstraintDefinition>,
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
