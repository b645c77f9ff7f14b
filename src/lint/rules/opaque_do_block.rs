//! DO blocks, whose effects zdm cannot see.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "opaque-do-block",
    severity: Severity::Warning,
    summary: "a DO block (anonymous PL/pgSQL code)",
    why: "zdm cannot see which statements a DO block runs, so it cannot check their locks or \
          plan them; the statements inside run in the migration's transaction.",
    help: "write schema changes as plain statements so zdm can check and plan them; review the \
           block's statements by hand and say so with `-- zdm:ignore opaque-do-block -- reason`",
    setup: "",
    bad: "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN CREATE TYPE mood AS ENUM ('ok'); END IF; END $$;",
    good: "CREATE TYPE mood AS ENUM ('ok');",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::DoBlock => {
            Violation::new("zdm cannot see what this DO block runs, so its locks are not checked")
        }
        _ => vec![],
    }
}
