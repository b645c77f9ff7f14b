//! zdm: zero-downtime schema migrations for PostgreSQL.
//!
//! Data flows one way (see `docs/architecture.md`):
//! `source` splits files into statements, `parse` turns each into a [`parse::Change`],
//! `classify` says which lock it takes and what it rewrites or scans, and `lint` turns that into
//! findings that `report` renders. Everything except `cli` is pure: no network, no database.

pub mod catalog;
pub mod classify;
pub mod cli;
pub mod config;
pub mod db;
pub mod lint;
pub mod parse;
pub mod plan;
pub mod report;
pub mod source;
pub mod sql;
