//! ALTER COLUMN … TYPE that rewrites the table (int → bigint, text → jsonb USING …): a shadow
//! column of the new type is filled while both application versions run, then swapped in.
//! Binary-coercible changes (varchar widening, numeric precision up…) run as written.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD COLUMN _zdm_…_new <new type>` (nullable, catalog only) | ACCESS EXCLUSIVE, brief |
//! | expand | a BEFORE INSERT OR UPDATE trigger sets the shadow from the column (the USING expression, else a cast) on every write of the row, so a row a writer moves behind the backfill's cursor (a new ctid, a changed key) is right all the same | SHARE ROW EXCLUSIVE, brief |
//! | backfill | shadow = USING expression, in batches | ROW EXCLUSIVE |
//! | contract | the completeness check: the backfill walks the table again and re-copies every row whose shadow differs from what the column gives (see `Backfill::shadow_copy`) | ROW EXCLUSIVE |
//! | contract | each index on the column (and the primary key) built again on the shadow, CONCURRENTLY | SHARE UPDATE EXCLUSIVE |
//! | contract | for a NOT NULL column, CHECK (shadow IS NOT NULL) NOT VALID, then VALIDATE | brief; SHARE UPDATE EXCLUSIVE |
//! | contract | one transaction: drop the trigger, SET NOT NULL, move the sequence of a serial, check that nothing the swap does not rebuild depends on the old column (an index or constraint created since the plan), drop the old column, rename the shadow and its indexes, re-attach the primary key, restore the default | ACCESS EXCLUSIVE, brief |
//! | down expand | drop the trigger and the shadow | ACCESS EXCLUSIVE, brief |
//! | down contract | `ALTER COLUMN … TYPE <old> USING <reverse>` (a cast, or `-- zdm:down <expr>`): rewrites the table under ACCESS EXCLUSIVE |
//!
//! Refused: identity columns, primary keys that foreign keys reference, columns with foreign
//! keys, and tables with CHECK constraints (zdm does not yet carry them to the shadow).

use super::shadow::ShadowColumn;
use super::{ActionCx, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::{AlterAction, ConstraintKind, Name, SqlType};
use crate::plan::text::using_expr;
use crate::sql::{
    Ident, Qualified, RowTrigger, fit_name, generated_name, guard_dependents, literal,
};

pub struct ChangeType;

impl Operation for ChangeType {
    fn kind(&self) -> &'static str {
        "change-type"
    }

    /// A change that rewrites the table; a binary-coercible one runs as written.
    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let AlterAction::AlterColumnType { column, ty, .. } = cx.action else {
            return None;
        };
        cx.risky.then(|| plan(&cx.cx, cx.text, column, ty))
    }
}

