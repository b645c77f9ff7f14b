//! From sqlparser's AST to zdm's [`Change`]. This is the only place that knows sqlparser's
//! types; statements whose details do not matter for locking become [`Change::Other`].

use sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, ColumnOption, CreateTable, Expr, GeneratedAs,
    GeneratedExpressionMode, Ident, ObjectType, RenameTableNameKind, TableConstraint, TableFactor,
};

use super::definition::{ConstraintDefinition, IndexDefinition};
use super::fold::{ident, name};
use super::model::*;
use crate::lock::LockMode;

pub fn convert(stmt: &ast::Statement) -> Change {
    use ast::Statement as S;
    match stmt {
        S::CreateTable(ct) => create_table(ct),
        S::CreateIndex(ci) => Change::CreateIndex {
            name: ci.name.as_ref().map(name),
            table: name(&ci.table_name),
            columns: ci
                .columns
                .iter()
                .map(|c| expr_column(&c.column.expr).unwrap_or_default())
                .collect(),
            unique: ci.unique,
            concurrently: ci.concurrently,
            definition: IndexDefinition::new(&ci.to_string()),
        },
        S::AlterTable(at) => Change::AlterTable {
            table: name(&at.name),
            actions: at.operations.iter().map(alter_action).collect(),
        },
        S::Drop {
            object_type,
            names,
            cascade,
            ..
        } => {
            let names = names.iter().map(name).collect();
            match object_type {
                ObjectType::Index => Change::DropIndex {
                    names,
                    concurrently: false,
                },
                other => Change::Drop {
                    kind: object_kind(other),
                    names,
                    cascade: *cascade,
                },
            }
        }
        S::Truncate(t) => Change::Truncate {
            tables: t.table_names.iter().map(|t| name(&t.name)).collect(),
            cascade: matches!(t.cascade, Some(ast::CascadeOption::Cascade)),
        },
        S::Vacuum(v) => Change::Vacuum {
            full: v.full,
            tables: v.table_name.iter().map(name).collect(),
        },
        S::Lock(l) => Change::LockTable {
            tables: l.tables.iter().map(|t| name(&t.name)).collect(),
            mode: l.lock_mode.as_ref().map_or(LockMode::AccessExclusive, |m| {
                use ast::LockTableMode as M;
                match m {
                    M::AccessShare => LockMode::AccessShare,
                    M::RowShare => LockMode::RowShare,
                    M::RowExclusive => LockMode::RowExclusive,
                    M::ShareUpdateExclusive => LockMode::ShareUpdateExclusive,
                    M::Share => LockMode::Share,
                    M::ShareRowExclusive => LockMode::ShareRowExclusive,
                    M::Exclusive => LockMode::Exclusive,
                    M::AccessExclusive => LockMode::AccessExclusive,
                }
            }),
        },
        S::CreateView(v) => Change::CreateView {
            name: name(&v.name),
            materialized: v.materialized,
            reads: query_relations(&v.query),
        },
        S::AlterType(at) => match &at.operation {
            ast::AlterTypeOperation::AddValue(add) => Change::AlterTypeAddValue {
                type_name: name(&at.name),
                value: add.value.value.clone(),
            },
            ast::AlterTypeOperation::Rename(r) => Change::RenameType {
                from: name(&at.name),
                to: ident(&r.new_name),
            },
            _ => other("ALTER TYPE", None),
        },
        S::Update(u) => Change::Dml {
            kind: DmlKind::Update,
            table: table_factor_name(&u.table.relation),
            filtered: u.selection.is_some(),
            pinned: u.selection.as_ref().map(pinned_columns).unwrap_or_default(),
        },
        S::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            Change::Dml {
                kind: DmlKind::Delete,
                table: from
                    .first()
                    .map_or(Name::new(None, ""), |t| table_factor_name(&t.relation)),
                filtered: d.selection.is_some(),
                pinned: d.selection.as_ref().map(pinned_columns).unwrap_or_default(),
            }
        }
        S::Insert(i) => Change::Dml {
            kind: DmlKind::Insert,
            table: match &i.table {
                ast::TableObject::TableName(n) => name(n),
                _ => Name::new(None, ""),
            },
            filtered: true,
            pinned: Vec::new(),
        },
        S::Merge(m) => Change::Dml {
            kind: DmlKind::Merge,
            table: table_factor_name(&m.table),
            filtered: true,
            pinned: Vec::new(),
        },
        S::StartTransaction { .. } => Change::Begin,
        S::Commit { .. } => Change::Commit,
        S::Rollback {
            savepoint: None, ..
        } => Change::Rollback,
        S::Set(set) => set_statement(set),
        S::CreateSequence { name: n, .. } => {
            other("CREATE SEQUENCE", Some((ObjectKind::Sequence, name(n))))
        }
        S::CreateType { name: n, .. } => other("CREATE TYPE", Some((ObjectKind::Type, name(n)))),
        S::CreateFunction(f) => other(
            "CREATE FUNCTION",
            Some((ObjectKind::Function, name(&f.name))),
        ),
        S::CreateSchema { schema_name, .. } => {
            let created = match schema_name {
                ast::SchemaName::Simple(n) | ast::SchemaName::NamedAuthorization(n, _) => {
                    Some((ObjectKind::Schema, name(n)))
                }
                ast::SchemaName::UnnamedAuthorization(_) => None,
            };
            other("CREATE SCHEMA", created)
        }
        S::Query(_) => other("SELECT", None),
        _ => {
            // Understood by sqlparser and not one of the forms above: name it by its first
            // words (`CREATE TRIGGER`, `GRANT`, `COMMENT ON`, …).
            let text = stmt.to_string();
            let head: Vec<&str> = text.split_whitespace().take(2).collect();
            other(&head.join(" ").to_uppercase(), None)
        }
    }
}

