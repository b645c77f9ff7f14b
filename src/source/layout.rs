//! Which migration tool's folder layout a project uses. The tools agree on most things (a
//! version in each name, `.sql` files), so `MigrationSet` reads them all alike; the layout
//! settles where they differ:
//!
//! - what a `U` prefix means: an undo migration in Flyway, an unversioned (forward, applied out
//!   of order) one in refinery;
//! - how a migration is marked to run outside a transaction, which decides whether a statement
//!   has committed before the next one runs (see `no_transaction`).
//!
//! The layout is named in `zdm.toml` (`layout = "refinery"`) or detected from the folder.

use std::path::{Path, PathBuf};

/// A migration tool's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Sqlx,
    Diesel,
    GolangMigrate,
    Flyway,
    Dbmate,
    Prisma,
    Refinery,
    Goose,
    Atlas,
    Sqitch,
    Liquibase,
    /// Numbered `.sql` files of no particular tool.
    Plain,
}

impl Layout {
    /// Every layout, in the order `zdm init --help` lists them.
    pub const ALL: [Layout; 12] = [
        Layout::Sqlx,
        Layout::Diesel,
        Layout::GolangMigrate,
        Layout::Flyway,
        Layout::Dbmate,
        Layout::Prisma,
        Layout::Refinery,
        Layout::Goose,
        Layout::Atlas,
        Layout::Sqitch,
        Layout::Liquibase,
        Layout::Plain,
    ];

    /// The name `zdm.toml` and `zdm init --layout` use.
    pub fn key(self) -> &'static str {
        match self {
            Layout::Sqlx => "sqlx",
            Layout::Diesel => "diesel",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Flyway => "flyway",
            Layout::Dbmate => "dbmate",
            Layout::Prisma => "prisma",
            Layout::Refinery => "refinery",
            Layout::Goose => "goose",
            Layout::Atlas => "atlas",
            Layout::Sqitch => "sqitch",
            Layout::Liquibase => "liquibase",
            Layout::Plain => "plain",
        }
    }

    pub fn from_key(key: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.key() == key)
    }

    /// The tool's name as its users write it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Sqlx => "sqlx",
            Layout::Diesel => "diesel",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Flyway => "Flyway",
            Layout::Dbmate => "dbmate",
            Layout::Prisma => "Prisma",
            Layout::Refinery => "refinery",
            Layout::Goose => "goose",
            Layout::Atlas => "Atlas",
            Layout::Sqitch => "Sqitch",
            Layout::Liquibase => "Liquibase",
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
            Layout::Refinery => "a comment line `-- refinery:noTransaction`",
            Layout::Goose => "`-- +goose NO TRANSACTION`",
            Layout::Atlas => "`-- atlas:txmode none`",
            Layout::Sqitch => "none needed: scripts run as written, in their own BEGIN … COMMIT",
            Layout::Liquibase => "`runInTransaction:false` on the `--changeset` line",
            Layout::Plain => "whatever your runner uses",
        }
    }
}

/// Where projects keep migrations, most specific first.
const CANDIDATES: &[&str] = &[
    "prisma/migrations",
    "src/main/resources/db/changelog",
    "db/changelog",
    "changelog",
    "src/main/resources/db/migration",
    "db/migrations",
    "db/migrate",
    "migrations",
    "src/migrations",
    "sql",
];

/// The first migrations directory under `root` and its layout.
pub fn detect(root: &Path) -> Option<(PathBuf, Layout)> {
    if root.join("sqitch.plan").is_file() {
        return Some((PathBuf::from("."), Layout::Sqitch));
    }
    CANDIDATES.iter().find_map(|dir| {
        let path = root.join(dir);
        layout_of(&path).map(|layout| (PathBuf::from(dir), layout))
    })
}

