//! multiwan: a multi-WAN router agent for Linux.
//!
//! Data flows one way: [`config`] (YAML → validated model) → [`plan`] (pure desired state)
//! → adapters that make the kernel match it.

pub mod config;
pub mod explain;
pub mod plan;
