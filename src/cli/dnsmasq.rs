//! `multiwan dnsmasq`: the dnsmasq drop-in that fills the sets with `domains`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write the drop-in to this file (atomically; its directory must be root's alone),
    /// for example /etc/dnsmasq.d/multiwan.conf. Without it, print it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let source = std::path::absolute(&args.config.config)?;
    let text = multiwan::plan::resolver::dnsmasq(&config, &source.display().to_string());
    if !config.sets.iter().any(|s| !s.domains.is_empty()) {
        eprintln!("multiwan: no set in {} has `domains`", source.display());
    }
    let Some(out) = args.out else {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    };
    let (Some(dir), Some(name)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        anyhow::bail!("--out {}: give a file path", out.display());
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let path = multiwan::files::write_atomically(dir, name, &text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    println!("wrote {}; restart dnsmasq to use it", path.display());
    Ok(ExitCode::SUCCESS)
}
