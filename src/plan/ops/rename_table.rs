//! ALTER TABLE … RENAME TO: the table is renamed and a view under the old name keeps the old
//! application working (simple views are updatable: it can still read and write through it).
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ALTER TABLE old RENAME TO new; CREATE VIEW old AS SELECT * FROM new`, the table's grants copied to the view, in one transaction | ACCESS EXCLUSIVE, brief |
//! | contract | `DROP VIEW IF EXISTS old` | ACCESS EXCLUSIVE on the view, brief |
//! | down expand | `DROP VIEW IF EXISTS old; ALTER TABLE new RENAME TO old` | ACCESS EXCLUSIVE, brief |
//! | down contract | the view again, with the grants | brief |
//!
//! A view checks privileges on the tables under it as the view's owner (the role running zdm),
//! so row-level security policies on the table do not apply to queries through the view.
//! PostgreSQL 15 added `security_invoker`: with it the querying role's privileges and policies
//! apply, as they did on the table. Before 15 the plan says so in a note. Either way the old
//! application's role needs privileges on the view itself, so the table's grants are copied.

use super::{ActionCx, OpPlan, Operation, Step};
use crate::classify::LockMode;
use crate::parse::{AlterAction, Name};
use crate::sql::{Ident, Qualified, literal};

pub struct RenameTable;

impl Operation for RenameTable {
    fn kind(&self) -> &'static str {
        "rename-table"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let AlterAction::RenameTable { to } = cx.action else {
            return None;
        };
        Some(Ok(plan(cx.cx.table, to, cx.cx.pg_version)))
    }
}

pub fn plan(table: &Name, to: &Name, pg_version: u32) -> OpPlan {
    let new = Name {
        schema: to.schema.clone().or_else(|| table.schema.clone()),
        name: to.name.clone(),
    };
    let options = if pg_version >= 15 {
        " WITH (security_invoker = true)"
    } else {
        ""
    };
    let view = format!(
        "CREATE VIEW {}{options} AS SELECT * FROM {};\n{}",
        Qualified(table),
        Qualified(&new),
        copy_grants(&new, table)
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
    if pg_version < 15 {
        plan.notes.push(format!(
            "before PostgreSQL 15 the view {table} checks privileges as its owner, so row-level security policies on {new} do not apply to the old application through it"
        ));
    }
    plan
}

/// Grants on `view` every privilege other roles hold on `table` (its ACL, read when the step
/// runs, so grants made after planning count too).
fn copy_grants(table: &Name, view: &Name) -> String {
    let target = literal(&Qualified(view).to_string());
    format!(
        "DO $zdm$\nDECLARE g record;\nBEGIN\n  FOR g IN SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee, a.is_grantable\n    FROM pg_class c, aclexplode(c.relacl) a\n    WHERE c.oid = {}::regclass AND a.grantee <> c.relowner\n  LOOP\n    EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, {target}, g.grantee,\n      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);\n  END LOOP;\nEND\n$zdm$",
        literal(&Qualified(table).to_string()),
    )
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::{human, plan};

    #[test]
    fn security_invoker_from_15() {
        let setup = "CREATE TABLE orders (id int PRIMARY KEY);";
        let sql = "ALTER TABLE orders RENAME TO purchases;";
        let pg15 = plan(setup, sql, 15).unwrap();
        assert!(
            pg15.expand[0]
                .sql
                .contains("WITH (security_invoker = true)")
        );
        assert!(!pg15.notes.iter().any(|n| n.contains("row-level security")));
        let pg14 = plan(setup, sql, 14).unwrap();
        assert!(!pg14.expand[0].sql.contains("security_invoker"));
        assert!(pg14.notes.iter().any(|n| n.contains("row-level security")));
    }

    #[test]
    fn rename_with_a_compatibility_view() {
        let setup = "CREATE SCHEMA app; CREATE TABLE app.\"Order\" (id int PRIMARY KEY);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE app.\"Order\" RENAME TO purchases;"
        ));
    }
}
