//! The catalog read from a live database matches the one replayed from the migrations that
//! built it, so `zdm plan --database-url` and `zdm plan` agree.

mod common;

use zdm::catalog::Catalog;
use zdm::lint::LintOptions;
use zdm::parse::{ConstraintKind, Name};
use zdm::plan::{PlanFormat, plan_set, render};
use zdm::source::{MigrationSet, SourceFile};

const SCHEMA: &str = "
CREATE SCHEMA app;
CREATE TABLE app.\"User\" (id serial PRIMARY KEY, \"E-mail\" varchar(200) NOT NULL, plan text DEFAULT 'free', score numeric(10,2));
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id int REFERENCES app.\"User\" (id), note text);
CREATE INDEX orders_user_idx ON orders (user_id);
CREATE UNIQUE INDEX orders_note_lower ON orders (lower(note));
ALTER TABLE orders ADD CONSTRAINT note_short CHECK (length(note) < 100) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT note_present CHECK (note IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT note_present;
CREATE VIEW user_emails AS SELECT \"E-mail\" FROM app.\"User\";
";

const MIGRATION: &str = "ALTER TABLE app.\"User\" ALTER COLUMN score TYPE numeric(12,2);
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
ALTER TABLE app.\"User\" RENAME COLUMN plan TO tier;
CREATE INDEX ON app.\"User\" (\"E-mail\");";

#[test]
fn live_catalog_matches_the_replayed_one() {
    let Some(db) = common::TestDatabase::create("introspect") else {
        return;
    };
    db.connect().batch_execute(SCHEMA).unwrap();
    let url = db.url_of_database();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let live = runtime.block_on(async {
        let client = zdm::db::connect(&url).await.unwrap();
        zdm::db::introspect(&client, "test").await.unwrap()
    });

    let user = live
        .table(&Name::new(Some("app"), "User"))
        .expect("app.User");
    let email = user.column("E-mail").unwrap();
    assert_eq!(
        (
            email.ty.name.as_str(),
            email.ty.modifiers.as_slice(),
            email.not_null
        ),
        ("varchar", &[200][..], true)
    );
    assert!(user.column("id").unwrap().has_default);
    assert_eq!(user.column("score").unwrap().ty.modifiers, vec![10, 2]);
    let orders = live
        .table(&Name::new(None, "orders"))
        .expect("public.orders is found unqualified");
    assert!(orders.column("id").unwrap().identity);
    assert!(orders.has_valid_not_null_proof("note"));
    assert!(
        orders
            .constraints
            .iter()
            .any(|c| !c.valid && matches!(c.kind, ConstraintKind::Check { .. }))
    );
    assert!(orders.constraints.iter().any(|c| matches!(&c.kind, ConstraintKind::ForeignKey { references, .. } if references.name == "User")));
    let idx = live.index(&Name::new(None, "orders_user_idx")).unwrap();
    assert_eq!(idx.columns, vec!["user_id"]);
    assert!(
        live.index(&Name::new(None, "orders_note_lower"))
            .unwrap()
            .columns
            .is_empty(),
        "expression index"
    );

    // The database knows which columns a view uses; replayed migrations only the table.
    let user = Name::new(Some("app"), "User");
    assert_eq!(
        live.views_using(&user, "E-mail"),
        vec![Name::new(None, "user_emails")]
    );
    assert!(live.views_using(&user, "score").is_empty());
    assert_eq!(
        Catalog::from_sql(SCHEMA).views_using(&user, "score").len(),
        1
    );

    // The same migration planned from either catalog.
    let set = MigrationSet::single(SourceFile::from_text(
        std::path::Path::new("0002_x.sql"),
        MIGRATION.to_owned(),
    ));
    let options = LintOptions::default();
    let from_db = render(
        &plan_set(&set, &options, Some(live)).all_planned().unwrap(),
        &[],
        PlanFormat::Human,
    );
    let from_files = render(
        &plan_set(&set, &options, Some(Catalog::from_sql(SCHEMA)))
            .all_planned()
            .unwrap(),
        &[],
        PlanFormat::Human,
    );
    assert_eq!(from_db, from_files);
}