pub fn plan(cx: &OpCx, action: &str, column: &str, ty: &SqlType) -> Result<OpPlan, String> {
    let table = cx.table;
    let known = cx.catalog.table(table);
    let old = known.and_then(|t| t.column(column)).ok_or_else(|| {
        format!("zdm does not know {table}.{column} (no earlier migration declares it), so it cannot plan its type change")
    })?;
    let primary =
        primary_key_to_carry(cx, known.expect("the column was found in it"), column, old)?;
    let key = super::update_backfill::batch_key(cx.catalog, table)?;

    let col = Ident(column);
    let shadow_name = generated_name(&[&table.name, column, "new"]);
    let shadow = Ident(&shadow_name);
    let using = using_expr(action);
    let expr = using
        .clone()
        .unwrap_or_else(|| format!("{col}::{}", ty.written));
    // A plain cast reads only the column: a PL/pgSQL expression on NEW, evaluated in-line. A
    // USING expression may name any column bare, so it runs as a one-row query over NEW,
    // which costs a query per written row.
    let conversion = match &using {
        None => format!("NEW.{col}::{}", ty.written),
        Some(expr) => format!(
            "(SELECT {expr} FROM (SELECT NEW.*) AS {})",
            Ident(&table.name)
        ),
    };
    let trigger = RowTrigger {
        table,
        name: generated_name(&[&table.name, column, "convert"]),
        events: "INSERT OR UPDATE",
    };
    let drop_trigger = trigger.drop();
    let mut plan = OpPlan::default();
    ShadowColumn {
        table,
        name: shadow_name.clone(),
        ty: ty.written.clone(),
        trigger,
        trigger_body: format!("  NEW.{shadow} := {conversion};\n"),
        copy: expr,
        key,
        says: [
            format!(
                "add a shadow column of type {} for {table}.{column} (catalog only)",
                ty.written
            ),
            format!("convert every value written to {column} into the shadow"),
            format!("drop the conversion trigger and the shadow of {table}.{column}"),
        ],
    }
    .add_to(&mut plan);

    // Indexes on the column, rebuilt on the shadow; renamed to the old names in the swap.
    let mut rebuilt: Vec<(String, String)> = Vec::new();
    let swap_columns = |cols: &[String]| -> String {
        cols.iter()
            .map(|c| {
                if c == column {
                    shadow.to_string()
                } else {
                    Ident(c).to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // (the new unique index, the primary key constraint it becomes)
    let pk = primary.as_ref().map(|PrimaryKey { name, columns }| {
        let index = generated_name(&[&table.name, "pkey", "new"]);
        plan.contract.push(Step::no_tx(
            format!("build the new primary key index of {table} on the shadow"),
            format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})",
                Ident(&index),
                Qualified(table),
                swap_columns(columns)
            ),
            LockMode::ShareUpdateExclusive,
            table,
        ));
        let constraint = name
            .clone()
            .unwrap_or_else(|| fit_name(&format!("{}_pkey", table.name)));
        (index, constraint)
    });
    for (index, def) in cx.catalog.indexes_of(table) {
        // The primary key's own index (named as its constraint, and listed among the indexes
        // when the schema is read from a database) is the one built just above.
        let is_primary_key = pk.as_ref().is_some_and(|(_, c)| *c == index.name);
        if is_primary_key || !def.columns.iter().any(|c| c == column) {
            continue;
        }
        let name = generated_name(&[&index.name, "new"]);
        plan.contract.push(Step::no_tx(
            format!("build index {} again on the shadow", index.name),
            format!(
                "CREATE {}INDEX CONCURRENTLY {} ON {} ({})",
                if def.unique { "UNIQUE " } else { "" },
                Ident(&name),
                Qualified(table),
                swap_columns(&def.columns)
            ),
            LockMode::ShareUpdateExclusive,
            table,
        ));
        rebuilt.push((name, index.name.clone()));
    }
    let check = generated_name(&[&table.name, column, "new_not_null"]);
    if old.not_null {
        plan.contract.push(Step::tx(
            format!("add CHECK (shadow IS NOT NULL) to {table} without checking existing rows"),
            alter(
                table,
                &format!(
                    "ADD CONSTRAINT {} CHECK ({shadow} IS NOT NULL) NOT VALID",
                    Ident(&check)
                ),
            ),
            LockMode::AccessExclusive,
            table,
        ));
        plan.contract.push(Step::tx(
            "check that the shadow holds no NULL while reads and writes continue".to_string(),
            alter(table, &format!("VALIDATE CONSTRAINT {}", Ident(&check))),
            LockMode::ShareUpdateExclusive,
            table,
        ));
    }

    let mut swap = vec![drop_trigger.clone()];
    if old.not_null {
        swap.push(alter(table, &format!("ALTER COLUMN {shadow} SET NOT NULL")));
        swap.push(alter(table, &format!("DROP CONSTRAINT {}", Ident(&check))));
    }
    // The sequence a serial owns (named by PostgreSQL's rule when zdm only knows the type from
    // a migration, read from the database otherwise) would be dropped with the old column.
    let owned_sequence = old.owned_sequence.clone().or_else(|| {
        old.ty
            .is_serial()
            .then(|| Name::in_schema_of(table, &fit_name(&format!("{}_{column}_seq", table.name))))
    });
    if let Some(sequence) = owned_sequence {
        swap.push(format!(
            "ALTER SEQUENCE {} OWNED BY {}.{shadow}",
            Qualified(&sequence),
            Qualified(table)
        ));
        swap.push(alter(
            table,
            &format!(
                "ALTER COLUMN {shadow} SET DEFAULT nextval({}::regclass)",
                literal(&Qualified(&sequence).to_string())
            ),
        ));
    } else if let Some(default) = &old.default {
        swap.push(alter(
            table,
            &format!("ALTER COLUMN {shadow} SET DEFAULT {default}"),
        ));
    }
    if let Some((_, constraint)) = &pk {
        swap.push(alter(
            table,
            &format!("DROP CONSTRAINT {}", Ident(constraint)),
        ));
    }
    let kept: Vec<Name> = rebuilt
        .iter()
        .map(|(_, old_index)| Name::in_schema_of(table, old_index))
        .collect();
    swap.push(guard_dependents(table, column, &kept));
    swap.push(alter(table, &format!("DROP COLUMN {col}")));
    swap.push(alter(table, &format!("RENAME COLUMN {shadow} TO {col}")));
    for (new, old_name) in &rebuilt {
        let new = Name::in_schema_of(table, new);
        swap.push(format!(
            "ALTER INDEX {} RENAME TO {}",
            Qualified(&new),
            Ident(old_name)
        ));
    }
    if let Some((index, constraint)) = &pk {
        swap.push(alter(
            table,
            &format!(
                "ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
                Ident(constraint),
                Ident(index)
            ),
        ));
    }
    plan.contract.push(Step::tx(
        format!("swap the shadow in as {table}.{column} ({})", ty.written),
        swap.join(";\n"),
        LockMode::AccessExclusive,
        table,
    ));
    // Undoing the contract changes the type back in place: the reverse expression is a cast
    // to the old type unless `-- zdm:down <expr>` says otherwise.
    let old_type = match old.ty.name.as_str() {
        "serial" => "integer".to_owned(),
        "bigserial" => "bigint".to_owned(),
        "smallserial" => "smallint".to_owned(),
        _ => old.ty.written.clone(),
    };
    let reverse = cx
        .stmt
        .directives
        .iter()
        .find_map(|d| match &d.kind {
            crate::source::DirectiveKind::Down(expr) => Some(expr.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("{col}::{old_type}"));
    plan.down_contract = Some(vec![Step::tx(
        format!(
            "change {table}.{column} back to {old_type} (rewrites the table under ACCESS EXCLUSIVE)"
        ),
        alter(
            table,
            &format!("ALTER COLUMN {col} TYPE {old_type} USING {reverse}"),
        ),
        LockMode::AccessExclusive,
        table,
    )]);
    plan.notes.push(format!(
        "both application versions keep using {table}.{column} as {} until contract, when it becomes {}; code must accept both types. Undoing the contract rewrites the table under a lock",
        if old.ty.is_serial() { "its integer type" } else { old.ty.written.as_str() },
        ty.written
    ));
    // The shadow is added last, and PostgreSQL cannot move a column: after the swap the
    // column's position differs from the table as written.
    let last = cx
        .catalog
        .table(table)
        .and_then(|t| t.columns.last())
        .is_some_and(|c| c.name == column);
    if !last {
        plan.notes.push(format!(
            "after contract {table}.{column} is the table's last column (PostgreSQL cannot put the new column where the old one was): `SELECT *` returns it last, and `INSERT INTO {table} VALUES (…)` without a column list must list the values in the new order; name the columns"
        ));
    }
    Ok(plan)
}

/// A primary key the changed column is in, which the swap rebuilds on the shadow.
struct PrimaryKey {
    /// The constraint's name, when the schema names it.
    name: Option<String>,
    columns: Vec<String>,
}

/// The primary key the column is in, or why zdm cannot carry what depends on the column to
/// the shadow yet.
fn primary_key_to_carry(
    cx: &OpCx,
    t: &crate::catalog::Table,
    column: &str,
    old: &crate::catalog::Column,
) -> Result<Option<PrimaryKey>, String> {
    let table = cx.table;
    if old.identity {
        return Err(format!(
            "{table}.{column} is an identity column; zdm does not yet move an identity to a shadow column"
        ));
    }
    let primary: Option<PrimaryKey> = t.constraints.iter().find_map(|c| match &c.kind {
        ConstraintKind::PrimaryKey { columns, .. } if columns.iter().any(|c| c == column) => {
            Some(PrimaryKey {
                name: c.name.clone(),
                columns: columns.clone(),
            })
        }
        _ => None,
    });
    if primary.is_some() {
        let referenced_by: Vec<String> = cx
            .catalog
            .tables()
            .filter(|(_, other)| {
                other.constraints.iter().any(
                    |c| matches!(&c.kind, ConstraintKind::ForeignKey { references, .. } if references.key() == table.key()),
                )
            })
            .map(|(n, _)| n.to_string())
            .collect();
        if !referenced_by.is_empty() {
            return Err(format!(
                "{table}.{column} is in the primary key that foreign keys of {} reference; change the referencing columns first, or accept the lock",
                referenced_by.join(", ")
            ));
        }
    }
    for c in &t.constraints {
        match &c.kind {
            ConstraintKind::ForeignKey { columns, .. } if columns.iter().any(|c| c == column) => {
                return Err(format!(
                    "{table}.{column} has a foreign key; zdm does not yet carry it to the shadow column"
                ));
            }
            ConstraintKind::Check { .. } | ConstraintKind::Exclude => {
                return Err(format!(
                    "{table} has CHECK or EXCLUDE constraints; zdm does not yet carry them to the shadow column"
                ));
            }
            // Rebuilt as a bare unique index, it would lose what the constraint carries (its
            // name for ON CONFLICT ON CONSTRAINT, the foreign keys that reference it).
            ConstraintKind::Unique { columns, .. } if columns.iter().any(|c| c == column) => {
                return Err(format!(
                    "{table}.{column} is in the UNIQUE constraint {}; zdm does not yet carry UNIQUE constraints to the shadow column",
                    c.name.as_deref().unwrap_or("(unnamed)")
                ));
            }
            _ => {}
        }
    }
    // An expression or partial index is known without its columns: it may use this one, and
    // the contract, which drops the old column, would drop it without rebuilding it.
    if let Some((index, _)) = cx
        .catalog
        .indexes_of(table)
        .into_iter()
        .find(|(_, def)| def.columns.is_empty())
    {
        return Err(format!(
            "{table} has the expression or partial index {index}, which may use {column}; zdm does not yet rebuild such indexes on the shadow column, and the contract would drop it"
        ));
    }
    let views = cx.catalog.views_using(table, column);
    if !views.is_empty() {
        return Err(format!(
            "{} may use {table}.{column}, and PostgreSQL cannot drop or retype a column a view uses; drop the views in an earlier migration and recreate them after this one",
            views
                .iter()
                .map(|v| format!("view {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(primary)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn int_to_bigint_primary_key_with_a_shadow_column() {
        let setup = "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), n int NOT NULL);\nCREATE INDEX events_n ON events (n, at);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE events ALTER COLUMN id TYPE bigint;"
        ));
        insta::assert_snapshot!(
            "using",
            human(
                setup,
                "-- zdm:down rtrim(n, '!')::int\nALTER TABLE events ALTER COLUMN n TYPE text USING n::text || '!';"
            )
        );
    }

    #[test]
    fn refuses_what_it_cannot_carry_over() {
        let setup = "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p (id));";
        let out = human(setup, "ALTER TABLE p ALTER COLUMN id TYPE bigint;");
        assert!(out.contains("foreign keys of c reference"), "{out}");
        let out = human(
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);",
            "ALTER TABLE t ALTER COLUMN id TYPE bigint;",
        );
        assert!(out.contains("identity column"), "{out}");
        let out = human(
            "CREATE TABLE t (id int PRIMARY KEY, n int); CREATE VIEW v AS SELECT n FROM t;",
            "ALTER TABLE t ALTER COLUMN n TYPE bigint;",
        );
        assert!(out.contains("view v may use t.n"), "{out}");
    }
}
