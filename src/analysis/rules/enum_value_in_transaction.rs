//! Using an enum value in the transaction that added it.

use sqlparser::tokenizer::Token;

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "enum-value-in-transaction",
    severity: Severity::Error,
    summary: "an enum value used in the transaction that added it (or ADD VALUE in a transaction block before PostgreSQL 12)",
    why: "A value added with ALTER TYPE … ADD VALUE cannot be used until the transaction that \
          added it commits (error 55P04, unsafe use of new value); before PostgreSQL 12 ADD \
          VALUE cannot run inside a transaction block at all. The migration fails.",
    help: "COMMIT after ALTER TYPE … ADD VALUE and use the value in a later transaction or \
           migration; zdm plan commits each step on its own",
    setup: "CREATE TYPE post_status AS ENUM ('draft', 'published');\nCREATE TABLE posts (id bigint PRIMARY KEY, status post_status);",
    bad: "ALTER TYPE post_status ADD VALUE 'archived';\nUPDATE posts SET status = 'archived' WHERE id = 1;",
    good: "ALTER TYPE post_status ADD VALUE 'archived';\nCOMMIT;\nUPDATE posts SET status = 'archived' WHERE id = 1;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    if let Change::AlterTypeAddValue { type_name, .. } = cx.change {
        if cx.pg_version < 12 && cx.file.in_block && !cx.file.is_new(type_name) {
            return Violation::new(format!(
                "ALTER TYPE {type_name} ADD VALUE cannot run inside a transaction block before PostgreSQL 12 (targeting {})",
                cx.pg_version
            ));
        }
        return vec![];
    }
    let literals: Vec<&str> = cx
        .stmt
        .tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    cx.file
        .enum_values_added
        .iter()
        .filter(|(value, segment)| *segment == cx.file.segment && literals.contains(&value.as_str()))
        .flat_map(|(value, _)| {
            Violation::new(format!(
                "the enum value '{value}' was added in this transaction and cannot be used before it commits (55P04)"
            ))
        })
        .collect()
}
