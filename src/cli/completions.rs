//! `zdm completions <shell>` and `zdm man`: shell completions and a man page, generated from
//! the clap definitions so they never drift from the real flags.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, EXIT_OK};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zdm completions bash > ~/.local/share/bash-completion/completions/zdm
  zdm completions zsh > \"${fpath[1]}/_zdm\"
  zdm completions fish > ~/.config/fish/completions/zdm.fish")]
pub struct CompletionsArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  zdm man > /usr/local/share/man/man1/zdm.1")]
pub struct ManArgs {}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "zdm", &mut std::io::stdout());
    Ok(EXIT_OK)
}

pub fn man(_: &ManArgs) -> anyhow::Result<u8> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(EXIT_OK)
}
