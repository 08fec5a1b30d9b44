//! The `multiwan` command: argument parsing and dispatch only. Each subcommand lives in
//! `cli/`, and all real work in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before anything else: a reload or stop signal during the daemon's start-up must not
    // kill it (see daemon::signals). Commands other than `run` unblock at once.
    multiwan::daemon::signals::block_early();
    let args = cli::Cli::parse();
    if !matches!(args.command, cli::Command::Run(_)) {
        multiwan::daemon::signals::unblock();
    }
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            // anyhow's alternate form joins the chain once: each error type says only its
            // own words.
            eprintln!("multiwan: {e:#}");
            ExitCode::FAILURE
        }
    }
}
