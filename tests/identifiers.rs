//! The executor on awkward schemas: a non-public schema and identifiers with spaces, quotes,
//! unicode, reserved words and the full 63 bytes; an identity `GENERATED ALWAYS` key (which
//! no backfill may write); and a table without any key, whose backfill walks `ctid` ranges.
//! Expand, abort, expand, contract, with both application versions' writes checked.

mod common;

use zdm::db::{RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::plan_set;
use zdm::source::MigrationSet;

/// 63 bytes: the longest identifier PostgreSQL keeps.
const LONG: &str = "a_column_name_that_uses_every_one_of_the_sixty_three_bytes_allo";

#[test]
fn quoted_names_identity_keys_and_keyless_tables() {
    assert_eq!(LONG.len(), 63);
    let Some(db) = common::TestDatabase::create("identifiers") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_schema.sql"),
        format!(
            r#"CREATE SCHEMA "My App";
CREATE TABLE "My App"."Order Items" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "select" int NOT NULL,
    "a""b" int,
    "名前" text,
    {LONG} text
);
CREATE TABLE "My App".nokey (a int, b text, "Note" text);
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_change.sql"),
        format!(
            r#"ALTER TABLE "My App"."Order Items" RENAME COLUMN "名前" TO "表示名";
ALTER TABLE "My App"."Order Items" ALTER COLUMN "a""b" TYPE bigint;
CREATE INDEX "select idx" ON "My App"."Order Items" ("select");
ALTER TABLE "My App"."Order Items" ADD COLUMN "from" uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE "My App"."Order Items" RENAME COLUMN {LONG} TO b_{short};
UPDATE "My App".nokey SET b = a::text WHERE b IS NULL;
ALTER TABLE "My App".nokey RENAME COLUMN "Note" TO "Remark";
"#,
            short = &LONG[..40]
        ),
    )
    .unwrap();
    let set = MigrationSet::load(dir.path(), None).unwrap();
    let plans = plan_set(&set, &LintOptions::default(), None)
        .all_planned()
        .unwrap();
    assert!(
        plans[1].backfill.iter().any(|b| b.key.is_empty()),
        "the keyless table is walked by ctid"
    );
    let short = &LONG[..40];
    let old_app = format!(
        r#"INSERT INTO "My App"."Order Items" ("select", "a""b", "名前", {LONG}) VALUES (1, 2147483647, 'old', 'long-old');
UPDATE "My App"."Order Items" SET "名前" = 'renamed-by-old' WHERE id = 1;
INSERT INTO "My App".nokey (a, "Note") VALUES (-1, 'old note');"#
    );
    let new_app = format!(
        r#"INSERT INTO "My App"."Order Items" ("select", "a""b", "表示名", b_{short}) VALUES (2, 3, 'new', 'long-new');
UPDATE "My App"."Order Items" SET "表示名" = 'renamed-by-new' WHERE id = 2;
INSERT INTO "My App".nokey (a, b, "Remark") VALUES (-2, '-2', 'new note');"#
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = zdm::db::connect(&url).await.unwrap();
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let mut runner = Runner::start(&mut rc, RunOptions::default()).await.unwrap();
        runner.expand(&plans[..1]).await.unwrap();
        runner.contract(&plans[..1]).await.unwrap();
        c.batch_execute(&format!(
            r#"INSERT INTO "My App"."Order Items" ("select", "a""b", "名前", {LONG})
                 SELECT g, g, 'name ' || g, 'long ' || g FROM generate_series(1, 3000) g;
               INSERT INTO "My App".nokey (a, "Note") SELECT g, 'note ' || g FROM generate_series(1, 3000) g;"#
        ))
        .await
        .unwrap();

        runner.expand(&plans).await.unwrap_or_else(|e| panic!("expand: {e}"));
        c.batch_execute(&old_app).await.unwrap();
        runner.abort(&plans).await.unwrap_or_else(|e| panic!("abort: {e}"));
        c.batch_execute(&old_app).await.unwrap();
        runner.expand(&plans).await.unwrap_or_else(|e| panic!("expand again: {e}"));
        c.batch_execute(&old_app).await.unwrap();
        c.batch_execute(&new_app).await.unwrap();
        runner.contract(&plans).await.unwrap_or_else(|e| panic!("contract: {e}"));
        c.batch_execute(&new_app).await.unwrap();

        let check = |sql: String| {
            let c = &c;
            async move {
                let ok: bool = c.query_one(&sql, &[]).await.unwrap().get(0);
                assert!(ok, "`{sql}` is false");
            }
        };
        let items = r#""My App"."Order Items""#;
        check(format!(r#"SELECT bool_and("表示名" = 'name ' || id) FROM {items} WHERE id BETWEEN 3 AND 3000"#)).await;
        check(format!(r#"SELECT bool_and(b_{short} = 'long ' || id) FROM {items} WHERE id <= 3000"#)).await;
        check(format!(r#"SELECT "表示名" = 'renamed-by-old' FROM {items} WHERE id = 1"#)).await;
        check(format!(r#"SELECT "表示名" = 'renamed-by-new' FROM {items} WHERE id = 2"#)).await;
        check(format!(r#"SELECT bool_and("from" IS NOT NULL) AND count(DISTINCT "from") = count(*) FROM {items}"#)).await;
        check(format!(r#"SELECT max("a""b") = 2147483647 FROM {items}"#)).await;
        check(format!(
            r#"SELECT format_type(atttypid, atttypmod) = 'bigint' FROM pg_attribute WHERE attrelid = '{}'::regclass AND attname = 'a"b'"#,
            items.replace('\'', "''")
        ))
        .await;
        check(r#"SELECT indisvalid FROM pg_index WHERE indexrelid = '"My App"."select idx"'::regclass"#.to_owned()).await;
        check(r#"SELECT bool_and(b = a::text) FROM "My App".nokey"#.to_owned()).await;
        check(r#"SELECT bool_and("Remark" = 'note ' || a) FROM "My App".nokey WHERE a > 0"#.to_owned()).await;
        check(r#"SELECT count(*) = 3000 FROM "My App".nokey WHERE a > 0"#.to_owned()).await;
        let status = zdm::db::status(&c, &plans).await.unwrap();
        assert!(status.iter().all(|s| s.status == "done"), "{status:?}");
    });
}
