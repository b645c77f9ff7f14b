//! ADD COLUMN whose value existing rows must get: a volatile DEFAULT (which would rewrite the
//! table) or NOT NULL without a default (which fails on a table with rows). The value comes
//! from the DEFAULT or from a `-- zdm:backfill <expr>` directive.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD COLUMN col type` (nullable, no default: catalog only) | ACCESS EXCLUSIVE, brief |
//! | expand | `ALTER COLUMN col SET DEFAULT expr` when there is a default: rows either application inserts get it | ACCESS EXCLUSIVE, brief |
//! | expand | a BEFORE UPDATE trigger fills the column in rows updated while still NULL (a row an UPDATE moves behind the backfill's cursor is filled all the same); without a default, BEFORE INSERT too, for rows the old application inserts | SHARE ROW EXCLUSIVE, brief |
//! | backfill | `col = expr` for rows where it is NULL, in batches | ROW EXCLUSIVE |
//! | contract | NOT NULL through a validated check (see set_not_null); drop the trigger | brief; validation under SHARE UPDATE EXCLUSIVE |
//! | down expand | drop the trigger and `DROP COLUMN IF EXISTS col` | ACCESS EXCLUSIVE, brief |
//! | down contract | `ALTER COLUMN col DROP NOT NULL` | ACCESS EXCLUSIVE, brief |

use super::{ActionCx, Assignment, Backfill, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::{AlterAction, ColumnSpec};
use crate::plan::text::default_expr;
use crate::sql::{Ident, RowTrigger, generated_name};

pub struct AddColumn;

impl Operation for AddColumn {
    fn kind(&self) -> &'static str {
        "add-column"
    }

    /// A column existing rows must get a value for: a volatile default, NOT NULL without a
    /// default, or a value from `-- zdm:backfill`. Other ADD COLUMNs are catalog-only and run
    /// as written.
    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let AlterAction::AddColumn(col) = cx.action else {
            return None;
        };
        let needs_values =
            cx.risky || (col.not_null && col.default.is_none()) || cx.backfill.is_some();
        needs_values.then(|| plan(&cx.cx, cx.text, col, cx.backfill))
    }
}

