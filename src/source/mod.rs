//! Reading migrations: finding the files under the paths a user names, ordering them as the
//! migration runner would, and splitting each into statements with their directives.
//!
//! A directory is an ordered migration set. The order comes from the version each migration
//! carries in its file name (`0001_x.sql`, `20240101120000_x.sql`, `V1.2__x.sql`) or in its
//! directory name (`2024-01-01-120000_x/up.sql`, Prisma's `20240101_x/migration.sql`).
//! Down migrations are read and linted but are not part of the forward order.

mod dbmate;
mod directive;
pub mod foreign;
mod goose;
pub mod layout;
mod liquibase;
mod position;
mod sections;
mod split;
mod sqitch;

pub use layout::Layout;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

pub use directive::{Directive, DirectiveKind};
pub use split::{Position, SplitFile, SqlToken, Statement, position_at, split_statements};

/// Why a path could not be read. Each variant is something the user fixes by hand.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 (at byte {offset}); save the file as UTF-8")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: not a .sql file or a directory of migrations")]
    NotSql { path: PathBuf },
    #[error("{0}")]
    Foreign(foreign::Foreign),
    #[error("{path}:{line}: {what}; nothing was read or run")]
    Unsupported {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

/// Whether a file moves the schema forward or undoes a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// One migration file, read into memory with its BOM removed.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as it should be shown to the user.
    pub path: PathBuf,
    pub text: String,
    pub direction: Direction,
    /// The version parsed from the file or directory name, if there is one.
    pub version: Option<Vec<u128>>,
    /// Its tool runs it without a transaction around the file (the tool's marker says so), so
    /// every statement outside an explicit block commits on its own.
    pub no_transaction: bool,
    /// A Flyway repeatable migration (`R__x.sql`): applied after the versioned ones, and
    /// applied again whenever its text changes, so an edit is not an error. Also a Liquibase
    /// changeset marked `runOnChange:true`.
    pub repeatable: bool,
    /// The Liquibase changeset (`author:id`) this text is, one of several in its file: the
    /// migration's id, where other tools' migrations are known by their file's name.
    pub changeset: Option<String>,
}

impl SourceFile {
    /// Reads a file of a `layout` folder, accepting a UTF-8 byte-order mark (editors on Windows
    /// write one).
    pub fn read(path: &Path, layout: Layout) -> Result<SourceFile, SourceError> {
        let bytes = fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SourceError::Missing {
                path: path.to_owned(),
            },
            _ => SourceError::Unreadable {
                path: path.to_owned(),
                source,
            },
        })?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|e| SourceError::NotUtf8 {
                path: path.to_owned(),
                offset: e.valid_up_to(),
            })?
            .to_owned();
        if let Some(found) = foreign::in_file(path, &text)
            && !(layout == Layout::Goose && found.tool == "goose")
        {
            return Err(SourceError::Foreign(found));
        }
        Ok(SourceFile::with_layout(path, text, layout))
    }

    /// Builds a source file from text already in memory (tests, stdin), of no known tool.
    pub fn from_text(path: &Path, text: String) -> SourceFile {
        SourceFile::with_layout(path, text, Layout::Plain)
    }

    fn with_layout(path: &Path, text: String, layout: Layout) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            no_transaction: layout::no_transaction(layout, path, &text),
            text,
            direction: direction_of(path, layout),
            version: version_of(path),
            repeatable: layout == Layout::Flyway
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("R__")),
            changeset: None,
        }
    }

    /// The text that identifies the migration's content (its checksum). A changeset's text
    /// holds its file's other lines as empty lines, to keep its own in place; they are not
    /// its content, so an edit to another changeset of the file does not change it.
    pub fn identity_text(&self) -> &str {
        match self.changeset {
            Some(_) => self.text.trim_matches(['\n', '\r']),
            None => &self.text,
        }
    }
}

/// Reads the `.sql` files at `paths`, splitting dbmate files into their sections.
fn read_all(paths: &[PathBuf], layout: Layout) -> Result<Vec<SourceFile>, SourceError> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(read_sections(path, layout)?);
    }
    Ok(files)
}

