//! `multiwan assets DIR` (hidden; the Debian package's build runs it): man pages from the
//! command-line definition itself (multiwan(8) and multiwan-SUBCOMMAND(8)),
//! multiwan.yaml(5) from docs/configuration.md, and bash, zsh and fish completions. Each
//! is generated from its one source, so none can drift from the program.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;
use super::manpage;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write `man/` and `completions/`.
    pub dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let man = args.dir.join("man");
    let completions = args.dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    write_man_pages(&cmd, &man)?;
    std::fs::write(
        man.join("multiwan.yaml.5"),
        manpage::config_page(
            include_str!("../../docs/configuration.md"),
            env!("CARGO_PKG_VERSION"),
        ),
    )?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "multiwan"),
        (clap_complete::Shell::Zsh, "_multiwan"),
        (clap_complete::Shell::Fish, "multiwan.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "multiwan", &mut out);
        std::fs::write(completions.join(name), out)?;
    }
    println!(
        "wrote man pages and completions into {}",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// multiwan.8 and one page per visible subcommand (multiwan-status.8, ...).
fn write_man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let page = |c: clap::Command, name: &str| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c).section("8").render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.8")), out)
    };
    page(cmd.clone(), "multiwan")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("multiwan-{}", sub.get_name());
        let c = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("multiwan {}", sub.get_name()));
        page(c, &name)?;
    }
    Ok(())
}
