//! DROP TABLE: the table goes in contract, after the deploy.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | contract | the DROP TABLE as written | ACCESS EXCLUSIVE, brief |
//! | down contract | impossible: the data is gone |

use super::{OpPlan, Step};
use crate::classify::LockMode;
use crate::parse::Name;
use crate::source::Statement;

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
