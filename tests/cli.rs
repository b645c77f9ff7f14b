//! The `zdm` binary as CI uses it: every output format and exit code.

use assert_cmd::Command;
use predicates::prelude::*;

fn zdm() -> Command {
    let mut cmd = Command::cargo_bin("zdm").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ZDM_CONFIG");
    cmd
}

fn stdout_of(args: &[&str], code: i32) -> String {
    let out = zdm()
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn safe_migrations_exit_zero() {
    let out = stdout_of(&["lint", "tests/fixtures/safe"], 0);
    assert!(
        out.contains("3 files, 7 statements: 0 errors, 0 warnings"),
        "{out}"
    );
}

#[test]
fn unsafe_migrations_exit_one_with_human_output() {
    let out = stdout_of(&["lint", "--color", "never", "tests/fixtures/unsafe"], 1);
    insta::assert_snapshot!("human", out);
}

#[test]
fn json_output_has_the_documented_shape() {
    let out = stdout_of(&["lint", "--format", "json", "tests/fixtures/unsafe"], 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["version", "files", "statements", "unrecognized", "findings"]
    );
    for f in v["findings"].as_array().unwrap() {
        let keys: Vec<_> = f.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "path",
                "line",
                "column",
                "end_line",
                "end_column",
                "rule",
                "severity",
                "message",
                "help"
            ]
        );
    }
    insta::assert_snapshot!("json", out);
}

#[test]
fn github_annotations() {
    let out = stdout_of(&["lint", "--format", "github", "tests/fixtures/unsafe"], 1);
    assert!(
        out.lines()
            .all(|l| l.starts_with("::error file=") || l.starts_with("::warning file="))
    );
    insta::assert_snapshot!("github", out);
}

#[test]
fn sarif_is_2_1_0_with_one_result_per_finding() {
    let out = stdout_of(&["lint", "--format", "sarif", "tests/fixtures/unsafe"], 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ruleId"], "require-concurrent-index");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
}

#[test]
fn single_file_uses_earlier_migrations_for_context() {
    // The old type of users.id comes from 0001: int → bigint is certainly a rewrite.
    let out = stdout_of(
        &[
            "lint",
            "--format",
            "json",
            "tests/fixtures/unsafe/0002_changes.sql",
        ],
        1,
    );
    assert!(
        out.contains("integer to bigint is not binary coercible"),
        "{out}"
    );
    assert!(!out.contains("0001_create_users"), "{out}");
}

#[test]
fn pg_version_flag_changes_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("1_add.sql");
    std::fs::write(
        &file,
        "SET lock_timeout = '1s';\nALTER TABLE t ADD COLUMN c int DEFAULT 0;\n",
    )
    .unwrap();
    zdm()
        .args(["lint", "--pg-version", "14"])
        .arg(&file)
        .assert()
        .code(0);
    zdm()
        .args(["lint", "--pg-version", "10"])
        .arg(&file)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("before PostgreSQL 11"));
}

#[test]
fn reads_standard_input() {
    zdm()
        .args(["lint", "--format", "json", "-"])
        .write_stdin("DROP INDEX users_email_idx;")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("\"path\": \"<stdin>\""));
}

#[test]
fn missing_path_is_a_usage_error() {
    zdm()
        .args(["lint", "no/such/dir"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no/such/dir: no such file or directory",
        ));
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("1_bad.sql");
    std::fs::write(&file, b"SELECT '\xff';").unwrap();
    zdm()
        .arg("lint")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1_bad.sql: not valid UTF-8"));
}

#[test]
fn unparseable_sql_is_an_error_finding_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("1_bad.sql");
    std::fs::write(
        &file,
        "SELECT 1;\nALTER TABLE t ADD COLUMN c int\nCREATE TABLE u (id int);\nSELECT 'unterminated",
    )
    .unwrap();
    let out = zdm()
        .args(["lint", "--format", "json"])
        .arg(&file)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["unrecognized"], 2);
    let lines: Vec<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "unrecognized-statement")
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4]);
}

#[test]
fn bad_config_and_bad_flags_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zdm.toml");
    std::fs::write(&config, "[lint.rules]\nno-such-rule = \"off\"\n").unwrap();
    zdm()
        .args(["lint", "tests/fixtures/safe", "--config"])
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown rule `no-such-rule`"));
    zdm()
        .args(["lint", "--format", "xml", "tests/fixtures/safe"])
        .assert()
        .code(2);
    zdm()
        .args(["lint", "--pg-version", "7", "tests/fixtures/safe"])
        .assert()
        .code(2);
}

