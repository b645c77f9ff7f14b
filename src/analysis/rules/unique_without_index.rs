//! UNIQUE or PRIMARY KEY constraints built under ACCESS EXCLUSIVE.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "unique-without-index",
    severity: Severity::Error,
    summary: "UNIQUE or PRIMARY KEY added to an existing table without USING INDEX",
    why: "ADD CONSTRAINT … UNIQUE / PRIMARY KEY (and ADD COLUMN … UNIQUE) builds the index \
          while holding an ACCESS EXCLUSIVE lock: all reads and writes stop for the whole build.",
    help: "build the index first with CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE … ADD \
           CONSTRAINT … UNIQUE USING INDEX (or PRIMARY KEY USING INDEX), which is catalog-only; \
           zdm plan runs it this way",
    setup: "CREATE TABLE users (id bigint NOT NULL, email text);",
    bad: "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
    good: "SET lock_timeout = '2s';\nCREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddConstraint(spec) => match &spec.kind {
                ConstraintKind::PrimaryKey { using_index: None, .. } => Violation::new(format!(
                    "ADD PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock on {table}, blocking all reads and writes for the build (and scans for NULLs)"
                )),
                ConstraintKind::Unique { using_index: None, .. } => Violation::new(format!(
                    "ADD UNIQUE builds its index under an ACCESS EXCLUSIVE lock on {table}, blocking all reads and writes for the build"
                )),
                _ => vec![],
            },
            AlterAction::AddColumn(col) if col.unique || col.primary_key => Violation::new(format!(
                "ADD COLUMN {} {} builds an index under an ACCESS EXCLUSIVE lock on {table}, blocking all reads and writes for the build",
                col.name,
                if col.primary_key { "PRIMARY KEY" } else { "UNIQUE" }
            )),
            _ => vec![],
        })
        .collect()
}
