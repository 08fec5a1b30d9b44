//! `multiwan plan`: print the desired kernel state.

use std::process::ExitCode;

use multiwan::plan::Plan;

use super::{ConfigArg, observed_with_down};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Everything, for a person.
    Text,
    /// Everything, for a machine.
    Json,
    /// Only the iptables-restore input (IPv4).
    Iptables,
    /// Only the ip6tables-restore input (IPv6; empty without `gateway6`).
    Ip6tables,
    /// Only the ipset restore input.
    Ipset,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Assume this uplink is down (repeatable): shows what failover installs.
    #[arg(long, value_name = "UPLINK")]
    pub down: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let observed = observed_with_down(&config, &args.down)?;
    let plan = Plan::build(&config, &observed);
    match args.format {
        Format::Text => print!("{}", plan.human()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Format::Iptables => print!("{}", plan.iptables_restore()),
        Format::Ip6tables => {
            if let Some(v6) = &plan.v6 {
                print!("{}", v6.iptables_restore());
            }
        }
        Format::Ipset => print!("{}", plan.ipset_restore()),
    }
    Ok(ExitCode::SUCCESS)
}
