//! `zdm verify` over every project of the shared migration corpus (`../shared/corpus`, when it
//! is there): every migration zdm plans as more than the SQL as written must leave, after
//! expand and contract on seeded data, the schema and the rows the SQL as written leaves, with
//! both application versions' reads and writes working between the phases. Prints the counts
//! (compared, equal, refused, not comparable, as written) and the time of each project.
//!
//! The projects run two at a time, each through the binary as a user runs it. Needs
//! DATABASE_URL on a server where databases may be created (scripts/test provides one).
//! `ZDM_CORPUS_VERIFY=0` skips it (for quick local runs); CI always runs it.
//! `ZDM_CORPUS_VERIFY_BUDGET` (seconds, default 2400) bounds it on a slow machine: projects not
//! started within it are named as skipped, and the counts say how many were verified.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use assert_cmd::Command;
use serde_json::Value;

/// What one project's run gave.
struct ProjectResult {
    name: String,
    counts: Value,
    failures: Vec<String>,
    seconds: f64,
}

fn verify_project(url: &str, project: &Path) -> ProjectResult {
    let started = Instant::now();
    let out = Command::cargo_bin("zdm")
        .unwrap()
        .env_remove("ZDM_CONFIG")
        .args(["verify", "--format", "json", "--database-url", url])
        .arg(project)
        .output()
        .unwrap();
    let name = project.file_name().unwrap().to_string_lossy().into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Ok(doc) = serde_json::from_str::<Value>(&stdout) else {
        return ProjectResult {
            name,
            counts: Value::Null,
            failures: vec![format!(
                "exit {:?}, no report: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )],
            seconds: started.elapsed().as_secs_f64(),
        };
    };
    let failures = doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| matches!(m["outcome"].as_str(), Some("different" | "failed")))
        .map(|m| {
            format!(
                "{}: {}: {}",
                m["path"].as_str().unwrap_or("?"),
                m["outcome"].as_str().unwrap_or("?"),
                m["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    ProjectResult {
        name,
        counts: doc["counts"].clone(),
        failures,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[test]
fn every_planned_corpus_migration_verifies_equal() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("skipped: {} not found", corpus.display());
        return;
    }
    if std::env::var("ZDM_CORPUS_VERIFY").as_deref() == Ok("0") {
        eprintln!("skipped: ZDM_CORPUS_VERIFY=0");
        return;
    }
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run scripts/test, which finds or starts PostgreSQL");
    let mut projects: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    projects.sort();
    let started = Instant::now();
    let budget = std::env::var("ZDM_CORPUS_VERIFY_BUDGET")
        .ok()
        .and_then(|b| b.parse().ok())
        .map_or(
            std::time::Duration::from_secs(2400),
            std::time::Duration::from_secs,
        );
    let skipped = Mutex::new(Vec::new());
    let queue = Mutex::new(projects);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(project) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    if started.elapsed() > budget {
                        skipped.lock().unwrap().push(project);
                        continue;
                    }
                    let r = verify_project(&url, &project);
                    eprintln!(
                        "{:<14} {:>6.0} s  {}",
                        r.name,
                        r.seconds,
                        serde_json::to_string(&r.counts).unwrap()
                    );
                    results.lock().unwrap().push(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    for project in skipped.into_inner().unwrap() {
        eprintln!(
            "SKIPPED {}: ZDM_CORPUS_VERIFY_BUDGET ({} s) ran out before it started",
            project.display(),
            budget.as_secs()
        );
    }
    let total = |key: &str| -> u64 {
        results
            .iter()
            .map(|r| r.counts[key].as_u64().unwrap_or(0))
            .sum()
    };
    let mut summary: String = results
        .iter()
        .map(|r| {
            format!(
                "{:<14} {:>5.0} s  {}\n",
                r.name,
                r.seconds,
                serde_json::to_string(&r.counts).unwrap()
            )
        })
        .collect();
    summary.push_str(&format!(
        "corpus: {} equal, {} different, {} failed, {} refused, {} not comparable, {} as written; {:.0} s\n",
        total("equal"),
        total("different"),
        total("failed"),
        total("refused"),
        total("not_comparable"),
        total("as_written"),
        started.elapsed().as_secs_f64()
    ));
    eprint!("{summary}");
    // The test harness shows output only when a test fails; scripts/test prints this file so
    // that the figures are in every CI log.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus-verify-summary.txt"),
        &summary,
    );
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.failures).collect();
    assert!(
        failures.is_empty(),
        "{} migrations differ from their SQL as written or fail in expand/contract:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(total("equal") > 0, "nothing was compared");
}
