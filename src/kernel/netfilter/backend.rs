//! Which iptables backend multiwan's rules go into. Rules in the legacy x_tables and in
//! nf_tables are invisible to each other's tools, and both run: a firewall in one and
//! multiwan in the other is the classic trap. So the backend is chosen from the host's
//! own rules (`netfilter.backend: auto`), or named, once per process before any rule is
//! touched; the decision itself is pure ([`decide`]).

use std::path::Path;
use std::sync::OnceLock;

use crate::config::NetfilterBackend;
use crate::kernel::exec::{self, ToolError};
use crate::plan::{CHAIN_PREFIX, Family};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nft,
    Legacy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nft => "nf_tables",
            Kind::Legacy => "legacy",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Nft => Kind::Legacy,
            Kind::Legacy => Kind::Nft,
        }
    }

    /// The infix of Debian's commands (`iptables-nft-save`) and the word
    /// `iptables --version` prints for it.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Nft => ("nft", "(nf_tables)"),
            Kind::Legacy => ("legacy", "(legacy)"),
        }
    }
}

/// The commands of one backend: `[iptables, save, restore]` per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub kind: Kind,
    v4: [String; 3],
    v6: [String; 3],
}

impl Tools {
    /// The commands that name no backend (`iptables-save`): whatever the host's
    /// alternatives point at. Used until a backend is selected.
    fn plain(kind: Kind) -> Tools {
        let of = |f: Family| {
            [
                f.iptables().to_string(),
                f.iptables_save().to_string(),
                f.iptables_restore().to_string(),
            ]
        };
        Tools {
            kind,
            v4: of(Family::Ipv4),
            v6: of(Family::Ipv6),
        }
    }

    /// `iptables-legacy-save` and the like.
    fn named(kind: Kind) -> Tools {
        let infix = kind.words().0;
        let of = |base: &str| {
            [
                format!("{base}-{infix}"),
                format!("{base}-{infix}-save"),
                format!("{base}-{infix}-restore"),
            ]
        };
        Tools {
            kind,
            v4: of("iptables"),
            v6: of("ip6tables"),
        }
    }

    fn of(&self, family: Family) -> &[String; 3] {
        match family {
            Family::Ipv4 => &self.v4,
            Family::Ipv6 => &self.v6,
        }
    }

    pub fn iptables(&self, family: Family) -> &str {
        &self.of(family)[0]
    }

    pub fn save(&self, family: Family) -> &str {
        &self.of(family)[1]
    }

    pub fn restore(&self, family: Family) -> &str {
        &self.of(family)[2]
    }
}

static SELECTED: OnceLock<Tools> = OnceLock::new();

/// The commands to use: the selected backend's, else the plain ones.
pub fn current() -> Tools {
    SELECTED
        .get()
        .cloned()
        .unwrap_or_else(|| Tools::plain(Kind::Nft))
}

/// What is in one backend, as its save tools show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Rules and non-ACCEPT policies of other tools.
    pub foreign: usize,
    /// Whether multiwan's own chains are there.
    pub ours: bool,
}

impl Usage {
    /// Reads `iptables-save` text.
    pub fn of_save(text: &str) -> Usage {
        let mut usage = Usage::default();
        for line in text.lines() {
            if line.contains(CHAIN_PREFIX) {
                usage.ours = true;
            } else if line.starts_with("-A ") {
                usage.foreign += 1;
            } else if let Some(chain) = line.strip_prefix(':') {
                let policy = chain.split_whitespace().nth(1).unwrap_or("-");
                if policy != "-" && policy != "ACCEPT" {
                    usage.foreign += 1;
                }
            }
        }
        usage
    }

    fn add(self, other: Usage) -> Usage {
        Usage {
            foreign: self.foreign + other.foreign,
            ours: self.ours || other.ours,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "netfilter.backend is {0}, but neither the {0}-named iptables commands nor an `iptables` of that backend are installed"
    )]
    Missing(&'static str),
    #[error("no iptables command is installed (apt-get install iptables)")]
    NoIptables,
    #[error(
        "the host has iptables rules in both backends: {legacy} in legacy (iptables-legacy-save shows them) and {nft} in nf_tables (iptables-nft-save); multiwan's rules would be split from half of them. Move the firewall to one backend, or name the one to use in the config (netfilter: {{backend: legacy}} or {{backend: nft}})"
    )]
    Mixed { legacy: usize, nft: usize },
    #[error("reading the {backend} rules")]
    Read {
        backend: &'static str,
        #[source]
        source: ToolError,
    },
}

/// The outcome of [`decide`]: the backend, why, and what the admin should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kind: Kind,
    pub why: String,
    pub warnings: Vec<String>,
}

