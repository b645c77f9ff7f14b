//! Liquibase changelogs. A formatted SQL file (first line `--liquibase formatted sql`) holds
//! changesets, each starting at a `--changeset author:id [attribute:value …]` line and each a
//! migration of its own, with `--rollback` lines as its undo. A master changelog
//! (`changelog.xml`, `db.changelog-master.yaml`, …) lists, in order, formatted SQL files to
//! include (`include`), folders whose files are included in path order (`includeAll`), and
//! changesets that run a SQL file (`sqlFile`).
//! <https://docs.liquibase.com/concepts/changelogs/sql-format.html>
//!
//! Each changeset's text keeps its lines where they are in the file (the others are empty), so
//! findings point at the right line. What zdm cannot reproduce is refused with its line, never
//! guessed: changesets that run only in some contexts or labels, preconditions, `runAlways`,
//! `failOnError:false`, changelog parameters (`${…}`), and changelog entries other than the
//! three above (XML `<createTable>`, inline `<sql>`, …). A changeset for other databases
//! (`dbms:oracle`) is skipped, as Liquibase skips it on PostgreSQL.

use std::path::{Path, PathBuf};

use super::{Direction, SourceError, SourceFile};

/// The names Liquibase projects give their master changelog, looked for in a folder.
pub const MASTER_NAMES: [&str; 6] = [
    "db.changelog-master.xml",
    "db.changelog-master.yaml",
    "db.changelog-master.yml",
    "changelog.xml",
    "changelog.yaml",
    "changelog.yml",
];

/// Whether a file's text is Liquibase formatted SQL: its first non-blank line says so.
pub fn is_formatted_sql(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| {
            let l = l.trim().to_lowercase();
            let rest = l.trim_start_matches('-').trim_start();
            l.starts_with("--") && rest.starts_with("liquibase formatted sql")
        })
}

/// The changelog a path names: a changelog file itself, a folder's master changelog, or a
/// formatted SQL file.
pub fn changelog_of(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return MASTER_NAMES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file());
    }
    let ext = path.extension().and_then(|e| e.to_str())?;
    match ext {
        "xml" | "yaml" | "yml" => Some(path.to_owned()),
        "sql" => std::fs::read_to_string(path)
            .ok()
            .filter(|t| is_formatted_sql(t.strip_prefix('\u{feff}').unwrap_or(t)))
            .map(|_| path.to_owned()),
        _ => None,
    }
}

fn unsupported(path: &Path, line: usize, what: impl Into<String>) -> SourceError {
    SourceError::Unsupported {
        path: path.to_owned(),
        line,
        what: what.into(),
    }
}

/// The forward changesets of a changelog in the order Liquibase runs them, and their
/// rollbacks as downs.
pub fn load(changelog: &Path) -> Result<(Vec<SourceFile>, Vec<SourceFile>), SourceError> {
    let mut out = Changesets::default();
    out.read_changelog(changelog, 0)?;
    // Versions are positions in Liquibase's order; a rollback takes its changeset's.
    let mut versions = std::collections::HashMap::new();
    for (i, file) in out.forward.iter_mut().enumerate() {
        file.version = Some(vec![i as u128 + 1]);
        versions.insert(
            (file.path.clone(), file.changeset.clone()),
            file.version.clone(),
        );
    }
    for file in &mut out.down {
        file.version = versions
            .get(&(file.path.clone(), file.changeset.clone()))
            .cloned()
            .flatten();
    }
    Ok((out.forward, out.down))
}

#[derive(Default)]
struct Changesets {
    forward: Vec<SourceFile>,
    down: Vec<SourceFile>,
}

/// Includes nest; a changelog that includes itself would never end.
const MAX_DEPTH: usize = 16;

