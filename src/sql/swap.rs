//! The statements of a type change's swap transaction that are PL/pgSQL blocks: they read
//! what PostgreSQL holds about the old column at the moment of the swap (its identity
//! sequence, comment, statistics target, column grants) and carry it to the shadow, and they
//! prove, before anything is dropped, that every index and constraint built on the shadow is
//! the original's twin.

use super::{Ident, Name, Qualified, literal};

/// A `DO` block whose `RAISE` message says what zdm found and that nothing changed.
fn block(declare: &str, body: &str) -> String {
    format!("DO $zdm$\nDECLARE\n{declare}BEGIN\n{body}END\n$zdm$")
}

/// An index or constraint built on the shadow, and the original it stands in for.
pub struct Twin<'a> {
    pub kind: TwinKind,
    /// The table the object is on (a foreign key's referencing table).
    pub table: &'a Name,
    pub original: &'a str,
    pub copy: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinKind {
    Index,
    Constraint,
}

/// A definition without casts and parentheses: PostgreSQL stores an expression over the
/// column with the casts its type needs (`lower(label)` on a text column is
/// `lower((label)::text)` on a varchar one), as its own ALTER COLUMN … TYPE does, so those may
/// differ between the original and the copy; the rest (columns, functions, operator classes,
/// collations, order, INCLUDE, WHERE, actions) may not.
fn without_casts(variable: &str) -> String {
    format!(
        "translate(regexp_replace({variable}, '::(character varying|timestamp with(out)? time zone|time with(out)? time zone|double precision|bit varying|\"[^\"]+\"|[a-z_][a-z0-9_.]*)(\\([0-9, ]*\\))?(\\[\\])*', '', 'g'), '()', '')"
    )
}

/// Raises unless PostgreSQL's own definition of each copy, with the shadow's name read as the
/// column's and the copy's name as the original's, is exactly the original's definition: the
/// rebuilt index has the same method, keys, operator classes, collations, INCLUDE and WHERE;
/// the constraint the same expression, columns, actions and deferral (casts the new type
/// needs aside, see [`without_casts`]). Run in the swap before
/// anything is dropped, so a copy that differs stops the contract with nothing changed.
pub fn prove_twins(column: &str, shadow: &str, twins: &[Twin]) -> Option<String> {
    if twins.is_empty() {
        return None;
    }
    let mut body = String::new();
    for twin in twins {
        let schema = |name: &str| Name::in_schema_of(twin.table, name);
        let (original, copy) = match twin.kind {
            TwinKind::Index => (
                format!(
                    "pg_get_indexdef({}::regclass)",
                    literal(&Qualified(&schema(twin.original)).to_string())
                ),
                format!(
                    "pg_get_indexdef({}::regclass)",
                    literal(&Qualified(&schema(twin.copy)).to_string())
                ),
            ),
            TwinKind::Constraint => {
                let of = |name: &str| {
                    format!(
                        "(SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = {}::regclass AND conname = {})",
                        literal(&Qualified(twin.table).to_string()),
                        literal(name)
                    )
                };
                (of(twin.original), of(twin.copy))
            }
        };
        body.push_str(&format!(
            "  original := {original};\n  copy := replace(replace({copy}, quote_ident({shadow}), quote_ident({column})), quote_ident({copy_name}), quote_ident({original_name}));\n  IF {copy_bare} IS DISTINCT FROM {original_bare} THEN\n    RAISE EXCEPTION 'zdm: % was built on the shadow as %, which is not the same as %; nothing was changed: drop the copy % and build it again on the shadow with the original''s definition (CONCURRENTLY for an index; NOT VALID, then VALIDATE, for a constraint), then run zdm contract again', {original_name}, coalesce(copy, 'nothing'), coalesce(original, 'nothing'), {copy_name};\n  END IF;\n",
            shadow = literal(shadow),
            column = literal(column),
            copy_name = literal(twin.copy),
            original_name = literal(twin.original),
            copy_bare = without_casts("copy"),
            original_bare = without_casts("original"),
        ));
    }
    Some(block("  original text;\n  copy text;\n", &body))
}

/// The transaction-local setting that carries an identity's sequence from before the old
/// column is dropped to after the shadow takes its name.
const IDENTITY_SETTING: &str = "zdm.identity";

