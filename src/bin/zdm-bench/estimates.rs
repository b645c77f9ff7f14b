//! How close `zdm plan --database-url`'s estimates come to the steps they estimate: a table of
//! users (and the organisations they reference) is built at each size, planned through the
//! binary, then expanded, and each step's estimate is set beside its duration in the expand's
//! log. The target is 0.5×–2× for the backfill, the index build and the validations.

use std::process::Command;

use serde::Serialize;
use zdm::db::ConnectOptions;

/// A type change (a backfill), an index, a CHECK and a foreign key, each validated online.
const MIGRATION: &str = "\
ALTER TABLE users ALTER COLUMN age TYPE bigint;
CREATE INDEX users_name_idx ON users (name);
ALTER TABLE users ADD CONSTRAINT org_id_positive CHECK (org_id > 0);
ALTER TABLE users ADD CONSTRAINT users_org FOREIGN KEY (org_id) REFERENCES orgs (id);
";

/// The steps the target applies to, with what they do.
pub const COMPARED: [(&str, &str); 4] = [
    ("backfill-1", "backfill (type change)"),
    ("expand-3", "CREATE INDEX CONCURRENTLY"),
    ("expand-5", "VALIDATE CHECK"),
    ("expand-7", "VALIDATE FOREIGN KEY"),
];

#[derive(Debug, Serialize)]
pub struct EstimateResult {
    pub rows: u64,
    /// (step, estimated seconds, measured seconds), for the compared steps.
    pub steps: Vec<(String, f64, f64)>,
    /// Seconds `zdm plan --database-url` took, calibration included.
    pub plan_seconds: f64,
}

pub async fn estimates(admin: &ConnectOptions, rows: u64) -> anyhow::Result<EstimateResult> {
    let db = "zdm_bench_estimate";
    let c = admin.connect().await?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await?;
    c.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    let options = admin.with_dbname(db);
    let t = options.connect().await?;
    t.batch_execute(&format!(
        "CREATE TABLE orgs (id int PRIMARY KEY);
         INSERT INTO orgs SELECT g FROM generate_series(1, 1000) g;
         CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                             name text NOT NULL, age int, org_id int);
         INSERT INTO users (name, age, org_id)
         SELECT 'user number ' || g, g % 90, 1 + g % 1000 FROM generate_series(1, {rows}) g;"
    ))
    .await?;
    t.batch_execute("VACUUM ANALYZE users").await?;
    t.batch_execute("VACUUM ANALYZE orgs").await?;
    t.batch_execute("CHECKPOINT").await?;
    drop(t);
    let dir = std::env::temp_dir().join(format!("zdm-bench-estimate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("0001_widen.sql"), MIGRATION)?;
    let url = format!("postgres://{}", options.target);
    let zdm = super::process::zdm_binary()?;

    let began = std::time::Instant::now();
    let plan = Command::new(&zdm)
        .args(["plan", "--format", "json", "--database-url", &url])
        .arg(&dir)
        .env_remove("ZDM_CONFIG")
        .output()?;
    let plan_seconds = began.elapsed().as_secs_f64();
    anyhow::ensure!(
        plan.status.success(),
        "zdm plan failed: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout)?;
    let migration = &plan["migrations"][0];
    let estimate_of = |id: &str| -> Option<f64> {
        if id.starts_with("backfill-") {
            return migration["backfill"][0]["estimated_seconds"].as_f64();
        }
        migration["expand"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == id)?["estimated_seconds"]
            .as_f64()
    };

    let expand = Command::new(&zdm)
        .args(["expand", "--database-url", &url])
        .arg(&dir)
        .env("ZDM_LOG", "zdm=info")
        .env_remove("ZDM_CONFIG")
        .output()?;
    let log = String::from_utf8_lossy(&expand.stderr);
    anyhow::ensure!(expand.status.success(), "zdm expand failed: {log}");
    let mut steps = Vec::new();
    for (id, _) in COMPARED {
        let measured = log
            .lines()
            .filter(|l| l.contains(&format!("step={id} ")) || l.contains(&format!("step=\"{id}\"")))
            .find_map(|l| {
                let at = l.find(" seconds=\"")? + " seconds=\"".len();
                l[at..].split('"').next()?.parse::<f64>().ok()
            });
        let (Some(estimated), Some(measured)) = (estimate_of(id), measured) else {
            anyhow::bail!("no estimate or no duration for {id}:\n{log}");
        };
        steps.push((id.to_owned(), estimated, measured));
    }
    let _ = std::fs::remove_dir_all(&dir);
    admin
        .connect()
        .await?
        .batch_execute(&format!("DROP DATABASE {db}"))
        .await?;
    Ok(EstimateResult {
        rows,
        steps,
        plan_seconds,
    })
}
