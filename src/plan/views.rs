//! A view replaced around a type change: PostgreSQL refuses to change the type of a column a
//! view reads, so a migration that changes one drops the view first and creates it again
//! after (`DROP VIEW v; ALTER TABLE t ALTER COLUMN c TYPE bigint; CREATE VIEW v AS …`).
//! Run in that order in expand, the old application would find the view gone until the end of
//! the migration. zdm runs the type change in phases, and the swap at contract moves the view
//! to the new column itself (see `sql::swap::save_and_drop_views`); so the view stays as it was
//! through expand, and the migration's own DROP VIEW, CREATE VIEW and the statements after it
//! that name the view (GRANT, COMMENT) run together at contract, in one transaction, after
//! the swaps: the view the migration writes replaces the old one without a moment in between.

use std::collections::HashSet;

use crate::analysis::Unit;
use crate::catalog::Catalog;
use crate::parse::{AlterAction, Change, Name, ObjectKind};

/// One view the migration drops and (perhaps) creates again around a type change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewReplacement {
    pub view: Name,
    /// The DROP VIEW.
    pub drop: usize,
    /// The type changes of columns of tables the view reads, between the drop and the create.
    pub changes: Vec<usize>,
    /// The CREATE VIEW of the same name, if the migration creates it again.
    pub create: Option<usize>,
    /// Statements after the CREATE VIEW that name the view.
    pub follow: Vec<usize>,
    /// The line and text of each statement that runs at contract, in order.
    pub texts: Vec<(usize, String)>,
    /// The CREATE VIEW selects `*` (or `t.*`): run after the swaps, it would list a changed
    /// table's columns in another order than the SQL as written (the new column comes last).
    pub selects_star: bool,
}

impl ViewReplacement {
    /// The statements that run together at contract, in order.
    pub fn statements(&self) -> Vec<usize> {
        let mut out = vec![self.drop];
        out.extend(self.create);
        out.extend(&self.follow);
        out
    }

    /// The statement at which the replacement is planned: the last of them.
    pub fn planned_at(&self) -> usize {
        *self.statements().last().expect("the drop is always there")
    }
}

/// Finds the views a migration drops before a type change of a column of a table they read.
pub fn replacements(
    statements: &[&Unit],
    words: &[HashSet<String>],
    catalog: &Catalog,
) -> Vec<ViewReplacement> {
    let mut out = Vec::new();
    for (i, unit) in statements.iter().enumerate() {
        let Change::Drop {
            kind: ObjectKind::View,
            names,
            cascade: false,
        } = &unit.change
        else {
            continue;
        };
        let [view] = names.as_slice() else { continue };
        let reads = catalog.tables_read_by(view);
        let changes: Vec<usize> = (i + 1..statements.len())
            .filter(|&j| match &statements[j].change {
                Change::AlterTable { table, actions } => {
                    reads.iter().any(|r| r.key() == table.key())
                        && actions
                            .iter()
                            .any(|a| matches!(a, AlterAction::AlterColumnType { .. }))
                }
                _ => false,
            })
            .collect();
        let Some(&last_change) = changes.last() else {
            continue;
        };
        let names_view = |j: usize| words[j].contains(&view.name);
        // The first statement after the drop that names the view must be its CREATE VIEW,
        // after the type changes; a use before it would find the old view still there.
        let next = (i + 1..statements.len()).find(|&j| names_view(j));
        let create = match next {
            Some(k) => match &statements[k].change {
                Change::CreateView {
                    name,
                    materialized: false,
                    ..
                } if name.key() == view.key() && k > last_change => Some(k),
                _ => continue,
            },
            None => None,
        };
        let follow = create
            .map(|k| {
                (k + 1..statements.len())
                    .filter(|&f| names_view(f))
                    .collect()
            })
            .unwrap_or_default();
        let mut r = ViewReplacement {
            view: view.clone(),
            drop: i,
            changes,
            create,
            follow,
            texts: Vec::new(),
            selects_star: create.is_some_and(|k| selects_star(&statements[k].stmt.tokens)),
        };
        r.texts = r
            .statements()
            .iter()
            .map(|&s| {
                (
                    statements[s].stmt.start.line,
                    statements[s].stmt.text.clone(),
                )
            })
            .collect();
        out.push(r);
    }
    out
}

/// Whether a query selects `*` or `t.*` (not `count(*)`).
fn selects_star(tokens: &[crate::source::SqlToken]) -> bool {
    use sqlparser::tokenizer::Token;
    let mut previous: Option<&Token> = None;
    for t in tokens {
        if matches!(t.token, Token::Whitespace(_)) {
            continue;
        }
        if t.token == Token::Mul
            && match previous {
                Some(Token::Period | Token::Comma) => true,
                Some(Token::Word(w)) => {
                    w.value.eq_ignore_ascii_case("SELECT")
                        || w.value.eq_ignore_ascii_case("DISTINCT")
                }
                _ => false,
            }
        {
            return true;
        }
        previous = Some(&t.token);
    }
    false
}
