//! The executor commands as CI stages call them, on `migrations-example/`: expand, the deploy
//! gate, contract, until everything is done. Needs DATABASE_URL (scripts/test provides it).

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn zdm(url: &str) -> Command {
    let mut cmd = Command::cargo_bin("zdm").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG");
    cmd
}

#[test]
fn expand_gate_contract_on_the_example() {
    let Some(db) = common::TestDatabase::create("cli_run") else {
        return;
    };
    let url = db.url_of_database();
    let dir = "migrations-example";
    zdm(&url)
        .args(["status", "--check", dir])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("0001_create_users").and(predicate::str::contains("pending")),
        );
    // 0005 changes orders, whose 0004 contract is still to run: expand stops there and says so.
    zdm(&url)
        .args(["expand", dir])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "needs the contract of 0004_orders_amount_bigint",
        ));
    zdm(&url).args(["contract", dir]).assert().code(0);
    zdm(&url).args(["expand", dir]).assert().code(0);
    zdm(&url).args(["status", "--check", dir]).assert().code(1);
    zdm(&url).args(["contract", dir]).assert().code(0);
    let out = zdm(&url)
        .args(["status", "--format", "json", "--check", dir])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 7);
    assert!(v.as_array().unwrap().iter().all(|m| m["status"] == "done"));
    zdm(&url)
        .args(["expand", dir])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nothing to expand"));
}