pub fn plan(
    cx: &OpCx,
    action: &str,
    column: &ColumnSpec,
    backfill_directive: Option<&str>,
) -> Result<OpPlan, String> {
    if column.unique || column.primary_key || column.references.is_some() || column.check {
        return Err(format!(
            "zdm plans ADD COLUMN {} with a backfilled value but without inline UNIQUE, PRIMARY KEY, REFERENCES or CHECK: add those as separate ALTER TABLE … ADD CONSTRAINT statements",
            column.name
        ));
    }
    let definition = action
        .trim_start()
        .get(3..)
        .map(str::trim_start)
        .map(|rest| {
            let upper = rest.to_uppercase();
            if upper.starts_with("COLUMN") {
                rest[6..].trim_start()
            } else {
                rest
            }
        })
        .unwrap_or_default();
    let default = default_expr(definition);
    let serial = column.ty.written.to_lowercase().contains("serial");
    if serial || column.generated == Some(crate::parse::Generated::Identity) {
        // Not a missing value: the sequence is a volatile default, evaluated once per row.
        return Err(format!(
            "ADD COLUMN {} {} fills every existing row from a sequence, a volatile default: PostgreSQL rewrites {} under ACCESS EXCLUSIVE, and zdm does not plan it online",
            column.name,
            if serial { "serial" } else { "… AS IDENTITY" },
            cx.table
        ));
    }
    let value = backfill_directive.map(str::to_owned).or_else(|| default.clone()).ok_or_else(|| {
        format!(
            "ADD COLUMN {} NOT NULL needs a value for existing rows: give it a DEFAULT or write `-- zdm:backfill <expr>` above the statement",
            column.name
        )
    })?;
    let key = super::update_backfill::batch_key(cx.catalog, cx.table)?;
    let table = cx.table;
    let col = Ident(&column.name);
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    plan.expand.push(Step::tx(
        format!(
            "add {table}.{} as a nullable column (catalog only)",
            column.name
        ),
        alter(table, &format!("ADD COLUMN {col} {}", column.ty.written)),
        LockMode::AccessExclusive,
        table,
    ));
    // The fill trigger gives the column its value in every row a writer touches while it is
    // still NULL from before (an UPDATE moves the row to a new ctid, possibly behind the
    // backfill's cursor, which then never sees it), and, without a DEFAULT, in the rows the old
    // application inserts. The expression may name other columns: it is evaluated over the row.
    let fill = format!(
        "NEW.{col} := (SELECT {value} FROM (SELECT NEW.*) AS {alias});",
        alias = Ident(&table.name),
    );
    // With a DEFAULT, inserts get the value from it; without, the trigger fills them too.
    let (events, condition, what) = match &default {
        Some(default) => {
            plan.expand.push(Step::tx(
                format!("give rows inserted from now on a value for {}", column.name),
                alter(table, &format!("ALTER COLUMN {col} SET DEFAULT {default}")),
                LockMode::AccessExclusive,
                table,
            ));
            ("UPDATE", format!("OLD.{col} IS NULL"), "rows updated")
        }
        None => (
            "INSERT OR UPDATE",
            format!("(TG_OP = 'INSERT' OR OLD.{col} IS NULL)"),
            "rows the old application inserts, and in rows updated",
        ),
    };
    let trigger = RowTrigger {
        table,
        name: generated_name(&[&table.name, &column.name, "fill"]),
        events,
        // The backfill's own rows have the value already: no function call for them.
        when: Some(format!("NEW.{col} IS NULL")),
    };
    plan.expand.push(Step::tx(
        format!(
            "fill {} in {what} before the backfill reaches them",
            column.name
        ),
        trigger.create(&format!(
            "  IF NEW.{col} IS NULL AND {condition} THEN\n    {fill}\n  END IF;\n"
        )),
        LockMode::ShareRowExclusive,
        table,
    ));
    let drop_trigger = Step::tx(
        format!("drop the fill trigger of {}", column.name),
        trigger.drop(),
        LockMode::AccessExclusive,
        table,
    );
    plan.contract.push(drop_trigger.clone());
    plan.down_expand.push(drop_trigger);
    plan.push_backfill(Backfill {
        table: table.clone(),
        key,
        set: vec![Assignment {
            column: column.name.clone(),
            expr: value,
        }],
        filter: Some(format!("{col} IS NULL")),
        alias: None,
        from: None,
        after_step: 0,
        shadow_copy: false,
    });
    if column.not_null {
        let nn = super::set_not_null::steps(table, &column.name, cx.pg_version)?;
        plan.contract.splice(0..0, nn.expand);
        plan.down_contract = Some(vec![Step::tx(
            format!("allow NULL in {table}.{} again", column.name),
            alter(table, &format!("ALTER COLUMN {col} DROP NOT NULL")),
            LockMode::AccessExclusive,
            table,
        )]);
    }
    plan.down_expand.push(Step::tx(
        format!("drop {table}.{}", column.name),
        alter(table, &format!("DROP COLUMN IF EXISTS {col}")),
        LockMode::AccessExclusive,
        table,
    ));
    plan.notes.push(format!(
        "{table}.{} is filled for existing rows by the backfill{}",
        column.name,
        if column.not_null {
            "; it becomes NOT NULL in contract"
        } else {
            ""
        }
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn volatile_default_is_backfilled() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE users ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();"
        ));
    }

    #[test]
    fn add_update_and_set_not_null_are_one_operation() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, email text);";
        let sql = "ALTER TABLE users ADD COLUMN email_lower text;\nUPDATE users SET email_lower = lower(email);\nALTER TABLE users ALTER COLUMN email_lower SET NOT NULL;";
        let plan = crate::plan::testing::plan(setup, sql, 14).unwrap();
        assert_eq!(plan.operations.len(), 1, "{:?}", plan.operations);
        assert_eq!(plan.backfill.len(), 1);
        assert!(plan.expand.iter().all(|s| !s.sql.contains("SET NOT NULL")));
        assert!(plan.contract.iter().any(|s| s.sql.contains("SET NOT NULL")));
    }

    #[test]
    fn required_column_from_a_backfill_directive() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, email text);";
        insta::assert_snapshot!(human(
            setup,
            "-- zdm:backfill lower(email)\nALTER TABLE users ADD COLUMN email_lower text NOT NULL;"
        ));
        assert!(
            human(setup, "ALTER TABLE users ADD COLUMN x text NOT NULL;").contains("zdm:backfill")
        );
    }

    #[test]
    fn serial_and_identity_columns_are_refused_as_volatile_defaults() {
        let setup = "CREATE TABLE t (id int PRIMARY KEY);";
        for sql in [
            "ALTER TABLE t ADD COLUMN n serial;",
            "ALTER TABLE t ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;",
        ] {
            let out = human(setup, sql);
            assert!(out.contains("volatile default"), "{out}");
            assert!(!out.contains("needs a value"), "{out}");
            assert!(!out.contains("zdm plan"), "{out}");
        }
    }
}
