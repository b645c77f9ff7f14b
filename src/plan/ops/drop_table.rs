//! DROP TABLE: the table goes in contract, after the deploy.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | contract | the DROP TABLE as written | ACCESS EXCLUSIVE, brief |
//! | down contract | impossible: the data is gone |

use super::{OpPlan, Operation, StatementCx, StatementPlan, Step};
use crate::classify::LockMode;
use crate::parse::{Change, Name, ObjectKind};
use crate::plan::order::Held;
use crate::source::Statement;

pub struct DropTable;

impl Operation for DropTable {
    fn kind(&self) -> &'static str {
        "drop-table"
    }

    fn plan_statement(&self, cx: &StatementCx) -> Option<Result<StatementPlan, String>> {
        let Change::Drop {
            kind: ObjectKind::Table,
            names,
            ..
        } = cx.change
        else {
            return None;
        };
        if names.iter().all(|n| (cx.is_new)(n)) {
            return None;
        }
        Some(Ok(StatementPlan {
            op: plan(cx.stmt, names),
            holds: names.iter().cloned().map(Held::Relation).collect(),
        }))
    }
}

pub fn plan(stmt: &Statement, names: &[Name]) -> OpPlan {
    let mut plan = OpPlan::default();
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    plan.contract.push(Step::tx(
        format!("drop {list}"),
        stmt.text.clone(),
        LockMode::AccessExclusive,
        &names[0],
    ));
    plan.notes.push(format!(
        "deploy code that no longer uses {list} before contract; the contract cannot be undone (the data is dropped)"
    ));
    plan
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn drops_in_contract() {
        insta::assert_snapshot!(human(
            "CREATE TABLE audit (id int);",
            "DROP TABLE IF EXISTS audit;"
        ));
    }
}
