//! Whether a DEFAULT expression is volatile. Since PostgreSQL 11, adding a column with a
//! non-volatile default stores the value in the catalog; a volatile default (`random()`,
//! `clock_timestamp()`, `gen_random_uuid()`, `nextval()` behind `serial`) must be computed for
//! every existing row, which rewrites the table and its indexes.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volatility {
    /// Constants and STABLE/IMMUTABLE built-ins (`now()` is STABLE: one value per transaction).
    NonVolatile,
    /// Calls this VOLATILE function.
    Volatile(String),
    /// Calls a function zdm does not know; user functions are VOLATILE unless declared otherwise.
    Unknown(String),
}

/// Built-in functions that are VOLATILE.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
];

/// Built-in functions that are STABLE or IMMUTABLE and common in defaults.
const NON_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    "current_user",
    "session_user",
    "timezone",
    "date_trunc",
    "lower",
    "upper",
    "concat",
    "coalesce",
    "nullif",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "array",
    "make_interval",
    "make_date",
    "to_timestamp",
    "to_date",
    "length",
    "replace",
    "trim",
    "cast",
    "interval",
    "greatest",
    "least",
    "abs",
    "md5",
    "encode",
    "decode",
    "format",
    "substring",
    "row",
];

/// Classifies a DEFAULT expression by the functions it calls (`name(` in its tokens).
pub fn default_volatility(expr: &str) -> Volatility {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expr).tokenize() else {
        return Volatility::Unknown(expr.to_owned());
    };
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut unknown = None;
    for pair in significant.windows(2) {
        let (Token::Word(w), Token::LParen) = (pair[0], pair[1]) else {
            continue;
        };
        let name = w.value.to_lowercase();
        let name = name.rsplit('.').next().unwrap_or(&name).to_owned();
        if VOLATILE.contains(&name.as_str()) {
            return Volatility::Volatile(name);
        }
        if !NON_VOLATILE.contains(&name.as_str()) && !is_type_name(&name) {
            unknown.get_or_insert(name);
        }
    }
    unknown.map_or(Volatility::NonVolatile, Volatility::Unknown)
}

/// `varchar(10)`, `numeric(10, 2)` in casts look like calls.
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "varchar"
            | "char"
            | "character"
            | "numeric"
            | "decimal"
            | "timestamp"
            | "timestamptz"
            | "time"
            | "bit"
            | "varbit"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_defaults() {
        assert_eq!(default_volatility("0"), Volatility::NonVolatile);
        assert_eq!(default_volatility("'{}'::jsonb"), Volatility::NonVolatile);
        assert_eq!(default_volatility("now()"), Volatility::NonVolatile);
        assert_eq!(
            default_volatility("CURRENT_TIMESTAMP"),
            Volatility::NonVolatile
        );
        assert_eq!(
            default_volatility("'x'::varchar(10)"),
            Volatility::NonVolatile
        );
        assert_eq!(
            default_volatility("gen_random_uuid()"),
            Volatility::Volatile("gen_random_uuid".into())
        );
        assert_eq!(
            default_volatility("nextval('s'::regclass)"),
            Volatility::Volatile("nextval".into())
        );
        assert_eq!(
            default_volatility("(random() * 10)::int"),
            Volatility::Volatile("random".into())
        );
        assert_eq!(
            default_volatility("my_fn()"),
            Volatility::Unknown("my_fn".into())
        );
    }
}