/// Before the old column is dropped (which drops its identity sequence): remembers the
/// identity's kind, the sequence's name, options and position. An identity column of an
/// integer type has its type's bounds; bounds that are the old type's own limits are not kept,
/// so the moved identity gets the new type's range (the reason for a change to bigint).
pub fn remember_identity(table: &Name, column: &str) -> String {
    let table_literal = literal(&Qualified(table).to_string());
    block(
        "  seq regclass;\n  s pg_sequence;\n  last bigint;\n  called boolean;\n  kind \"char\";\n  type_min bigint;\n  type_max bigint;\n",
        &format!(
            "  seq := pg_get_serial_sequence({table_literal}, {column})::regclass;\n  SELECT * INTO s FROM pg_sequence WHERE seqrelid = seq;\n  EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;\n  SELECT attidentity INTO kind FROM pg_attribute WHERE attrelid = {table_literal}::regclass AND attname = {column};\n  SELECT CASE s.seqtypid WHEN 'int2'::regtype THEN -32768 WHEN 'int4'::regtype THEN -2147483648 ELSE NULL END,\n         CASE s.seqtypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 ELSE NULL END\n    INTO type_min, type_max;\n  PERFORM set_config({setting}, json_build_object(\n    'always', kind = 'a', 'sequence', seq::text, 'increment', s.seqincrement, 'start', s.seqstart,\n    'min', CASE WHEN s.seqmin IN (1, type_min) AND s.seqincrement > 0 OR s.seqmin = type_min THEN NULL ELSE s.seqmin END,\n    'max', CASE WHEN s.seqmax IN (-1, type_max) AND s.seqincrement < 0 OR s.seqmax = type_max THEN NULL ELSE s.seqmax END,\n    'cache', s.seqcache, 'cycle', s.seqcycle, 'last', last, 'called', called)::text, true);\n",
            column = literal(column),
            setting = literal(IDENTITY_SETTING),
        ),
    )
}

/// After the shadow took the column's name: makes it the identity it was, under the same
/// sequence name, at the same position.
pub fn restore_identity(table: &Name, column: &str) -> String {
    block(
        "  i json := current_setting('zdm.identity')::json;\n",
        &format!(
            "  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (SEQUENCE NAME %s INCREMENT BY %s START WITH %s %s %s CACHE %s %s)',\n    {table}, {column}, CASE WHEN (i->>'always')::boolean THEN 'ALWAYS' ELSE 'BY DEFAULT' END, i->>'sequence',\n    i->>'increment', i->>'start',\n    coalesce('MINVALUE ' || (i->>'min'), 'NO MINVALUE'), coalesce('MAXVALUE ' || (i->>'max'), 'NO MAXVALUE'),\n    i->>'cache', CASE WHEN (i->>'cycle')::boolean THEN 'CYCLE' ELSE 'NO CYCLE' END);\n  PERFORM setval((i->>'sequence')::regclass, (i->>'last')::bigint, (i->>'called')::boolean);\n",
            table = literal(&Qualified(table).to_string()),
            column = literal(column),
        ),
    )
}

/// What PostgreSQL keeps on a column besides its type, which `DROP COLUMN` would lose: its
/// comment, statistics target and column-level grants, copied from the old column to the
/// shadow before the old one is dropped.
pub fn carry_column_properties(table: &Name, column: &str, shadow: &str) -> String {
    let table_literal = literal(&Qualified(table).to_string());
    block(
        "  a pg_attribute;\n  g record;\n",
        &format!(
            "  SELECT * INTO a FROM pg_attribute WHERE attrelid = {table_literal}::regclass AND attname = {column};\n  IF col_description(a.attrelid, a.attnum) IS NOT NULL THEN\n    EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', {table_literal}, {shadow}, col_description(a.attrelid, a.attnum));\n  END IF;\n  IF coalesce(a.attstattarget, -1) >= 0 THEN\n    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', {table_literal}, {shadow}, a.attstattarget);\n  END IF;\n  FOR g IN SELECT * FROM aclexplode(a.attacl) LOOP\n    EXECUTE format('GRANT %s (%I) ON %s TO %s%s', g.privilege_type, {shadow}, {table_literal},\n      CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,\n      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);\n  END LOOP;\n",
            column = literal(column),
            shadow = literal(shadow),
        ),
    )
}

/// `ALTER TABLE … RENAME CONSTRAINT copy TO original`.
pub fn rename_constraint(table: &Name, copy: &str, original: &str) -> String {
    format!(
        "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
        Qualified(table),
        Ident(copy),
        Ident(original)
    )
}

/// The transaction-local setting that carries the views on the column across the swap.
const VIEWS_SETTING: &str = "zdm.views";

