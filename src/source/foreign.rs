//! Migrations of tools zdm does not read yet (sql-migrate, …), Liquibase files outside the
//! changelog zdm was given, goose files outside
//! a folder read as goose (`goose.rs`), and Sqitch folders other than those `sqitch.rs` reads. Read as plain SQL, their files would be
//! misread in the worst way: a goose file's `-- +goose Down` section would run as forward SQL,
//! right after its Up (`CREATE TABLE users` and then `DROP TABLE users`), and a Liquibase or
//! Sqitch folder would run in file-name order instead of its changelog's. So a file or folder
//! recognizably theirs is refused, naming the marker.

use std::path::{Path, PathBuf};

/// Why a file or folder is another tool's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub tool: &'static str,
    /// The file, or the folder's file that gives it away.
    pub path: PathBuf,
    /// The line of the marker in `path` (0 for a whole file such as `sqitch.plan`).
    pub line: usize,
    pub marker: String,
}

/// The marker lines of other tools' migration files, matched on a trimmed, lower-cased line.
const FILE_MARKERS: &[(&str, &str)] = &[
    ("-- +goose", "goose"),
    ("--+goose", "goose"),
    ("-- +migrate", "sql-migrate"),
    ("--+migrate", "sql-migrate"),
    ("--liquibase formatted sql", "Liquibase"),
    ("-- liquibase formatted sql", "Liquibase"),
    ("--changeset ", "Liquibase"),
    ("-- changeset ", "Liquibase"),
    ("# --- !downs", "Play evolutions"),
    ("-- !downs", "Play evolutions"),
    ("--// @undo", "MyBatis Migrations"),
    ("-- //@undo", "MyBatis Migrations"),
];

/// Comment lines that on their own mark where a down (undo) section starts, in a tool zdm does
/// not know: the text after them would otherwise run forward.
const DOWN_MARKERS: &[&str] = &[
    "down",
    "+down",
    "down:",
    "migrate down",
    "down migration",
    "migration down",
    "rollback",
    "undo",
    "== down ==",
];

/// The first marker of another tool in a file's text. dbmate's `-- migrate:down` is zdm's
/// own reading when the file has a `-- migrate:up` section too.
pub fn in_file(path: &Path, text: &str) -> Option<Foreign> {
    let dbmate = text
        .lines()
        .any(|l| l.trim_start().starts_with("-- migrate:up"));
    for (i, line) in text.lines().enumerate() {
        let lower = line.trim().to_lowercase();
        if !lower.starts_with("--") && !lower.starts_with('#') {
            continue;
        }
        let found = |tool: &'static str| Foreign {
            tool,
            path: path.to_owned(),
            line: i + 1,
            marker: line.trim().to_owned(),
        };
        if let Some((_, tool)) = FILE_MARKERS.iter().find(|(m, _)| lower.starts_with(m)) {
            return Some(found(tool));
        }
        if !dbmate && lower.starts_with("-- migrate:down") {
            return Some(found("dbmate"));
        }
        let comment = lower.trim_start_matches('-').trim();
        if DOWN_MARKERS.contains(&comment) {
            return Some(found("an unknown tool (a down section)"));
        }
    }
    None
}

/// A folder that belongs to a Liquibase changelog, or to a Sqitch project other than through
/// the project folder, `deploy/` or `revert/` (which `sqitch.rs` reads).
pub fn in_folder(dir: &Path) -> Option<Foreign> {
    let whole = |tool: &'static str, path: PathBuf| Foreign {
        tool,
        path,
        line: 0,
        marker: String::new(),
    };
    // A Sqitch project outside its own folders (a `verify/`, a subfolder of `deploy/`):
    // what zdm would read there is not in the plan's order.
    for candidate in [Some(dir), dir.parent()].into_iter().flatten() {
        let plan = candidate.join("sqitch.plan");
        if plan.is_file() {
            return Some(whole("Sqitch", plan));
        }
    }
    let changelogs = [
        "changelog.xml",
        "changelog.yaml",
        "changelog.yml",
        "db.changelog-master.xml",
        "db.changelog-master.yaml",
        "db.changelog-master.yml",
    ];
    changelogs
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| whole("Liquibase", p))
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: `{}` marks a {} migration",
                self.path.display(),
                self.line,
                self.marker,
                self.tool
            )?;
        } else {
            write!(f, "{}: a {} project", self.path.display(), self.tool)?;
        }
        if self.tool == "Liquibase" {
            return write!(
                f,
                "; zdm reads Liquibase changesets in the order of the changelog it is given, and this one was not given one: name the master changelog (changelog.xml, db.changelog-master.yaml, …) or the formatted SQL file itself; nothing was read or run"
            );
        }
        write!(
            f,
            "; zdm does not read this tool's migrations yet and, read as plain SQL, would run them wrongly (a down section forward, or in another order), so nothing was read or run: keep the forward SQL only, one file per migration, in a folder of numbered .sql files"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_other_tools() {
        let p = Path::new("m.sql");
        let goose = "-- +goose Up\nCREATE TABLE users (id int);\n-- +goose Down\nDROP TABLE users;";
        let found = in_file(p, goose).unwrap();
        assert_eq!((found.tool, found.line), ("goose", 1));
        assert_eq!(
            in_file(p, "--liquibase formatted sql\n--changeset a:1\nSELECT 1;")
                .unwrap()
                .tool,
            "Liquibase"
        );
        assert!(in_file(p, "CREATE TABLE t (id int);\n-- Down\nDROP TABLE t;").is_some());
        assert!(in_file(p, "-- migrate:up\nSELECT 1;\n-- migrate:down\n").is_none());
        assert!(in_file(p, "SELECT 1;\n-- migrate:down\n").is_some());
        // Ordinary comments are not markers.
        let plain = "-- roll back the price when down payments fail\n-- undo this later\nSELECT 1;";
        assert!(in_file(p, plain).is_none());
    }
}
