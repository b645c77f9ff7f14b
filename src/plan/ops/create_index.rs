//! CREATE INDEX on an existing table runs CONCURRENTLY.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `CREATE [UNIQUE] INDEX CONCURRENTLY name ON …` as written, outside a transaction; an unnamed index gets a deterministic name | SHARE UPDATE EXCLUSIVE: reads and writes continue |
//! | down expand | `DROP INDEX CONCURRENTLY IF EXISTS name` | SHARE UPDATE EXCLUSIVE |
//!
//! A failed build leaves an INVALID index; `zdm expand` drops and rebuilds it on resume.

use super::{OpCx, OpPlan, Operation, StatementCx, StatementPlan, Step};
use crate::classify::LockMode;
use crate::parse::{Change, Name};
use crate::plan::text::{find_word, insert_after};
use crate::sql::{Ident, Qualified, fit_name};

pub struct CreateIndex;

impl Operation for CreateIndex {
    fn kind(&self) -> &'static str {
        "create-index"
    }

    fn plan_statement(&self, cx: &StatementCx) -> Option<Result<StatementPlan, String>> {
        let Change::CreateIndex {
            table,
            name,
            columns,
            concurrently: false,
            ..
        } = cx.change
        else {
            return None;
        };
        if (cx.is_new)(table) {
            return None;
        }
        Some(plan(&cx.on(table), name.as_ref(), columns).map(StatementPlan::holding_nothing))
    }
}

pub fn plan(cx: &OpCx, name: Option<&Name>, columns: &[String]) -> Result<OpPlan, String> {
    let index_at = find_word(cx.stmt, "INDEX").ok_or("no INDEX keyword")?;
    let mut sql = insert_after(cx.stmt, index_at, "CONCURRENTLY");
    let name = match name {
        Some(n) => super::passthrough::index_in(n, cx.table),
        None => {
            let cols = if columns.is_empty() {
                "expr".to_owned()
            } else {
                columns.join("_")
            };
            // The name PostgreSQL would give it, so the plan says what will exist.
            let generated = fit_name(&format!("{}_{cols}_idx", cx.table.name));
            // CONCURRENTLY is now the token after INDEX: put the name after it.
            let at = cx.stmt.tokens[index_at].range.end + " CONCURRENTLY".len();
            sql = format!("{} {}{}", &sql[..at], Ident(&generated), &sql[at..]);
            Name {
                schema: cx.table.schema.clone(),
                name: generated,
            }
        }
    };
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    plan.expand.push(Step::no_tx(
        format!("build index {name} on {} without blocking writes", cx.table),
        sql,
        LockMode::ShareUpdateExclusive,
        cx.table,
    ));
    plan.down_expand.push(Step::no_tx(
        format!("drop index {name}"),
        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", Qualified(&name)),
        LockMode::ShareUpdateExclusive,
        cx.table,
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn builds_concurrently_and_names_unnamed_indexes() {
        let setup = "CREATE SCHEMA \"App\"; CREATE TABLE \"App\".\"User Accounts\" (id int PRIMARY KEY, \"Email\" text, \"select\" int);";
        insta::assert_snapshot!(human(
            setup,
            "CREATE INDEX accounts_email ON \"App\".\"User Accounts\" (\"Email\");\nCREATE UNIQUE INDEX ON \"App\".\"User Accounts\" (\"select\") WHERE \"select\" > 0;"
        ));
    }
}
