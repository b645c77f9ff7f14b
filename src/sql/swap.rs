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

/// Raises unless PostgreSQL's own definition of each copy, with the shadow's name read as the
/// column's and the copy's name as the original's, is exactly the original's definition: the
/// rebuilt index has the same method, keys, operator classes, collations, INCLUDE and WHERE;
/// the constraint the same expression, columns, actions and deferral. Run in the swap before
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
            "  original := {original};\n  copy := replace(replace({copy}, quote_ident({shadow}), quote_ident({column})), quote_ident({copy_name}), quote_ident({original_name}));\n  IF copy IS DISTINCT FROM original THEN\n    RAISE EXCEPTION 'zdm: % was built on the shadow as %, which is not the same as %; nothing was changed: run zdm abort, or drop and recreate it yourself after contract', {original_name}, coalesce(copy, 'nothing'), coalesce(original, 'nothing');\n  END IF;\n",
            shadow = literal(shadow),
            column = literal(column),
            copy_name = literal(twin.copy),
            original_name = literal(twin.original),
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
