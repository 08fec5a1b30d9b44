//! The control socket: `multiwan status` asks the running daemon how it is doing, and
//! keepalived's notify script (`ha notify`) tells it its HA role. One request line, one
//! answer: the protocol ([`proto`]), the daemon's side ([`server`]), the commands' side
//! ([`client`]) and the status table ([`render`]).

pub mod client;
pub mod proto;
pub mod render;
pub mod server;

pub use client::{ControlError, query, set_prefix6, set_role};
pub use proto::{HaStatus, Request, Status};
pub use render::{ago, render};
