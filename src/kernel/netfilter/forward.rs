//! Would the firewall drop what multiwan routes? Docker sets the filter FORWARD policy to
//! DROP, ufw does by default, and a router whose LAN traffic is dropped in FORWARD is down
//! however well multiwan balances it. This reads the filter table as `iptables-save` prints
//! it and follows a LAN host's new TCP connection (and the uplink's reply) through FORWARD
//! and the chains it jumps to. Matches it cannot judge (addresses, ports, marks, limits)
//! count as "maybe": a maybe-ACCEPT keeps it quiet, so it warns only when the drop is
//! certain. Pure: text in, warnings out.

use std::collections::HashMap;

/// One forwarded packet: interfaces in and out, protocol and conntrack state.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub input: &'a str,
    pub output: &'a str,
    /// `NEW` for a connection's first packet, `ESTABLISHED` for a reply.
    pub state: &'a str,
}

/// The filter table: each chain's policy (built-in chains) and rules.
#[derive(Debug, Default)]
pub struct Filter {
    policies: HashMap<String, String>,
    rules: HashMap<String, Vec<Vec<String>>>,
}

impl Filter {
    /// The `*filter` section of `iptables-save` output (with or without `-c`).
    pub fn parse(save: &str) -> Filter {
        let saved = super::script::parse_save(save, "filter");
        let mut f = Filter::default();
        for (chain, policy) in saved.policies {
            f.rules.entry(chain.clone()).or_default();
            f.policies.insert(chain, policy);
        }
        for rule in &saved.rules {
            let tokens = tokenize(rule);
            if tokens.len() >= 2 {
                f.rules
                    .entry(tokens[1].clone())
                    .or_default()
                    .push(tokens[2..].to_vec());
            }
        }
        f
    }

    /// What FORWARD does with the packet; None when the table has no FORWARD chain.
    pub fn verdict(&self, p: Packet) -> Option<Verdict> {
        self.policies.get("FORWARD")?;
        let mut unsure = Vec::new();
        let v = match self.walk("FORWARD", p, 0, &mut unsure) {
            Walk::Accept => Verdict::Accepted,
            Walk::Drop(by) => Verdict::Dropped { by },
            Walk::End => match self.policies.get("FORWARD").map(String::as_str) {
                Some("DROP") => Verdict::Dropped {
                    by: "the FORWARD policy is DROP".into(),
                },
                _ => Verdict::Accepted,
            },
        };
        Some(match v {
            Verdict::Dropped { .. } if !unsure.is_empty() => Verdict::Unsure,
            v => v,
        })
    }

    fn walk(&self, chain: &str, p: Packet, depth: usize, unsure: &mut Vec<String>) -> Walk {
        let Some(rules) = self.rules.get(chain) else {
            return Walk::End;
        };
        if depth > 16 {
            return Walk::End;
        }
        for rule in rules {
            let (matched, target, goto) = judge(rule, p);
            if matched == Match::No {
                continue;
            }
            let result = match target.as_deref() {
                Some("ACCEPT") => Walk::Accept,
                Some("DROP") | Some("REJECT") => {
                    Walk::Drop(format!("-A {chain} {}", rule.join(" ")))
                }
                Some("RETURN") => Walk::End,
                Some(t) if self.rules.contains_key(t) => {
                    if matched == Match::Maybe {
                        // A chain entered only maybe: whatever it accepts is uncertain.
                        if self.walk(t, p, depth + 1, &mut Vec::new()) == Walk::Accept {
                            unsure.push(format!("-A {chain} {}", rule.join(" ")));
                        }
                        continue;
                    }
                    match self.walk(t, p, depth + 1, unsure) {
                        Walk::End if !goto => continue,
                        other => other,
                    }
                }
                // LOG, MARK, TCPMSS and the like: the packet goes on.
                _ => continue,
            };
            if matched == Match::Maybe {
                if result == Walk::Accept {
                    unsure.push(format!("-A {chain} {}", rule.join(" ")));
                }
                continue;
            }
            return result;
        }
        Walk::End
    }
}

/// What FORWARD does with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Certainly dropped: by this rule, or the policy.
    Dropped {
        by: String,
    },
    /// Dropped unless a rule whose matches cannot be judged here accepts it.
    Unsure,
}

#[derive(Debug, PartialEq, Eq)]
enum Walk {
    Accept,
    Drop(String),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    Maybe,
}