/// Picks the backend. `legacy`/`nft` are None when that backend's tools are missing;
/// `default` is what plain `iptables` is.
pub fn decide(
    choice: NetfilterBackend,
    legacy: Option<Usage>,
    nft: Option<Usage>,
    default: Option<Kind>,
) -> Result<Decision, BackendError> {
    let usage = |k: Kind| match k {
        Kind::Legacy => legacy,
        Kind::Nft => nft,
    };
    let named = match choice {
        NetfilterBackend::Auto => None,
        NetfilterBackend::Nft => Some(Kind::Nft),
        NetfilterBackend::Legacy => Some(Kind::Legacy),
    };
    if let Some(kind) = named {
        if usage(kind).is_none() {
            return Err(BackendError::Missing(kind.words().0));
        }
        let mut warnings = Vec::new();
        if let Some(u) = usage(kind.other()).filter(|u| u.foreign > 0) {
            warnings.push(format!(
                "netfilter.backend is {}, but {} rule(s) of other tools are in {}: they and multiwan's do not see each other",
                kind.words().0,
                u.foreign,
                kind.other().name()
            ));
        }
        return Ok(Decision {
            kind,
            why: "named in the config".into(),
            warnings,
        });
    }
    let foreign = |k: Kind| usage(k).is_some_and(|u| u.foreign > 0);
    let decided = match (foreign(Kind::Legacy), foreign(Kind::Nft)) {
        (true, true) => {
            return Err(BackendError::Mixed {
                legacy: legacy.unwrap_or_default().foreign,
                nft: nft.unwrap_or_default().foreign,
            });
        }
        (true, false) => (Kind::Legacy, "the host's other rules are in legacy"),
        (false, true) => (Kind::Nft, "the host's other rules are in nf_tables"),
        (false, false) => {
            let ours = |k: Kind| usage(k).is_some_and(|u| u.ours);
            match (ours(Kind::Legacy), ours(Kind::Nft), default) {
                (true, false, _) => (Kind::Legacy, "multiwan's rules are already there"),
                (false, true, _) => (Kind::Nft, "multiwan's rules are already there"),
                (_, _, Some(k)) if usage(k).is_some() => (k, "it is what `iptables` is here"),
                _ if nft.is_some() => (Kind::Nft, "no other rules anywhere"),
                _ if legacy.is_some() => (Kind::Legacy, "only its commands are installed"),
                _ => return Err(BackendError::NoIptables),
            }
        }
    };
    Ok(Decision {
        kind: decided.0,
        why: decided.1.into(),
        warnings: Vec::new(),
    })
}

/// The commands of a backend on this host, if installed: the named ones, else plain
/// `iptables` when it is that backend.
async fn tools_of(kind: Kind, default: Option<Kind>) -> Option<Tools> {
    let named = Tools::named(kind);
    if on_path(named.save(Family::Ipv4)) && on_path(named.restore(Family::Ipv4)) {
        return Some(named);
    }
    (default == Some(kind)).then(|| Tools::plain(kind))
}

