//! Statements zdm does not understand: fail closed.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "unrecognized-statement",
    severity: Severity::Error,
    summary: "a statement zdm cannot parse or recognize",
    why: "zdm cannot tell which lock a statement it does not understand takes, so it fails \
          closed rather than let a table-locking statement pass unchecked.",
    help: "check the statement's syntax (a missing `;` joins two statements); if it is valid \
           PostgreSQL that zdm does not know, review its locking by hand and add `-- zdm:ignore \
           unrecognized-statement -- reason`",
    setup: "",
    bad: "ALTER TABLE users DROP CONSTRAINT users_pkey ALTER TABLE users ADD COLUMN id2 bigint;",
    good: "ALTER TABLE users DROP CONSTRAINT users_pkey;\nALTER TABLE users ADD COLUMN id2 bigint;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::Unrecognized { reason } => Violation::new(format!(
            "zdm cannot understand this statement ({reason}), so it cannot tell which lock it takes"
        )),
        _ => vec![],
    }
}