impl Changesets {
    fn read_changelog(&mut self, path: &Path, depth: usize) -> Result<(), SourceError> {
        if depth > MAX_DEPTH {
            return Err(unsupported(
                path,
                0,
                "changelogs include each other more than 16 deep (an include cycle?)",
            ));
        }
        let text = read(path)?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("xml") => {
                for entry in xml_entries(path, &text)? {
                    self.add_entry(path, entry, depth)?;
                }
                Ok(())
            }
            Some("yaml" | "yml") => {
                for entry in yaml_entries(path, &text)? {
                    self.add_entry(path, entry, depth)?;
                }
                Ok(())
            }
            _ if is_formatted_sql(&text) => {
                let (forward, down) = formatted(path, &text)?;
                self.forward.extend(forward);
                self.down.extend(down);
                Ok(())
            }
            // A plain SQL file included from a changelog is one changeset, split into
            // statements, run in a transaction.
            _ => {
                let mut file = SourceFile::from_text(path, text);
                file.changeset = Some(format!("{}:raw", path_id(path)));
                self.forward.push(file);
                Ok(())
            }
        }
    }

    fn add_entry(
        &mut self,
        changelog: &Path,
        entry: Entry,
        depth: usize,
    ) -> Result<(), SourceError> {
        let base = |relative: bool, target: &str| resolve(changelog, relative, target);
        match entry.kind {
            EntryKind::Include { file, relative } => {
                let path = base(relative, &file).ok_or_else(|| {
                    unsupported(
                        changelog,
                        entry.line,
                        format!("include of {file}: no such file"),
                    )
                })?;
                self.read_changelog(&path, depth + 1)
            }
            EntryKind::IncludeAll { path, relative } => {
                let dir = base(relative, &path)
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| {
                        unsupported(
                            changelog,
                            entry.line,
                            format!("includeAll of {path}: no such folder"),
                        )
                    })?;
                let mut files = Vec::new();
                collect_changelogs(&dir, &mut files).map_err(|source| SourceError::Unreadable {
                    path: dir.clone(),
                    source,
                })?;
                files.sort();
                for file in files {
                    self.read_changelog(&file, depth + 1)?;
                }
                Ok(())
            }
            EntryKind::SqlFile {
                changeset,
                path,
                relative,
                attributes,
            } => {
                let file_path = base(relative, &path).ok_or_else(|| {
                    unsupported(
                        changelog,
                        entry.line,
                        format!("changeset {changeset}: sqlFile {path}: no such file"),
                    )
                })?;
                let Some(settings) = Settings::from(changelog, entry.line, &attributes)? else {
                    return Ok(()); // for another database
                };
                let text = read(&file_path)?;
                let text = settings.apply_delimiter(&text);
                refuse_parameters(&file_path, &text)?;
                let mut file = SourceFile::from_text(&file_path, text);
                file.changeset = Some(changeset);
                file.no_transaction = settings.no_transaction;
                file.repeatable = settings.repeatable;
                self.forward.push(file);
                Ok(())
            }
        }
    }
}

fn read(path: &Path) -> Result<String, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing {
            path: path.to_owned(),
        },
        _ => SourceError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| SourceError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// A file's id part for changesets that have none of their own: its name without `.sql`
