//! Which migration tool's folder layout a project uses, for `zdm init`. zdm reads every layout
//! the same way (see `MigrationSet`); knowing the tool lets the generated `zdm.toml` say where
//! the migrations are and how that tool marks a migration that must not run in a transaction.

use std::path::{Path, PathBuf};

/// A migration tool's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Sqlx,
    Diesel,
    GolangMigrate,
    Flyway,
    Dbmate,
    Prisma,
    Refinery,
    /// Numbered `.sql` files of no particular tool.
    Plain,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Sqlx => "sqlx",
            Layout::Diesel => "diesel",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Flyway => "Flyway",
            Layout::Dbmate => "dbmate",
            Layout::Prisma => "Prisma",
            Layout::Refinery => "refinery",
            Layout::Plain => "numbered SQL files",
        }
    }

    /// How the tool marks a migration that runs outside a transaction (CONCURRENTLY needs it).
    pub fn no_transaction_marker(self) -> &'static str {
        match self {
            Layout::Sqlx => "a first line `-- no-transaction`",
            Layout::Diesel => "`run_in_transaction = false` in the migration's metadata.toml",
            Layout::GolangMigrate => "nothing: golang-migrate runs each file as written",
            Layout::Flyway => "`-- flyway:executeInTransaction=false` (or a .conf file)",
            Layout::Dbmate => "`-- migrate:up transaction:false`",
            Layout::Prisma => "nothing: split CONCURRENTLY into its own migration",
            Layout::Refinery => "nothing: refinery wraps each migration in a transaction",
            Layout::Plain => "whatever your runner uses",
        }
    }
}

/// Where projects keep migrations, most specific first.
const CANDIDATES: &[&str] = &[
    "prisma/migrations",
    "src/main/resources/db/migration",
    "db/migrations",
    "db/migrate",
    "migrations",
    "sql",
];

/// The first migrations directory under `root` and its layout.
pub fn detect(root: &Path) -> Option<(PathBuf, Layout)> {
    CANDIDATES.iter().find_map(|dir| {
        let path = root.join(dir);
        layout_of(&path).map(|layout| (PathBuf::from(dir), layout))
    })
}

/// The layout of one directory, from the names (and for dbmate the contents) of its files.
pub fn layout_of(dir: &Path) -> Option<Layout> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let name = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned()
    };
    let sql: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| name(p).ends_with(".sql"))
        .collect();
    if entries.iter().any(|p| p.join("migration.sql").is_file()) {
        return Some(Layout::Prisma);
    }
    if entries.iter().any(|p| p.join("up.sql").is_file()) {
        return Some(Layout::Diesel);
    }
    if sql.iter().any(|p| {
        let n = name(p);
        n.starts_with('V') && n.contains("__")
    }) {
        return Some(Layout::Flyway);
    }
    if sql.iter().any(|p| {
        let n = name(p);
        n.starts_with('U') && n.contains("__")
    }) {
        return Some(Layout::Refinery);
    }
    if sql.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.starts_with("-- migrate:up")))
    }) {
        return Some(Layout::Dbmate);
    }
    if sql.iter().any(|p| name(p).ends_with(".up.sql")) {
        // golang-migrate numbers its files 000001_x; sqlx uses timestamps or small numbers.
        let padded = sql.iter().any(|p| name(p).starts_with("0000"));
        return Some(if padded {
            Layout::GolangMigrate
        } else {
            Layout::Sqlx
        });
    }
    if !sql.is_empty() {
        return Some(Layout::Plain);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    /// Files of a project (path, contents), where the migrations are, and the layout.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        Layout,
    );

    #[test]
    fn each_tool_is_recognized() {
        let cases: &[Case] = &[
            (
                &[("migrations/20240101120000_users.sql", "")],
                "migrations",
                Layout::Plain,
            ),
            (
                &[
                    ("migrations/20240101120000_users.up.sql", ""),
                    ("migrations/20240101120000_users.down.sql", ""),
                ],
                "migrations",
                Layout::Sqlx,
            ),
            (
                &[("migrations/000001_users.up.sql", "")],
                "migrations",
                Layout::GolangMigrate,
            ),
            (
                &[
                    ("migrations/2024-01-01-120000_users/up.sql", ""),
                    ("migrations/2024-01-01-120000_users/down.sql", ""),
                ],
                "migrations",
                Layout::Diesel,
            ),
            (
                &[("src/main/resources/db/migration/V1.2.3__users.sql", "")],
                "src/main/resources/db/migration",
                Layout::Flyway,
            ),
            (
                &[(
                    "db/migrations/20240101120000_users.sql",
                    "-- migrate:up\nSELECT 1;\n-- migrate:down\n",
                )],
                "db/migrations",
                Layout::Dbmate,
            ),
            (
                &[("prisma/migrations/20240101120000_users/migration.sql", "")],
                "prisma/migrations",
                Layout::Prisma,
            ),
            (
                &[("migrations/U1__users.sql", "")],
                "migrations",
                Layout::Refinery,
            ),
        ];
        for (files, dir, layout) in cases {
            let p = project(files);
            assert_eq!(
                detect(p.path()),
                Some((PathBuf::from(dir), *layout)),
                "{files:?}"
            );
        }
        assert_eq!(detect(project(&[("README.md", "")]).path()), None);
    }
}
