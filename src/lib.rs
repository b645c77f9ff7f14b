//! zdm: zero-downtime schema migrations for PostgreSQL.
//!
//! Data flows one way (see `docs/architecture.md`):
//! `source` splits files into statements, `parse` turns each into a [`parse::Change`],
//! `classify` says which lock it takes and what it rewrites or scans, `analysis` walks a file's
//! statements once with the rules, and `lint` (findings that `report` renders) and `plan`
//! (expand, backfill, contract) both consume that pass. `db` alone talks to PostgreSQL (the live
//! catalog, the runner, the backfill engine, `zdm verify`); `cli` wires it all to commands.
//! Everything else is pure: no network, no database.

pub mod analysis;
pub mod catalog;
pub mod classify;
pub mod cli;
pub mod config;
pub mod cost;
pub mod db;
pub mod lint;
pub mod lock;
pub mod parse;
pub mod plan;
pub mod report;
pub mod source;
pub mod sql;
