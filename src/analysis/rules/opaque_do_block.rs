//! DO blocks whose effects zdm cannot see.

use super::prelude::*;
use crate::analysis::do_block;

pub static RULE: Rule = Rule {
    name: "opaque-do-block",
    severity: Severity::Warning,
    summary: "a DO block with dynamic SQL (EXECUTE) or statements zdm does not understand",
    why: "zdm checks the SQL statements written in a DO block like any other, but it cannot see \
          what dynamic SQL (EXECUTE) runs, so those locks are not checked; the block runs in the \
          migration's transaction.",
    help: "write schema changes as plain statements (or plain statements inside the block) so \
           zdm can check and plan them; review the dynamic statements by hand and say so with \
           `-- zdm:ignore opaque-do-block -- reason`",
    setup: "",
    bad: "DO $$ BEGIN EXECUTE 'CREATE TYPE mood AS ENUM (''ok'')'; END $$;",
    good: "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN CREATE TYPE mood AS ENUM ('ok'); END IF; END $$;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    if !matches!(cx.change, Change::DoBlock { .. }) {
        return vec![];
    }
    let body = do_block::analyze(cx.stmt, cx.change, cx.file_text);
    if body.opaque.is_empty() {
        return vec![];
    }
    Violation::new(format!(
        "zdm cannot see all of what this DO block runs ({}), so those locks are not checked",
        body.opaque.join("; ")
    ))
}