/// A file, split into its up and down sections for the tools that keep both in one file.
fn read_sections(path: &Path, layout: Layout) -> Result<Vec<SourceFile>, SourceError> {
    let file = SourceFile::read(path, layout)?;
    match layout {
        Layout::Goose => goose::split_sections(file),
        _ => Ok(dbmate::split_sections(file, layout)),
    }
}

/// A folder zdm recognizes but cannot read whole: a goose folder with Go migrations, a
/// Liquibase folder without the changelog that orders it.
fn check_readable(dir: &Path, layout: Layout) -> Result<(), SourceError> {
    if layout == Layout::Liquibase {
        return Err(SourceError::Unsupported {
            path: dir.to_owned(),
            line: 0,
            what: format!(
                "a Liquibase folder without a master changelog ({}): Liquibase runs changesets in the order a changelog lists them; name the changelog",
                liquibase::MASTER_NAMES.join(", ")
            ),
        });
    }
    if layout == Layout::Goose
        && let Some(go) = goose::go_migration_in(dir)
    {
        return Err(SourceError::Unsupported {
            path: go,
            line: 0,
            what: "a goose migration written in Go: zdm reads SQL migrations only, and would run the SQL ones around it out of their order; rewrite it in SQL or keep it out of the folder".to_owned(),
        });
    }
    Ok(())
}

/// The migrations named by one command-line path.
#[derive(Debug)]
pub struct MigrationSet {
    /// Forward migrations in the order a runner applies them.
    pub forward: Vec<SourceFile>,
    /// Down migrations, in the same order as the ups they undo.
    pub down: Vec<SourceFile>,
    /// For files named one by one: which of `forward` are earlier siblings that are only
    /// replayed for the catalog, not reported on (see [`MigrationSet::is_context`]).
    context: Vec<bool>,
}

