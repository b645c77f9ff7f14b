//! Which recorded migration each file is. A migration is known by its id (the file name
//! without extension) and by its content's checksum, so that renaming an applied file does
//! not apply it again; two files that claim one id or one version are an error; an applied
//! migration whose file is gone, and a new file numbered below applied ones, are named.

use std::collections::{HashMap, HashSet};

use crate::plan::recorded::RecordedPlan;
use crate::source::SourceFile;

/// The files of a folder matched to the recorded migrations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identities {
    /// The id of each forward file, in order: its own, or the recorded id of the migration
    /// whose content it has when it was renamed.
    pub ids: Vec<String>,
    /// Files recognised by content under a new name: (recorded id, file path).
    pub renamed: Vec<(String, String)>,
    /// Recorded (not aborted) migrations that no file is: (id, path it was applied from).
    pub missing: Vec<(String, String)>,
    /// New files whose version is below that of a migration already applied: (file path, the
    /// applied id it sorts before).
    pub out_of_order: Vec<(String, String)>,
}

/// Two files that are one migration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{first} and {second} are both migration {what}; a migration must have one file: rename or remove one of them"
)]
pub struct Ambiguous {
    pub first: String,
    pub second: String,
    pub what: String,
}

/// Matches `files` (forward migrations, in order) to `recorded` plans by id (those of every
/// status but aborted, as `recorded_plans` returns them).
pub fn identify(
    files: &[SourceFile],
    recorded: &HashMap<String, RecordedPlan>,
) -> Result<Identities, Ambiguous> {
    let path = |f: &SourceFile| f.path.display().to_string();
    let mut by_id: HashMap<String, &SourceFile> = HashMap::new();
    let mut by_version: HashMap<&Vec<u128>, &SourceFile> = HashMap::new();
    for file in files {
        let id = crate::plan::migration_id(file);
        if let Some(other) = by_id.insert(id.clone(), file) {
            return Err(Ambiguous {
                first: path(other),
                second: path(file),
                what: id,
            });
        }
        if let Some(version) = file.version.as_ref().filter(|_| !file.repeatable)
            && let Some(other) = by_version.insert(version, file)
        {
            return Err(Ambiguous {
                first: path(other),
                second: path(file),
                what: format!(
                    "version {}",
                    version
                        .iter()
                        .map(u128::to_string)
                        .collect::<Vec<_>>()
                        .join(".")
                ),
            });
        }
    }
    let mut out = Identities::default();
    let mut claimed: HashSet<String> = HashSet::new();
    for file in files {
        let own = crate::plan::migration_id(file);
        let id = if recorded.contains_key(&own) {
            own
        } else {
            // A recorded migration with no file of its own name, applied from this content.
            let sum = crate::plan::checksum(file.identity_text());
            let renamed_from = recorded
                .iter()
                .filter(|(id, _)| !by_id.contains_key(*id) && !claimed.contains(*id))
                .find(|(_, plan)| plan.checksum == sum)
                .map(|(id, _)| id.clone());
            match renamed_from {
                Some(id) => {
                    out.renamed.push((id.clone(), path(file)));
                    id
                }
                None => own,
            }
        };
        claimed.insert(id.clone());
        out.ids.push(id);
    }
    let mut missing: Vec<(String, String)> = recorded
        .iter()
        .filter(|(id, _)| !claimed.contains(*id))
        .map(|(id, plan)| (id.clone(), plan.path.clone()))
        .collect();
    missing.sort();
    out.missing = missing;
    // The highest version among applied files; a new file below it is out of order.
    let applied: Vec<(&Vec<u128>, &String)> = files
        .iter()
        .zip(&out.ids)
        .filter(|(_, id)| recorded.contains_key(*id))
        .filter_map(|(f, id)| f.version.as_ref().map(|v| (v, id)))
        .collect();
    for (file, id) in files.iter().zip(&out.ids) {
        // Liquibase runs every changeset it has not run, wherever the changelog lists it (a
        // changeset added to an earlier file is usual), so for changesets this is the order.
        if recorded.contains_key(id) || file.repeatable || file.changeset.is_some() {
            continue;
        }
        let Some(version) = &file.version else {
            continue;
        };
        if let Some((_, later)) = applied.iter().filter(|(v, _)| *v > version).max() {
            out.out_of_order.push((path(file), (*later).clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Down;
    use std::path::Path;

    fn file(name: &str, text: &str) -> SourceFile {
        let mut f = SourceFile::from_text(Path::new(name), text.to_owned());
        f.version = crate::source::version_of(Path::new(name));
        f
    }

    fn recorded(entries: &[(&str, &str)]) -> HashMap<String, RecordedPlan> {
        entries
            .iter()
            .map(|(id, text)| {
                let plan = RecordedPlan {
                    id: (*id).to_owned(),
                    path: format!("{id}.sql"),
                    checksum: crate::plan::checksum(text),
                    expand: Vec::new(),
                    backfill: Vec::new(),
                    contract: Vec::new(),
                    down: Down {
                        expand: Vec::new(),
                        contract: None,
                    },
                    notes: Vec::new(),
                };
                ((*id).to_owned(), plan)
            })
            .collect()
    }

    #[test]
    fn a_renamed_file_is_the_migration_it_was() {
        let files = [file("0001_users.sql", "A"), file("0002_accounts.sql", "B")];
        let got = identify(
            &files,
            &recorded(&[("0001_users", "A"), ("0002_orders", "B")]),
        )
        .unwrap();
        assert_eq!(got.ids, ["0001_users", "0002_orders"]);
        assert_eq!(got.renamed.len(), 1);
        assert!(got.missing.is_empty());
    }

    #[test]
    fn missing_files_and_out_of_order_ones_are_named() {
        let files = [
            file("0001_a.sql", "A"),
            file("0003_c.sql", "C"),
            file("0002_b.sql", "B"),
        ];
        let got = identify(
            &files,
            &recorded(&[("0001_a", "A"), ("0003_c", "C"), ("0004_d", "D")]),
        )
        .unwrap();
        assert_eq!(
            got.missing,
            [("0004_d".to_owned(), "0004_d.sql".to_owned())]
        );
        assert_eq!(
            got.out_of_order,
            [("0002_b.sql".to_owned(), "0003_c".to_owned())]
        );
    }

    #[test]
    fn one_version_twice_is_an_error() {
        let files = [file("0005_y.sql", "A"), file("0005_y.up.sql", "B")];
        assert!(identify(&files, &HashMap::new()).is_err());
        let files = [file("0005_x.sql", "A"), file("0005_y.sql", "B")];
        let e = identify(&files, &HashMap::new()).unwrap_err();
        assert_eq!(e.what, "version 5");
    }
}
