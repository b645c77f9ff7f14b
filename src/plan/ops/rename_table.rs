//! ALTER TABLE … RENAME TO: the table is renamed and a view under the old name keeps the old
//! application working (simple views are updatable: it can still read and write through it).
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ALTER TABLE old RENAME TO new; CREATE VIEW old AS SELECT * FROM new` in one transaction | ACCESS EXCLUSIVE, brief |
//! | contract | `DROP VIEW IF EXISTS old` | ACCESS EXCLUSIVE on the view, brief |
//! | down expand | `DROP VIEW IF EXISTS old; ALTER TABLE new RENAME TO old` | ACCESS EXCLUSIVE, brief |
//! | down contract | `CREATE VIEW old AS SELECT * FROM new` | brief |

use super::{OpPlan, Step};
use crate::classify::LockMode;
use crate::parse::Name;
use crate::sql::{Ident, Qualified};

pub fn plan(table: &Name, to: &Name) -> OpPlan {
    let new = Name {
        schema: to.schema.clone().or_else(|| table.schema.clone()),
        name: to.name.clone(),
    };
    let view = format!(
        "CREATE VIEW {} AS SELECT * FROM {}",
        Qualified(table),
        Qualified(&new)
    );
    let mut plan = OpPlan::default();
    plan.expand.push(Step::tx(
        format!("rename {table} to {new} and keep a view under the old name"),
        format!(
            "ALTER TABLE {} RENAME TO {};\n{view}",
            Qualified(table),
            Ident(&new.name)
        ),
        LockMode::AccessExclusive,
        table,
    ));
    plan.contract.push(Step::tx(
        format!("drop the compatibility view {table}"),
        format!("DROP VIEW IF EXISTS {}", Qualified(table)),
        LockMode::AccessExclusive,
        table,
    ));
    plan.down_expand.push(Step::tx(
        format!("rename {new} back to {table}"),
        format!(
            "DROP VIEW IF EXISTS {};\nALTER TABLE {} RENAME TO {}",
            Qualified(table),
            Qualified(&new),
            Ident(&table.name)
        ),
        LockMode::AccessExclusive,
        &new,
    ));
    plan.down_contract = Some(vec![Step::tx(
        format!("recreate the compatibility view {table}"),
        view,
        LockMode::AccessExclusive,
        &new,
    )]);
    plan.notes.push(format!(
        "deploy code that uses {new} instead of {table} before contract"
    ));
    plan
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn rename_with_a_compatibility_view() {
        let setup = "CREATE SCHEMA app; CREATE TABLE app.\"Order\" (id int PRIMARY KEY);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE app.\"Order\" RENAME TO purchases;"
        ));
    }
}
