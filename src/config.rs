//! `zdm.toml`, environment and flags merged into one validated configuration.
//!
//! ```toml
//! pg_version = 14            # the PostgreSQL major version migrations run on
//! migrations = "migrations"  # the directory `zdm lint` reads when given no path
//! layout = "refinery"        # the migration tool; detected from the folder when not named
//! runner = "zdm"             # zdm expand/contract run them: lint notes what zdm plans online
//!
//! [lint]
//! down = "warning"   # down files: error (as any file) | warning (errors lowered) | off
//!
//! [lint.rules]
//! require-lock-timeout = "off"   # error | warning | off
//! drop-column = "warning"
//!
//! [estimate]
//! warn_backfill_seconds = 3600   # warn when a backfill is estimated longer than this
//! warn_wal_share = 1.0           # warn when a backfill's WAL exceeds this share of max_wal_size
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lint::{Level, LintOptions, Runner, rules};
use crate::source::Layout;

/// The PostgreSQL major version assumed when neither flag nor config names one.
pub const DEFAULT_PG_VERSION: u32 = 14;
/// The oldest and newest majors zdm knows the lock behaviour of.
pub const SUPPORTED_PG_VERSIONS: std::ops::RangeInclusive<u32> = 9..=19;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: [lint.rules] names unknown rule `{rule}`; `zdm rules` lists them")]
    UnknownRule { path: PathBuf, rule: String },
    #[error("PostgreSQL version {0} is not supported; use a major version from 9 to 19 (e.g. 14)")]
    UnsupportedVersion(u32),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    pg_version: Option<u32>,
    migrations: Option<PathBuf>,
    layout: Option<Layout>,
    runner: Option<Runner>,
    #[serde(default)]
    lint: LintSection,
    #[serde(default)]
    estimate: EstimateSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EstimateSection {
    warn_backfill_seconds: Option<u64>,
    warn_wal_share: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LintSection {
    #[serde(default)]
    rules: BTreeMap<String, Level>,
    down: Option<Level>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub pg_version: u32,
    /// Where migrations live when no path is given.
    pub migrations: Option<PathBuf>,
    /// The migration tool whose conventions the folder follows; `None` means detect it.
    pub layout: Option<Layout>,
    pub lint: LintOptions,
    /// Thresholds of the estimate's warnings (`[estimate]`).
    pub estimate: EstimateThresholds,
}

/// When an estimated backfill is worth a warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateThresholds {
    pub warn_backfill_seconds: u64,
    pub warn_wal_share: f64,
}

impl Default for EstimateThresholds {
    fn default() -> Self {
        EstimateThresholds {
            warn_backfill_seconds: 3600,
            warn_wal_share: 1.0,
        }
    }
}

impl Config {
    /// Loads `path`, or `./zdm.toml` when it exists, and applies a `--pg-version` flag.
    pub fn load(path: Option<&Path>, pg_version_flag: Option<u32>) -> Result<Config, ConfigError> {
        let default = Path::new("zdm.toml");
        let (file, path) = match path {
            Some(p) => (read(p)?, Some(p)),
            None if default.is_file() => (read(default)?, Some(default)),
            None => (File::default(), None),
        };
        for rule in file.lint.rules.keys() {
            if rules::find(rule).is_none() {
                return Err(ConfigError::UnknownRule {
                    path: path.unwrap_or(default).to_owned(),
                    rule: rule.clone(),
                });
            }
        }
        let pg_version = pg_version_flag
            .or(file.pg_version)
            .unwrap_or(DEFAULT_PG_VERSION);
        if !SUPPORTED_PG_VERSIONS.contains(&pg_version) {
            return Err(ConfigError::UnsupportedVersion(pg_version));
        }
        // A migrations path in the file is relative to the file.
        let migrations = file.migrations.map(|m| match path.and_then(Path::parent) {
            Some(dir) if m.is_relative() && !dir.as_os_str().is_empty() => dir.join(m),
            _ => m,
        });
        let defaults = EstimateThresholds::default();
        let estimate = EstimateThresholds {
            warn_backfill_seconds: file
                .estimate
                .warn_backfill_seconds
                .unwrap_or(defaults.warn_backfill_seconds),
            warn_wal_share: file
                .estimate
                .warn_wal_share
                .unwrap_or(defaults.warn_wal_share),
        };
        if estimate.warn_wal_share.is_nan() || estimate.warn_wal_share <= 0.0 {
            return Err(ConfigError::Invalid {
                path: path.unwrap_or(default).to_owned(),
                message: "[estimate] warn_wal_share must be above 0 (1.0 is max_wal_size)".into(),
            });
        }
        Ok(Config {
            pg_version,
            migrations,
            layout: file.layout,
            estimate,
            lint: LintOptions {
                pg_version,
                levels: file.lint.rules,
                runner: file.runner.unwrap_or_default(),
                down: file.lint.down.unwrap_or(Level::Error),
            },
        })
    }
}

fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_the_runner() {
        let f = write("runner = \"zdm\"\n");
        assert_eq!(
            Config::load(Some(f.path()), None).unwrap().lint.runner,
            Runner::Zdm
        );
        let f = write("runner = \"flyway\"\n");
        let e = Config::load(Some(f.path()), None).unwrap_err().to_string();
        assert!(e.contains("runner") || e.contains("zdm"), "{e}");
        assert_eq!(
            Config::load(Some(write("").path()), None)
                .unwrap()
                .lint
                .runner,
            Runner::Other
        );
    }

    #[test]
    fn reads_how_down_files_are_linted() {
        let f = write("[lint]\ndown = \"off\"\n");
        assert_eq!(
            Config::load(Some(f.path()), None).unwrap().lint.down,
            Level::Off
        );
        let f = write("[lint]\ndown = \"loud\"\n");
        let e = Config::load(Some(f.path()), None).unwrap_err().to_string();
        assert!(e.contains("down") && e.contains("error"), "{e}");
        let f = write("");
        assert_eq!(
            Config::load(Some(f.path()), None).unwrap().lint.down,
            Level::Error
        );
    }

    #[test]
    fn reads_levels_and_version_and_flag_wins() {
        let f = write("pg_version = 12\n[lint.rules]\ndrop-column = \"warning\"\n");
        let c = Config::load(Some(f.path()), None).unwrap();
        assert_eq!(c.pg_version, 12);
        assert_eq!(c.layout, None);
        assert_eq!(c.lint.levels["drop-column"], Level::Warning);
        assert_eq!(
            Config::load(Some(f.path()), Some(16)).unwrap().pg_version,
            16
        );
    }

    #[test]
    fn rejects_unknown_rules_keys_and_levels() {
        let f = write("[lint.rules]\ndrop-colum = \"off\"\n");
        assert!(matches!(
            Config::load(Some(f.path()), None),
            Err(ConfigError::UnknownRule { .. })
        ));
        let f = write("pg_versoin = 12\n");
        assert!(matches!(
            Config::load(Some(f.path()), None),
            Err(ConfigError::Invalid { .. })
        ));
        let f = write("layout = \"sql-migrate\"\n");
        let Err(ConfigError::Invalid { message, .. }) = Config::load(Some(f.path()), None) else {
            panic!("an unknown layout is refused");
        };
        assert!(
            message.contains("refinery"),
            "the message lists the layouts: {message}"
        );
        let f = write("[lint.rules]\ndrop-column = \"fatal\"\n");
        assert!(matches!(
            Config::load(Some(f.path()), None),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::load(None, Some(8)),
            Err(ConfigError::UnsupportedVersion(8))
        ));
    }
}
