//! `-- zdm:` directives that name unknown rules or kinds. The engine checks directives (they
//! are comments, not statements); this file holds the rule's metadata.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "invalid-directive",
    severity: Severity::Error,
    summary: "a `-- zdm:` directive naming an unknown rule or directive",
    why: "A misspelt ignore silences nothing and a misspelt directive does nothing, while the \
          author believes otherwise.",
    help: "use a rule name from `zdm rules`; directives are ignore, ignore-file, backfill, down \
           and allow-locking",
    setup: "",
    bad: "-- zdm:ignore no-such-rule\nSELECT 1;",
    good: "-- zdm:ignore drop-table -- the cache table is rebuilt on start\nDROP TABLE IF EXISTS cache;",
    check,
};

fn check(_: &Cx) -> Vec<Violation> {
    vec![]
}
