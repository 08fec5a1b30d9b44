//! The long-running side of multiwan: the agent's event loop, and the services it feeds
//! (Prometheus metrics, hooks, systemd notifications, keepalived's role changes).

pub mod agent;
pub mod ha_notify;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod signals;
pub mod systemd;
pub mod web;