impl MigrationSet {
    /// Reads a path: a directory becomes an ordered migration set; a single file is read
    /// together with the earlier migrations of its directory, so that what they created
    /// (column types, constraints) is known when the file is linted.
    ///
    /// `layout` is the tool named in `zdm.toml`; without one it is detected from the folder.
    pub fn load(path: &Path, layout: Option<Layout>) -> Result<MigrationSet, SourceError> {
        let meta = fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SourceError::Missing {
                path: path.to_owned(),
            },
            _ => SourceError::Unreadable {
                path: path.to_owned(),
                source,
            },
        })?;
        if let Some(project) = sqitch::project_of(path) {
            return MigrationSet::load_sqitch(&project, path);
        }
        if let Some(changelog) = liquibase::changelog_of(path) {
            let (forward, down) = liquibase::load(&changelog)?;
            let context = vec![false; forward.len()];
            return Ok(MigrationSet {
                forward,
                down,
                context,
            });
        }
        if meta.is_dir() {
            if let Some(found) = foreign::in_folder(path) {
                return Err(SourceError::Foreign(found));
            }
            let layout = layout
                .or_else(|| layout::layout_of(path))
                .unwrap_or(Layout::Plain);
            check_readable(path, layout)?;
            let mut paths = Vec::new();
            collect_sql_files(path, &mut paths)?;
            let files = read_all(&paths, layout)?;
            let (mut forward, mut down): (Vec<_>, Vec<_>) = files
                .into_iter()
                .partition(|f| f.direction == Direction::Up);
            forward.sort_by(migration_order);
            down.sort_by(migration_order);
            return Ok(MigrationSet {
                forward,
                down,
                context: Vec::new(),
            });
        }
        if path.extension().is_none_or(|e| e != "sql") {
            return Err(SourceError::NotSql {
                path: path.to_owned(),
            });
        }
        MigrationSet::load_files(set_root(path), &[path.to_owned()], layout)
    }

    /// Reads the paths of one command line. A directory is read as a set. Files named one by
    /// one are grouped by the migration folder they belong to and each folder is read once:
    /// the files named are reported on, their earlier siblings only replayed for the schema.
    /// So `git diff --name-only | xargs zdm lint` costs one pass over the folder, not one per
    /// file. A file without a version stands alone, as it would if named by itself.
    pub fn load_paths(
        paths: &[PathBuf],
        layout: Option<Layout>,
    ) -> Result<Vec<MigrationSet>, SourceError> {
        enum Entry {
            Directory(PathBuf),
            Files(PathBuf, Vec<PathBuf>),
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = HashSet::new();
        for path in paths {
            if path.is_dir()
                || version_of(path).is_none()
                || liquibase::changelog_of(path).is_some()
            {
                entries.push(Entry::Directory(path.clone()));
                continue;
            }
            let root = set_root(path);
            let group = entries.iter_mut().find_map(|e| match e {
                Entry::Files(r, files) if r == root => Some(files),
                _ => None,
            });
            if !seen.insert(path) {
                continue; // named twice
            }
            match group {
                Some(files) => files.push(path.clone()),
                None => entries.push(Entry::Files(root.to_owned(), vec![path.clone()])),
            }
        }
        // Each folder's layout is found once: it reads the folder's SQL, and a folder of
        // unversioned files (each its own set) would otherwise read it once per file.
        let mut layouts: HashMap<PathBuf, Option<Layout>> = HashMap::new();
        let mut layout_of = |root: &Path| {
            layout.or_else(|| {
                *layouts
                    .entry(root.to_owned())
                    .or_insert_with(|| layout::layout_of(root))
            })
        };
        entries
            .into_iter()
            .map(|entry| match entry {
                Entry::Directory(path) if path.is_file() => {
                    MigrationSet::load(&path, layout_of(set_root(&path)))
                }
                Entry::Directory(path) => MigrationSet::load(&path, layout),
                Entry::Files(root, files) => {
                    let layout = layout_of(&root);
                    for file in &files {
                        if !file.is_file() {
                            // Let `load` give the error it gives for this path alone.
                            return MigrationSet::load(file, layout);
                        }
                        if file.extension().is_none_or(|e| e != "sql") {
                            return Err(SourceError::NotSql { path: file.clone() });
                        }
                    }
                    MigrationSet::load_files(&root, &files, layout)
                }
            })
            .collect()
    }

    /// The files `named` in the migration folder `root`, each read with the earlier migrations
    /// of the folder before it so that what they created (column types, constraints) is known.
    fn load_files(
        root: &Path,
        named: &[PathBuf],
        layout: Option<Layout>,
    ) -> Result<MigrationSet, SourceError> {
        if let Some(found) = foreign::in_folder(root) {
            return Err(SourceError::Foreign(found));
        }
        let layout = layout
            .or_else(|| layout::layout_of(root))
            .unwrap_or(Layout::Plain);
        check_readable(root, layout)?;
        let mut reported = Vec::new();
        for path in named {
            reported.extend(read_sections(path, layout)?);
        }
        let (ups, down): (Vec<_>, Vec<_>) = reported
            .into_iter()
            .partition(|f| f.direction == Direction::Up);
        let mut forward: Vec<(SourceFile, bool)> =
            earlier_siblings(root, layout, &ups, &down, named)
                .into_iter()
                .map(|f| (f, true))
                .chain(ups.into_iter().map(|f| (f, false)))
                .collect();
        forward.sort_by(|a, b| migration_order(&a.0, &b.0));
        let (forward, context) = forward.into_iter().unzip();
        let mut down = down;
        down.sort_by(migration_order);
        Ok(MigrationSet {
            forward,
            down,
            context,
        })
    }

    /// A Sqitch project, in its plan's order. Given the project or its `deploy/` folder, every
    /// change is reported on; given one script, the changes before it are only replayed.
    fn load_sqitch(project: &Path, named: &Path) -> Result<MigrationSet, SourceError> {
        let (forward, down) = sqitch::load(project)?;
        if named.is_dir() {
            let context = vec![false; forward.len()];
            return Ok(MigrationSet {
                forward,
                down,
                context,
            });
        }
        let same = |f: &SourceFile| fs::canonicalize(&f.path).ok() == fs::canonicalize(named).ok();
        let (position, is_down) = match (forward.iter().position(same), down.iter().position(same))
        {
            (Some(i), _) => (i, false),
            (None, Some(i)) => (i, true),
            (None, None) => {
                return Err(SourceError::Unsupported {
                    path: named.to_owned(),
                    line: 0,
                    what: "a script that sqitch.plan does not name: Sqitch never runs it"
                        .to_owned(),
                });
            }
        };
        let version = if is_down {
            down[position].version.clone()
        } else {
            forward[position].version.clone()
        };
        let down: Vec<SourceFile> = if is_down {
            vec![down[position].clone()]
        } else {
            Vec::new()
        };
        // The changes up to the named one (its own up for a revert) give the schema.
        let forward: Vec<SourceFile> = forward
            .into_iter()
            .filter(|f| f.version <= version)
            .collect();
        let context = forward
            .iter()
            .map(|f| is_down || f.version != version)
            .collect();
        Ok(MigrationSet {
            forward,
            down,
            context,
        })
    }

    /// Whether the forward migration at `index` is only replayed for the schema (an earlier
    /// sibling of a file that was named), not reported on.
    pub fn is_context(&self, index: usize) -> bool {
        self.context.get(index).copied().unwrap_or(false)
    }
}

