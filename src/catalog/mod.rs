//! The schema model zdm reasons about: tables, their columns (type, nullability), constraints
//! and indexes. Built offline by replaying earlier migrations, so that lint knows, say, the old
//! type of a column whose type a later migration changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::parse::{
    AlterAction, Change, ColumnSpec, ConstraintDefinition, ConstraintKind, ConstraintSpec,
    IndexDefinition, Name, SqlType,
};

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Shared until changed (`Arc::make_mut`): lint copies the catalog for every down file
    /// (and zdm's runner check for every file), and a deep copy of every table each time made
    /// a long migration set quadratic.
    tables: HashMap<Name, Arc<Table>>,
    indexes: HashMap<Name, Index>,
    /// Views and the relations they read; a view keeps the columns it uses from being dropped
    /// or changed in type.
    views: HashMap<Name, Vec<ViewSource>>,
    /// Indexes that went away with their table (DROP TABLE drops its indexes): a later DROP
    /// INDEX of one has nothing left to lock.
    dropped_with_table: HashSet<Name>,
}

/// A relation a view reads: a column of it when known (introspection), else the whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSource {
    pub table: Name,
    pub column: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub partitioned: bool,
    /// Every column and constraint is known: the table was created by a replayed migration or
    /// read from a database, not only seen in later ALTERs.
    pub complete: bool,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    /// Has a DEFAULT (or is filled by a sequence), so INSERTs that omit it still succeed.
    pub has_default: bool,
    /// The DEFAULT expression, when one was declared (as sqlparser prints it).
    pub default: Option<String>,
    pub identity: bool,
    /// The sequence the column owns (a serial's, read from a database): it is dropped with the
    /// column unless its ownership moves first.
    pub owned_sequence: Option<Name>,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    /// False while added NOT VALID and not yet validated.
    pub valid: bool,
    /// The clause, to build the constraint again on a shadow column.
    pub definition: Option<ConstraintDefinition>,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub table: Name,
    pub columns: Vec<String>,
    pub unique: bool,
    /// The CREATE INDEX statement, to build the index again on a shadow column.
    pub definition: Option<IndexDefinition>,
}

impl Constraint {
    fn from_spec(c: &ConstraintSpec) -> Constraint {
        Constraint {
            name: c.name.clone(),
            kind: c.kind.clone(),
            valid: !c.not_valid,
            definition: c.definition.clone(),
        }
    }
}

impl Column {
    fn from_spec(c: &ColumnSpec) -> Column {
        Column {
            name: c.name.clone(),
            ty: c.ty.clone(),
            not_null: c.not_null,
            has_default: c.default.is_some() || c.ty.is_serial() || c.generated.is_some(),
            default: c.default.clone(),
            identity: c.generated == Some(crate::parse::Generated::Identity),
            owned_sequence: None,
        }
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name == name)
    }

    /// Whether a valid constraint proves the column holds no NULL: a validated
    /// `CHECK (col IS NOT NULL)` or a PostgreSQL 18 NOT NULL constraint.
    pub fn has_valid_not_null_proof(&self, column: &str) -> bool {
        self.constraints.iter().any(|c| {
            c.valid
                && match &c.kind {
                    ConstraintKind::Check { proves_not_null } => {
                        proves_not_null.as_deref() == Some(column)
                    }
                    ConstraintKind::NotNull { column: col } => col == column,
                    _ => false,
                }
        })
    }
}

impl Catalog {
    pub fn table(&self, name: &Name) -> Option<&Table> {
        self.tables.get(&name.key()).map(Arc::as_ref)
    }

    pub fn index(&self, name: &Name) -> Option<&Index> {
        self.indexes.get(&name.key())
    }

    /// The column sets that identify one row of the table: its primary key, UNIQUE
    /// constraints and unique indexes. None when none is known and the table is not fully
    /// known either (it may have a key zdm has not seen).
    pub fn keys(&self, table: &Name) -> Option<Vec<Vec<String>>> {
        let known = self.table(table)?;
        let mut keys: Vec<Vec<String>> = known
            .constraints
            .iter()
            .filter_map(|c| match &c.kind {
                ConstraintKind::PrimaryKey { columns, .. }
                | ConstraintKind::Unique { columns, .. } => Some(columns.clone()),
                _ => None,
            })
            .collect();
        let key = table.key();
        keys.extend(
            self.indexes
                .values()
                .filter(|i| i.unique && i.table.key() == key && !i.columns.is_empty())
                .map(|i| i.columns.clone()),
        );
        (known.complete || !keys.is_empty()).then_some(keys)
    }

