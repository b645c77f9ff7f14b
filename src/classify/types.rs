//! Whether `ALTER COLUMN … TYPE` rewrites the table. PostgreSQL skips the rewrite "if the USING
//! clause does not change the column contents and the old type is either binary coercible to
//! the new type or an unconstrained domain over the new type"
//! (<https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>).

use crate::parse::SqlType;

/// What a type change does to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeChange {
    /// Catalog only (binary coercible): a brief ACCESS EXCLUSIVE lock, no rewrite.
    InPlace,
    /// Every row and every index is rewritten under ACCESS EXCLUSIVE.
    Rewrite { reason: String },
    /// The old type is not known (no earlier migration in the directory declares the column).
    UnknownOldType,
}

/// Classifies a change from `old` to `new`, with an optional USING expression.
pub fn type_change(
    old: Option<&SqlType>,
    new: &SqlType,
    using: Option<&str>,
    column: &str,
) -> TypeChange {
    let Some(old) = old else {
        return TypeChange::UnknownOldType;
    };
    if let Some(using) = using {
        let trivial = using
            .trim_matches(|c| c == '(' || c == ')')
            .trim()
            .eq_ignore_ascii_case(column);
        if !trivial {
            return TypeChange::Rewrite {
                reason: format!(
                    "the USING expression `{using}` computes a new value for every row"
                ),
            };
        }
    }
    if binary_coercible(old, new) {
        return TypeChange::InPlace;
    }
    let mut reason = format!("{} to {} is not binary coercible", old.written, new.written);
    if matches!(
        (old.name.as_str(), new.name.as_str()),
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp")
    ) {
        // PostgreSQL 12+ skips the rewrite only when the session TimeZone is UTC, which a
        // migration file cannot promise.
        reason
            .push_str(" (PostgreSQL 12+ skips the rewrite only when the session TimeZone is UTC)");
    }
    TypeChange::Rewrite { reason }
}

/// The changes PostgreSQL makes without touching the data (`../shared/reference/pg-locks.md`).
fn binary_coercible(old: &SqlType, new: &SqlType) -> bool {
    if old.array != new.array {
        return false;
    }
    let (o, n) = (storage(&old.name), storage(&new.name));
    let unbounded = new.modifiers.is_empty();
    // A length, precision or scale bound that grows or goes away.
    let widens = |i: usize| match (old.modifiers.get(i), new.modifiers.get(i)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => b >= a,
    };
    match (o, n) {
        _ if o == n && old.modifiers == new.modifiers => true,
        ("varchar", "varchar") => widens(0),
        ("varchar", "text") | ("text", "varchar") if unbounded => true,
        ("varchar", "text") => true,
        ("text", "citext") | ("citext", "text") => true,
        ("varchar", "citext") => true,
        // Numeric: precision may grow while the scale stays; no modifiers means unbounded.
        ("numeric", "numeric") => {
            unbounded
                || (old.modifiers.len() == new.modifiers.len()
                    && widens(0)
                    && old.modifiers.get(1).copied().unwrap_or(0)
                        == new.modifiers.get(1).copied().unwrap_or(0))
        }
        ("varbit", "varbit") => widens(0),
        ("cidr", "inet") => true,
        ("timestamp", "timestamp")
        | ("timestamptz", "timestamptz")
        | ("time", "time")
        | ("timetz", "timetz")
        | ("interval", "interval") => widens(0),
        _ => false,
    }
}

/// serial types are their integer type plus a default.
fn storage(name: &str) -> &str {
    match name {
        "serial" => "int4",
        "bigserial" => "int8",
        "smallserial" => "int2",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(old: &str, new: &str) -> TypeChange {
        type_change(Some(&SqlType::parse(old)), &SqlType::parse(new), None, "c")
    }

    #[test]
    fn in_place_changes() {
        for (old, new) in [
            ("varchar(10)", "varchar(20)"),
            ("varchar(10)", "text"),
            ("character varying(10)", "varchar"),
            ("text", "varchar"),
            ("numeric(10,2)", "numeric(12,2)"),
            ("numeric(10,2)", "numeric"),
            ("cidr", "inet"),
            ("timestamp(3)", "timestamp(6)"),
            ("timestamp(3)", "timestamp"),
            ("text", "citext"),
            ("bit varying(4)", "varbit(8)"),
        ] {
            assert_eq!(change(old, new), TypeChange::InPlace, "{old} -> {new}");
        }
    }

    #[test]
    fn rewriting_changes() {
        for (old, new) in [
            ("int", "bigint"),
            ("varchar(20)", "varchar(10)"),
            ("text", "varchar(10)"),
            ("numeric(10,2)", "numeric(12,4)"),
            ("timestamp", "timestamptz"),
            ("char(10)", "text"),
            ("int[]", "bigint[]"),
        ] {
            assert!(
                matches!(change(old, new), TypeChange::Rewrite { .. }),
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn using_expressions_rewrite_and_unknown_types_say_so() {
        let t = SqlType::parse("text");
        assert!(matches!(
            type_change(
                Some(&SqlType::parse("varchar(5)")),
                &t,
                Some("lower(c)"),
                "c"
            ),
            TypeChange::Rewrite { .. }
        ));
        assert_eq!(type_change(None, &t, None, "c"), TypeChange::UnknownOldType);
    }
}
