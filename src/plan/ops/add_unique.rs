//! ADD CONSTRAINT … UNIQUE / PRIMARY KEY: the index is built CONCURRENTLY, then attached.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | (PRIMARY KEY over nullable columns: the set-not-null steps for each) | see set_not_null |
//! | expand | `CREATE UNIQUE INDEX CONCURRENTLY name ON t (cols)`, outside a transaction | SHARE UPDATE EXCLUSIVE: reads and writes continue |
//! | expand | `ADD CONSTRAINT name UNIQUE/PRIMARY KEY USING INDEX name` | ACCESS EXCLUSIVE, brief |
//! | down expand | `DROP CONSTRAINT IF EXISTS name`, `DROP INDEX CONCURRENTLY IF EXISTS name` | brief |

use super::{ActionCx, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::{ConstraintKind, Name};
use crate::sql::{Ident, Qualified};

pub struct AddUnique;

impl Operation for AddUnique {
    fn kind(&self) -> &'static str {
        "add-unique"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        plan_constraint(cx, false)
    }
}

pub struct AddPrimaryKey;

impl Operation for AddPrimaryKey {
    fn kind(&self) -> &'static str {
        "add-primary-key"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        plan_constraint(cx, true)
    }
}

/// `ADD [CONSTRAINT n] UNIQUE (…)` or, when `primary`, `PRIMARY KEY (…)`, without USING INDEX.
fn plan_constraint(cx: &ActionCx, primary: bool) -> Option<Result<OpPlan, String>> {
    let spec = cx.validated_constraint()?;
    let columns = match (&spec.kind, primary) {
        (
            ConstraintKind::Unique {
                columns,
                using_index: None,
            },
            false,
        )
        | (
            ConstraintKind::PrimaryKey {
                columns,
                using_index: None,
            },
            true,
        ) => columns,
        _ => return None,
    };
    Some(plan(
        &cx.cx,
        cx.text,
        spec.name.as_deref(),
        columns,
        primary,
    ))
}

pub fn plan(
    cx: &OpCx,
    action: &str,
    name: Option<&str>,
    columns: &[String],
    primary: bool,
) -> Result<OpPlan, String> {
    let upper = action.to_uppercase();
    for unsupported in [" INCLUDE", " WITH ", " NULLS ", "DEFERRABLE", "TABLESPACE"] {
        if upper.contains(unsupported) {
            return Err(format!(
                "zdm does not plan UNIQUE/PRIMARY KEY with{}; build the index with CREATE UNIQUE INDEX CONCURRENTLY and add the constraint USING INDEX",
                unsupported.trim_end()
            ));
        }
    }
    if columns.is_empty() {
        return Err("the constraint names no columns".into());
    }
    let name = name.map_or_else(
        || {
            crate::sql::fit_name(&if primary {
                format!("{}_pkey", cx.table.name)
            } else {
                format!("{}_{}_key", cx.table.name, columns.join("_"))
            })
        },
        str::to_owned,
    );
    let index = Name {
        schema: cx.table.schema.clone(),
        name: name.clone(),
    };
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    if primary {
        let known = cx.catalog.table(cx.table);
        for column in columns {
            let not_null = known
                .and_then(|t| t.column(column))
                .is_some_and(|c| c.not_null);
            if !not_null {
                let nn = super::set_not_null::steps(cx.table, column, cx.pg_version)?;
                plan.expand.extend(nn.expand);
                plan.down_expand.extend(nn.down_expand);
                plan.notes.extend(nn.notes);
            }
        }
    }
    let cols = columns
        .iter()
        .map(|c| Ident(c).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let kind = if primary { "PRIMARY KEY" } else { "UNIQUE" };
    plan.expand.push(Step::no_tx(
        format!(
            "build the unique index {name} on {} without blocking writes",
            cx.table
        ),
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({cols})",
            Ident(&name),
            Qualified(cx.table)
        ),
        LockMode::ShareUpdateExclusive,
        cx.table,
    ));
    plan.expand.push(Step::tx(
        format!(
            "attach {name} to {} as its {}",
            cx.table,
            if primary {
                "primary key"
            } else {
                "unique constraint"
            }
        ),
        alter(
            cx.table,
            &format!(
                "ADD CONSTRAINT {} {kind} USING INDEX {}",
                Ident(&name),
                Ident(&name)
            ),
        ),
        LockMode::AccessExclusive,
        cx.table,
    ));
    plan.down_expand.insert(
        0,
        Step::tx(
            format!("drop constraint {name}"),
            alter(
                cx.table,
                &format!("DROP CONSTRAINT IF EXISTS {}", Ident(&name)),
            ),
            LockMode::AccessExclusive,
            cx.table,
        ),
    );
    plan.down_expand.insert(
        1,
        Step::no_tx(
            format!("drop index {name}"),
            format!("DROP INDEX CONCURRENTLY IF EXISTS {}", Qualified(&index)),
            LockMode::ShareUpdateExclusive,
            cx.table,
        ),
    );
    plan.notes.push(format!(
        "from expand on, both application versions must keep ({}) unique in {}",
        columns.join(", "),
        cx.table
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn unique_index_concurrently_then_using_index() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, email text, \"Tenant\" int);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE users ADD UNIQUE (\"Tenant\", email);"
        ));
    }

    #[test]
    fn primary_key_makes_nullable_columns_not_null_first() {
        let setup = "CREATE TABLE events (id bigint, at timestamptz NOT NULL);";
        insta::assert_snapshot!(human(setup, "ALTER TABLE events ADD PRIMARY KEY (id, at);"));
    }
}
