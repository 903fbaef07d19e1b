//! synack-core: a sans-IO TCP/IP stack.
//!
//! The core parses and emits IPv4, IPv6, TCP and ICMP, and runs every TCP connection's state
//! machine. It never touches a socket, a thread or a clock: packets and `now` go in through
//! [`Endpoint::handle_packet`] and [`Endpoint::handle_timeout`]; packets, deadlines and events
//! come out through [`Endpoint::poll_transmit`], [`Endpoint::poll_timeout`] and
//! [`Endpoint::poll_event`]. The application drives connections with commands on the
//! [`Endpoint`]: `connect`, `listen`, `accept`, `send`, `recv`, `shutdown`, `close`, `abort`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod endpoint;
pub mod error;
pub mod isn;
mod profile;
pub mod seq;
mod slab;
pub mod stats;
pub mod syncookie;
pub mod tcp;
pub mod time;
mod time_wait;
pub mod wire;

/// The shared byte buffer [`Endpoint::send_bytes`] takes, re-exported from `bytes`.
pub use bytes::Bytes;
pub use config::{Config, KeepaliveConfig, SynCookies};
pub use endpoint::{ConnectionHandle, Endpoint, Event, ListenerHandle, Transmit};
pub use error::Error;
pub use seq::SeqNumber;
pub use stats::Stats;
pub use tcp::State;
pub use time::Instant;