#[test]
fn config_levels_turn_errors_into_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zdm.toml");
    std::fs::write(
        &config,
        "[lint.rules]\nrequire-concurrent-index = \"warning\"\nrename-column = \"off\"\nrewriting-type-change = \"warning\"\n",
    )
    .unwrap();
    zdm()
        .args(["lint", "tests/fixtures/unsafe", "--config"])
        .arg(&config)
        .assert()
        .code(0);
}

#[test]
fn help_carries_examples() {
    zdm()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Examples:"));
    zdm()
        .args(["lint", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("zdm lint migrations/"));
    zdm().args(["--version"]).assert().code(0);
    zdm().assert().code(2);
}

#[test]
fn rules_and_explain() {
    let out = stdout_of(&["rules"], 0);
    assert!(out.contains("set-not-null-scan") && out.contains("unrecognized-statement"));
    zdm()
        .args(["explain", "rename-column"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("## Safe form"));
    zdm().args(["explain", "rename-colum"]).assert().code(2);
}

#[test]
fn plan_json_has_the_documented_shape() {
    let out = stdout_of(
        &[
            "plan",
            "--format",
            "json",
            "tests/fixtures/plan/0002_fk_and_index.sql",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    let m = &v["migrations"][0];
    let keys: Vec<_> = m.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "id",
            "path",
            "checksum",
            "operations",
            "expand",
            "backfill",
            "contract",
            "down",
            "notes",
            "estimated_seconds",
            "estimated_wal_bytes",
            "estimate"
        ]
    );
    // Offline: every estimate is null, and the plan says why.
    assert_eq!(m["estimated_seconds"], serde_json::Value::Null);
    assert_eq!(
        m["estimate"]["none"],
        "no estimate without a database (zdm plan --database-url URL)"
    );
    assert_eq!(m["id"], "0002_fk_and_index");
    let step = &m["expand"][0];
    let keys: Vec<_> = step.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "id",
            "description",
            "sql",
            "transaction",
            "lock",
            "estimated_seconds",
            "estimated_wal_bytes",
            "estimated_blocking_seconds",
            "work"
        ]
    );
    assert_eq!(step["estimated_seconds"], serde_json::Value::Null);
    assert_eq!(step["transaction"], false);
    assert_eq!(step["lock"]["mode"], "SHARE UPDATE EXCLUSIVE");
    insta::assert_snapshot!("plan_json", out);
}

#[test]
fn plan_human_and_markdown() {
    insta::assert_snapshot!(
        "plan_human",
        stdout_of(&["plan", "tests/fixtures/plan/0002_fk_and_index.sql"], 0)
    );
    let md = stdout_of(&["plan", "--format", "markdown", "tests/fixtures/plan/"], 0);
    assert!(
        md.contains("### `0002_fk_and_index`") && md.contains("```sql"),
        "{md}"
    );
}

#[test]
fn plan_sql_files_go_into_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = zdm()
        .args(["plan", "--format", "sql", "--out"])
        .arg(dir.path())
        .arg("tests/fixtures/plan/0002_fk_and_index.sql")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(out).unwrap().lines().count(),
        2,
        "expand and down-expand"
    );
    let expand = std::fs::read_to_string(dir.path().join("0002_fk_and_index.expand.sql")).unwrap();
    assert!(expand.contains("CREATE INDEX CONCURRENTLY orders_user_idx"));
    assert!(expand.contains("BEGIN;\nSET LOCAL lock_timeout = '1s';"));
}

#[test]
fn plan_refuses_what_cannot_run_online() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("1_vacuum.sql");
    std::fs::write(&file, "VACUUM FULL users;\n").unwrap();
    zdm().arg("plan").arg(&file).assert().code(1).stdout(
        predicate::str::contains("1_vacuum.sql:1")
            .and(predicate::str::contains("VACUUM FULL"))
            .and(predicate::str::contains("zdm:allow-locking")),
    );
}