    /// The indexes known on a table.
    pub fn indexes_on<'a>(&'a self, table: &Name) -> impl Iterator<Item = &'a Index> + 'a {
        let key = table.key();
        self.indexes.values().filter(move |i| i.table.key() == key)
    }

    /// Whether the index was dropped with its table by an earlier statement.
    pub fn dropped_with_table(&self, index: &Name) -> bool {
        self.dropped_with_table.contains(&index.key())
    }

    /// The table of that name, created empty if it is not known yet (for introspection).
    pub fn table_entry(&mut self, name: &Name) -> &mut Table {
        Arc::make_mut(self.tables.entry(name.key()).or_default())
    }

    /// Records an index (for introspection).
    pub fn add_index(&mut self, name: Name, index: Index) {
        self.indexes.insert(name.key(), index);
    }

    /// Records that a view reads a table (or one of its columns).
    pub fn add_view_source(&mut self, view: Name, source: ViewSource) {
        self.views.entry(view.key()).or_default().push(source);
    }

    /// The views that may use `table.column`: those reading that column, or reading the table
    /// when zdm does not know which columns.
    pub fn views_using(&self, table: &Name, column: &str) -> Vec<Name> {
        let mut out: Vec<Name> = self
            .views
            .iter()
            .filter(|(_, sources)| {
                sources.iter().any(|s| {
                    s.table.key() == table.key() && s.column.as_deref().is_none_or(|c| c == column)
                })
            })
            .map(|(v, _)| v.clone())
            .collect();
        out.sort();
        out
    }

    /// The tables a view reads.
    pub fn tables_read_by(&self, view: &Name) -> Vec<Name> {
        let mut out: Vec<Name> = self
            .views
            .get(&view.key())
            .into_iter()
            .flatten()
            .map(|s| s.table.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every table with its name.
    pub fn tables(&self) -> impl Iterator<Item = (&Name, &Table)> {
        self.tables
            .iter()
            .map(|(name, table)| (name, table.as_ref()))
    }

    /// The indexes of a table (created by CREATE INDEX), with their names.
    pub fn indexes_of(&self, table: &Name) -> Vec<(&Name, &Index)> {
        let mut out: Vec<_> = self
            .indexes
            .iter()
            .filter(|(_, i)| i.table == table.key())
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Index lookup by bare name, as `ADD CONSTRAINT … USING INDEX i` names it.
    pub fn index_in_schema_of(&self, table: &Name, index: &str) -> Option<&Index> {
        self.index(&Name {
            schema: table.schema.clone(),
            name: index.to_owned(),
        })
    }

    /// The schema after running `sql` on an empty database.
    pub fn from_sql(sql: &str) -> Catalog {
        let mut catalog = Catalog::default();
        for stmt in crate::source::split_statements(sql).statements {
            catalog.apply(&crate::parse::parse_statement(&stmt));
        }
        catalog
    }

    /// Applies a statement's effect on the schema. Statements that do not change the modelled
    /// parts are ignored.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::RenameType { from, to } => {
                // Columns of the type keep it under its new name.
                let renamed = crate::sql::Ident(to).to_string();
                let of_the_type = |column: &Column| {
                    let written = column.ty.written.trim_end_matches("[]");
                    let bare = written.rsplit('.').next().unwrap_or(written);
                    bare.trim_matches('"') == from.name
                };
                for table in self.tables.values_mut() {
                    // Only a table with such a column is copied out of a shared catalog.
                    if !table.columns.iter().any(of_the_type) {
                        continue;
                    }
                    for column in &mut Arc::make_mut(table).columns {
                        if of_the_type(column) {
                            let array = if column.ty.array { "[]" } else { "" };
                            column.ty.written = format!("{renamed}{array}");
                            column.ty.name = to.clone();
                        }
                    }
                }
            }
            Change::CreateTable {
                name,
                columns,
                constraints,
                partitioned,
                ..
            } => {
                let mut table = Table {
                    partitioned: *partitioned,
                    complete: true,
                    ..Table::default()
                };
                for c in columns {
                    table.columns.push(Column::from_spec(c));
                }
                for c in columns {
                    table
                        .constraints
                        .extend(c.inline.iter().map(Constraint::from_spec));
                }
                for c in constraints {
                    table.constraints.push(Constraint::from_spec(c));
                }
                self.tables.insert(name.key(), Arc::new(table));
            }
            Change::CreateIndex {
                name: Some(name),
                table,
                columns,
                unique,
                definition,
                ..
            } => {
                let name = Name {
                    schema: name.schema.clone().or_else(|| table.schema.clone()),
                    name: name.name.clone(),
                };
                self.dropped_with_table.remove(&name.key());
                self.indexes.insert(
                    name.key(),
                    Index {
                        table: table.key(),
                        columns: columns.clone(),
                        unique: *unique,
                        definition: definition.clone(),
                    },
                );
            }
            Change::CreateView { name, reads, .. } => {
                self.views.insert(
                    name.key(),
                    reads
                        .iter()
                        .map(|t| ViewSource {
                            table: t.key(),
                            column: None,
                        })
                        .collect(),
                );
            }
            Change::DropIndex { names, .. } => {
                for n in names {
                    self.indexes.remove(&n.key());
                }
            }
            Change::Drop { names, .. } => {
                for n in names {
                    let key = n.key();
                    if self.tables.remove(&key).is_some() {
                        let gone: Vec<Name> = self
                            .indexes
                            .iter()
                            .filter(|(_, index)| index.table.key() == key)
                            .map(|(name, _)| name.clone())
                            .collect();
                        for index in gone {
                            self.indexes.remove(&index);
                            self.dropped_with_table.insert(index);
                        }
                    }
                    self.views.remove(&key);
                }
            }
            Change::AlterTable { table, actions } => {
                for action in actions {
                    self.apply_action(table, action);
                }
            }
            _ => {}
        }
    }

    fn apply_action(&mut self, table_name: &Name, action: &AlterAction) {
        if let AlterAction::RenameTable { to } = action {
            if let Some(t) = self.tables.remove(&table_name.key()) {
                let to = Name {
                    schema: to.schema.clone().or_else(|| table_name.schema.clone()),
                    name: to.name.clone(),
                };
                self.tables.insert(to.key(), t);
            }
            return;
        }
        // `ADD CONSTRAINT … USING INDEX i` takes its columns from the index.
        let action = &match action {
            AlterAction::AddConstraint(spec) => {
                let mut spec = spec.clone();
                if let ConstraintKind::PrimaryKey {
                    columns,
                    using_index: Some(i),
                }
                | ConstraintKind::Unique {
                    columns,
                    using_index: Some(i),
                } = &mut spec.kind
                    && let Some(index) = self.index_in_schema_of(table_name, i)
                {
                    *columns = index.columns.clone();
                }
                AlterAction::AddConstraint(spec)
            }
            other => other.clone(),
        };
        // A table no replayed migration created (it predates them, or the file is linted
        // alone) still collects what later statements add, such as validated constraints.
        let table = Arc::make_mut(self.tables.entry(table_name.key()).or_default());
        match action {
            AlterAction::AddColumn(c) => {
                table.columns.push(Column::from_spec(c));
                table
                    .constraints
                    .extend(c.inline.iter().map(Constraint::from_spec));
            }
            AlterAction::SetDefault { column, default } => {
                if let Some(c) = table.column_mut(column) {
                    c.has_default = true;
                    c.default = Some(default.clone());
                }
            }
            AlterAction::DropDefault { column } => {
                if let Some(c) = table.column_mut(column) {
                    c.has_default = false;
                    c.default = None;
                }
            }
            AlterAction::DropColumn { column } => table.columns.retain(|c| &c.name != column),
            AlterAction::RenameColumn { from, to } => {
                if let Some(c) = table.column_mut(from) {
                    c.name = to.clone();
                }
            }
            AlterAction::AlterColumnType { column, ty, .. } => {
                if let Some(c) = table.column_mut(column) {
                    c.ty = ty.clone();
                }
            }
            AlterAction::SetNotNull { column } => {
                if let Some(c) = table.column_mut(column) {
                    c.not_null = true;
                }
            }
            AlterAction::DropNotNull { column } => {
                if let Some(c) = table.column_mut(column) {
                    c.not_null = false;
                }
            }
            AlterAction::AddConstraint(spec) => {
                if let ConstraintKind::PrimaryKey { columns, .. } = &spec.kind {
                    for col in columns {
                        if let Some(c) = table.column_mut(col) {
                            c.not_null = true;
                        }
                    }
                }
                if let ConstraintKind::NotNull { column } = &spec.kind
                    && !spec.not_valid
                    && let Some(c) = table.column_mut(column)
                {
                    c.not_null = true;
                }
                table.constraints.push(Constraint::from_spec(spec));
            }
            AlterAction::ValidateConstraint { name } => {
                for c in &mut table.constraints {
                    if c.name.as_deref() == Some(name) {
                        c.valid = true;
                    }
                }
            }
            AlterAction::DropConstraint { name } => table
                .constraints
                .retain(|c| c.name.as_deref() != Some(name)),
            AlterAction::RenameConstraint { from, to } => {
                for c in &mut table.constraints {
                    if c.name.as_deref() == Some(from) {
                        c.name = Some(to.clone());
                    }
                }
            }
            _ => {}
        }
    }
}
