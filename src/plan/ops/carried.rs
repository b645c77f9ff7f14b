//! What a column carries that dropping it would lose, found in the catalog before a type
//! change plans its swap: the indexes that read it (any method, expression, WHERE, INCLUDE),
//! the primary key or UNIQUE constraints it is in, its CHECK constraints and foreign keys, the
//! foreign keys of other tables that reference it, and whether it is an identity. Each comes
//! with the definition the contract builds again on the shadow; what has no readable
//! definition is refused here, with its name, never dropped.

use crate::catalog::{Catalog, Table};
use crate::parse::{ConstraintDefinition, ConstraintKind, IndexDefinition, Name};
use crate::sql::fit_name;

/// A plain index (not the one behind a key constraint) that reads the column.
pub struct CarriedIndex {
    pub name: String,
    pub definition: IndexDefinition,
}

/// The primary key or a UNIQUE constraint the column is in.
pub struct KeyConstraint {
    pub name: String,
    pub primary: bool,
    pub columns: Vec<String>,
}

/// A CHECK constraint or foreign key of the table that reads the column.
pub struct CarriedConstraint {
    pub name: String,
    pub definition: ConstraintDefinition,
    /// Validated; a constraint added NOT VALID and never validated stays so.
    pub valid: bool,
    /// For a foreign key, the table it references (whose lock its steps also take).
    pub references: Option<Name>,
}

/// A foreign key of another table (or this one) that references the column.
pub struct IncomingForeignKey {
    pub table: Name,
    pub constraint: CarriedConstraint,
    /// The referencing columns, and whether they are of a narrower type than the new one.
    pub columns: Vec<String>,
    /// The referenced key's columns, for a definition that leaves them implicit.
    pub key: Vec<String>,
}

#[derive(Default)]
pub struct Carried {
    pub indexes: Vec<CarriedIndex>,
    pub keys: Vec<KeyConstraint>,
    pub constraints: Vec<CarriedConstraint>,
    pub incoming: Vec<IncomingForeignKey>,
}

/// PostgreSQL's name for a constraint created without one (`ChooseConstraintName`): the
/// table, the columns and a suffix. Used when the schema comes from migrations that left the
/// name to PostgreSQL; a schema read from a database always has the real names.
fn default_name(table: &Name, kind: &ConstraintKind, column: &str) -> String {
    let (columns, suffix) = match kind {
        ConstraintKind::PrimaryKey { .. } => (Vec::new(), "pkey"),
        ConstraintKind::Unique { columns, .. } => (columns.clone(), "key"),
        ConstraintKind::ForeignKey { columns, .. } => (columns.clone(), "fkey"),
        _ => (vec![column.to_owned()], "check"),
    };
    let mut parts = vec![table.name.clone()];
    parts.extend(columns);
    parts.push(suffix.to_owned());
    fit_name(&parts.join("_"))
}

/// What `table.column` carries, or why zdm cannot build part of it again on a shadow.
pub fn carried(
    catalog: &Catalog,
    table: &Name,
    t: &Table,
    column: &str,
) -> Result<Carried, String> {
    let mut out = Carried::default();
    for c in &t.constraints {
        let name = || {
            c.name
                .clone()
                .unwrap_or_else(|| default_name(table, &c.kind, column))
        };
        match &c.kind {
            ConstraintKind::PrimaryKey { columns, .. } | ConstraintKind::Unique { columns, .. }
                if columns.iter().any(|c| c == column) =>
            {
                out.keys.push(KeyConstraint {
                    name: name(),
                    primary: matches!(c.kind, ConstraintKind::PrimaryKey { .. }),
                    columns: columns.clone(),
                });
            }
            ConstraintKind::PrimaryKey { .. }
            | ConstraintKind::Unique { .. }
            | ConstraintKind::NotNull { .. } => {}
            ConstraintKind::Exclude => {
                if c.definition.as_ref().is_none_or(|d| d.uses(column)) {
                    return Err(format!(
                        "{table} has the EXCLUDE constraint {}, which may use {column}; an EXCLUDE constraint cannot be added NOT VALID or from an index built beforehand, so zdm cannot build it again on the shadow without a lock",
                        name()
                    ));
                }
            }
            ConstraintKind::Check { .. } | ConstraintKind::ForeignKey { .. } => {
                let uses = match (&c.definition, &c.kind) {
                    (Some(d), _) => d.uses(column),
                    (None, ConstraintKind::ForeignKey { columns, .. }) => {
                        columns.iter().any(|c| c == column)
                    }
                    (None, _) => true,
                };
                if !uses {
                    continue;
                }
                let Some(definition) = c.definition.clone() else {
                    return Err(format!(
                        "zdm cannot read the definition of the constraint {} on {table}, which may use {column}, so it cannot build it again on the shadow; plan with --database-url",
                        name()
                    ));
                };
                let references = match &c.kind {
                    ConstraintKind::ForeignKey { references, .. } => Some(references.clone()),
                    _ => None,
                };
                out.constraints.push(CarriedConstraint {
                    name: name(),
                    definition,
                    valid: c.valid,
                    references,
                });
            }
        }
    }
    // The indexes behind key constraints are built with the constraints.
    let key_index = |index: &str| out.keys.iter().any(|k| k.name == index);
    for (index, def) in catalog.indexes_of(table) {
        if key_index(&index.name) {
            continue;
        }
        match &def.definition {
            Some(d) if d.uses(column) => out.indexes.push(CarriedIndex {
                name: index.name.clone(),
                definition: d.clone(),
            }),
            Some(_) => {}
            None if def.columns.is_empty() || def.columns.iter().any(|c| c == column) => {
                return Err(format!(
                    "zdm cannot read the definition of index {index}, which may use {table}.{column}, so it cannot build it again on the shadow and the contract would drop it; plan with --database-url"
                ));
            }
            None => {}
        }
    }
    // Foreign keys that reference the column: through a key it is in.
    let key_columns: Vec<&KeyConstraint> = out.keys.iter().collect();
    for (other, other_table) in catalog.tables() {
        for c in &other_table.constraints {
            let ConstraintKind::ForeignKey {
                columns,
                references,
            } = &c.kind
            else {
                continue;
            };
            if references.key() != table.key() {
                continue;
            }
            let referenced = c
                .definition
                .as_ref()
                .map(|d| d.referenced_columns())
                .unwrap_or_default();
            let key = if referenced.is_empty() {
                key_columns
                    .iter()
                    .find(|k| k.primary)
                    .map(|k| k.columns.clone())
                    .unwrap_or_default()
            } else {
                referenced.clone()
            };
            if !key.iter().any(|k| k == column) {
                continue;
            }
            let name = c
                .name
                .clone()
                .unwrap_or_else(|| default_name(other, &c.kind, column));
            let Some(definition) = c.definition.clone() else {
                return Err(format!(
                    "zdm cannot read the definition of the foreign key {name} on {other}, which references {table}.{column}, so it cannot point it at the shadow; plan with --database-url"
                ));
            };
            out.incoming.push(IncomingForeignKey {
                table: other.clone(),
                constraint: CarriedConstraint {
                    name,
                    definition,
                    valid: c.valid,
                    references: Some(table.clone()),
                },
                columns: columns.clone(),
                key,
            });
        }
    }
    out.incoming
        .sort_by(|a, b| (&a.table, &a.constraint.name).cmp(&(&b.table, &b.constraint.name)));
    Ok(out)
}
