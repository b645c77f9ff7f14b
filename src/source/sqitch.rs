//! Sqitch projects: `sqitch.plan` lists the changes in the order they deploy, and each change
//! has a `deploy/<name>.sql`, a `revert/<name>.sql` and a `verify/<name>.sql` script beside it.
//! zdm reads the deploy scripts in the plan's order (never the folder's file-name order) and
//! the revert scripts as their downs; verify scripts only read, and are not migrations.
//! Sqitch runs each script through psql as written, so a script's own `BEGIN; … COMMIT;` is
//! its transaction and a statement outside one commits on its own.
//! <https://sqitch.org/docs/manual/sqitch-plan/>
//!
//! A change reworked under the same name (`sqitch rework`) has several deploy scripts, one per
//! tag; zdm reads one script per change, so such a plan is refused.

use std::path::{Path, PathBuf};

use super::{Direction, Layout, SourceError, SourceFile};

/// The Sqitch project a path belongs to: the folder holding `sqitch.plan`, given that folder,
/// its `deploy/` or `revert/` folder, or a script in one of them.
pub fn project_of(path: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    if dir.join("sqitch.plan").is_file() {
        return Some(dir.to_owned());
    }
    let scripts = matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deploy" | "revert")
    );
    let project = dir.parent()?;
    (scripts && project.join("sqitch.plan").is_file()).then(|| project.to_owned())
}

/// One change of the plan, with the line that names it.
struct Change {
    name: String,
    line: usize,
}

fn read(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|source| SourceError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// The changes of `sqitch.plan` in order: a line per change (`name [deps] time planner # note`);
/// pragmas (`%`), tags (`@`), comments and blank lines are skipped.
fn changes(plan_path: &Path) -> Result<Vec<Change>, SourceError> {
    let text = read(plan_path)?;
    let mut out: Vec<Change> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['%', '#', '@']) {
            continue;
        }
        let name = line
            .split(|c: char| c.is_whitespace() || c == '[')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(first) = out.iter().find(|c| c.name == name) {
            return Err(SourceError::Unsupported {
                path: plan_path.to_owned(),
                line: i + 1,
                what: format!(
                    "Sqitch change `{name}` is reworked (first at line {}): zdm reads one deploy script per change; lint the reworked script with `zdm lint deploy/{name}.sql`",
                    first.line
                ),
            });
        }
        out.push(Change { name, line: i + 1 });
    }
    Ok(out)
}

/// The deploy scripts of the project in the plan's order, and the revert scripts as their
/// downs, each versioned by its position in the plan.
pub fn load(project: &Path) -> Result<(Vec<SourceFile>, Vec<SourceFile>), SourceError> {
    let plan_path = project.join("sqitch.plan");
    let mut forward = Vec::new();
    let mut down = Vec::new();
    for (i, change) in changes(&plan_path)?.into_iter().enumerate() {
        let script = |dir: &str| project.join(dir).join(format!("{}.sql", change.name));
        let deploy = script("deploy");
        if !deploy.is_file() {
            return Err(SourceError::Unsupported {
                path: plan_path.clone(),
                line: change.line,
                what: format!(
                    "Sqitch change `{}` has no deploy script at {} (zdm reads deploy/ beside sqitch.plan; a top_dir set in sqitch.conf is not read)",
                    change.name,
                    deploy.display()
                ),
            });
        }
        let version = Some(vec![i as u128 + 1]);
        let as_source = |path: &Path, direction| -> Result<SourceFile, SourceError> {
            let mut file = SourceFile::read(path, Layout::Sqitch)?;
            file.version = version.clone();
            file.direction = direction;
            file.no_transaction = true;
            Ok(file)
        };
        forward.push(as_source(&deploy, Direction::Up)?);
        let revert = script("revert");
        if revert.is_file() {
            down.push(as_source(&revert, Direction::Down)?);
        }
    }
    Ok((forward, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(plan: &str, scripts: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sqitch.plan"), plan).unwrap();
        for name in scripts {
            for sub in ["deploy", "revert"] {
                let p = dir.path().join(sub).join(format!("{name}.sql"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, format!("-- {sub} {name}\nSELECT 1;\n")).unwrap();
            }
        }
        dir
    }

    #[test]
    fn the_plan_orders_the_deploy_scripts() {
        let dir = project(
            "%syntax-version=1.0.0\n%project=app\n\nzeta 2026-01-01T00:00:00Z A <a@b> # first\n@v1 2026-01-02T00:00:00Z A <a@b> # tag\nalpha [zeta] 2026-01-03T00:00:00Z A <a@b> # second\n",
            &["zeta", "alpha"],
        );
        let (forward, down) = load(dir.path()).unwrap();
        let names: Vec<_> = forward
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["zeta.sql", "alpha.sql"]);
        assert!(forward.iter().all(|f| f.no_transaction));
        assert_eq!(down.len(), 2);
        assert_eq!(down[1].version, Some(vec![2]));
        assert_eq!(
            project_of(&dir.path().join("deploy")),
            Some(dir.path().to_owned())
        );
        assert_eq!(
            project_of(&dir.path().join("revert/alpha.sql")),
            Some(dir.path().to_owned())
        );
    }

    #[test]
    fn reworked_changes_and_missing_scripts_are_refused_with_the_plan_line() {
        let dir = project(
            "a 2026-01-01T00:00:00Z A <a@b>\n@v1 2026-01-02T00:00:00Z A <a@b>\na [a@v1] 2026-01-03T00:00:00Z A <a@b>\n",
            &["a"],
        );
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("sqitch.plan:3: Sqitch change `a` is reworked"),
            "{e}"
        );
        let dir = project("b 2026-01-01T00:00:00Z A <a@b>\n", &[]);
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("sqitch.plan:1: Sqitch change `b` has no deploy script"),
            "{e}"
        );
    }
}
