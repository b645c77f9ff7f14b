//! `zdm rules` and `zdm explain`: the rule catalogue from the command line.

use std::io::Write;

use anyhow::bail;
use clap::Args;

use super::EXIT_OK;
use crate::lint::rules::{self, ALL};

/// List every lint rule with its default severity
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  zdm rules                  every rule, its severity and what it catches\n  zdm explain <rule>         one rule in full"
)]
pub struct RulesArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// Explain a rule: why it exists, the safe form, and examples
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  zdm explain set-not-null-scan")]
pub struct ExplainArgs {
    /// The rule name, as `zdm rules` lists it
    rule: String,
}

pub fn list(args: &RulesArgs) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let rules: Vec<_> = ALL
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "severity": r.severity, "summary": r.summary}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rules)?)?;
    } else {
        let width = ALL.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in ALL {
            writeln!(
                out,
                "{:width$}  {:7}  {}",
                r.name,
                r.severity.to_string(),
                r.summary
            )?;
        }
    }
    Ok(EXIT_OK)
}

pub fn explain(args: &ExplainArgs) -> anyhow::Result<u8> {
    let Some(rule) = rules::find(&args.rule) else {
        bail!("unknown rule `{}`; `zdm rules` lists them", args.rule);
    };
    std::io::stdout()
        .lock()
        .write_all(crate::report::rule_docs::rule_page(rule).as_bytes())?;
    Ok(EXIT_OK)
}
