//! Index and constraint definitions kept as SQL, so that a column replaced by a shadow can
//! take them along: the type change builds each index and constraint on the column again on
//! its shadow before the swap, with the same definition and, after the swap, the same name.
//!
//! A definition comes from the migration that created it (printed back from sqlparser's AST)
//! or from the database (`pg_get_indexdef`, `pg_get_constraintdef`). Rewriting one changes
//! only identifiers that name the column; everything else (method, operator classes,
//! collations, INCLUDE, WHERE, ON DELETE, DEFERRABLE) is printed as it was read. The swap then
//! proves the copy faithful: it compares PostgreSQL's own definition of the rebuilt object with
//! the original's before it drops anything (see `plan::ops::change_type`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, AlterTableOperation, Expr, Ident, ObjectName, Statement, TableConstraint,
    visit_expressions, visit_expressions_mut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::fold::{ident, name as object_name_of};
use crate::sql::Name;

/// A `CREATE INDEX` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDefinition(String);

/// A table constraint clause: `CONSTRAINT n CHECK (…)`, `FOREIGN KEY (…) REFERENCES …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintDefinition(String);

/// One column standing in for another in a definition.
#[derive(Debug, Clone, Copy)]
pub struct Substitute<'a> {
    pub column: &'a str,
    pub by: &'a str,
}

fn parse_one(sql: &str) -> Option<Statement> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    (statements.len() == 1).then(|| statements.remove(0))
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

fn object_name(name: &Name) -> ObjectName {
    ObjectName::from(
        name.schema
            .iter()
            .chain(std::iter::once(&name.name))
            .map(|part| quoted(part))
            .collect::<Vec<_>>(),
    )
}

fn names(i: &Ident, column: &str) -> bool {
    ident(i) == column
}

