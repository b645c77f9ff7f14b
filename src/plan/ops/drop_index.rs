//! DROP INDEX runs CONCURRENTLY, in contract: the old application's queries may still need the
//! index until it is gone.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | contract | `DROP INDEX CONCURRENTLY IF EXISTS name`, one per index, outside a transaction | SHARE UPDATE EXCLUSIVE on the table |
//! | down contract | none: zdm does not keep the index definition; recreate it by hand | |

use super::{OpPlan, Operation, StatementCx, StatementPlan, Step};
use crate::catalog::Catalog;
use crate::classify::LockMode;
use crate::parse::{Change, Name};
use crate::plan::order::Held;
use crate::sql::Qualified;

pub struct DropIndex;

impl Operation for DropIndex {
    fn kind(&self) -> &'static str {
        "drop-index"
    }

    fn plan_statement(&self, cx: &StatementCx) -> Option<Result<StatementPlan, String>> {
        let Change::DropIndex { names, .. } = cx.change else {
            return None;
        };
        if names.iter().all(|n| (cx.is_new)(n)) {
            return None;
        }
        let cascade = crate::plan::text::find_word(cx.stmt, "CASCADE").is_some();
        // Held until contract: the index names, and the table of a unique index (a later
        // foreign key may need it as its referenced key).
        let mut holds: Vec<Held> = names.iter().cloned().map(Held::Relation).collect();
        holds.extend(names.iter().filter_map(|n| {
            let index = cx.catalog.index(n)?;
            index
                .unique
                .then(|| Held::ReferencedKey(index.table.clone()))
        }));
        Some(plan(names, cascade, cx.catalog).map(|op| StatementPlan { op, holds }))
    }
}

pub fn plan(names: &[Name], cascade: bool, catalog: &Catalog) -> Result<OpPlan, String> {
    if cascade {
        return Err(
            "DROP INDEX … CASCADE cannot run CONCURRENTLY; drop what depends on the index first"
                .into(),
        );
    }
    let mut plan = OpPlan::default();
    for name in names {
        let table = catalog
            .index(name)
            .map_or_else(|| name.clone(), |i| i.table.clone());
        plan.contract.push(Step::no_tx(
            format!("drop index {name} without blocking queries"),
            format!("DROP INDEX CONCURRENTLY IF EXISTS {}", Qualified(name)),
            LockMode::ShareUpdateExclusive,
            &table,
        ));
    }
    plan.notes.push(format!(
        "undoing the contract does not recreate {}: zdm does not keep index definitions",
        names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn drops_concurrently_in_contract() {
        let setup =
            "CREATE TABLE t (a int); CREATE INDEX t_a ON t (a); CREATE INDEX \"T_b\" ON t (a);";
        insta::assert_snapshot!(human(setup, "DROP INDEX t_a, \"T_b\";"));
        assert!(human(setup, "DROP INDEX t_a CASCADE;").starts_with("error:"));
    }
}
