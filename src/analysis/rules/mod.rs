//! Every lint rule, one file each. `ALL` is the one registration list: the engine, `zdm
//! rules`, the config validator and the generated docs (`docs/rules/`) all read it.

use super::Rule;

pub mod add_generated_column;
pub mod add_required_column;
pub mod cluster;
pub mod concurrently_in_transaction;
pub mod drop_column;
pub mod drop_table;
pub mod drop_view;
pub mod enum_value_in_transaction;
pub mod exclude_constraint;
pub mod foreign_key_without_index;
pub mod identifier_too_long;
pub mod invalid_directive;
pub mod lock_held_across_statements;
pub mod lock_table;
pub mod opaque_do_block;
pub mod primary_key_nullable;
pub mod rename_column;
pub mod rename_table;
pub mod require_concurrent_detach;
pub mod require_concurrent_index;
pub mod require_concurrent_index_drop;
pub mod require_concurrent_refresh;
pub mod require_concurrent_reindex;
pub mod require_lock_timeout;
pub mod require_not_valid_check;
pub mod require_not_valid_foreign_key;
pub mod rewrite_storage;
pub mod rewriting_type_change;
pub mod set_not_null_scan;
pub mod transaction_nesting;
pub mod truncate;
pub mod unbatched_dml;
pub mod unique_without_index;
pub mod unrecognized_statement;
pub mod vacuum_full;
pub mod validate_in_same_transaction;
pub mod volatile_default;

/// All rules, in the order docs list them.
pub static ALL: &[&Rule] = &[
    &require_concurrent_index::RULE,
    &require_concurrent_index_drop::RULE,
    &require_concurrent_reindex::RULE,
    &concurrently_in_transaction::RULE,
    &require_not_valid_foreign_key::RULE,
    &foreign_key_without_index::RULE,
    &require_not_valid_check::RULE,
    &validate_in_same_transaction::RULE,
    &lock_held_across_statements::RULE,
    &set_not_null_scan::RULE,
    &add_required_column::RULE,
    &volatile_default::RULE,
    &add_generated_column::RULE,
    &rewriting_type_change::RULE,
    &unique_without_index::RULE,
    &primary_key_nullable::RULE,
    &exclude_constraint::RULE,
    &rename_column::RULE,
    &rename_table::RULE,
    &drop_column::RULE,
    &drop_table::RULE,
    &drop_view::RULE,
    &truncate::RULE,
    &vacuum_full::RULE,
    &cluster::RULE,
    &lock_table::RULE,
    &rewrite_storage::RULE,
    &require_concurrent_refresh::RULE,
    &require_concurrent_detach::RULE,
    &unbatched_dml::RULE,
    &enum_value_in_transaction::RULE,
    &require_lock_timeout::RULE,
    &transaction_nesting::RULE,
    &opaque_do_block::RULE,
    &identifier_too_long::RULE,
    &unrecognized_statement::RULE,
    &invalid_directive::RULE,
];

/// Finds a rule by name.
pub fn find(name: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.name == name)
}

/// What rule files import.
mod prelude {
    pub use crate::analysis::{Cx, Rule, Severity, Violation, lock_phrase};
    pub use crate::classify::LockMode;
    pub use crate::parse::{AlterAction, Change, ConstraintKind};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{LintOptions, Severity, lint_sql};
    use crate::report::render_human_plain;

    #[test]
    fn names_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            assert!(seen.insert(r.name), "duplicate rule {}", r.name);
            assert!(
                r.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                r.name
            );
            assert!(!r.summary.is_empty() && !r.why.is_empty(), "{}", r.name);
        }
    }

    /// A rule file whose `RULE` is missing from `ALL` would compile and never run.
    #[test]
    fn every_rule_file_is_in_all() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/analysis/rules");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".rs")
                && stem != "mod"
            {
                let rule = stem.replace('_', "-");
                assert!(
                    ALL.iter().any(|r| r.name == rule),
                    "src/analysis/rules/{name} is not in ALL (src/analysis/rules/mod.rs), or its RULE is not named {rule}"
                );
            }
        }
    }

    /// Every rule fires on its bad example and the good example raises no finding of it (nor
    /// any other error). The rendered output of the bad example is snapshotted.
    #[test]
    fn every_rule_fires_on_bad_and_is_silent_on_good() {
        let options = LintOptions {
            pg_version: 14,
            ..LintOptions::default()
        };
        for rule in ALL {
            let bad = lint_sql(rule.setup, rule.bad, &options);
            assert!(
                bad.findings.iter().any(|f| f.rule == rule.name),
                "{} did not fire on its bad example:\n{}\nfindings: {:?}",
                rule.name,
                rule.bad,
                bad.findings
            );
            let good = lint_sql(rule.setup, rule.good, &options);
            assert!(
                !good
                    .findings
                    .iter()
                    .any(|f| f.rule == rule.name || f.severity == Severity::Error),
                "{} good example is not clean:\n{}\nfindings: {:?}",
                rule.name,
                rule.good,
                good.findings
            );
            let rendered = render_human_plain(&bad);
            insta::assert_snapshot!(format!("rule_{}", rule.name.replace('-', "_")), rendered);
        }
    }
}
