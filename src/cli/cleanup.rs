//! `multiwan cleanup`: remove exactly what multiwan installed.

use std::process::ExitCode;

use multiwan::kernel::install::Installer;

use super::ConfigArg;

pub fn run(args: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let rt = super::runtime()?;
    let removed = rt.block_on(async {
        let installer = Installer::new()?;
        anyhow::Ok(installer.cleanup(&config).await)
    })?;
    let chains = removed.netfilter.removed();
    println!(
        "removed: {chains} chain(s), {} ip rule(s), {} route(s), {} set(s)",
        removed.routing.rules_deleted.len(),
        removed.routing.routes_deleted.len(),
        removed.sets.len()
    );
    for e in &removed.errors {
        eprintln!("error: {}", multiwan::error_chain(e));
    }
    Ok(if removed.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
