//! The GitHub Action (`action.yml`): its YAML is checked (a composite action whose steps run
//! bash, whose `${{ inputs.… }}` are all declared, whose scripts exist), and its steps are run
//! here as a runner would run them: the step's `env` with the expressions filled in, its `run`
//! in bash, in a small project. `gh` is a stand-in on PATH that records what the comment step
//! asks GitHub to do; `zdm` is the binary under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn action() -> Yaml {
    let text = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// A step as the runner sees it.
struct Step {
    name: String,
    condition: Option<String>,
    env: BTreeMap<String, String>,
    run: String,
}

fn steps(action: &Yaml) -> Vec<Step> {
    action["runs"]["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["shell"].as_str(), Some("bash"), "every step runs bash");
            Step {
                name: s["name"].as_str().unwrap().to_owned(),
                condition: s["if"].as_str().map(str::to_owned),
                env: s["env"]
                    .as_hash()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().unwrap().to_owned(),
                                    v.as_str().unwrap().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                run: s["run"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The `${{ … }}` expressions of a text.
fn expressions(text: &str) -> Vec<String> {
    text.match_indices("${{")
        .filter_map(|(i, _)| {
            let rest = &text[i + 3..];
            Some(rest[..rest.find("}}")?].trim().to_owned())
        })
        .collect()
}

#[test]
fn the_action_is_a_composite_of_bash_steps_with_declared_inputs() {
    let action = action();
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    assert!(action["name"].as_str().is_some() && action["description"].as_str().is_some());
    let inputs: Vec<String> = action["inputs"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            assert!(
                v["description"].as_str().is_some(),
                "{k:?} has a description"
            );
            k.as_str().unwrap().to_owned()
        })
        .collect();
    for step in steps(&action) {
        let texts = step
            .env
            .values()
            .chain(step.condition.iter())
            .chain([&step.run]);
        for text in texts {
            for e in expressions(text) {
                if let Some(input) = e.strip_prefix("inputs.") {
                    assert!(inputs.iter().any(|i| i == input), "{}: {e}", step.name);
                }
            }
        }
        for word in step.run.split_whitespace() {
            if let Some(script) = word.trim_matches('"').strip_prefix("$ACTION_PATH/") {
                assert!(repo().join(script).is_file(), "{}: {script}", step.name);
            }
        }
    }
}

/// Runs every step of the action in `project` with `inputs`, as a pull request's run would,
/// and returns (step name, exit code, output) of each step that ran.
fn run_action(
    project: &Path,
    inputs: &[(&str, &str)],
    extra_env: &[(&str, &str)],
) -> Vec<(String, i32, String)> {
    let action = action();
    let zdm_dir = Path::new(env!("CARGO_BIN_EXE_zdm")).parent().unwrap();
    let fake_dir = project.join(".fake-bin");
    let path = format!(
        "{}:{}:{}",
        zdm_dir.display(),
        fake_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let value = |expression: &str| -> String {
        if let Some(input) = expression.strip_prefix("inputs.") {
            if let Some((_, v)) = inputs.iter().find(|(k, _)| *k == input) {
                return (*v).to_owned();
            }
            let default = &action["inputs"][input]["default"];
            return default.as_str().unwrap_or_default().to_owned();
        }
        match expression {
            "github.action_path" => repo().display().to_string(),
            "github.event.pull_request.number" => "7".to_owned(),
            "github.token" => "token".to_owned(),
            other => panic!("an expression the test does not know: {other}"),
        }
    };
    let fill = |text: &str| -> String {
        let mut out = text.to_owned();
        for e in expressions(text) {
            let filled = value(&e);
            // Inputs' defaults may themselves be expressions (`${{ github.token }}`).
            let filled = match expressions(&filled).first() {
                Some(inner) => value(inner),
                None => filled,
            };
            out = out.replace(&format!("${{{{ {e} }}}}"), &filled);
        }
        out
    };
    let mut out = Vec::new();
    for step in steps(&action) {
        if let Some(condition) = &step.condition {
            // The action's only condition: `always() && inputs.comment == 'true'`.
            assert_eq!(condition, "always() && inputs.comment == 'true'");
            if value("inputs.comment") != "true" {
                continue;
            }
        }
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(&step.run)
            .current_dir(project)
            .env("PATH", &path)
            .env("GITHUB_REPOSITORY", "acme/app")
            .env("GITHUB_STEP_SUMMARY", project.join("summary.md"))
            .env_remove("ZDM_CONFIG")
            .env_remove("DATABASE_URL");
        for (k, v) in &step.env {
            cmd.env(k, fill(v));
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let result = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        out.push((step.name, result.status.code().unwrap_or(-1), text));
    }
    out
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("0001_users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
    )
    .unwrap();
    std::fs::write(
        m.join("0002_email_index.sql"),
        "CREATE INDEX users_email ON users (email);\n",
    )
    .unwrap();
    // `gh` records its arguments and keeps the comment body it was given.
    let fake = dir.path().join(".fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let gh = fake.join("gh");
    std::fs::write(
        &gh,
        "#!/usr/bin/env bash\necho \"$*\" >> \"$FAKE_GH_LOG\"\ncase \"$*\" in\n  *--paginate*) if [ -n \"${FAKE_GH_EXISTING:-}\" ]; then echo \"$FAKE_GH_EXISTING\"; fi ;;\nesac\nfor a in \"$@\"; do\n  case \"$a\" in body=@*) cp \"${a#body=@}\" \"$FAKE_GH_LOG.body\" ;; esac\ndone\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn the_steps_lint_with_annotations_and_post_then_update_one_plan_comment() {
    let p = project();
    let log = p.path().join("gh.log");
    let log_env = log.display().to_string();
    let ran = run_action(p.path(), &[], &[("FAKE_GH_LOG", &log_env)]);
    let names: Vec<&str> = ran.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["Install zdm", "Lint migrations", "Plan comment"]);
    let (_, code, text) = &ran[0];
    assert_eq!(*code, 0, "{text}");
    assert!(text.contains("zdm 0.1.0 is installed"), "{text}");
    let (_, code, text) = &ran[1];
    assert_eq!(*code, 1, "the index locks writes: {text}");
    assert!(
        text.contains("::error file=migrations/0002_email_index.sql,line=1"),
        "{text}"
    );
    let (_, code, text) = &ran[2];
    assert_eq!(*code, 0, "{text}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("-X POST repos/acme/app/issues/7/comments"),
        "{calls}"
    );
    let body = std::fs::read_to_string(format!("{log_env}.body")).unwrap();
    assert!(body.starts_with("<!-- zdm-plan -->\n## zdm plan"), "{body}");
    assert!(body.contains("### `0002_email_index`"), "{body}");
    let summary = std::fs::read_to_string(p.path().join("summary.md")).unwrap();
    assert_eq!(summary, body);

    // The next push finds the comment by its first line and edits it.
    std::fs::remove_file(&log).unwrap();
    let ran = run_action(
        p.path(),
        &[("fail-on-findings", "false")],
        &[("FAKE_GH_LOG", &log_env), ("FAKE_GH_EXISTING", "42")],
    );
    assert_eq!(ran[1].1, 0, "findings do not fail the job: {}", ran[1].2);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("-X PATCH repos/acme/app/issues/comments/42"),
        "{calls}"
    );
    assert!(!calls.contains("POST"), "{calls}");

    // Without comments, only install and lint run.
    let ran = run_action(
        p.path(),
        &[("comment", "false")],
        &[("FAKE_GH_LOG", &log_env)],
    );
    assert_eq!(ran.len(), 2);
}
