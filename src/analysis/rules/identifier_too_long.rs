//! Identifiers longer than PostgreSQL's 63-byte limit.

use super::prelude::*;
use crate::parse::ColumnSpec;

pub static RULE: Rule = Rule {
    name: "identifier-too-long",
    severity: Severity::Warning,
    summary: "an identifier longer than 63 bytes",
    why: "PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1), so the object \
          gets a different name than the migration says, and later migrations naming it in full \
          may hit another object or none.",
    help: "use a name of at most 63 bytes",
    setup: "",
    bad: "CREATE TABLE users_with_an_extraordinarily_long_name_that_postgres_will_truncate (id bigint PRIMARY KEY);",
    good: "CREATE TABLE users (id bigint PRIMARY KEY);",
    check,
};

const MAX: usize = 63;

fn check(cx: &Cx) -> Vec<Violation> {
    let mut names: Vec<&str> = Vec::new();
    let mut from_actions: Vec<&str> = Vec::new();
    match cx.change {
        Change::CreateTable {
            name,
            columns: cols,
            constraints,
            ..
        } => {
            names.push(&name.name);
            names.extend(cols.iter().map(|c: &ColumnSpec| c.name.as_str()));
            names.extend(constraints.iter().filter_map(|c| c.name.as_deref()));
        }
        Change::CreateIndex { name: Some(n), .. } | Change::CreateView { name: n, .. } => {
            names.push(&n.name)
        }
        Change::AlterTable { actions, .. } => {
            for a in actions {
                match a {
                    AlterAction::AddColumn(c) => from_actions.push(&c.name),
                    AlterAction::AddConstraint(c) => from_actions.extend(c.name.as_deref()),
                    AlterAction::RenameColumn { to, .. }
                    | AlterAction::RenameConstraint { to, .. } => from_actions.push(to),
                    AlterAction::RenameTable { to } => from_actions.push(&to.name),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    names
        .into_iter()
        .chain(from_actions)
        .filter(|n| n.len() > MAX)
        .flat_map(|n| {
            let cut = (0..=MAX)
                .rev()
                .find(|&i| n.is_char_boundary(i))
                .unwrap_or(0);
            Violation::new(format!(
                "\"{n}\" is {} bytes; PostgreSQL truncates it to \"{}\"",
                n.len(),
                &n[..cut]
            ))
        })
        .collect()
}