/// (not its path, which depends on where zdm runs, while an id must not).
fn path_id(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "changelog".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Where an included path is: beside the changelog when `relative`; otherwise Liquibase
/// looks it up on its search path (the folder it runs in), so zdm tries the changelog's
/// folder and the folders above it, nearest first.
fn resolve(changelog: &Path, relative: bool, target: &str) -> Option<PathBuf> {
    let dir = changelog.parent().unwrap_or(Path::new("."));
    let target = target.trim_start_matches("classpath:");
    if relative {
        let p = dir.join(target);
        return p.exists().then_some(p);
    }
    let target = target.trim_start_matches('/');
    dir.ancestors()
        .map(|d| d.join(target))
        .chain(std::iter::once(PathBuf::from(target)))
        .find(|p| p.exists())
}

/// The changelog files under a folder, as includeAll takes them (SQL, XML and YAML, in
/// subfolders too).
fn collect_changelogs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_changelogs(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "sql" | "xml" | "yaml" | "yml"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Changelog parameters are filled in by Liquibase when it runs, from values zdm cannot know.
fn refuse_parameters(path: &Path, text: &str) -> Result<(), SourceError> {
    match text.lines().position(|l| l.contains("${")) {
        Some(i) => Err(unsupported(
            path,
            i + 1,
            "a changelog parameter (`${…}`), which Liquibase fills in when it runs; write the value into the SQL",
        )),
        None => Ok(()),
    }
}

/// What a changeset's attributes ask for, as far as zdm honours them.
#[derive(Debug, Default)]
struct Settings {
    no_transaction: bool,
    repeatable: bool,
    end_delimiter: Option<String>,
}

impl Settings {
    /// The settings of a changeset's `name:value` attributes, or `None` for a changeset
    /// Liquibase does not run on PostgreSQL.
    fn from(
        path: &Path,
        line: usize,
        attributes: &[(String, String)],
    ) -> Result<Option<Settings>, SourceError> {
        let mut settings = Settings::default();
        for (name, value) in attributes {
            let value = value.trim_matches('"');
            let yes = value.eq_ignore_ascii_case("true");
            match name.to_ascii_lowercase().as_str() {
                "runintransaction" => settings.no_transaction = !yes,
                "runonchange" => settings.repeatable = yes,
                "enddelimiter" => settings.end_delimiter = Some(value.to_owned()),
                "dbms" if !runs_on_postgres(value) => return Ok(None),
                "runalways" if yes => {
                    return Err(unsupported(
                        path,
                        line,
                        "a changeset with runAlways:true, which Liquibase runs on every update; zdm runs a migration once (runOnChange:true runs it again when it changes)",
                    ));
                }
                "failonerror" if !yes => {
                    return Err(unsupported(
                        path,
                        line,
                        "a changeset with failOnError:false, whose errors Liquibase ignores; zdm stops at an error, so remove the attribute or the statement that fails",
                    ));
                }
                "context" | "contextfilter" | "context-filter" | "labels" => {
                    return Err(unsupported(
                        path,
                        line,
                        format!(
                            "a changeset limited to {name} `{value}`: whether Liquibase runs it depends on the contexts or labels of each update, which zdm cannot know; move it to a changelog of its own"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(Some(settings))
    }

    /// The text with the changeset's end delimiter (`/`, `GO`) turned into `;` where it ends
    /// a line, so statements split where Liquibase splits them.
    fn apply_delimiter(&self, text: &str) -> String {
        let Some(delimiter) = self
            .end_delimiter
            .as_deref()
            .filter(|d| !d.is_empty() && *d != ";")
        else {
            return text.to_owned();
        };
        text.split_inclusive('\n')
            .map(|line| {
                let (body, newline) = match line.strip_suffix('\n') {
                    Some(b) => (b, "\n"),
                    None => (line, ""),
                };
                let trimmed = body.trim_end();
                match trimmed.strip_suffix(delimiter) {
                    Some(head) if !head.trim().starts_with("--") => {
                        let pad = " ".repeat(delimiter.chars().count().saturating_sub(1));
                        format!("{head};{pad}{}{newline}", &body[trimmed.len()..])
                    }
                    _ => line.to_owned(),
                }
            })
            .collect()
    }
}

/// Whether a `dbms` list (`postgresql`, `postgresql,h2`, `!oracle`, `all`) includes
/// PostgreSQL.
fn runs_on_postgres(list: &str) -> bool {
    let names: Vec<String> = list.split(',').map(|n| n.trim().to_lowercase()).collect();
    if names.iter().any(|n| n == "!postgresql" || n == "none") {
        return false;
    }
    names
        .iter()
        .any(|n| n == "postgresql" || n == "all" || n.starts_with('!'))
}

/// The `--` directive of a formatted SQL line (lower-cased word after `--`, and the rest),
/// for the directives Liquibase reads.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.trim_start().strip_prefix("--")?.trim_start();
    let word_end = rest
        .find(|c: char| c.is_whitespace() || c == ':')
        .unwrap_or(rest.len());
    let word = rest[..word_end].to_lowercase();
    let known = [
        "changeset",
        "rollback",
        "preconditions",
        "precondition-sql-check",
        "precondition-table-exists",
        "precondition-view-exists",
        "precondition-column-exists",
        "precondition-index-exists",
        "precondition-foreign-key-constraint-exists",
        "precondition-primary-key-exists",
        "precondition-sequence-exists",
        "comment",
        "validchecksum",
        "ignorelines",
        "include",
        "includeall",
        "property",
    ];
    let tail = rest[word_end..].trim_start_matches(':').trim();
    // Liquibase reads these only with their attribute; otherwise the line is a comment.
    let needs = match word.as_str() {
        "include" => Some("file:"),
        "includeall" => Some("path:"),
        "property" => Some("name:"),
        _ => None,
    };
    if needs.is_some_and(|n| !tail.to_lowercase().starts_with(n)) {
        return None;
    }
    known.contains(&word.as_str()).then_some((word, tail))
}

/// `author:id attr:value attr:"value with spaces"` split into `author:id` and the attributes.
fn changeset_header(rest: &str) -> (String, Vec<(String, String)>) {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    let mut tokens = tokens.into_iter();
    let id = tokens.next().unwrap_or_default().replace('"', "");
    let attributes = tokens
        .filter_map(|t| {
            let (name, value) = t.split_once(':')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    (id, attributes)
}

/// One changeset being read from a formatted SQL file.
struct Open {
    id: String,
    settings: Option<Settings>,
    /// Indexes of its SQL lines and of its rollback lines (with the rollback's SQL).
    sql: Vec<usize>,
    rollback: Vec<(usize, String)>,
}

/// The changesets of a formatted SQL file, and their rollbacks as downs.
pub fn formatted(
    path: &Path,
    text: &str,
) -> Result<(Vec<SourceFile>, Vec<SourceFile>), SourceError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut done: Vec<Open> = Vec::new();
    let mut open: Option<Open> = None;
    let mut ignore_until_end = false;
    let mut ignore_count = 0usize;
    let mut in_rollback_block = false;
    for (i, line) in lines.iter().enumerate() {
        if ignore_count > 0 {
            ignore_count -= 1;
            continue;
        }
        let found = directive(line);
        if ignore_until_end {
            if matches!(&found, Some((w, rest)) if w == "ignorelines" && rest.eq_ignore_ascii_case("end"))
            {
                ignore_until_end = false;
            }
            continue;
        }
        if in_rollback_block {
            if line.trim_start().starts_with("*/") {
                in_rollback_block = false;
            } else if let Some(o) = open.as_mut() {
                o.rollback.push((i, line.to_string()));
            }
            continue;
        }
        match found {
            Some((word, rest)) => match word.as_str() {
                "changeset" => {
                    done.extend(open.take());
                    let (id, attributes) = changeset_header(rest);
                    if !id.contains(':') {
                        return Err(unsupported(path, i + 1, "a changeset without `author:id`"));
                    }
                    open = Some(Open {
                        id,
                        settings: Settings::from(path, i + 1, &attributes)?,
                        sql: Vec::new(),
                        rollback: Vec::new(),
                    });
                }
                "rollback" => {
                    if let Some(o) = open.as_mut() {
                        let sql = rest.trim();
                        let none = sql.eq_ignore_ascii_case("not required")
                            || sql.eq_ignore_ascii_case("empty");
                        if !sql.is_empty() && !none {
                            // The SQL stays at its column: the directive becomes spaces.
                            let at = line.len() - line.trim_start().len();
                            let offset = line[at..].find(sql).map_or(0, |o| at + o);
                            o.rollback
                                .push((i, format!("{}{}", " ".repeat(offset), &line[offset..])));
                        }
                    }
                }
                "ignorelines" => {
                    if rest.eq_ignore_ascii_case("start") {
                        ignore_until_end = true;
                    } else if let Ok(n) = rest.parse::<usize>() {
                        ignore_count = n;
                    }
                }
                "comment" | "validchecksum" => {}
                w if w.starts_with("precondition") => {
                    return Err(unsupported(
                        path,
                        i + 1,
                        "a changeset precondition: whether Liquibase runs the changeset depends on the database at that moment, which zdm does not reproduce; move the condition into the SQL (IF NOT EXISTS) or drop it",
                    ));
                }
                _ => {
                    return Err(unsupported(
                        path,
                        i + 1,
                        format!(
                            "`--{word}` in formatted SQL, which zdm does not read yet; list the files in the master changelog instead"
                        ),
                    ));
                }
            },
            None => {
                let lower = line.trim_start().to_lowercase();
                if lower.starts_with("/*") && lower.contains("liquibase rollback") {
                    in_rollback_block = true;
                } else if let Some(o) = open.as_mut() {
                    o.sql.push(i);
                }
            }
        }
    }
    done.extend(open);
    let keep = |wanted: &mut dyn FnMut(usize) -> Option<String>| -> String {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                wanted(i).unwrap_or_else(|| {
                    if l.ends_with('\n') {
                        "\n".into()
                    } else {
                        String::new()
                    }
                })
            })
            .collect()
    };
    let (mut forward, mut down) = (Vec::new(), Vec::new());
    for changeset in done {
        let Some(settings) = changeset.settings else {
            continue; // for another database
        };
        let sql = keep(&mut |i| {
            changeset
                .sql
                .binary_search(&i)
                .is_ok()
                .then(|| lines[i].to_owned())
        });
        let sql = settings.apply_delimiter(&sql);
        refuse_parameters(path, &sql)?;
        let as_source = |text: String, direction| {
            let mut file = SourceFile::from_text(path, text);
            file.changeset = Some(changeset.id.clone());
            file.no_transaction = settings.no_transaction;
            file.repeatable = settings.repeatable && direction == Direction::Up;
            file.direction = direction;
            file
        };
        if !changeset.rollback.is_empty() {
            let text = keep(&mut |i| {
                changeset
                    .rollback
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map(|(_, l)| l.clone())
            });
            down.push(as_source(text, Direction::Down));
        }
        forward.push(as_source(sql, Direction::Up));
    }
    Ok((forward, down))
}

/// One entry of a master changelog, with its line.
struct Entry {
    line: usize,
    kind: EntryKind,
}

enum EntryKind {
    Include {
        file: String,
        relative: bool,
    },
    IncludeAll {
        path: String,
        relative: bool,
    },
    SqlFile {
        changeset: String,
        path: String,
        relative: bool,
        attributes: Vec<(String, String)>,
    },
}

fn line_at(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The `<changeSet>` an XML changelog is in: its `author:id`, attributes and line, and
/// whether its one `<sqlFile>` was seen.
struct XmlChangeset {
    id: String,
    attributes: Vec<(String, String)>,
    line: usize,
    has_sql_file: bool,
}

/// The entries of an XML changelog.
fn xml_entries(path: &Path, text: &str) -> Result<Vec<Entry>, SourceError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut entries = Vec::new();
    let mut changeset: Option<XmlChangeset> = None;
    // Depth inside an element zdm skips whole (a rollback, a comment).
    let mut skipping = 0usize;
    loop {
        let at = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            unsupported(
                path,
                line_at(text, at),
                format!("not a readable XML changelog: {e}"),
            )
        })?;
        let line = line_at(text, at + 1);
        let (element, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(e) => {
                let name = e.local_name();
                let name = String::from_utf8_lossy(name.as_ref()).into_owned();
                if skipping > 0 {
                    skipping -= 1;
                } else if name == "changeSet"
                    && let Some(open) = changeset.take()
                    && !open.has_sql_file
                {
                    return Err(unsupported(
                        path,
                        open.line,
                        format!(
                            "changeset {} has no sqlFile: zdm reads changesets that run a SQL file",
                            open.id
                        ),
                    ));
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(e) = element else { continue };
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        if skipping > 0 {
            if !empty {
                skipping += 1;
            }
            continue;
        }
        let attributes: Vec<(String, String)> = e
            .attributes()
            .filter_map(Result::ok)
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    a.unescape_value()
                        .map(|v| v.into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let get = |key: &str| {
            attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let relative = get("relativeToChangelogFile").is_some_and(|v| v == "true");
        match name.as_str() {
            "databaseChangeLog" => {}
            "include" => entries.push(Entry {
                line,
                kind: EntryKind::Include {
                    file: get("file").unwrap_or_default(),
                    relative,
                },
            }),
            "includeAll" => entries.push(Entry {
                line,
                kind: EntryKind::IncludeAll {
                    path: get("path").unwrap_or_default(),
                    relative,
                },
            }),
            "changeSet" => {
                let id = format!(
                    "{}:{}",
                    get("author").unwrap_or_default(),
                    get("id").unwrap_or_default()
                );
                if empty {
                    return Err(unsupported(
                        path,
                        line,
                        format!("changeset {id} has no changes"),
                    ));
                }
                changeset = Some(XmlChangeset {
                    id,
                    attributes: attributes.clone(),
                    line,
                    has_sql_file: false,
                });
            }
            "sqlFile" => match changeset.as_mut() {
                Some(open) if !open.has_sql_file => {
                    open.has_sql_file = true;
                    let mut all = open.attributes.clone();
                    all.extend(
                        attributes
                            .iter()
                            .filter(|(k, _)| k == "endDelimiter")
                            .cloned(),
                    );
                    entries.push(Entry {
                        line,
                        kind: EntryKind::SqlFile {
                            changeset: open.id.clone(),
                            path: get("path").unwrap_or_default(),
                            relative,
                            attributes: all,
                        },
                    });
                    if !empty {
                        skipping = 1;
                    }
                }
                _ => {
                    return Err(unsupported(
                        path,
                        line,
                        "a changeset with more than one change: zdm reads changesets that run one SQL file",
                    ));
                }
            },
            // A rollback is not run forward; a property matters only where SQL uses it, which
            // `${` finds.
            "rollback" | "comment" | "validCheckSum" | "property" => {
                if !empty {
                    skipping = 1;
                }
            }
            other => {
                return Err(unsupported(
                    path,
                    line,
                    format!(
                        "`<{other}>` in a Liquibase changelog: zdm reads include, includeAll and changesets that run a sqlFile; write this change as formatted SQL"
                    ),
                ));
            }
        }
    }
    Ok(entries)
}

/// The entries of a YAML changelog (`databaseChangeLog:` and its list).
fn yaml_entries(path: &Path, text: &str) -> Result<Vec<Entry>, SourceError> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        unsupported(
            path,
            e.marker().line(),
            format!("not a readable YAML changelog: {e}"),
        )
    })?;
    // YAML entries carry no line: zdm points at the line that names the entry's key, found in
    // order in the text.
    let mut search_from = 0usize;
    let mut line_of = |key: &str| -> usize {
        let found = text[search_from..]
            .find(&format!("{key}:"))
            .map(|o| o + search_from);
        match found {
            Some(at) => {
                search_from = at + key.len();
                line_at(text, at)
            }
            None => 0,
        }
    };
    let list = docs
        .first()
        .and_then(|d| d["databaseChangeLog"].as_vec())
        .ok_or_else(|| {
            unsupported(
                path,
                1,
                "a YAML changelog without a `databaseChangeLog:` list",
            )
        })?;
    let text_of = |y: &Yaml| -> Option<String> {
        match y {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Integer(i) => Some(i.to_string()),
            Yaml::Real(r) => Some(r.clone()),
            Yaml::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let mut entries = Vec::new();
    for item in list {
        let Some((key, body)) = item.as_hash().and_then(|h| h.iter().next()) else {
            continue;
        };
        let key = key.as_str().unwrap_or_default().to_owned();
        let line = line_of(&key);
        let relative = body["relativeToChangelogFile"].as_bool().unwrap_or(false);
        let kind = match key.as_str() {
            "include" => EntryKind::Include {
                file: text_of(&body["file"]).unwrap_or_default(),
                relative,
            },
            "includeAll" => EntryKind::IncludeAll {
                path: text_of(&body["path"]).unwrap_or_default(),
                relative,
            },
            "property" => continue,
            "changeSet" => {
                let id = format!(
                    "{}:{}",
                    text_of(&body["author"]).unwrap_or_default(),
                    text_of(&body["id"]).unwrap_or_default()
                );
                let changes = body["changes"].as_vec().cloned().unwrap_or_default();
                let sql_file = match changes.as_slice() {
                    [one] => one.as_hash().and_then(|h| {
                        h.iter()
                            .next()
                            .filter(|(k, _)| k.as_str() == Some("sqlFile"))
                            .map(|(_, v)| v.clone())
                    }),
                    _ => None,
                };
                let Some(sql_file) = sql_file else {
                    return Err(unsupported(
                        path,
                        line,
                        format!(
                            "changeset {id} does not run exactly one sqlFile: zdm reads changesets that run one SQL file; write other changes as formatted SQL"
                        ),
                    ));
                };
                let mut attributes: Vec<(String, String)> = body
                    .as_hash()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), text_of(v)?)))
                    .collect();
                if let Some(d) = text_of(&sql_file["endDelimiter"]) {
                    attributes.push(("endDelimiter".into(), d));
                }
                if body["preConditions"].as_vec().is_some()
                    || body["preConditions"].as_hash().is_some()
                {
                    return Err(unsupported(
                        path,
                        line,
                        format!("changeset {id} has preconditions, which zdm does not reproduce"),
                    ));
                }
                EntryKind::SqlFile {
                    changeset: id,
                    path: text_of(&sql_file["path"]).unwrap_or_default(),
                    relative: sql_file["relativeToChangelogFile"]
                        .as_bool()
                        .unwrap_or(false),
                    attributes,
                }
            }
            other => {
                return Err(unsupported(
                    path,
                    line,
                    format!(
                        "`{other}` in a changelog: zdm reads include, includeAll and changesets that run a sqlFile"
                    ),
                ));
            }
        };
        entries.push(Entry { line, kind });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split_statements;

    const FILE: &str = "--liquibase formatted sql\n\n--changeset alice:1\nCREATE TABLE users (id bigint PRIMARY KEY);\n--rollback DROP TABLE users;\n\n--changeset alice:2 runInTransaction:false\nCREATE INDEX CONCURRENTLY users_id ON users (id);\n--rollback DROP INDEX CONCURRENTLY users_id;\n\n--changeset bob:3 dbms:oracle\nCREATE TABLE only_oracle (id int);\n\n--changeset bob:4 runOnChange:true endDelimiter:/\nCREATE VIEW v AS SELECT id FROM users\n/\n";

    #[test]
    fn changesets_rollbacks_and_attributes() {
        let (forward, down) = formatted(Path::new("c.sql"), FILE).unwrap();
        let ids: Vec<_> = forward
            .iter()
            .map(|f| f.changeset.clone().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["alice:1", "alice:2", "bob:4"],
            "the oracle changeset is skipped"
        );
        assert!(!forward[0].no_transaction && forward[1].no_transaction);
        assert!(forward[2].repeatable);
        let first = split_statements(&forward[0].text).statements;
        assert_eq!((first.len(), first[0].start.line), (1, 4));
        assert!(
            !forward[0].text.contains("DROP"),
            "rollbacks are not forward"
        );
        let view = split_statements(&forward[2].text).statements;
        assert_eq!((view.len(), view[0].start.line), (1, 15));
        assert_eq!(down.len(), 2);
        assert_eq!(down[0].direction, Direction::Down);
        let undo = split_statements(&down[0].text).statements;
        assert_eq!((undo.len(), undo[0].start.line), (1, 5));
        assert!(
            undo[0].text.starts_with("DROP TABLE users"),
            "{}",
            undo[0].text
        );
    }

    #[test]
    fn what_zdm_cannot_reproduce_is_refused_with_its_line() {
        for (text, line) in [
            (
                "--liquibase formatted sql\n--changeset a:1 context:test\nSELECT 1;\n",
                2,
            ),
            (
                "--liquibase formatted sql\n--changeset a:1\n--preconditions onFail:MARK_RAN\nSELECT 1;\n",
                3,
            ),
            (
                "--liquibase formatted sql\n--changeset a:1 runAlways:true\nSELECT 1;\n",
                2,
            ),
            (
                "--liquibase formatted sql\n--changeset a:1\nCREATE TABLE ${schema}.t (id int);\n",
                3,
            ),
        ] {
            let e = formatted(Path::new("c.sql"), text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("c.sql:{line}: ")), "{e}");
        }
        assert!(is_formatted_sql("\n-- liquibase formatted sql\n"));
        let comment =
            "--liquibase formatted sql\n--changeset a:1\n-- include the new column\nSELECT 1;\n";
        assert_eq!(formatted(Path::new("c.sql"), comment).unwrap().0.len(), 1);
        let include = "--liquibase formatted sql\n--include file:other.sql\n";
        let e = formatted(Path::new("c.sql"), include)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.sql:2: "), "{e}");
        assert!(!is_formatted_sql("SELECT 1; --liquibase formatted sql\n"));
    }

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn yaml_sql_file_changesets_and_include_all_in_path_order() {
        let dir = project(&[
            (
                "changelog.yaml",
                "databaseChangeLog:\n  - changeSet:\n      id: 1\n      author: a\n      runInTransaction: false\n      changes:\n        - sqlFile:\n            path: first.sql\n            relativeToChangelogFile: true\n  - includeAll:\n      path: later/\n      relativeToChangelogFile: true\n",
            ),
            ("first.sql", "CREATE TABLE t (id int);\n"),
            (
                "later/2-b.sql",
                "--liquibase formatted sql\n--changeset a:3\nSELECT 3;\n",
            ),
            (
                "later/1-a.sql",
                "--liquibase formatted sql\n--changeset a:2\nSELECT 2;\n",
            ),
        ]);
        let (forward, _) = load(&dir.path().join("changelog.yaml")).unwrap();
        let ids: Vec<_> = forward
            .iter()
            .map(|f| f.changeset.clone().unwrap())
            .collect();
        assert_eq!(ids, ["a:1", "a:2", "a:3"]);
        assert!(forward[0].no_transaction && !forward[1].no_transaction);
        assert_eq!(forward[2].version, Some(vec![3]));
    }

    #[test]
    fn other_changelog_entries_are_refused_with_their_line() {
        let dir = project(&[(
            "changelog.xml",
            "<databaseChangeLog>\n  <changeSet id=\"1\" author=\"a\">\n    <createTable tableName=\"t\"/>\n  </changeSet>\n</databaseChangeLog>\n",
        )]);
        let e = load(&dir.path().join("changelog.xml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("changelog.xml:3: `<createTable>`"), "{e}");
        let dir = project(&[(
            "changelog.yaml",
            "databaseChangeLog:\n  - include:\n      file: missing.sql\n",
        )]);
        let e = load(&dir.path().join("changelog.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("changelog.yaml:2: include of missing.sql"),
            "{e}"
        );
    }

    #[test]
    fn dbms_lists() {
        assert!(runs_on_postgres("postgresql"));
        assert!(runs_on_postgres("h2, postgresql"));
        assert!(runs_on_postgres("!oracle"));
        assert!(runs_on_postgres("all"));
        assert!(!runs_on_postgres("oracle,mssql"));
        assert!(!runs_on_postgres("!postgresql"));
    }
}