impl MigrationSet {
    /// One file with no context, such as SQL read from standard input.
    pub fn single(file: SourceFile) -> MigrationSet {
        MigrationSet {
            forward: vec![file],
            down: Vec::new(),
            context: Vec::new(),
        }
    }
}

/// The forward migrations of `root` the named files need before them: an up is read after
/// those of an earlier version, a down after those up to its own version (the schema its up
/// produced). Unreadable siblings are skipped: they only add context, and the named files are
/// what was asked for.
fn earlier_siblings(
    root: &Path,
    layout: Layout,
    ups: &[SourceFile],
    downs: &[SourceFile],
    named: &[PathBuf],
) -> Vec<SourceFile> {
    let latest_up = ups.iter().filter_map(|f| f.version.as_ref()).max();
    let latest_down = downs.iter().filter_map(|f| f.version.as_ref()).max();
    if latest_up.is_none() && latest_down.is_none() {
        return Vec::new();
    }
    let needed = |v: &Vec<u128>| {
        latest_up.is_some_and(|u| compare_versions(v, u) == Ordering::Less)
            || latest_down.is_some_and(|d| compare_versions(v, d) != Ordering::Greater)
    };
    let mut paths = Vec::new();
    if collect_sql_files(root, &mut paths).is_err() {
        return Vec::new();
    }
    // Only siblings whose name carries a needed version are read at all.
    paths.retain(|p| version_of(p).is_some_and(|v| needed(&v)));
    let named: HashSet<PathBuf> = named
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    paths.retain(|p| fs::canonicalize(p).map_or(true, |c| !named.contains(&c)));
    paths
        .iter()
        .filter_map(|p| read_sections(p, layout).ok())
        .flatten()
        .filter(|f| f.direction == Direction::Up)
        .collect()
}

/// The migration folder a file belongs to: its directory, or for `dir/up.sql` layouts (one
/// migration per directory) the directory above.
fn set_root(file: &Path) -> &Path {
    let own_dir = file.parent().unwrap_or(Path::new("."));
    let root = if is_per_directory_name(file) {
        own_dir.parent().unwrap_or(Path::new("."))
    } else {
        own_dir
    };
    if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    }
}

/// Collects `.sql` files under `dir`, skipping hidden directories and build output.
fn collect_sql_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let entries = fs::read_dir(dir).map_err(|source| SourceError::Unreadable {
        path: dir.to_owned(),
        source,
    })?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect_sql_files(&path, out)?;
        } else if name.ends_with(".sql") {
            out.push(path);
        }
    }
    Ok(())
}

/// File names that hold one migration per directory (diesel, Prisma): the version is in the
/// directory name.
fn is_per_directory_name(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("up.sql" | "down.sql" | "migration.sql")
    )
}