/// A refused migration does not hide the others: every format lists it, and the ones after it
/// are planned against the schema it leaves as written.
#[test]
fn plan_of_a_folder_plans_every_migration_and_lists_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| std::fs::write(dir.path().join(name), sql).unwrap();
    write(
        "0001_init.sql",
        "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
    );
    write("0002_vacuum.sql", "SELECT 1;\nVACUUM FULL users;\n");
    write(
        "0003_rename.sql",
        "ALTER TABLE users ADD COLUMN name text;\n",
    );
    write(
        "0004_rename.sql",
        "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    );
    let out = zdm()
        .args(["plan", "--format", "json"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("0002_vacuum.sql:2"))
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ids: Vec<&str> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0001_init", "0003_rename", "0004_rename"]);
    assert_eq!(v["refused"][0]["line"], 2);
    assert!(
        v["refused"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("0002_vacuum.sql")
    );
    assert!(
        v["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("VACUUM FULL")
    );
    zdm()
        .args(["plan", "--format", "markdown"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("### Refused")
                .and(predicate::str::contains("0002_vacuum.sql:2"))
                .and(predicate::str::contains("0004_rename")),
        );
}

#[test]
fn plan_database_url_errors_name_the_target_without_the_password() {
    zdm()
        .args([
            "plan",
            "--database-url",
            "postgres://app:hunter2@127.0.0.1:1/prod",
        ])
        .arg("tests/fixtures/plan/0002_fk_and_index.sql")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("cannot connect to app@127.0.0.1:1/prod")
                .and(predicate::str::contains("hunter2").not()),
        );
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        zdm()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(
                // fish writes `-l lock-timeout`, the others `--lock-timeout`.
                predicate::str::contains("expand").and(predicate::str::contains("lock-timeout")),
            );
    }
    zdm()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH zdm").and(predicate::str::contains("contract")));
    zdm().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn every_command_has_examples_in_its_help() {
    for command in [
        "lint",
        "plan",
        "expand",
        "contract",
        "status",
        "abort",
        "rules",
        "explain",
        "completions",
        "man",
    ] {
        let out = zdm()
            .args([command, "--help"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("Example"),
            "`zdm {command} --help` has no example:\n{text}"
        );
    }
}

#[test]
fn init_writes_a_config_for_the_detected_layout() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("migrations/2024-01-01-120000_users");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("up.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE users;").unwrap();
    let run = |args: &[&str]| {
        let mut cmd = zdm();
        cmd.current_dir(project.path()).args(args);
        cmd.assert()
    };
    run(&["init"])
        .success()
        .stdout(predicate::str::contains("diesel migrations in migrations"));
    let config = std::fs::read_to_string(project.path().join("zdm.toml")).unwrap();
    assert!(config.contains("migrations = \"migrations\""), "{config}");
    assert!(config.contains("run_in_transaction = false"), "{config}");
    // The written file is valid: zdm lint reads it and the directory it names (and flags the
    // down migration's DROP TABLE).
    run(&["lint"])
        .code(1)
        .stdout(predicate::str::contains("2024-01-01-120000_users/down.sql"));
    run(&["init"])
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    run(&["init", "--force", "--pg-version", "16"]).success();
    assert!(
        std::fs::read_to_string(project.path().join("zdm.toml"))
            .unwrap()
            .contains("pg_version = 16")
    );
    let empty = tempfile::tempdir().unwrap();
    zdm()
        .current_dir(empty.path())
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no migrations folder found"));
}

/// A tool's no-transaction marker means each statement commits on its own, so validating a
/// constraint right after adding it NOT VALID is fine; without the marker it is flagged.
#[test]
fn no_transaction_markers_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let body = "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT t_a_check;\n";
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY, a int);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_plain.sql"),
        format!("SET lock_timeout = '1s';\n{body}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_sqlx.sql"),
        format!("-- no-transaction\nSET lock_timeout = '1s';\n{body}")
            .replace("t_a_check", "t_a_check3"),
    )
    .unwrap();
    let out = zdm()
        .args(["lint", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let same_tx: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "validate-in-same-transaction")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(same_tx.len(), 1, "{same_tx:?}");
    assert!(same_tx[0].ends_with("0002_plain.sql"), "{same_tx:?}");
}

#[test]
fn down_files_follow_the_lint_down_setting() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("migrations/2024-01-01-120000_users");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("up.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE users;").unwrap();
    let lint_with = |setting: Option<&str>| {
        let config = project.path().join("zdm.toml");
        let mut text = "migrations = \"migrations\"\n".to_owned();
        if let Some(s) = setting {
            text.push_str(&format!("[lint]\ndown = \"{s}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        let mut cmd = zdm();
        cmd.current_dir(project.path())
            .args(["lint", "--color", "never"]);
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, out) = lint_with(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("error[drop-table]") && out.contains("down.sql"),
        "{out}"
    );
    let (code, out) = lint_with(Some("warning"));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning[drop-table]") && out.contains("down.sql"),
        "{out}"
    );
    let (code, out) = lint_with(Some("off"));
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("down.sql"), "{out}");
}

/// `zdm lint … | head`: the reader goes away after a few lines; zdm ends quietly with 141, as
/// a tool killed by SIGPIPE would, instead of an error about a broken pipe or a panic.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let statements: String = (0..3000)
        .map(|i| format!("CREATE INDEX users_{i}_idx ON users (email);\n"))
        .collect();
    std::fs::write(dir.path().join("0001_indexes.sql"), statements).unwrap();
    for args in [
        vec!["lint", "--color", "never"],
        vec!["plan", "--format", "json"],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("zdm"))
            .args(&args)
            .arg(dir.path())
            .env_remove("ZDM_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 64];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is dropped here: later writes fail with EPIPE.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn plan_takes_color() {
    let coloured = stdout_of(&["plan", "--color", "always", "tests/fixtures/plan/"], 0);
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    let plain = stdout_of(&["plan", "--color", "never", "tests/fixtures/plan/"], 0);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert_eq!(
        plain,
        stdout_of(&["plan", "tests/fixtures/plan/"], 0),
        "not a terminal: no colour by default"
    );
    // Every command with human output takes it, before or after the command name.
    zdm().args(["--color", "never", "rules"]).assert().success();
    zdm()
        .args(["status", "--color", "never", "--help"])
        .assert()
        .success();
}

/// `runner = "zdm"`: what zdm plans online is a note on how it runs it; what it refuses, runs
/// with its lock, or drops at contract stays an error.
#[test]
fn the_gate_of_a_team_that_runs_zdm() {
    let out = stdout_of(
        &[
            "lint",
            "--runner",
            "zdm",
            "--color",
            "never",
            "tests/fixtures/unsafe",
        ],
        0,
    );
    insta::assert_snapshot!("runner_zdm_human", out);
    assert!(!out.contains("error["), "{out}");

    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, email text, name text, age int);",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_online.sql"),
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users ADD COLUMN nick text;\nUPDATE users SET nick = name WHERE nick IS NULL;\nCREATE INDEX users_email_idx ON users (email);\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
    )
    .unwrap();
    std::fs::write(project.path().join("zdm.toml"), "runner = \"zdm\"\n").unwrap();
    let lint = |extra: &[&str]| {
        let out = zdm()
            .current_dir(project.path())
            .args(["lint", "--color", "never", "--format", "json"])
            .args(extra)
            .arg("migrations")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let findings: Vec<(String, String, u64)> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["severity"].as_str().unwrap().to_owned(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect();
        (out.status.code(), findings)
    };
    let (code, findings) = lint(&[]);
    assert_eq!(code, Some(0), "{findings:?}");
    assert!(
        findings.iter().all(|(_, severity, _)| severity == "note"),
        "{findings:?}"
    );
    let lines: Vec<u64> = findings.iter().map(|f| f.2).collect();
    assert_eq!(
        lines,
        [1, 3, 4, 5],
        "one note per statement zdm runs online"
    );
    // The flag wins over zdm.toml: run as written, the same file is full of errors.
    let (code, findings) = lint(&["--runner", "other"]);
    assert_eq!(code, Some(1));
    assert!(
        findings.iter().any(|(_, s, _)| s == "error"),
        "{findings:?}"
    );

    // A drop stays an error, tied to contract; a refusal and an accepted lock too.
    std::fs::write(
        dir.join("0003_rest.sql"),
        "ALTER TABLE users DROP COLUMN name;\n",
    )
    .unwrap();
    std::fs::write(dir.join("0004_vacuum.sql"), "VACUUM FULL users;\n").unwrap();
    std::fs::write(
        dir.join("0005_lock.sql"),
        "-- zdm:allow-locking -- a quiet hour\nLOCK TABLE users IN ACCESS EXCLUSIVE MODE;\n",
    )
    .unwrap();
    let out = zdm()
        .current_dir(project.path())
        .args(["lint", "--color", "never", "migrations"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error[drop-column]") && text.contains("before `zdm contract`"),
        "{text}"
    );
    assert!(
        text.contains("error[vacuum-full]") && text.contains("zdm refuses to run this migration"),
        "{text}"
    );
    assert!(
        text.contains("error[lock-table]") && text.contains("zdm:allow-locking"),
        "{text}"
    );
    // In GitHub annotations a note is a notice.
    let out = zdm()
        .current_dir(project.path())
        .args(["lint", "--format", "github", "migrations/0002_online.sql"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("::notice file="), "{text}");
}

#[test]
fn init_writes_the_runner() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("migrations")).unwrap();
    std::fs::write(
        project.path().join("migrations/0001_users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);",
    )
    .unwrap();
    let init = |args: &[&str]| {
        zdm()
            .current_dir(project.path())
            .arg("init")
            .args(args)
            .assert()
            .success();
        std::fs::read_to_string(project.path().join("zdm.toml")).unwrap()
    };
    assert!(
        init(&[]).contains("runner = \"other\""),
        "no terminal, no CI file"
    );
    std::fs::create_dir_all(project.path().join(".github/workflows")).unwrap();
    std::fs::write(
        project.path().join(".github/workflows/deploy.yml"),
        "steps:\n  - run: zdm expand migrations/\n",
    )
    .unwrap();
    assert!(
        init(&["--force"]).contains("runner = \"zdm\""),
        "detected from CI"
    );
    assert!(init(&["--force", "--runner", "other"]).contains("runner = \"other\""));
    zdm()
        .current_dir(project.path())
        .args(["lint", "migrations"])
        .assert()
        .success();
}
