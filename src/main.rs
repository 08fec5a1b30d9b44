//! The `multiwan` command: argument parsing and dispatch only. Each subcommand lives in
//! `cli/`, and all real work in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
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