/// Whether a migration run by `layout` is marked to run outside a transaction. `path` is the
/// migration file and `text` its contents (for dbmate, one section of it).
///
/// Each tool has its own marker, and only that tool's marker counts: a `-- no-transaction`
/// line means nothing to Flyway, which still wraps the file in one transaction. For plain
/// numbered files, whose runner zdm does not know, any of the markers counts.
pub fn no_transaction(layout: Layout, path: &Path, text: &str) -> bool {
    let comment_lines = || text.lines().map(str::trim).filter(|l| l.starts_with("--"));
    // sqlx: the file's first line is `-- no-transaction`.
    let sqlx = || text.lines().map(str::trim).find(|l| !l.is_empty()) == Some("-- no-transaction");
    // dbmate: `-- migrate:up transaction:false` heads the section.
    let dbmate =
        || comment_lines().any(|l| l.starts_with("-- migrate:") && l.contains("transaction:false"));
    // Flyway: `executeInTransaction=false` in the script (`-- flyway:executeInTransaction=false`)
    // or in its sidecar `V1__x.sql.conf`.
    let flyway = || {
        comment_lines().any(|l| l.contains("executeInTransaction=false"))
            || sidecar_conf(path).is_some_and(|conf| {
                conf.lines()
                    .any(|l| l.replace(' ', "").trim() == "executeInTransaction=false")
            })
    };
    // diesel: `run_in_transaction = false` in the migration directory's metadata.toml.
    let diesel = || {
        let metadata = path.with_file_name("metadata.toml");
        std::fs::read_to_string(metadata)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .is_some_and(|t| t.get("run_in_transaction") == Some(&toml::Value::Boolean(false)))
    };
    // Atlas: `-- atlas:txmode none` (the file runs without a transaction).
    let atlas = || {
        comment_lines().any(|l| {
            let words: Vec<&str> = l.trim_start_matches('-').split_whitespace().collect();
            words == ["atlas:txmode", "none"]
        })
    };
    // refinery: a comment line `-- refinery:noTransaction`.
    let refinery =
        || comment_lines().any(|l| l.trim_start_matches('-').trim() == "refinery:noTransaction");
    match layout {
        Layout::Sqlx => sqlx(),
        Layout::Dbmate => dbmate(),
        Layout::Flyway => flyway(),
        Layout::Diesel => diesel(),
        Layout::Refinery => refinery(),
        // golang-migrate sends a file as one multi-statement query, which PostgreSQL runs as
        // one implicit transaction; Prisma wraps each migration in a transaction.
        Layout::GolangMigrate | Layout::Prisma => false,
        // goose's annotation covers the whole file, both sections: `goose.rs` reads it.
        Layout::Goose => false,
        Layout::Atlas => atlas(),
        // Sqitch runs a script through psql as written (`sqitch.rs` marks every script).
        Layout::Sqitch => true,
        // Each changeset says so itself (`liquibase.rs` reads it).
        Layout::Liquibase => false,
        Layout::Plain => sqlx() || dbmate() || flyway() || refinery() || atlas(),
    }
}

fn sidecar_conf(path: &Path) -> Option<String> {
    let mut conf = path.as_os_str().to_owned();
    conf.push(".conf");
    std::fs::read_to_string(PathBuf::from(conf)).ok()
}