/// Whether an expression reads the column (bare, or as the last part of `t.column`).
fn expr_uses(expr: &Expr, column: &str) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Identifier(i) if names(i, column) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(parts) if parts.last().is_some_and(|i| names(i, column)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn expr_substitute(expr: &mut Expr, s: Substitute) {
    let _ = visit_expressions_mut(expr, |e| {
        match e {
            Expr::Identifier(i) if names(i, s.column) => *i = quoted(s.by),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut().filter(|i| names(i, s.column)) {
                    *last = quoted(s.by);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

fn idents_substitute(idents: &mut [Ident], s: Substitute) {
    for i in idents.iter_mut().filter(|i| names(i, s.column)) {
        *i = quoted(s.by);
    }
}

impl IndexDefinition {
    /// The definition, if sqlparser reads it as one CREATE INDEX.
    pub fn new(sql: &str) -> Option<IndexDefinition> {
        matches!(parse_one(sql)?, Statement::CreateIndex(_)).then(|| IndexDefinition(sql.into()))
    }

    fn ast(&self) -> ast::CreateIndex {
        match parse_one(&self.0) {
            Some(Statement::CreateIndex(ci)) => ci,
            _ => unreachable!("checked when the definition was made"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the index reads the column: as a key, in an expression, INCLUDE or WHERE.
    pub fn uses(&self, column: &str) -> bool {
        let ci = self.ast();
        ci.columns.iter().any(|c| expr_uses(&c.column.expr, column))
            || ci.include.iter().any(|i| names(i, column))
            || ci.predicate.as_ref().is_some_and(|p| expr_uses(p, column))
    }

    /// Whether it is a UNIQUE index.
    pub fn unique(&self) -> bool {
        self.ast().unique
    }

    /// `CREATE [UNIQUE] INDEX CONCURRENTLY <name> ON <table> …` with the column substituted.
    /// Printed here rather than by sqlparser, whose `CreateIndex` puts an operator class after
    /// `DESC`/`NULLS LAST`, where PostgreSQL does not accept it.
    pub fn on_shadow(&self, table: &Name, name: &str, s: Substitute) -> String {
        let mut ci = self.ast();
        let mut out = format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {}",
            if ci.unique { "UNIQUE " } else { "" },
            quoted(name),
            object_name(table)
        );
        if let Some(method) = &ci.using {
            out.push_str(&format!(" USING {method}"));
        }
        let columns: Vec<String> = ci
            .columns
            .iter_mut()
            .map(|c| {
                expr_substitute(&mut c.column.expr, s);
                let class = c
                    .operator_class
                    .as_ref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default();
                format!("{}{class}{}", c.column.expr, c.column.options)
            })
            .collect();
        out.push_str(&format!(" ({})", columns.join(", ")));
        idents_substitute(&mut ci.include, s);
        if !ci.include.is_empty() {
            let include: Vec<String> = ci.include.iter().map(|i| i.to_string()).collect();
            out.push_str(&format!(" INCLUDE ({})", include.join(", ")));
        }
        if ci.nulls_distinct == Some(false) {
            out.push_str(" NULLS NOT DISTINCT");
        }
        if !ci.with.is_empty() {
            let with: Vec<String> = ci.with.iter().map(|w| w.to_string()).collect();
            out.push_str(&format!(" WITH ({})", with.join(", ")));
        }
        if let Some(p) = &mut ci.predicate {
            expr_substitute(p, s);
            out.push_str(&format!(" WHERE {p}"));
        }
        out
    }
}

impl ConstraintDefinition {
    /// The definition, if sqlparser reads it as a table constraint. `sql` may end in
    /// `NOT VALID`, as `pg_get_constraintdef` writes it; that is not part of the definition.
    pub fn new(sql: &str) -> Option<ConstraintDefinition> {
        let constraint = Self::parse(sql)?;
        Some(ConstraintDefinition(constraint.to_string()))
    }

    /// From sqlparser's AST (for the converter).
    pub(super) fn from_ast(constraint: &TableConstraint) -> ConstraintDefinition {
        ConstraintDefinition(constraint.to_string())
    }

    fn parse(sql: &str) -> Option<TableConstraint> {
        match parse_one(&format!("ALTER TABLE t ADD {sql}"))? {
            Statement::AlterTable(at) => match at.operations.into_iter().next()? {
                AlterTableOperation::AddConstraint { constraint, .. } => Some(constraint),
                _ => None,
            },
            _ => None,
        }
    }

    fn ast(&self) -> TableConstraint {
        Self::parse(&self.0).expect("checked when the definition was made")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the constraint reads the column of its own table.
    pub fn uses(&self, column: &str) -> bool {
        match self.ast() {
            TableConstraint::Check(c) => expr_uses(&c.expr, column),
            TableConstraint::ForeignKey(fk) => fk.columns.iter().any(|i| names(i, column)),
            TableConstraint::PrimaryKey(pk) => {
                pk.columns.iter().any(|c| expr_uses(&c.column.expr, column))
            }
            TableConstraint::Unique(u) => {
                u.columns.iter().any(|c| expr_uses(&c.column.expr, column))
            }
            // An EXCLUDE constraint's elements are expressions zdm does not take apart: it
            // may use any column.
            _ => true,
        }
    }

    /// A foreign key's referenced columns, as written (empty: the referenced table's primary
    /// key).
    pub fn referenced_columns(&self) -> Vec<String> {
        match self.ast() {
            TableConstraint::ForeignKey(fk) => fk.referred_columns.iter().map(ident).collect(),
            _ => Vec::new(),
        }
    }

    /// The clause for `ALTER TABLE … ADD`, named `name`, with the table's column substituted
    /// (`own`) and, for a foreign key, the referenced column (`referenced`, with the
    /// referenced key's columns when the definition leaves them implicit).
    pub fn renamed(
        &self,
        name: &str,
        own: Option<Substitute>,
        referenced: Option<(Substitute, &[String])>,
    ) -> String {
        let mut constraint = self.ast();
        let named = Some(quoted(name));
        match &mut constraint {
            TableConstraint::Check(c) => {
                c.name = named;
                if let Some(s) = own {
                    expr_substitute(&mut c.expr, s);
                }
            }
            TableConstraint::ForeignKey(fk) => {
                fk.name = named;
                if let Some(s) = own {
                    idents_substitute(&mut fk.columns, s);
                }
                if let Some((s, key)) = referenced {
                    if fk.referred_columns.is_empty() {
                        fk.referred_columns = key.iter().map(|c| quoted(c)).collect();
                    }
                    idents_substitute(&mut fk.referred_columns, s);
                }
            }
            TableConstraint::PrimaryKey(pk) => pk.name = named,
            TableConstraint::Unique(u) => u.name = named,
            _ => {}
        }
        constraint.to_string()
    }

    /// The foreign key's table, as the definition names it.
    pub fn references(&self) -> Option<Name> {
        match self.ast() {
            TableConstraint::ForeignKey(fk) => Some(object_name_of(&fk.foreign_table)),
            _ => None,
        }
    }
}

impl std::fmt::Display for IndexDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: Substitute = Substitute {
        column: "n",
        by: "_zdm_t_n_new",
    };

    #[test]
    fn indexes_as_postgresql_writes_them() {
        let t = Name::new(Some("public"), "t");
        for (def, rebuilt) in [
            (
                "CREATE UNIQUE INDEX t_n ON public.t USING btree (n) INCLUDE (m) WHERE (n > 0)",
                "CREATE UNIQUE INDEX CONCURRENTLY \"t_n_new\" ON \"public\".\"t\" USING BTREE (\"_zdm_t_n_new\") INCLUDE (m) WHERE (\"_zdm_t_n_new\" > 0)",
            ),
            (
                "CREATE INDEX t_l ON public.t USING BTREE (lower((n)::text) text_pattern_ops DESC NULLS LAST)",
                "CREATE INDEX CONCURRENTLY \"t_n_new\" ON \"public\".\"t\" USING BTREE (lower((\"_zdm_t_n_new\")::TEXT) text_pattern_ops DESC NULLS LAST)",
            ),
            (
                "CREATE INDEX t_c ON public.t USING BTREE (m COLLATE \"C\", n)",
                "CREATE INDEX CONCURRENTLY \"t_n_new\" ON \"public\".\"t\" USING BTREE (m COLLATE \"C\", \"_zdm_t_n_new\")",
            ),
            (
                "CREATE INDEX t_g ON public.t USING gin (n)",
                "CREATE INDEX CONCURRENTLY \"t_n_new\" ON \"public\".\"t\" USING GIN (\"_zdm_t_n_new\")",
            ),
        ] {
            let d = IndexDefinition::new(def).expect(def);
            assert!(d.uses("n"), "{def}");
            assert!(!d.uses("x"), "{def}");
            assert_eq!(d.on_shadow(&t, "t_n_new", NEW), rebuilt);
        }
    }

    #[test]
    fn constraints_as_postgresql_writes_them() {
        let check = ConstraintDefinition::new("CHECK ((n > 0)) NOT VALID").unwrap();
        assert!(check.uses("n") && !check.uses("m"));
        assert_eq!(
            check.renamed("c_new", Some(NEW), None),
            "CONSTRAINT \"c_new\" CHECK ((\"_zdm_t_n_new\" > 0))"
        );
        let fk = ConstraintDefinition::new(
            "FOREIGN KEY (n) REFERENCES accounts(id) ON DELETE CASCADE DEFERRABLE",
        )
        .unwrap();
        assert!(fk.uses("n"));
        assert_eq!(fk.references(), Some(Name::new(None, "accounts")));
        let moved = Substitute {
            column: "id",
            by: "_zdm_accounts_id_new",
        };
        assert_eq!(
            fk.renamed("f", None, Some((moved, &[]))),
            "CONSTRAINT \"f\" FOREIGN KEY (n) REFERENCES accounts(\"_zdm_accounts_id_new\") ON DELETE CASCADE DEFERRABLE"
        );
        let implicit = ConstraintDefinition::new("FOREIGN KEY (n) REFERENCES accounts").unwrap();
        assert_eq!(
            implicit.renamed("f", Some(NEW), Some((moved, &["id".to_string()]))),
            "CONSTRAINT \"f\" FOREIGN KEY (\"_zdm_t_n_new\") REFERENCES accounts(\"_zdm_accounts_id_new\")"
        );
    }
}
