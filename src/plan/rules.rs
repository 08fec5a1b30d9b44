//! iptables rules as data, and their `iptables-restore` text. The same values drive
//! `explain`, so what it says is what the kernel does.

use std::fmt::Write;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{PortRange, Protocol};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    InInterface(String),
    OutInterface(String),
    Source(IpNet),
    Destination(IpNet),
    Protocol(Protocol),
    SourcePorts(Vec<PortRange>),
    DestinationPorts(Vec<PortRange>),
    /// `-m set --match-set NAME dst`
    DestinationInSet(String),
    /// `-m mark --mark VALUE/MASK` (or `!` when negated)
    Mark {
        value: u32,
        mask: u32,
        negated: bool,
    },
    /// `-m conntrack --ctstate NEW` (or `!` when negated)
    NewConnection {
        negated: bool,
    },
    /// `-m statistic --mode random --probability P`
    Random(f64),
    /// `-m statistic --mode nth --every N --packet 0`: every Nth packet reaching the rule.
    EveryNth(u32),
    /// `-m set --match-set NAME src`
    SourceInSet(String),
    /// `-m conntrack --ctstate DNAT`
    DnatConnection,
    /// `-m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN`: a TCP packet that cannot open a connection.
    TcpNotSyn,
    /// `-m addrtype --src-type LOCAL` (or `!`): the router's own traffic.
    LocalSource {
        negated: bool,
    },
    /// `-m conntrack --ctstate ESTABLISHED --ctdir REPLY`: a reply in a connection the
    /// other side did not open (the router's own, when it arrives in INPUT).
    Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Accept,
    Jump(String),
    /// `-g`: like a jump, but a RETURN there returns from the calling chain too.
    Goto(String),
    Return,
    Drop,
    SetMark {
        value: u32,
        mask: u32,
    },
    SetConnmark {
        value: u32,
        mask: u32,
    },
    RestoreMark {
        mask: u32,
    },
    SaveMark {
        mask: u32,
    },
    Masquerade,
    /// `-j SNAT --to-source ADDRESS`
    Snat(std::net::IpAddr),
    /// `-j DNAT --to-destination ADDRESS[:PORT]`
    Dnat(String),
    /// `-j REJECT --reject-with KIND`
    Reject(String),
    /// `-j NETMAP --to PREFIX`: the source prefix swapped, host bits kept (IPv6 npt).
    Netmap(IpNet),
    /// `-j SET --add-set NAME dst --exist`: (re)adds the destination with the set's
    /// timeout, so an address in use does not age out.
    RenewInSet(String),
}

/// What a rule stands for, so `explain` can tell the story behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Plumbing,
    Connected,
    Policy(usize),
    /// A run of pins kept in sets: the run (an index into the plan's `pins`) and the set.
    Pins(usize, usize),
    Balance,
    /// A port forward's rule, by index in the config.
    Forward(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub target: Target,
    pub comment: String,
    pub origin: Origin,
}

impl Rule {
    pub fn new(matches: Vec<Match>, target: Target, comment: impl Into<String>) -> Self {
        Self {
            matches,
            target,
            comment: comment.into(),
            origin: Origin::Plumbing,
        }
    }

    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// A jump from a built-in chain into ours, managed apart from our chains because the
/// built-in chain is shared with other tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jump {
    pub table: String,
    pub from: String,
    pub to: String,
}

impl Jump {
    /// The rule spec as iptables-save prints it, without `-A CHAIN`.
    pub fn spec(&self) -> String {
        format!("-m comment --comment multiwan -j {}", self.to)
    }
}

/// One iptables table's part of the plan, in one address family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TablePlan {
    pub name: String,
    pub family: super::Family,
    pub chains: Vec<Chain>,
}

impl TablePlan {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// `iptables-restore --noflush` input: declaring a chain flushes it, so the whole table
    /// part is replaced in one transaction.
    pub fn restore_text(&self) -> String {
        self.restore_text_of(&self.chains.iter().collect::<Vec<_>>())
    }

