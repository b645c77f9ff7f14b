//! Rule documentation generated from each rule's metadata: `docs/rules/<name>.md` and the
//! index `docs/rules/README.md`. A test fails when a committed page is stale; regenerate with
//! `ZDM_UPDATE_DOCS=1 cargo test --lib rule_docs`.

use super::render_human_plain;
use crate::lint::rules::ALL;
use crate::lint::{LintOptions, Rule, Severity, lint_sql};

/// The markdown page of one rule.
pub fn rule_page(rule: &Rule) -> String {
    let mut page = format!(
        "# {}\n\n<!-- generated from src/analysis/rules/{}.rs; do not edit -->\n\n**Default severity:** {}\n\n{}.\n\n## Why\n\n{}\n\n## Safe form\n\n{}.\n\n",
        rule.name,
        rule.name.replace('-', "_"),
        rule.severity,
        capitalize(rule.summary),
        rule.why,
        capitalize(rule.help),
    );
    if !rule.setup.is_empty() {
        page.push_str(&format!(
            "## Examples\n\nGiven an earlier migration:\n\n```sql\n{}\n```\n\n",
            rule.setup
        ));
    } else {
        page.push_str("## Examples\n\n");
    }
    page.push_str(&format!("Flagged:\n\n```sql\n{}\n```\n\n", rule.bad));
    let options = LintOptions::default();
    let output = render_human_plain(&lint_sql(rule.setup, rule.bad, &options));
    page.push_str(&format!("`zdm lint` says:\n\n```text\n{}```\n\n", output));
    page.push_str(&format!("Accepted:\n\n```sql\n{}\n```\n\n", rule.good));
    page.push_str(&format!(
        "Silence one statement with `-- zdm:ignore {0} -- reason`, a file with `-- zdm:ignore-file {0}`, or set the level in `zdm.toml`:\n\n```toml\n[lint.rules]\n{0} = \"{1}\"\n```\n",
        rule.name,
        if rule.severity == Severity::Error { "warning" } else { "off" }
    ));
    page
}

/// The index of all rules.
pub fn index_page() -> String {
    let mut page = String::from(
        "# Lint rules\n\n<!-- generated from src/analysis/rules/; do not edit -->\n\n`zdm lint` checks every statement against these rules. Errors fail the gate (exit 1); warnings are reported only.\n\n| rule | severity | flags |\n|---|---|---|\n",
    );
    for r in ALL {
        page.push_str(&format!(
            "| [{0}]({0}.md) | {1} | {2} |\n",
            r.name,
            r.severity,
            r.summary.replace('|', "\\|")
        ));
    }
    page
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rule_docs_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules");
        let update = std::env::var_os("ZDM_UPDATE_DOCS").is_some();
        let mut pages: Vec<(String, String)> = ALL
            .iter()
            .map(|r| (format!("{}.md", r.name), rule_page(r)))
            .collect();
        pages.push(("README.md".into(), index_page()));
        let mut stale = Vec::new();
        for (file, content) in &pages {
            let path = dir.join(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, content).unwrap();
                } else {
                    stale.push(file.clone());
                }
            }
        }
        // Pages of rules that no longer exist.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !pages.iter().any(|(f, _)| *f == name) {
                if update {
                    std::fs::remove_file(entry.path()).unwrap();
                } else {
                    stale.push(name);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "stale rule docs {stale:?}: run `ZDM_UPDATE_DOCS=1 cargo test --lib rule_docs`"
        );
    }
}