fn direction_of(path: &Path, layout: Layout) -> Direction {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let lower = name.to_ascii_lowercase();
    // Flyway writes undo migrations as `U<version>__x.sql`; refinery's `U` files are
    // unversioned forward migrations.
    let flyway_undo = layout != Layout::Refinery
        && lower.starts_with('u')
        && lower[1..].starts_with(|c: char| c.is_ascii_digit())
        && lower.contains("__");
    if lower == "down.sql" || lower.ends_with(".down.sql") || flyway_undo {
        Direction::Down
    } else {
        Direction::Up
    }
}

/// The version a migration carries in its name: the leading run of digits and separators, or
/// Flyway's `V1.2.3__` / `V1_2__` prefix. `2019-03-22-174825_x` gives `[2019, 3, 22, 174825]`.
pub fn version_of(path: &Path) -> Option<Vec<u128>> {
    let name = if is_per_directory_name(path) {
        path.parent()?.file_name()?.to_str()?
    } else {
        path.file_name()?.to_str()?
    };
    let bytes = name.as_bytes();
    let flyway = bytes.len() > 1
        && matches!(bytes[0], b'V' | b'v' | b'U' | b'u')
        && bytes[1].is_ascii_digit()
        && name.contains("__");
    let digits = if flyway {
        let end = name.find("__")?;
        name[1..end].replace('_', ".")
    } else {
        let end = name
            .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.'))
            .unwrap_or(name.len());
        name[..end].to_owned()
    };
    // Dashes separate the parts of one timestamp (diesel's `2017-08-31-230457`), which diesel
    // orders as the digits alone: it must sort after `20140924113530`, not before it.
    let parts: Vec<u128> = digits
        .replace('-', "")
        .split('.')
        .filter(|p| !p.is_empty())
        .map_while(|p| p.parse().ok())
        .collect();
    (!parts.is_empty()).then_some(parts)
}

fn compare_versions(a: &[u128], b: &[u128]) -> Ordering {
    a.cmp(b)
}

/// Versioned migrations first, by version and then path; unversioned ones after, by path.
fn migration_order(a: &SourceFile, b: &SourceFile) -> Ordering {
    match (&a.version, &b.version) {
        (Some(x), Some(y)) => compare_versions(x, y).then_with(|| a.path.cmp(&b.path)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.path.cmp(&b.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> Option<Vec<u128>> {
        version_of(Path::new(name))
    }

    #[test]
    fn versions_from_common_layouts() {
        assert_eq!(v("0001_init.sql"), Some(vec![1]));
        assert_eq!(v("20240101120000_add.sql"), Some(vec![20240101120000]));
        assert_eq!(v("V1.2.3__add.sql"), Some(vec![1, 2, 3]));
        assert_eq!(v("V2_1__add.sql"), Some(vec![2, 1]));
        assert_eq!(v("3_add.up.sql"), Some(vec![3]));
        assert_eq!(
            v("m/2019-03-22-174825_remove/up.sql"),
            Some(vec![20190322174825])
        );
        // diesel sets mix both forms; the dashed one is the same kind of timestamp.
        assert!(v("m/2017-08-31-230457_x/up.sql") > v("m/20140924113530_y/up.sql"));
        assert_eq!(v("m/20240101_x/migration.sql"), Some(vec![20240101]));
        // kratos numbers its migrations with 20 digits, more than a u64 holds.
        assert_eq!(
            v("20191100000001000003_identities.postgres.up.sql"),
            Some(vec![20191100000001000003])
        );
        assert_eq!(v("schema.sql"), None);
        assert_eq!(v("R__views.sql"), None);
    }

    #[test]
    fn down_files_are_recognised() {
        let d = |name: &str| direction_of(Path::new(name), Layout::Plain);
        assert_eq!(d("1_x.down.sql"), Direction::Down);
        assert_eq!(d("x/down.sql"), Direction::Down);
        assert_eq!(d("U3__x.sql"), Direction::Down);
        assert_eq!(d("1_x.up.sql"), Direction::Up);
        assert_eq!(d("update_users.sql"), Direction::Up);
        assert_eq!(
            direction_of(Path::new("U3__x.sql"), Layout::Refinery),
            Direction::Up
        );
    }
}