    /// Restore input that replaces only the given chains.
    pub fn restore_text_of(&self, chains: &[&Chain]) -> String {
        let mut out = format!("*{}\n", self.name);
        for chain in chains {
            let _ = writeln!(out, ":{} - [0:0]", chain.name);
        }
        for chain in chains {
            for rule in &chain.rules {
                let _ = writeln!(out, "-A {} {}", chain.name, rule_spec(rule, self.family));
            }
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// The rule's arguments after `-A CHAIN`, in a table of `family`.
pub fn rule_spec(rule: &Rule, family: super::Family) -> String {
    let mut parts: Vec<String> = Vec::new();
    let protocol = rule.matches.iter().find_map(|m| match m {
        Match::Protocol(p) => Some(*p),
        _ => None,
    });
    // iptables-save prints the built-in matches first, in this order, then the extension
    // matches as added: render the same, so a rule's text equals the kernel's.
    let rank = |m: &Match| match m {
        Match::Source(_) => 0,
        Match::Destination(_) => 1,
        Match::InInterface(_) => 2,
        Match::OutInterface(_) => 3,
        Match::Protocol(_) => 4,
        _ => 5,
    };
    let mut matches: Vec<&Match> = rule.matches.iter().collect();
    matches.sort_by_key(|m| rank(m));
    for m in matches {
        parts.push(match_text(m, protocol, family));
    }
    if !rule.comment.is_empty() {
        parts.push(format!("-m comment --comment \"{}\"", rule.comment));
    }
    parts.push(target_text(&rule.target));
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

fn match_text(m: &Match, protocol: Option<Protocol>, family: super::Family) -> String {
    let proto = protocol.map_or("tcp", Protocol::name);
    match m {
        Match::InInterface(i) => format!("-i {i}"),
        Match::OutInterface(i) => format!("-o {i}"),
        Match::Source(n) => format!("-s {n}"),
        Match::Destination(n) => format!("-d {n}"),
        Match::Protocol(Protocol::All) => String::new(),
        Match::Protocol(Protocol::Icmp) => format!("-p {}", family.icmp()),
        Match::Protocol(p) => format!("-p {}", p.name()),
        Match::SourcePorts(ports) => ports_text(proto, "sport", ports),
        Match::DestinationPorts(ports) => ports_text(proto, "dport", ports),
        Match::DestinationInSet(s) => format!("-m set --match-set {s} dst"),
        Match::Mark {
            value,
            mask,
            negated,
        } => {
            let not = if *negated { "! " } else { "" };
            format!("-m mark {not}--mark {value:#x}/{mask:#x}")
        }
        Match::Reply => "-m conntrack --ctstate ESTABLISHED --ctdir REPLY".into(),
        Match::NewConnection { negated } => {
            let not = if *negated { "! " } else { "" };
            format!("-m conntrack {not}--ctstate NEW")
        }
        Match::Random(p) => format!(
            "-m statistic --mode random --probability {}",
            probability_text(*p)
        ),
        Match::EveryNth(n) => format!("-m statistic --mode nth --every {n} --packet 0"),
        Match::SourceInSet(s) => format!("-m set --match-set {s} src"),
        Match::DnatConnection => "-m conntrack --ctstate DNAT".into(),
        Match::TcpNotSyn => "-m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN".into(),
        Match::LocalSource { negated } => {
            let not = if *negated { "! " } else { "" };
            format!("-m addrtype {not}--src-type LOCAL")
        }
    }
}

/// The kernel keeps the probability as a 31-bit fraction (`lround(p * 2^31)`). We print
/// that stored value with 11 digits, exactly as `iptables-save` does, so a chain can be
/// compared with the kernel's text; the error (below 3e-10) is far under the 1e-6 the
/// realised shares must match.
pub fn probability_text(p: f64) -> String {
    const SCALE: f64 = 2_147_483_648.0;
    format!("{:.11}", (p * SCALE).round() / SCALE)
}

fn ports_text(proto: &str, dir: &str, ports: &[PortRange]) -> String {
    match ports {
        [single] => format!("-m {proto} --{dir} {}", single.iptables()),
        many => {
            let list: Vec<String> = many.iter().map(PortRange::iptables).collect();
            format!("-m multiport --{dir}s {}", list.join(","))
        }
    }
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Jump(c) => format!("-j {c}"),
        Target::Goto(c) => format!("-g {c}"),
        Target::Return => "-j RETURN".into(),
        Target::Accept => "-j ACCEPT".into(),
        Target::Drop => "-j DROP".into(),
        Target::SetMark { value, mask } => format!("-j MARK --set-xmark {value:#x}/{mask:#x}"),
        Target::SetConnmark { value, mask } => {
            format!("-j CONNMARK --set-xmark {value:#x}/{mask:#x}")
        }
        Target::RestoreMark { mask } => {
            format!("-j CONNMARK --restore-mark --nfmask {mask:#x} --ctmask {mask:#x}")
        }
        Target::SaveMark { mask } => {
            format!("-j CONNMARK --save-mark --nfmask {mask:#x} --ctmask {mask:#x}")
        }
        Target::Masquerade => "-j MASQUERADE".into(),
        Target::Snat(a) => format!("-j SNAT --to-source {a}"),
        Target::Dnat(to) => format!("-j DNAT --to-destination {to}"),
        Target::Reject(with) => format!("-j REJECT --reject-with {with}"),
        Target::RenewInSet(set) => format!("-j SET --add-set {set} dst --exist"),
        Target::Netmap(to) => format!("-j NETMAP --to {to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: u16, b: u16) -> PortRange {
        PortRange { first: a, last: b }
    }

    #[test]
    fn renders_marks_ports_and_comments() {
        let rule = Rule::new(
            vec![
                Match::Source("10.0.0.50/32".parse().unwrap()),
                Match::Protocol(Protocol::Udp),
                Match::DestinationPorts(vec![range(27015, 27030), range(3074, 3074)]),
                Match::Mark {
                    value: 0,
                    mask: 0xff00,
                    negated: false,
                },
            ],
            Target::SetMark {
                value: 0x100,
                mask: 0xff00,
            },
            "policy gaming",
        );
        assert_eq!(
            rule_spec(&rule, crate::plan::Family::Ipv4),
            "-s 10.0.0.50/32 -p udp -m multiport --dports 27015:27030,3074 -m mark --mark 0x0/0xff00 \
             -m comment --comment \"policy gaming\" -j MARK --set-xmark 0x100/0xff00"
        );
    }

    #[test]
    fn single_port_range_uses_protocol_match() {
        let rule = Rule::new(
            vec![
                Match::Protocol(Protocol::Tcp),
                Match::DestinationPorts(vec![range(80, 80)]),
            ],
            Target::Return,
            "",
        );
        assert_eq!(
            rule_spec(&rule, crate::plan::Family::Ipv4),
            "-p tcp -m tcp --dport 80 -j RETURN"
        );
    }

    #[test]
    fn restore_text_declares_every_chain_first() {
        let t = TablePlan {
            name: "mangle".into(),
            family: crate::plan::Family::Ipv4,
            chains: vec![
                Chain {
                    name: "A".into(),
                    rules: vec![Rule::new(vec![], Target::Jump("B".into()), "")],
                },
                Chain {
                    name: "B".into(),
                    rules: vec![],
                },
            ],
        };
        assert_eq!(
            t.restore_text(),
            "*mangle\n:A - [0:0]\n:B - [0:0]\n-A A -j B\nCOMMIT\n"
        );
    }

    #[test]
    fn port_chunks_respect_multiport_limit() {
        let ports: Vec<PortRange> = (1..=10).map(|p| range(p * 100, p * 100 + 5)).collect();
        let chunks = PortRange::chunks(&ports);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), 7);
        assert_eq!(chunks[1].len(), 3);
    }
}
