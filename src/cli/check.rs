//! `multiwan check`: validate a config file.

use std::process::ExitCode;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match args.config.load() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!("{}: OK: {}", args.config.config.display(), config.summary());
    Ok(ExitCode::SUCCESS)
}
