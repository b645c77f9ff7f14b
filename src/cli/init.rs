//! `zdm init`: writes a commented `zdm.toml` for the migrations folder it finds.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::source::layout::{self, Layout};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zdm init                       find the migrations folder and its tool, write ./zdm.toml
  zdm init --migrations db/sql   name the folder yourself
  zdm init --layout refinery     name the tool when detection guesses wrong
  zdm init --runner zdm          zdm expand/contract run the migrations (the lint gate then
                                 notes what zdm runs online instead of failing on it)

Looks in prisma/migrations, src/main/resources/db/migration, db/migrations, db/migrate,
migrations and sql. Without --runner, zdm init looks for `zdm expand` in the CI files
(.github/workflows, .gitlab-ci.yml, .circleci, Makefile, justfile), asks on a terminal, and
otherwise writes runner = \"other\".
Exit codes: 0 written, 2 nothing found, or zdm.toml exists (use --force).")]
pub struct InitArgs {
    /// The migrations directory [default: detected]
    #[arg(long, value_name = "DIR")]
    migrations: Option<PathBuf>,
    /// The migration tool the folder belongs to [default: detected]
    #[arg(long, value_name = "TOOL", value_parser = parse_layout)]
    layout: Option<Layout>,
    /// The PostgreSQL major version the migrations run on
    #[arg(long, value_name = "MAJOR", default_value_t = crate::config::DEFAULT_PG_VERSION)]
    pg_version: u32,
    /// Who runs the migrations: `zdm` (zdm expand/contract) or `other` (the layout's tool)
    /// [default: detected from CI files, else asked on a terminal, else other]
    #[arg(long, value_name = "RUNNER", value_parser = ["zdm", "other"])]
    runner: Option<String>,
    /// Overwrite an existing zdm.toml
    #[arg(long)]
    force: bool,
}

pub fn run(args: &InitArgs) -> anyhow::Result<u8> {
    let target = PathBuf::from("zdm.toml");
    if target.exists() && !args.force {
        anyhow::bail!("zdm.toml already exists; edit it, or run `zdm init --force` to replace it");
    }
    let (dir, layout) = match &args.migrations {
        Some(dir) => {
            let detected = layout::layout_of(dir);
            let layout = args.layout.or(detected).with_context(|| {
                format!("{}: no .sql migrations found there", dir.display())
            })?;
            (dir.clone(), layout)
        }
        None => layout::detect(std::path::Path::new(".")).context(
            "no migrations folder found (looked in prisma/migrations, src/main/resources/db/migration, db/migrations, db/migrate, migrations, sql); name it with --migrations DIR",
        )
        .map(|(dir, detected)| (dir, args.layout.unwrap_or(detected)))?,
    };
    let runner = match args.runner.as_deref() {
        Some(r) => r.to_owned(),
        None => detect_runner().unwrap_or_else(ask_runner),
    };
    std::fs::write(&target, config_text(&dir, layout, args.pg_version, &runner))
        .with_context(|| format!("cannot write {}", target.display()))?;
    println!(
        "wrote zdm.toml: {} migrations in {}, run by {}",
        layout.name(),
        dir.display(),
        if runner == "zdm" {
            "zdm"
        } else {
            layout.name()
        }
    );
    Ok(EXIT_OK)
}

/// "zdm" when a CI or build file of the project already runs `zdm expand` or `zdm contract`.
fn detect_runner() -> Option<String> {
    let mut files: Vec<PathBuf> = [".gitlab-ci.yml", "Makefile", "justfile", "Justfile"]
        .iter()
        .map(PathBuf::from)
        .collect();
    for dir in [".github/workflows", ".circleci"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|text| text.contains("zdm expand") || text.contains("zdm contract"))
        .then(|| "zdm".to_owned())
}

/// Asks on a terminal whether zdm runs the migrations; "other" when nobody can answer.
fn ask_runner() -> String {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return "other".to_owned();
    }
    eprint!("Will `zdm expand` / `zdm contract` run these migrations in CI? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        "zdm".to_owned()
    } else {
        "other".to_owned()
    }
}

fn parse_layout(key: &str) -> Result<Layout, String> {
    Layout::from_key(key).ok_or_else(|| {
        let keys: Vec<&str> = Layout::ALL.iter().map(|l| l.key()).collect();
        format!("unknown layout; use one of {}", keys.join(", "))
    })
}

fn config_text(dir: &std::path::Path, layout: Layout, pg_version: u32, runner: &str) -> String {
    let dir = dir.display().to_string().replace('\\', "/");
    format!(
        r#"# zdm configuration, written by `zdm init`. Flags and environment variables win.

# The PostgreSQL major version the migrations run on; lock behaviour depends on it.
# zdm expand, contract and status read it from the server instead.
pg_version = {pg_version}

# The migrations, as {layout} lays them out. zdm orders them by the version in their names
# and lints down migrations against the schema their up produced.
migrations = "{dir}"

# The tool that runs them: {keys}.
# It decides what a U prefix means (Flyway: undo; refinery: unversioned) and which
# no-transaction marker counts. To run CREATE INDEX CONCURRENTLY through {layout} itself,
# mark the migration with {marker};
# zdm expand runs CONCURRENTLY steps outside transactions on its own.
layout = "{key}"

# Who runs the migrations: "zdm" (zdm expand before the deploy, zdm contract after it) or
# "other" ({layout} or another tool runs the SQL as written). With "zdm", zdm lint reports
# what zdm runs online as notes, and fails only on what zdm refuses, what it runs with a
# blocking lock (zdm:allow-locking), and drops the old application may still read.
runner = "{runner}"

[lint]
# Down migrations: "error" (linted like any file), "warning" (reported, never failing) or "off".
down = "error"

# Rule levels: error (fails zdm lint), warning, or off. `zdm rules` lists every rule.
[lint.rules]
# require-lock-timeout = "warning"
# drop-column = "warning"
"#,
        layout = layout.name(),
        key = layout.key(),
        keys = Layout::ALL.map(Layout::key).join(", "),
        marker = layout.no_transaction_marker(),
    )
}