/// The layout of one directory, from the names (and for dbmate the contents) of its files and,
/// where Flyway and refinery name files alike, from the project around it.
pub fn layout_of(dir: &Path) -> Option<Layout> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let names: Vec<String> = entries
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    let sql: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    if entries.iter().any(|p| p.join("migration.sql").is_file()) {
        return Some(Layout::Prisma);
    }
    // The folder's SQL, read once for the checks that look inside files.
    let texts = std::cell::OnceCell::new();
    let texts = || -> &Vec<String> {
        texts.get_or_init(|| {
            sql.iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect()
        })
    };
    if super::liquibase::MASTER_NAMES
        .iter()
        .any(|m| names.iter().any(|n| n == m))
        || texts()
            .iter()
            .any(|t| super::liquibase::is_formatted_sql(t))
    {
        return Some(Layout::Liquibase);
    }
    // Atlas keeps a checksum of the folder beside its files.
    if names.iter().any(|n| n == "atlas.sum") {
        return Some(Layout::Atlas);
    }
    if texts().iter().any(|t| super::goose::is_goose_file(t)) {
        return Some(Layout::Goose);
    }
    if entries.iter().any(|p| p.join("up.sql").is_file()) {
        return Some(Layout::Diesel);
    }
    let prefixed: Vec<&String> = names
        .iter()
        .filter(|n| prefixed_version(n).is_some())
        .collect();
    if !prefixed.is_empty() {
        return Some(flyway_or_refinery(dir, &prefixed));
    }
    if sql.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.starts_with("-- migrate:up")))
    }) {
        return Some(Layout::Dbmate);
    }
    if names.iter().any(|n| n.ends_with(".up.sql")) {
        // golang-migrate numbers its files 000001_x; sqlx uses timestamps or small numbers.
        let padded = names.iter().any(|n| n.starts_with("0000"));
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

/// `V1__x.sql` → (`V`, `1`); also `U`, `R` (Flyway's repeatables, no version) and refinery's
/// Rust migrations `V1__x.rs`.
fn prefixed_version(name: &str) -> Option<(char, &str)> {
    let prefix = name.chars().next()?;
    if !matches!(prefix, 'V' | 'U' | 'R') || !(name.ends_with(".sql") || name.ends_with(".rs")) {
        return None;
    }
    let version = &name[1..name.find("__")?];
    let valid = if prefix == 'R' {
        version.is_empty()
    } else {
        version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
    };
    valid.then_some((prefix, version))
}

/// Flyway and refinery both name files `V<version>__<name>.sql`. Only Flyway has repeatables
/// (`R__`) and dotted versions; only refinery has Rust migrations and a `U` file without a
/// `V` of the same version (Flyway's `U` undoes the `V` of its version). Otherwise the build
/// file decides: a Cargo.toml naming refinery, or a JVM project.
fn flyway_or_refinery(dir: &Path, names: &[&String]) -> Layout {
    let parsed: Vec<(char, &str)> = names.iter().filter_map(|n| prefixed_version(n)).collect();
    if names.iter().any(|n| n.ends_with(".rs")) {
        return Layout::Refinery;
    }
    if parsed
        .iter()
        .any(|(p, v)| *p == 'R' || v.contains(['.', '_']))
    {
        return Layout::Flyway;
    }
    let versioned = |v: &str| parsed.iter().any(|(p, w)| *p == 'V' && *w == v);
    if parsed.iter().any(|(p, v)| *p == 'U' && !versioned(v)) {
        return Layout::Refinery;
    }
    for ancestor in dir.ancestors().skip(1).take(4) {
        let cargo = std::fs::read_to_string(ancestor.join("Cargo.toml")).unwrap_or_default();
        if cargo.contains("refinery") {
            return Layout::Refinery;
        }
        if [
            "pom.xml",
            "build.gradle",
            "build.gradle.kts",
            "flyway.conf",
            "flyway.toml",
        ]
        .iter()
        .any(|f| ancestor.join(f).is_file())
        {
            return Layout::Flyway;
        }
    }
    Layout::Flyway
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
            // Flyway and refinery name files alike; what else is there decides.
            (
                &[("migrations/U1__users.sql", "")],
                "migrations",
                Layout::Refinery,
            ),
            (
                &[
                    ("Cargo.toml", "[dependencies]\nrefinery = \"0.8\"\n"),
                    ("migrations/V1__users.sql", ""),
                ],
                "migrations",
                Layout::Refinery,
            ),
            (
                &[
                    ("src/migrations/V1__users.sql", ""),
                    ("src/migrations/V2__seed.rs", ""),
                ],
                "src/migrations",
                Layout::Refinery,
            ),
            (
                &[
                    ("migrations/V1__users.sql", ""),
                    ("migrations/U1__users.sql", ""),
                    ("migrations/R__views.sql", ""),
                ],
                "migrations",
                Layout::Flyway,
            ),
            (
                &[("pom.xml", ""), ("sql/V1__users.sql", "")],
                "sql",
                Layout::Flyway,
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

    #[test]
    fn only_the_tools_own_marker_counts() {
        let p = Path::new("0002_x.sql");
        assert!(no_transaction(
            Layout::Sqlx,
            p,
            "-- no-transaction\nSELECT 1;"
        ));
        assert!(!no_transaction(
            Layout::Flyway,
            p,
            "-- no-transaction\nSELECT 1;"
        ));
        assert!(!no_transaction(
            Layout::Sqlx,
            p,
            "SELECT 1;\n-- no-transaction\n"
        ));
        assert!(no_transaction(
            Layout::Refinery,
            p,
            "-- refinery:noTransaction\nSELECT 1;"
        ));
        assert!(!no_transaction(
            Layout::Dbmate,
            p,
            "-- refinery:noTransaction\nSELECT 1;"
        ));
        assert!(no_transaction(
            Layout::Dbmate,
            p,
            "-- migrate:up transaction:false\nSELECT 1;"
        ));
        assert!(no_transaction(
            Layout::Flyway,
            p,
            "-- flyway:executeInTransaction=false\nSELECT 1;"
        ));
        assert!(!no_transaction(
            Layout::GolangMigrate,
            p,
            "-- no-transaction\n"
        ));
        for marker in ["-- no-transaction", "-- refinery:noTransaction"] {
            assert!(no_transaction(Layout::Plain, p, marker), "{marker}");
        }
    }

    #[test]
    fn layout_keys_round_trip() {
        for layout in Layout::ALL {
            assert_eq!(Layout::from_key(layout.key()), Some(layout));
            let parsed: Layout = toml::Value::String(layout.key().to_owned())
                .try_into()
                .unwrap();
            assert_eq!(parsed, layout, "zdm.toml accepts the key init writes");
        }
    }
}
