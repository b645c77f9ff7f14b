//! ALTER COLUMN … TYPE that rewrites the table (int → bigint, text → jsonb USING …): a shadow
//! column of the new type is filled while both application versions run, then swapped in.
//! Binary-coercible changes (varchar widening, numeric precision up…) run as written.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD COLUMN _zdm_…_new <new type>` (nullable, catalog only) | ACCESS EXCLUSIVE, brief |
//! | expand | a BEFORE INSERT OR UPDATE trigger sets the shadow from the column (the USING expression, else a cast) on every write of the row, so a row a writer moves behind the backfill's cursor (a new ctid, a changed key) is right all the same | SHARE ROW EXCLUSIVE, brief |
//! | backfill | shadow = USING expression, in batches | ROW EXCLUSIVE |
//! | expand, after the backfill | the primary key or UNIQUE constraints the column is in: their unique index built again on the shadow, CONCURRENTLY | SHARE UPDATE EXCLUSIVE |
//! | expand, after the backfill | every other index that reads the column (partial, expression, INCLUDE, operator class, collation, any method) built again on the shadow from its definition, CONCURRENTLY | SHARE UPDATE EXCLUSIVE |
//! | expand, after the backfill | each CHECK constraint and foreign key on the column added again on the shadow NOT VALID, then validated | brief (ACCESS EXCLUSIVE for a CHECK, SHARE ROW EXCLUSIVE on both tables for a foreign key); SHARE UPDATE EXCLUSIVE |
//! | expand, after the backfill | each foreign key of another table that references the column added again, referencing the shadow (from that table's shadow, when an earlier statement changes the referencing column too), NOT VALID, then validated | SHARE ROW EXCLUSIVE, brief; SHARE UPDATE EXCLUSIVE |
//! | contract | the completeness check: the backfill walks the table again and re-copies every row whose shadow differs from what the column gives (see `Backfill::shadow_copy`) | ROW EXCLUSIVE |
//! | contract | for a NOT NULL column, CHECK (shadow IS NOT NULL) NOT VALID, then VALIDATE | brief; SHARE UPDATE EXCLUSIVE |
//! | contract | one transaction: drop the trigger; prove that every copy is its original's twin by PostgreSQL's own definition (`pg_get_indexdef`, `pg_get_constraintdef`); copy the column's comment, statistics target and column grants; SET NOT NULL; remember an identity's sequence; move a serial's sequence (its type unchanged, as PostgreSQL leaves it); drop the referencing foreign keys and the key constraints; drop and remember the views that read the column; check that nothing else depends on the old column; drop it, rename the shadow; rename the copies to the originals' names, re-attach the keys; make the column the identity it was, at the same position; create the views again with their options and grants | ACCESS EXCLUSIVE on the table (and the referencing tables), brief |
//! | down expand | drop the copies of the referencing foreign keys, then the trigger and the shadow (with its indexes and constraints) | ACCESS EXCLUSIVE, brief |
//! | down contract | `ALTER COLUMN … TYPE <old> USING <reverse>` (a cast, or `-- zdm:down <expr>`): rewrites the table under ACCESS EXCLUSIVE |
//!
//! Statements later in the migration that set the column's default, NOT NULL, statistics,
//! storage or comment run at contract after the swap. A migration's `DROP VIEW` before the
//! change and `CREATE VIEW` after it run together after the swaps (see `plan::views`).
//!
//! Refused, with the reason: an EXCLUDE constraint that may use the column (it cannot be added
//! NOT VALID or from an index built beforehand); a view that reads the column and that the
//! migration does not drop (PostgreSQL refuses the statement as written); an index or
//! constraint whose definition zdm cannot read. At contract, the swap stops with nothing
//! changed when a copy is not its original's twin, or a view it would move is read by
//! another view, is materialized, or has rules or INSTEAD OF triggers.