/// Whether a rule matches the packet, its target, and whether it is a goto (`-g`).
fn judge(rule: &[String], p: Packet) -> (Match, Option<String>, bool) {
    let mut m = Match::Yes;
    let mut negate = false;
    let mut i = 0;
    let and = |m: Match, this: Match| match (m, this) {
        (Match::No, _) | (_, Match::No) => Match::No,
        (Match::Maybe, _) | (_, Match::Maybe) => Match::Maybe,
        _ => Match::Yes,
    };
    while i < rule.len() {
        let arg = rule.get(i + 1).map(String::as_str).unwrap_or("");
        let this = match rule[i].as_str() {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-j" | "-g" => return (m, Some(arg.to_string()), rule[i] == "-g"),
            "-i" => Some(interface(arg, p.input)),
            "-o" => Some(interface(arg, p.output)),
            "-p" => Some(matches!(arg, "tcp" | "6" | "all" | "0")),
            "--ctstate" | "--state" => Some(arg.split(',').any(|s| s == p.state)),
            "-m" if matches!(arg, "comment" | "conntrack" | "state" | "tcp") => {
                i += 2;
                continue;
            }
            "--comment" => {
                i += 2;
                continue;
            }
            _ => None,
        };
        let this = match this {
            Some(yes) if yes != negate => Match::Yes,
            Some(_) => Match::No,
            None => Match::Maybe,
        };
        m = and(m, this);
        negate = false;
        // Options take one value, except a few flags of their own; an unknown option
        // with no value is harmless: it is judged Maybe either way.
        i += if arg.starts_with('-') || arg == "!" {
            1
        } else {
            2
        };
    }
    (m, None, false)
}

/// `-i eth+` matches every name starting `eth`.
fn interface(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Splits a rule as iptables-save quotes it (`--comment "two words"`).
fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The warnings for a router: each LAN interface's new connections to each uplink, and
/// each uplink's replies back, through the filter table in `save`. `tool` names the
/// command for the suggested fix (`iptables`, `ip6tables`).
pub fn warnings(
    save: &str,
    tool: &str,
    lans: &[String],
    uplinks: &[(String, String)],
) -> Vec<String> {
    let filter = Filter::parse(save);
    let mut out = Vec::new();
    for lan in lans {
        for (name, wan) in uplinks {
            let checks = [
                (
                    Packet {
                        input: lan,
                        output: wan,
                        state: "NEW",
                    },
                    "new connections",
                ),
                (
                    Packet {
                        input: wan,
                        output: lan,
                        state: "ESTABLISHED",
                    },
                    "replies",
                ),
            ];
            for (packet, what) in checks {
                if let Some(Verdict::Dropped { by }) = filter.verdict(packet) {
                    out.push(format!(
                        "the firewall drops {what} from {} to {} (uplink {name}): {by}. multiwan routes them but does not open the firewall: accept them, e.g. `{tool} -I FORWARD -i {} -o {} -j ACCEPT` (ufw: `ufw route allow in on {} out on {}`)",
                        packet.input, packet.output, packet.input, packet.output, packet.input, packet.output
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: Packet = Packet {
        input: "lan0",
        output: "wan1",
        state: "NEW",
    };

    /// What Docker leaves in filter (iptables-save of a host running one container).
    const DOCKER: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
";

    #[test]
    fn dockers_forward_drop_is_found_and_named() {
        let f = Filter::parse(DOCKER);
        assert_eq!(
            f.verdict(NEW),
            Some(Verdict::Dropped {
                by: "the FORWARD policy is DROP".into()
            })
        );
        let w = warnings(
            DOCKER,
            "iptables",
            &["lan0".into()],
            &[("fibre".into(), "wan1".into())],
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("new connections from lan0 to wan1 (uplink fibre)"),
            "{}",
            w[0]
        );
        assert!(
            w[0].contains("iptables -I FORWARD -i lan0 -o wan1 -j ACCEPT"),
            "{}",
            w[0]
        );
        assert!(w[1].contains("replies from wan1 to lan0"), "{}", w[1]);
    }

    #[test]
    fn an_accepting_rule_in_a_user_chain_is_followed() {
        let text = DOCKER.replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -i lan0 -o wan+ -j ACCEPT\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A DOCKER-USER -j RETURN",
        );
        let w = warnings(
            &text,
            "iptables",
            &["lan0".into()],
            &[("fibre".into(), "wan1".into())],
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn an_explicit_drop_rule_is_quoted_and_an_open_policy_is_quiet() {
        let text = "*filter\n:FORWARD ACCEPT [0:0]\n[3:180] -A FORWARD -i lan0 -p tcp -m comment --comment \"no games\" -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
        match Filter::parse(text).verdict(NEW) {
            Some(Verdict::Dropped { by }) => assert!(by.contains("-i lan0 -p tcp"), "{by}"),
            v => panic!("{v:?}"),
        }
        let open = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -o docker0 -j DROP\nCOMMIT\n";
        assert_eq!(Filter::parse(open).verdict(NEW), Some(Verdict::Accepted));
    }

    #[test]
    fn a_rule_it_cannot_judge_keeps_it_quiet() {
        let text = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.0.0.0/24 -j ACCEPT\nCOMMIT\n";
        assert_eq!(Filter::parse(text).verdict(NEW), Some(Verdict::Unsure));
        let udp = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp -j ACCEPT\n-A FORWARD ! -i lan0 -j ACCEPT\nCOMMIT\n";
        assert!(matches!(
            Filter::parse(udp).verdict(NEW),
            Some(Verdict::Dropped { .. })
        ));
    }

    #[test]
    fn a_table_without_filter_says_nothing() {
        assert_eq!(Filter::parse("*mangle\nCOMMIT\n").verdict(NEW), None);
        assert_eq!(
            tokenize("-m comment --comment \"a b\" -j X"),
            ["-m", "comment", "--comment", "a b", "-j", "X"]
        );
    }
}
