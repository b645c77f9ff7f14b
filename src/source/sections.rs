//! Tools that keep a migration's up and down in one file (dbmate, goose) mark each section
//! with a comment line. zdm reads such a file as two texts, each holding its own section's
//! lines where they are in the file and the other lines empty, so findings point at the
//! right line.

/// The up and down texts of a file, or `None` when it has no down marker (all of it is up).
/// `leading_is_up`: whether lines before the first marker belong to the up section (dbmate)
/// or to neither (goose, which runs only annotated sections).
pub fn split(
    text: &str,
    is_up: impl Fn(&str) -> bool,
    is_down: impl Fn(&str) -> bool,
    leading_is_up: bool,
) -> Option<(String, String)> {
    if !text.lines().any(&is_down) {
        return None;
    }
    #[derive(PartialEq)]
    enum In {
        Neither,
        Up,
        Down,
    }
    let mut section = if leading_is_up { In::Up } else { In::Neither };
    let (mut up, mut down) = (String::new(), String::new());
    for line in text.split_inclusive('\n') {
        if is_up(line) {
            section = In::Up;
        } else if is_down(line) {
            section = In::Down;
        }
        let blank = if line.ends_with('\n') { "\n" } else { "" };
        up.push_str(if section == In::Up { line } else { blank });
        down.push_str(if section == In::Down { line } else { blank });
    }
    Some((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_section_keeps_its_lines_in_place() {
        let text = "-- head\n-- up\nA;\n-- down\nB;\n";
        let (up, down) = split(
            text,
            |l| l.starts_with("-- up"),
            |l| l.starts_with("-- down"),
            false,
        )
        .unwrap();
        assert_eq!(up, "\n-- up\nA;\n\n\n");
        assert_eq!(down, "\n\n\n-- down\nB;\n");
        let (up, _) = split(text, |_| false, |l| l.starts_with("-- down"), true).unwrap();
        assert_eq!(up, "-- head\n-- up\nA;\n\n\n");
        assert!(split("A;\n", |_| true, |_| false, true).is_none());
    }
}
