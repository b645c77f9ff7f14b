//! `-- zdm:` comments. The AST drops comments, so directives are read from the tokens:
//!
//! ```sql
//! -- zdm:ignore drop-column, rename-table -- the old app no longer reads it
//! -- zdm:ignore-file require-lock-timeout
//! -- zdm:backfill lower(email)
//! -- zdm:down old_value::int
//! -- zdm:allow-locking -- maintenance window
//! ```

use std::ops::Range;

use super::position::Position;

/// What a directive asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveKind {
    /// Silence the named rules on this statement.
    Ignore(Vec<String>),
    /// Silence the named rules in the whole file.
    IgnoreFile(Vec<String>),
    /// The expression that fills a new or changed column (used by `zdm plan`).
    Backfill(String),
    /// The reverse expression of a type change (used by `zdm plan`).
    Down(String),
    /// Accept that this statement locks the table (used by `zdm plan`).
    AllowLocking,
    /// A `zdm:` word zdm does not know: reported, so a typo never silently does nothing.
    Unknown(String),
}

impl DirectiveKind {
    pub fn is_file_wide(&self) -> bool {
        matches!(self, DirectiveKind::IgnoreFile(_))
    }
}

/// A directive with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub kind: DirectiveKind,
    /// The text after a second `--`, if any: why the directive is there.
    pub reason: Option<String>,
    pub position: Position,
    pub span: Range<usize>,
}

/// Atlas's analyzers (by class and by check) and the zdm rules that find the same hazard:
/// `-- atlas:nolint <names>` silences those rules on its statement, a bare `-- atlas:nolint`
/// all of them. Names with no zdm counterpart (naming, custom rules) silence nothing.
/// <https://atlasgo.io/lint/analyzers>
const ATLAS_ANALYZERS: &[(&str, &[&str])] = &[
    (
        "destructive",
        &["drop-table", "drop-column", "drop-view", "truncate"],
    ),
    ("ds101", &["drop-table"]),
    ("ds102", &["drop-table"]),
    ("ds103", &["drop-column"]),
    ("backward_incompatible", &["rename-table", "rename-column"]),
    ("bc101", &["rename-table"]),
    ("bc102", &["rename-column"]),
    (
        "data_depend",
        &[
            "unique-without-index",
            "add-required-column",
            "set-not-null-scan",
        ],
    ),
    ("mf101", &["unique-without-index"]),
    ("mf102", &["unique-without-index"]),
    ("mf103", &["add-required-column"]),
    ("mf104", &["set-not-null-scan"]),
    (
        "concurrent_index",
        &[
            "require-concurrent-index",
            "require-concurrent-index-drop",
            "concurrently-in-transaction",
        ],
    ),
    ("pg101", &["require-concurrent-index"]),
    ("pg102", &["concurrently-in-transaction"]),
    ("pg103", &["require-concurrent-index-drop"]),
];

/// `atlas:nolint [names]` as the zdm ignore it means, or `None` when it silences nothing zdm
/// checks.
fn atlas_nolint(comment: &str, position: Position, span: Range<usize>) -> Option<Directive> {
    let names = comment.trim().strip_prefix("atlas:nolint")?;
    let names: Vec<String> = names
        .split([',', ' '])
        .map(|n| n.trim().to_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    let mut rules: Vec<String> = Vec::new();
    for (name, mapped) in ATLAS_ANALYZERS {
        if names.is_empty() || names.iter().any(|n| n == name) {
            for rule in *mapped {
                if !rules.iter().any(|r| r == rule) {
                    rules.push((*rule).to_owned());
                }
            }
        }
    }
    (!rules.is_empty()).then(|| Directive {
        kind: DirectiveKind::Ignore(rules),
        reason: Some(format!("{} (Atlas)", comment.trim())),
        position,
        span,
    })
}

/// Parses the text of one comment (without its `--` or `/* */`), or returns `None` when it is
/// an ordinary comment.
pub fn parse_directive(comment: &str, position: Position, span: Range<usize>) -> Option<Directive> {
    if comment.trim().starts_with("atlas:nolint") {
        return atlas_nolint(comment, position, span);
    }
    let body = comment.trim().strip_prefix("zdm:")?;
    let (body, reason) = match body.split_once("--") {
        Some((b, r)) => (
            b.trim(),
            Some(r.trim().to_owned()).filter(|r| !r.is_empty()),
        ),
        None => (body.trim(), None),
    };
    let (word, rest) = body
        .split_once(char::is_whitespace)
        .map_or((body, ""), |(w, r)| (w, r.trim()));
    let rules = || -> Vec<String> {
        rest.split([',', ' '])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let kind = match word {
        "ignore" => DirectiveKind::Ignore(rules()),
        "ignore-file" => DirectiveKind::IgnoreFile(rules()),
        "backfill" => DirectiveKind::Backfill(rest.to_owned()),
        "down" => DirectiveKind::Down(rest.to_owned()),
        "allow-locking" => DirectiveKind::AllowLocking,
        other => DirectiveKind::Unknown(other.to_owned()),
    };
    Some(Directive {
        kind,
        reason,
        position,
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<DirectiveKind> {
        parse_directive(text, Position { line: 1, column: 1 }, 0..0).map(|d| d.kind)
    }

    #[test]
    fn reads_ignores_with_reasons() {
        let d = parse_directive(
            " zdm:ignore drop-column, rename-table -- old app is gone\n",
            Position { line: 1, column: 1 },
            0..0,
        )
        .unwrap();
        assert_eq!(
            d.kind,
            DirectiveKind::Ignore(vec!["drop-column".into(), "rename-table".into()])
        );
        assert_eq!(d.reason.as_deref(), Some("old app is gone"));
    }

    #[test]
    fn atlas_nolint_maps_to_the_rules_that_find_the_same_hazard() {
        assert_eq!(
            parse(" atlas:nolint DS103"),
            Some(DirectiveKind::Ignore(vec!["drop-column".into()]))
        );
        assert_eq!(
            parse("atlas:nolint destructive BC102"),
            Some(DirectiveKind::Ignore(vec![
                "drop-table".into(),
                "drop-column".into(),
                "drop-view".into(),
                "truncate".into(),
                "rename-column".into()
            ]))
        );
        let Some(DirectiveKind::Ignore(all)) = parse(" atlas:nolint") else {
            panic!("a bare nolint ignores every mapped rule");
        };
        assert!(all.len() > 8 && all.contains(&"require-concurrent-index".to_owned()));
        assert_eq!(parse(" atlas:nolint naming"), None);
    }

    #[test]
    fn ordinary_comments_are_not_directives() {
        assert_eq!(parse(" add the users table"), None);
        assert_eq!(
            parse(" zdm:ignroe x"),
            Some(DirectiveKind::Unknown("ignroe".into()))
        );
        assert_eq!(
            parse("zdm:backfill lower(email)"),
            Some(DirectiveKind::Backfill("lower(email)".into()))
        );
    }
}