use super::carried::{CarriedConstraint, IncomingForeignKey, KeyConstraint, carried};
use super::shadow::ShadowColumn;
use super::{ActionCx, OpCx, OpPlan, Operation, Shadow, Step, alter};
use crate::classify::LockMode;
use crate::parse::{AlterAction, Name, SqlType, Substitute};
use crate::plan::text::using_expr;
use crate::sql::swap::{self, Twin, TwinKind};
use crate::sql::{
    Ident, NOT_DURING_BACKFILL, Qualified, RowTrigger, fit_name, generated_name, guard_dependents,
    literal,
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
    if let Some(reason) = refusal(cx, column) {
        return Err(reason);
    }
    let carried = carried(
        cx.catalog,
        table,
        known.expect("the column was found in it"),
        column,
    )?;
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
        when: Some(NOT_DURING_BACKFILL.to_owned()),
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

    let sub = Substitute {
        column,
        by: &shadow_name,
    };
    let mut twins: Vec<(TwinKind, Name, String, String)> = Vec::new();
    // Key constraints first: the foreign keys that reference the column need the shadow's
    // unique index before they can be pointed at it.
    let mut keys: Vec<(&KeyConstraint, String)> = Vec::new();
    for key in &carried.keys {
        let index = generated_name(&[&key.name, "new"]);
        let columns: Vec<String> = key
            .columns
            .iter()
            .map(|c| Ident(if c == column { &shadow_name } else { c }).to_string())
            .collect();
        plan.expand.push(Step::no_tx(
            format!(
                "build the index of {} {} again on the shadow",
                if key.primary {
                    "the primary key"
                } else {
                    "UNIQUE constraint"
                },
                key.name
            ),
            format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})",
                Ident(&index),
                Qualified(table),
                columns.join(", ")
            ),
            LockMode::ShareUpdateExclusive,
            table,
        ));
        twins.push((
            TwinKind::Index,
            table.clone(),
            key.name.clone(),
            index.clone(),
        ));
        keys.push((key, index));
    }
    for index in &carried.indexes {
        let copy = generated_name(&[&index.name, "new"]);
        plan.expand.push(Step::no_tx(
            format!("build index {} again on the shadow", index.name),
            index.definition.on_shadow(table, &copy, sub),
            LockMode::ShareUpdateExclusive,
            table,
        ));
        twins.push((TwinKind::Index, table.clone(), index.name.clone(), copy));
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
    // CHECK constraints and foreign keys of the column, then the foreign keys that reference
    // it: each added again on the shadow NOT VALID (a brief lock, no scan) and validated while
    // reads and writes continue, after the backfill, so that every one is enforced and valid
    // when the swap puts it in place of the original. A foreign key whose other end is a
    // column an earlier statement of this migration replaces by a shadow is built on that
    // shadow: the swaps at contract may then run in either order.
    let copy_constraint =
        |plan: &mut OpPlan, on: &Name, c: &CarriedConstraint, copy: &str, clause: String| {
            let (what, lock) = match &c.references {
                Some(_) => ("foreign key", LockMode::ShareRowExclusive),
                None => ("CHECK constraint", LockMode::AccessExclusive),
            };
            plan.expand.push(Step::tx(
                format!(
                    "add {what} {} again on the shadow, without checking existing rows",
                    c.name
                ),
                alter(on, &format!("ADD {clause} NOT VALID")),
                lock,
                on,
            ));
            if c.valid {
                plan.expand.push(Step::tx(
                    format!(
                        "validate the copy of {} while reads and writes continue",
                        c.name
                    ),
                    alter(on, &format!("VALIDATE CONSTRAINT {}", Ident(copy))),
                    LockMode::ShareUpdateExclusive,
                    on,
                ));
            }
        };
    let mut constraints: Vec<(&CarriedConstraint, String)> = Vec::new();
    for c in &carried.constraints {
        let copy = generated_name(&[&c.name, "new"]);
        let referenced = c
            .references
            .as_ref()
            .and_then(|other| referenced_shadow(cx, other, &c.definition));
        let clause = c.definition.renamed(
            &copy,
            Some(sub),
            referenced
                .as_ref()
                .map(|(column, by, key)| (Substitute { column, by }, key.as_slice())),
        );
        copy_constraint(&mut plan, table, c, &copy, clause);
        twins.push((
            TwinKind::Constraint,
            table.clone(),
            c.name.clone(),
            copy.clone(),
        ));
        constraints.push((c, copy));
    }
    let mut incoming: Vec<(&IncomingForeignKey, String)> = Vec::new();
    for fk in &carried.incoming {
        let c = &fk.constraint;
        let copy = generated_name(&[&c.name, "referencing", "new"]);
        let own = fk.columns.iter().find_map(|col| {
            cx.shadow_of(&fk.table, col)
                .map(|by| Substitute { column: col, by })
        });
        let clause = c.definition.renamed(&copy, own, Some((sub, &fk.key)));
        copy_constraint(&mut plan, &fk.table, c, &copy, clause);
        twins.push((
            TwinKind::Constraint,
            fk.table.clone(),
            c.name.clone(),
            copy.clone(),
        ));
        incoming.push((fk, copy));
        let narrower: Vec<String> = fk
            .columns
            .iter()
            .filter_map(|col| {
                let its = &cx.catalog.table(&fk.table)?.column(col)?.ty;
                (integer_width(&its.name)? < integer_width(&ty.name)?)
                    .then(|| format!("{}.{col} ({})", fk.table, its.written))
            })
            .collect();
        if !narrower.is_empty() {
            plan.notes.push(format!(
                "{} references {table}.{column}, which becomes {}: unless a later statement changes it too, it reaches its type's limit first",
                narrower.join(", "),
                ty.written
            ));
        }
    }

    // Undoing expand: the copies of the referencing foreign keys depend on the shadow's unique
    // index, so they go before the shadow.
    for (fk, copy) in &incoming {
        plan.down_expand.insert(
            0,
            Step::tx(
                format!(
                    "drop the copy of {} that references the shadow of {table}.{column}",
                    fk.constraint.name
                ),
                alter(
                    &fk.table,
                    &format!("DROP CONSTRAINT IF EXISTS {}", Ident(copy)),
                ),
                LockMode::ShareRowExclusive,
                &fk.table,
            ),
        );
    }
    plan.shadows.push(Shadow {
        table: table.clone(),
        column: column.to_owned(),
        shadow: shadow_name.clone(),
    });

    // The swap: one short transaction under ACCESS EXCLUSIVE on the table (and on the tables
    // whose foreign keys reference the column).
    let twins: Vec<Twin> = twins
        .iter()
        .map(|(kind, on, original, copy)| Twin {
            kind: *kind,
            table: on,
            original,
            copy,
        })
        .collect();
    let mut swap = vec![drop_trigger.clone()];
    swap.extend(swap::prove_twins(column, &shadow_name, &twins));
    swap.push(swap::carry_column_properties(table, column, &shadow_name));
    if old.not_null {
        swap.push(alter(table, &format!("ALTER COLUMN {shadow} SET NOT NULL")));
        swap.push(alter(table, &format!("DROP CONSTRAINT {}", Ident(&check))));
    }
    if old.identity {
        swap.push(swap::remember_identity(table, column));
    }
    if old.not_null {
        swap.push(swap::remember_not_null_name(table, column));
    }
    // The sequence a serial owns (named by PostgreSQL's rule when zdm only knows the type from
    // a migration, read from the database otherwise) would be dropped with the old column.
    let owned_sequence = old
        .owned_sequence
        .clone()
        .filter(|_| !old.identity)
        .or_else(|| {
            old.ty.is_serial().then(|| {
                Name::in_schema_of(table, &fit_name(&format!("{}_{column}_seq", table.name)))
            })
        });
    if let Some(sequence) = owned_sequence {
        swap.push(format!(
            "ALTER SEQUENCE {} OWNED BY {}.{shadow}",
            Qualified(&sequence),
            Qualified(table)
        ));
        // A serial's sequence keeps its own type, as PostgreSQL's ALTER COLUMN … TYPE leaves
        // it: an integer sequence still stops at 2^31 - 1.
        if integer_width(&ty.name) > integer_width(&old.ty.name) {
            plan.notes.push(format!(
                "the sequence {} of {table}.{column} stays as it is, as PostgreSQL's ALTER COLUMN … TYPE leaves it: if it is an integer sequence it still ends at 2147483647; `ALTER SEQUENCE {} AS {}` in a later migration raises that",
                sequence,
                sequence,
                ty.written
            ));
        }
        swap.push(alter(
            table,
            &format!(
                "ALTER COLUMN {shadow} SET DEFAULT nextval({}::regclass)",
                literal(&Qualified(&sequence).to_string())
            ),
        ));
    } else if let Some(default) = old.default.as_ref().filter(|_| !old.identity) {
        swap.push(alter(
            table,
            &format!("ALTER COLUMN {shadow} SET DEFAULT {default}"),
        ));
    }
    // The foreign keys that reference the old key depend on its index: they go before it (their
    // copies, pointing at the shadow, are in place and valid).
    for (fk, _) in &incoming {
        swap.push(alter(
            &fk.table,
            &format!("DROP CONSTRAINT {}", Ident(&fk.constraint.name)),
        ));
    }
    for (key, _) in &keys {
        swap.push(alter(
            table,
            &format!("DROP CONSTRAINT {}", Ident(&key.name)),
        ));
    }
    swap.push(swap::save_and_drop_views(table, column));
    let kept: Vec<Name> = carried
        .indexes
        .iter()
        .map(|i| Name::in_schema_of(table, &i.name))
        .collect();
    let kept_constraints: Vec<String> = constraints.iter().map(|(c, _)| c.name.clone()).collect();
    swap.push(guard_dependents(table, column, &kept, &kept_constraints));
    swap.push(alter(table, &format!("DROP COLUMN {col}")));
    swap.push(alter(table, &format!("RENAME COLUMN {shadow} TO {col}")));
    for index in &carried.indexes {
        let copy = Name::in_schema_of(table, &generated_name(&[&index.name, "new"]));
        swap.push(format!(
            "ALTER INDEX {} RENAME TO {}",
            Qualified(&copy),
            Ident(&index.name)
        ));
    }
    for (key, index) in &keys {
        swap.push(alter(
            table,
            &format!(
                "ADD CONSTRAINT {} {} USING INDEX {}",
                Ident(&key.name),
                if key.primary { "PRIMARY KEY" } else { "UNIQUE" },
                Ident(index)
            ),
        ));
    }
    for (c, copy) in &constraints {
        swap.push(swap::rename_constraint(table, copy, &c.name));
    }
    for (fk, copy) in &incoming {
        swap.push(swap::rename_constraint(
            &fk.table,
            copy,
            &fk.constraint.name,
        ));
    }
    if old.not_null {
        swap.push(swap::restore_not_null_name(table, column));
    }
    if old.identity {
        swap.push(swap::restore_identity(table, column));
    }
    swap.push(swap::recreate_views());
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
        "both application versions keep using {table}.{column} as {} until contract, when it becomes {}; code must accept both types, and a statement it prepared before contract that returns the column fails once with \"cached plan must not change result type\" (prepare it again). Undoing the contract rewrites the table under a lock",
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

/// For a foreign key that references `other`: the referenced column an earlier statement of
/// the migration replaces by a shadow, that shadow, and the referenced key's columns.
fn referenced_shadow(
    cx: &OpCx,
    other: &Name,
    definition: &crate::parse::ConstraintDefinition,
) -> Option<(String, String, Vec<String>)> {
    let mut key = definition.referenced_columns();
    if key.is_empty() {
        key = cx
            .catalog
            .table(other)?
            .constraints
            .iter()
            .find_map(|c| match &c.kind {
                crate::parse::ConstraintKind::PrimaryKey { columns, .. } => Some(columns.clone()),
                _ => None,
            })?;
    }
    let (column, shadow) = key
        .iter()
        .find_map(|k| cx.shadow_of(other, k).map(|s| (k.clone(), s.to_owned())))?;
    Some((column, shadow, key))
}

/// The width in bytes of an integer type, by its canonical name.
fn integer_width(name: &str) -> Option<u8> {
    match name {
        "int2" | "smallint" | "smallserial" => Some(2),
        "int4" | "int" | "integer" | "serial" => Some(4),
        "int8" | "bigint" | "bigserial" => Some(8),
        _ => None,
    }
}

/// Why zdm cannot carry what depends on the column to a shadow, when it cannot.
fn refusal(cx: &OpCx, column: &str) -> Option<String> {
    let table = cx.table;
    let views = cx.catalog.views_using(table, column);
    (!views.is_empty()).then(|| {
        format!(
            "{} may use {table}.{column}, and PostgreSQL refuses to change the type of a column a view uses: as written, this migration fails. Drop the view before the change and create it again after it, in this migration; zdm keeps the view serving the old application through expand and replaces it at contract",
            views
                .iter()
                .map(|v| format!("view {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
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
    fn carries_keys_foreign_keys_checks_and_every_index() {
        let setup = "CREATE TABLE accounts (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
CREATE TABLE events (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES accounts (id) ON DELETE CASCADE, amount int CHECK (amount > 0));
CREATE INDEX events_large ON events USING btree (account_id DESC) INCLUDE (amount) WHERE amount > 100;
CREATE TABLE notes (id serial PRIMARY KEY, account_id int CONSTRAINT notes_account REFERENCES accounts);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
ALTER TABLE events ALTER COLUMN account_id TYPE bigint;"
        ));
    }

    #[test]
    fn refuses_what_it_cannot_carry_over() {
        let out = human(
            "CREATE TABLE t (id int PRIMARY KEY, n int); CREATE VIEW v AS SELECT n FROM t;",
            "ALTER TABLE t ALTER COLUMN n TYPE bigint;",
        );
        assert!(out.contains("view v may use t.n"), "{out}");
        let out = human(
            "CREATE TABLE t (id int PRIMARY KEY, r int4range, EXCLUDE USING gist (r WITH &&));",
            "ALTER TABLE t ALTER COLUMN r TYPE int8range;",
        );
        assert!(out.contains("EXCLUDE constraint"), "{out}");
    }
}
