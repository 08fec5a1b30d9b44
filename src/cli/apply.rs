//! `multiwan apply`: install the plan with every uplink assumed up.

use std::process::ExitCode;

use multiwan::kernel::install::Installer;
use multiwan::kernel::sysctl;

use super::ConfigArg;

pub fn run(args: ConfigArg) -> anyhow::Result<ExitCode> {
    let mut config = args.load()?;
    let rt = super::runtime()?;
    let applied = rt.block_on(async {
        let backend = multiwan::kernel::install::select_backend(&config).await?;
        for w in &backend.warnings {
            eprintln!("warning: {w}");
        }
        let installer = Installer::new()?;
        installer.adopt_installed_ids(&mut config).await?;
        installer.apply(&config, &Default::default(), None).await
    })?;
    if let Err(e) = multiwan::owned::record(&config) {
        eprintln!(
            "warning: could not record what was installed (cleanup falls back to the config): {e}"
        );
    }
    for w in sysctl::enforce(&config).iter().chain(&applied.warnings) {
        eprintln!("warning: {w}");
    }
    let r = &applied.routing;
    println!(
        "applied: {} uplink(s); ip rules +{} -{}; routes +{} -{}; stale sets removed: {}",
        applied.plan.uplinks.len(),
        r.rules_added.len(),
        r.rules_deleted.len(),
        r.routes_added.len(),
        r.routes_deleted.len(),
        applied.stale_sets.len()
    );
    Ok(ExitCode::SUCCESS)
}
