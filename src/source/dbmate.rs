//! dbmate keeps a migration's up and down in one file, in sections headed `-- migrate:up` and
//! `-- migrate:down`. zdm reads such a file as two: the up section, and the down section as a
//! down migration of the same path, each keeping its lines where they are in the file, so
//! findings point at the right line.
//! <https://github.com/amacneil/dbmate#creating-migrations>

use super::{Direction, Layout, SourceFile, layout, sections};

const UP: &str = "-- migrate:up";
const DOWN: &str = "-- migrate:down";

/// Splits a dbmate file into its up and down sections; other files come back unchanged. Each
/// section has its own `transaction:false` marker, so `layout` decides it again per section.
pub fn split_sections(file: SourceFile, layout: Layout) -> Vec<SourceFile> {
    let starts_section = |line: &str, marker: &str| line.trim_start().starts_with(marker);
    if !file.text.lines().any(|l| starts_section(l, UP)) {
        return vec![file];
    }
    let Some((up_text, down_text)) =
        sections::split(&file.text, |_| false, |l| starts_section(l, DOWN), true)
    else {
        return vec![file];
    };
    let down = SourceFile {
        no_transaction: layout::no_transaction(layout, &file.path, &down_text),
        text: down_text,
        direction: Direction::Down,
        ..file.clone()
    };
    let up = SourceFile {
        no_transaction: layout::no_transaction(layout, &file.path, &up_text),
        text: up_text,
        ..file
    };
    vec![up, down]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::source::split_statements;

    #[test]
    fn sections_become_an_up_and_a_down_with_their_own_lines() {
        let text = "-- migrate:up\nCREATE TABLE t (id int);\nCREATE INDEX t_id ON t (id);\n\n-- migrate:down\nDROP TABLE t;\n";
        let file = SourceFile::from_text(Path::new("20240101000000_t.sql"), text.to_owned());
        let parts = split_sections(file, Layout::Dbmate);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].direction, Direction::Up);
        assert_eq!(split_statements(&parts[0].text).statements.len(), 2);
        assert!(!parts[0].text.contains("DROP TABLE"));
        assert_eq!(parts[1].direction, Direction::Down);
        let down = split_statements(&parts[1].text).statements;
        assert_eq!(down.len(), 1);
        assert_eq!(
            down[0].start.line, 6,
            "the down statement keeps its line in the file"
        );
    }

    #[test]
    fn other_files_are_left_alone() {
        let file = SourceFile::from_text(Path::new("0001_t.sql"), "SELECT 1;".to_owned());
        assert_eq!(split_sections(file, Layout::Dbmate).len(), 1);
    }
}
