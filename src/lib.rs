//! multiwan: a multi-WAN router agent for Linux.
//!
//! Data flows one way: [`config`] (YAML → validated model) → [`plan`] (pure desired state)
//! → [`kernel`] (the adapters that make the kernel match it). The pure core (`config`,
//! `plan`, `explain`, `health`, `ha`) does no I/O; [`daemon`] and [`control`] are the
//! long-running services around it, [`files`] the file-system edge.

pub mod config;
pub mod control;
pub mod daemon;
pub mod explain;
pub mod family;
pub mod files;
pub mod ha;
pub mod health;
pub mod history;
pub mod kernel;
pub mod owned;
pub mod plan;

/// An error and each of its causes, once, on one line: `a: b: c`. Error types put only
/// their own words in their message and mark the cause as `#[source]`; this joins them.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // A transparent wrapper repeats its inner message: print it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