/// PostgreSQL cannot drop a column a view reads, or change its type; the swap drops the views
/// that read the old column (remembering each one's definition, options such as
/// `security_invoker` and `check_option`, owner, grants and comment) and creates them again
/// over the new column in the same transaction, so that no query ever finds them missing.
/// A view that another view or a materialized view reads, a materialized view on the column,
/// and a view with rules or INSTEAD OF triggers are not moved: the block raises, naming them,
/// and nothing changes.
pub fn save_and_drop_views(table: &Name, column: &str) -> String {
    let table_literal = literal(&Qualified(table).to_string());
    block(
        "  views oid[];\n  saved json;\n  blocker text;\n  v oid;\n",
        &format!(
            "  views := ARRAY(\n    SELECT DISTINCT c.oid\n    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class\n    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass\n      AND d.refobjid = {table_literal}::regclass AND c.oid <> {table_literal}::regclass\n      AND d.refobjsubid = (SELECT attnum FROM pg_attribute WHERE attrelid = {table_literal}::regclass AND attname = {column}));\n  SELECT string_agg(x, ', ') INTO blocker FROM (\n    SELECT format('materialized view %s', c.oid::regclass) AS x FROM pg_class c WHERE c.oid = ANY(views) AND c.relkind = 'm'\n    UNION ALL SELECT DISTINCT format('view %s, which reads %s', o.oid::regclass, d.refobjid::regclass)\n      FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class o ON o.oid = r.ev_class\n      WHERE d.refobjid = ANY(views) AND d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_rewrite'::regclass AND o.oid <> d.refobjid\n    UNION ALL SELECT format('the rule %s on view %s', r.rulename, r.ev_class::regclass) FROM pg_rewrite r WHERE r.ev_class = ANY(views) AND r.rulename <> '_RETURN'\n    UNION ALL SELECT format('the trigger %s on view %s', t.tgname, t.tgrelid::regclass) FROM pg_trigger t WHERE t.tgrelid = ANY(views)) AS blockers;\n  IF blocker IS NOT NULL THEN\n    RAISE EXCEPTION 'zdm: the swap of %.% would have to drop and create again %, which zdm does not do; nothing was changed: drop them (and create them again after contract), then run zdm contract again', {table_text}, {column}, blocker;\n  END IF;\n  SELECT coalesce(json_agg(json_build_object(\n      'name', c.oid::regclass::text, 'definition', pg_get_viewdef(c.oid),\n      'options', (SELECT string_agg(o, ', ') FROM unnest(c.reloptions) AS o),\n      'owner', c.relowner::regrole::text, 'comment', obj_description(c.oid, 'pg_class'),\n      'grants', coalesce((SELECT json_agg(json_build_object('privilege', a.privilege_type,\n          'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,\n          'grantable', a.is_grantable)) FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner), '[]'::json))\n    ORDER BY c.oid), '[]') INTO saved\n  FROM pg_class c WHERE c.oid = ANY(views);\n  PERFORM set_config({setting}, saved::text, true);\n  FOREACH v IN ARRAY views LOOP\n    EXECUTE format('DROP VIEW %s', v::regclass);\n  END LOOP;\n",
            column = literal(column),
            table_text = literal(&table.to_string().replace('%', "%%")),
            setting = literal(VIEWS_SETTING),
        ),
    )
}

/// After the shadow took the column's name: the views dropped by [`save_and_drop_views`], as
/// they were.
pub fn recreate_views() -> String {
    block(
        "  v json;\n  g json;\n",
        &format!(
            "  FOR v IN SELECT * FROM json_array_elements(current_setting({setting})::json) LOOP\n    EXECUTE format('CREATE VIEW %s%s AS %s', v->>'name',\n      coalesce(' WITH (' || (v->>'options') || ')', ''), v->>'definition');\n    EXECUTE format('ALTER VIEW %s OWNER TO %s', v->>'name', v->>'owner');\n    IF v->>'comment' IS NOT NULL THEN\n      EXECUTE format('COMMENT ON VIEW %s IS %L', v->>'name', v->>'comment');\n    END IF;\n    FOR g IN SELECT * FROM json_array_elements(v->'grants') LOOP\n      EXECUTE format('GRANT %s ON %s TO %s%s', g->>'privilege', v->>'name', g->>'grantee',\n        CASE WHEN (g->>'grantable')::boolean THEN ' WITH GRANT OPTION' ELSE '' END);\n    END LOOP;\n  END LOOP;\n",
            setting = literal(VIEWS_SETTING),
        ),
    )
}

/// PostgreSQL 18 records NOT NULL as a constraint with a name (`t_c_not_null`, or the one the
/// migration gave). The shadow's is named after the shadow; before the old column is dropped
/// this remembers the old one's name, and after the rename [`restore_not_null_name`] gives it
/// to the new column's. Before 18 both blocks do nothing.
pub fn remember_not_null_name(table: &Name, column: &str) -> String {
    block(
        "",
        &format!(
            "  PERFORM set_config('zdm.not_null', coalesce(({}), ''), true);\n",
            not_null_name(table, column)
        ),
    )
}

/// See [`remember_not_null_name`].
pub fn restore_not_null_name(table: &Name, column: &str) -> String {
    block(
        "  n text;\n  wanted text := current_setting('zdm.not_null', true);\n",
        &format!(
            "  n := ({});\n  IF coalesce(wanted, '') <> '' AND n IS NOT NULL AND n <> wanted THEN\n    EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', {}, n, wanted);\n  END IF;\n",
            not_null_name(table, column),
            literal(&Qualified(table).to_string())
        ),
    )
}

/// The name of the NOT NULL constraint of `table.column` (none before PostgreSQL 18).
fn not_null_name(table: &Name, column: &str) -> String {
    let table_literal = literal(&Qualified(table).to_string());
    format!(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = {table_literal}::regclass AND contype = 'n' AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = {table_literal}::regclass AND attname = {})]",
        literal(column)
    )
}
