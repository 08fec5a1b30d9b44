//! multiwan: a multi-WAN router agent for Linux.
//!
//! Data flows one way: [`config`] (YAML → validated model) → [`plan`] (pure desired state)
//! → adapters that make the kernel match it.

pub mod agent;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod events;
pub mod exec;
pub mod explain;
pub mod ha;
pub mod health;
pub mod hooks;
pub mod install;
pub mod ipset;
pub mod metrics;
pub mod netfilter;
pub mod notify;
pub mod plan;
pub mod probe;
pub mod routing;
pub mod sysctl;
