//! The only code that touches the kernel: each adapter owns one subsystem (iptables,
//! ipset, routing, conntrack, sysctl, netlink events, probe sockets) and runs its tools
//! through [`exec`]. [`install`] sequences them; [`actor`] is the daemon's single owner of
//! all of them, off the thread that times the probes.

pub mod actor;
pub mod conntrack;
pub mod conntrackd;
pub mod events;
pub mod exec;
pub mod ifstats;
pub mod install;
pub mod ipset;
pub mod netfilter;
pub mod nfnetlink;
pub mod probe;
pub mod routing;
pub mod sysctl;
