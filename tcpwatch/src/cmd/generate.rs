//! `tcpwatch generate`: the man pages (one per command) and shell completions,
//! from the command-line definition itself, for packagers.

use std::io;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::{
    cli::{Cli, Generate, GenerateArgs},
    exit::{Failure, OrExit},
};

/// Runs `generate`.
pub fn run(args: &GenerateArgs) -> Result<(), Failure> {
    let command = Cli::command();
    match &args.what {
        Generate::Man { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))
                .or_usage()?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))
                .or_runtime()
        }
        Generate::Completions { shell } => {
            let mut command = command;
            clap_complete::generate(*shell, &mut command, "tcpwatch", &mut io::stdout());
            Ok(())
        }
    }
}