fn other(what: &str, creates: Option<(ObjectKind, Name)>) -> Change {
    Change::Other {
        what: what.to_owned(),
        creates,
    }
}

fn object_kind(t: &ObjectType) -> ObjectKind {
    match t {
        ObjectType::Table => ObjectKind::Table,
        ObjectType::View => ObjectKind::View,
        ObjectType::MaterializedView => ObjectKind::MaterializedView,
        ObjectType::Index => ObjectKind::Index,
        ObjectType::Schema => ObjectKind::Schema,
        ObjectType::Type => ObjectKind::Type,
        ObjectType::Sequence => ObjectKind::Sequence,
        _ => ObjectKind::Other,
    }
}

fn table_factor_name(t: &TableFactor) -> Name {
    match t {
        TableFactor::Table { name: n, .. } => name(n),
        _ => Name::new(None, ""),
    }
}

fn set_statement(set: &ast::Set) -> Change {
    match set {
        ast::Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => Change::Set {
            name: name(variable).name,
            value: Some(
                values
                    .iter()
                    .map(|v| v.to_string().trim_matches('\'').to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            local: matches!(scope, Some(ast::ContextModifier::Local)),
        },
        _ => Change::Set {
            name: String::new(),
            value: None,
            local: false,
        },
    }
}

fn expr_column(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Nested(inner) => expr_column(inner),
        _ => None,
    }
}

fn create_table(ct: &CreateTable) -> Change {
    let mut columns: Vec<ColumnSpec> = Vec::new();
    let mut constraints: Vec<ConstraintSpec> = Vec::new();
    for c in &ct.columns {
        columns.push(column_spec(c));
    }
    for tc in &ct.constraints {
        constraints.push(constraint(tc, false));
    }
    // A table-level PRIMARY KEY makes its columns NOT NULL.
    for c in &constraints {
        if let ConstraintKind::PrimaryKey { columns: pk, .. } = &c.kind {
            for col in columns.iter_mut().filter(|col| pk.contains(&col.name)) {
                col.not_null = true;
            }
        }
    }
    Change::CreateTable {
        name: name(&ct.name),
        columns,
        constraints,
        partition_of: ct.partition_of.as_ref().map(name),
        partitioned: ct.partition_by.is_some(),
    }
}

pub fn column_spec(c: &ast::ColumnDef) -> ColumnSpec {
    let ty = SqlType::parse(&c.data_type.to_string());
    let mut spec = ColumnSpec {
        name: ident(&c.name),
        ty,
        not_null: false,
        default: None,
        generated: None,
        primary_key: false,
        unique: false,
        references: None,
        check: false,
        inline: Vec::new(),
    };
    for opt in &c.options {
        if let Some(tc) = inline_constraint(&c.name, opt) {
            spec.inline.push(constraint(&tc, false));
        }
        match &opt.option {
            ColumnOption::NotNull => spec.not_null = true,
            ColumnOption::Default(e) => spec.default = Some(e.to_string()),
            ColumnOption::PrimaryKey(_) => {
                spec.primary_key = true;
                spec.not_null = true;
            }
            ColumnOption::Unique(_) => spec.unique = true,
            ColumnOption::ForeignKey(fk) => spec.references = Some(name(&fk.foreign_table)),
            ColumnOption::Check(_) => spec.check = true,
            ColumnOption::Generated {
                generated_as,
                generation_expr,
                generation_expr_mode,
                ..
            } => {
                spec.generated = Some(match (generation_expr, generated_as) {
                    (None, _) => Generated::Identity,
                    (Some(_), GeneratedAs::ExpStored) => Generated::Stored,
                    (Some(_), _) => match generation_expr_mode {
                        Some(GeneratedExpressionMode::Stored) => Generated::Stored,
                        _ => Generated::Virtual,
                    },
                });
                if spec.generated == Some(Generated::Identity) {
                    spec.not_null = true;
                }
            }
            ColumnOption::Identity(_) => spec.generated = Some(Generated::Identity),
            _ => {}
        }
    }
    spec
}

/// A constraint written in a column's definition, as the table constraint it stands for:
/// `id int CONSTRAINT k PRIMARY KEY` is `CONSTRAINT k PRIMARY KEY (id)`.
fn inline_constraint(column: &Ident, opt: &ast::ColumnOptionDef) -> Option<TableConstraint> {
    let on_column = || vec![ast::IndexColumn::from(column.clone())];
    let name = opt.name.clone();
    Some(match &opt.option {
        ColumnOption::PrimaryKey(pk) => TableConstraint::PrimaryKey(ast::PrimaryKeyConstraint {
            name,
            columns: on_column(),
            ..pk.clone()
        }),
        ColumnOption::Unique(u) => TableConstraint::Unique(ast::UniqueConstraint {
            name,
            columns: on_column(),
            ..u.clone()
        }),
        ColumnOption::ForeignKey(fk) => TableConstraint::ForeignKey(ast::ForeignKeyConstraint {
            name,
            columns: vec![column.clone()],
            ..fk.clone()
        }),
        ColumnOption::Check(c) => {
            TableConstraint::Check(ast::CheckConstraint { name, ..c.clone() })
        }
        _ => return None,
    })
}

/// The relations a query reads.
fn query_relations(query: &ast::Query) -> Vec<Name> {
    let mut reads = Vec::new();
    let _ = sqlparser::ast::visit_relations(query, |relation| {
        let n = name(relation);
        if !reads.contains(&n) {
            reads.push(n);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    reads
}

/// The relations the query in `tokens` reads (none when sqlparser cannot read it).
pub fn relations_read(tokens: &[crate::source::SqlToken]) -> Vec<Name> {
    let tokens = tokens
        .iter()
        .map(|t| sqlparser::tokenizer::TokenWithSpan {
            token: t.token.clone(),
            span: t.span,
        })
        .collect();
    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .with_tokens_with_locations(tokens)
        .parse_query()
        .map(|q| query_relations(&q))
        .unwrap_or_default()
}

fn index_columns(cols: &[ast::IndexColumn]) -> Vec<String> {
    cols.iter()
        .filter_map(|c| expr_column(&c.column.expr))
        .collect()
}

fn constraint(tc: &TableConstraint, not_valid: bool) -> ConstraintSpec {
    let (name, kind) = match tc {
        TableConstraint::PrimaryKey(pk) => (
            pk.name.as_ref(),
            ConstraintKind::PrimaryKey {
                columns: index_columns(&pk.columns),
                using_index: None,
            },
        ),
        TableConstraint::Unique(u) => (
            u.name.as_ref(),
            ConstraintKind::Unique {
                columns: index_columns(&u.columns),
                using_index: None,
            },
        ),
        TableConstraint::PrimaryKeyUsingIndex(c) => (
            c.name.as_ref(),
            ConstraintKind::PrimaryKey {
                columns: Vec::new(),
                using_index: Some(ident(&c.index_name)),
            },
        ),
        TableConstraint::UniqueUsingIndex(c) => (
            c.name.as_ref(),
            ConstraintKind::Unique {
                columns: Vec::new(),
                using_index: Some(ident(&c.index_name)),
            },
        ),
        TableConstraint::ForeignKey(fk) => (
            fk.name.as_ref(),
            ConstraintKind::ForeignKey {
                columns: fk.columns.iter().map(ident).collect(),
                references: name(&fk.foreign_table),
            },
        ),
        TableConstraint::Check(c) => (
            c.name.as_ref(),
            ConstraintKind::Check {
                proves_not_null: match c.expr.as_ref() {
                    Expr::IsNotNull(inner) => expr_column(inner),
                    Expr::Nested(n) => match n.as_ref() {
                        Expr::IsNotNull(inner) => expr_column(inner),
                        _ => None,
                    },
                    _ => None,
                },
            },
        ),
        TableConstraint::Exclude(e) => (e.name.as_ref(), ConstraintKind::Exclude),
        TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) => {
            (None, ConstraintKind::Exclude)
        }
    };
    ConstraintSpec {
        name: name.map(ident),
        kind,
        not_valid,
        definition: Some(ConstraintDefinition::from_ast(tc)),
    }
}

fn alter_action(op: &AlterTableOperation) -> AlterAction {
    use AlterTableOperation as Op;
    match op {
        Op::AddColumn { column_def, .. } => AlterAction::AddColumn(column_spec(column_def)),
        Op::AddConstraint {
            constraint: c,
            not_valid,
        } => AlterAction::AddConstraint(constraint(c, *not_valid)),
        Op::DropColumn { column_names, .. } => AlterAction::DropColumn {
            column: column_names.first().map(ident).unwrap_or_default(),
        },
        Op::DropConstraint { name: n, .. } => AlterAction::DropConstraint { name: ident(n) },
        Op::RenameColumn {
            old_column_name,
            new_column_name,
        } => AlterAction::RenameColumn {
            from: ident(old_column_name),
            to: ident(new_column_name),
        },
        Op::RenameTable { table_name } => AlterAction::RenameTable {
            to: match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => name(n),
            },
        },
        Op::RenameConstraint { old_name, new_name } => AlterAction::RenameConstraint {
            from: ident(old_name),
            to: ident(new_name),
        },
        Op::ValidateConstraint { name: n } => AlterAction::ValidateConstraint { name: ident(n) },
        Op::SetLogged => AlterAction::SetLogged,
        Op::SetUnlogged => AlterAction::SetUnlogged,
        Op::AlterColumn { column_name, op } => {
            let column = ident(column_name);
            match op {
                AlterColumnOperation::SetNotNull => AlterAction::SetNotNull { column },
                AlterColumnOperation::DropNotNull => AlterAction::DropNotNull { column },
                AlterColumnOperation::SetDefault { value } => AlterAction::SetDefault {
                    column,
                    default: value.to_string(),
                },
                AlterColumnOperation::DropDefault => AlterAction::DropDefault { column },
                AlterColumnOperation::SetDataType {
                    data_type, using, ..
                } => AlterAction::AlterColumnType {
                    column,
                    ty: SqlType::parse(&data_type.to_string()),
                    using: using.as_ref().map(|u| u.to_string()),
                },
                AlterColumnOperation::AddGenerated { .. } => {
                    AlterAction::Other(OtherAction::AddIdentity { column })
                }
            }
        }
        Op::EnableTrigger { .. }
        | Op::DisableTrigger { .. }
        | Op::EnableAlwaysTrigger { .. }
        | Op::EnableReplicaTrigger { .. } => {
            AlterAction::Other(OtherAction::EnableOrDisableTrigger)
        }
        Op::SetOptionsParens { .. } => AlterAction::Other(OtherAction::SetStorageParameters),
        other => AlterAction::Other(OtherAction::Unlisted(other.to_string())),
    }
}

/// The columns a WHERE clause pins to constants in the conjunction at its top level: `col =
/// constant`, `col IN (constants)`, `(a, b) = (constants)`. An OR, a range or a subquery pins
/// nothing.
fn pinned_columns(filter: &Expr) -> Vec<String> {
    fn column(e: &Expr) -> Option<String> {
        match e {
            Expr::Identifier(i) => Some(ident(i)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident),
            Expr::Nested(e) => column(e),
            _ => None,
        }
    }
    fn constant(e: &Expr) -> bool {
        match e {
            Expr::Value(_) | Expr::TypedString { .. } => true,
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
                constant(expr)
            }
            _ => false,
        }
    }
    fn collect(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::Nested(e) => collect(e, out),
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => {
                collect(left, out);
                collect(right, out);
            }
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } => match (left.as_ref(), right.as_ref()) {
                (Expr::Tuple(columns), Expr::Tuple(values)) if columns.len() == values.len() => {
                    for (c, v) in columns.iter().zip(values) {
                        if let (Some(c), true) = (column(c), constant(v)) {
                            out.push(c);
                        }
                    }
                }
                (l, r) => {
                    if let (Some(c), true) = (column(l), constant(r)) {
                        out.push(c);
                    } else if let (Some(c), true) = (column(r), constant(l)) {
                        out.push(c);
                    }
                }
            },
            Expr::InList {
                expr,
                list,
                negated: false,
            } if list.iter().all(constant) => out.extend(column(expr)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(filter, &mut out);
    out
}