/// What plain `iptables` is (`iptables v1.8.9 (nf_tables)`).
async fn plain_kind() -> Option<Kind> {
    let out = exec::run("iptables", &["--version"], None).await.ok()?;
    [Kind::Nft, Kind::Legacy]
        .into_iter()
        .find(|k| out.stdout.contains(k.words().1))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// [`usage_of`] of a backend whose tools are installed.
async fn usage_if(tools: &Option<Tools>) -> Result<Option<Usage>, BackendError> {
    match tools {
        Some(t) => usage_of(t).await.map(Some),
        None => Ok(None),
    }
}

/// Both families' rules of one backend, read at once.
async fn usage_of(tools: &Tools) -> Result<Usage, BackendError> {
    let (v4, v6) = tokio::join!(
        family_usage(tools, Family::Ipv4),
        family_usage(tools, Family::Ipv6)
    );
    Ok(v4?.add(v6?))
}

async fn family_usage(tools: &Tools, family: Family) -> Result<Usage, BackendError> {
    match exec::run(tools.save(family), &[], None).await {
        Ok(ran) if ran.success => Ok(Usage::of_save(&ran.stdout)),
        // No IPv6 in this kernel, or no tables yet.
        Ok(_) if family == Family::Ipv6 => Ok(Usage::default()),
        Ok(ran) => Err(BackendError::Read {
            backend: tools.kind.name(),
            source: ToolError::Failed {
                tool: tools.save(family).to_string(),
                status: ran.status,
                stderr: ran.stderr,
            },
        }),
        Err(source) => Err(BackendError::Read {
            backend: tools.kind.name(),
            source,
        }),
    }
}

/// The backend chosen for this process, with the other backend's commands when multiwan's
/// own chains were left there (a backend switch): the caller removes them.
#[derive(Debug)]
pub struct Selected {
    pub decision: Decision,
    pub stale: Option<Tools>,
}

/// Chooses the backend (once per process: a later call returns the first choice).
pub async fn select(choice: NetfilterBackend) -> Result<Selected, BackendError> {
    let default = plain_kind().await;
    let legacy_tools = tools_of(Kind::Legacy, default).await;
    let nft_tools = tools_of(Kind::Nft, default).await;
    // Four tables read at once: each read is mostly starting a process.
    let (legacy, nft) = tokio::join!(usage_if(&legacy_tools), usage_if(&nft_tools));
    let (legacy, nft) = (legacy?, nft?);
    let decision = decide(choice, legacy, nft, default)?;
    let (chosen, other, other_usage) = match decision.kind {
        Kind::Legacy => (legacy_tools, nft_tools, nft),
        Kind::Nft => (nft_tools, legacy_tools, legacy),
    };
    let chosen = chosen.ok_or(BackendError::Missing(decision.kind.words().0))?;
    let first = SELECTED.get_or_init(|| chosen.clone());
    let stale = other.filter(|_| other_usage.is_some_and(|u| u.ours));
    let decision = if first.kind == decision.kind {
        decision
    } else {
        Decision {
            kind: first.kind,
            why: "chosen when the daemon started (a change takes effect at the next restart)"
                .into(),
            warnings: decision.warnings,
        }
    };
    Ok(Selected { decision, stale })
}

/// Both backends' commands that are installed, for a cleanup that removes ours from each.
pub async fn installed() -> Vec<Tools> {
    let default = plain_kind().await;
    let mut out = Vec::new();
    for kind in [Kind::Nft, Kind::Legacy] {
        if let Some(t) = tools_of(kind, default).await {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREWALL: Usage = Usage {
        foreign: 12,
        ours: false,
    };
    const OURS: Usage = Usage {
        foreign: 0,
        ours: true,
    };
    const EMPTY: Usage = Usage {
        foreign: 0,
        ours: false,
    };

    fn auto(legacy: Option<Usage>, nft: Option<Usage>, default: Option<Kind>) -> Kind {
        decide(NetfilterBackend::Auto, legacy, nft, default)
            .unwrap()
            .kind
    }

    #[test]
    fn auto_follows_the_hosts_firewall_then_our_rules_then_iptables_itself() {
        let nft = Some(Kind::Nft);
        assert_eq!(auto(Some(FIREWALL), Some(EMPTY), nft), Kind::Legacy);
        assert_eq!(
            auto(Some(EMPTY), Some(FIREWALL), Some(Kind::Legacy)),
            Kind::Nft
        );
        assert_eq!(auto(Some(OURS), Some(EMPTY), nft), Kind::Legacy);
        assert_eq!(
            auto(Some(EMPTY), Some(EMPTY), Some(Kind::Legacy)),
            Kind::Legacy
        );
        assert_eq!(auto(Some(EMPTY), Some(EMPTY), nft), Kind::Nft);
        assert_eq!(auto(Some(EMPTY), None, None), Kind::Legacy);
        // Our rules in one backend and a firewall in the other: the firewall wins (ours
        // move, see `Selected::stale`).
        assert_eq!(auto(Some(OURS), Some(FIREWALL), nft), Kind::Nft);
    }

    #[test]
    fn rules_of_other_tools_in_both_backends_are_refused_with_both_counts() {
        let e = decide(NetfilterBackend::Auto, Some(FIREWALL), Some(FIREWALL), None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("12 in legacy") && text.contains("netfilter: {backend: legacy}"),
            "{text}"
        );
    }

    #[test]
    fn a_named_backend_is_used_and_warns_about_rules_in_the_other() {
        let d = decide(NetfilterBackend::Nft, Some(FIREWALL), Some(EMPTY), None).unwrap();
        assert_eq!(d.kind, Kind::Nft);
        assert!(d.warnings[0].contains("12 rule(s) of other tools are in legacy"));
        let e = decide(NetfilterBackend::Legacy, None, Some(EMPTY), None).unwrap_err();
        assert!(e.to_string().contains("legacy"), "{e}");
        assert!(decide(NetfilterBackend::Auto, None, None, None).is_err());
    }

    #[test]
    fn usage_counts_other_tools_rules_and_closed_policies_but_not_ours() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n*mangle\n:MULTIWAN_LAN - [0:0]\n-A PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING\nCOMMIT\n";
        assert_eq!(
            Usage::of_save(save),
            Usage {
                foreign: 2,
                ours: true
            }
        );
        assert_eq!(Usage::of_save(""), EMPTY);
    }
}
