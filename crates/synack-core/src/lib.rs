//! synack-core: a sans-IO TCP/IP stack.
//!
//! The core parses and emits IPv4, IPv6, TCP, UDP and ICMP, runs every TCP connection's
//! state machine, and queues UDP datagrams for their sockets. It never touches a socket, a thread or a clock: packets and `now` go in through
//! [`Endpoint::handle_packet`] (with a [`RecvMeta`] saying what the device knows of it; or
//! [`Endpoint::handle_packet_shared`], which may keep a bulk payload where it was read rather
//! than copy it) and [`Endpoint::handle_timeout`]; packets, deadlines and events
//! come out through [`Endpoint::poll_transmit`], [`Endpoint::poll_timeout`] and
//! [`Endpoint::poll_event`]. The application drives connections with commands on the
//! [`Endpoint`]: `connect`, `listen`, `accept`, `send`, `recv`, `shutdown`, `close`, `abort`.
//!
//! # Driving it by hand
//!
//! Two endpoints and a loop that carries each one's packets to the other is a whole
//! network: here a client connects to a server, sends a greeting and closes, in virtual
//! time. A runtime does the same with a device and a clock (the `synack-tokio` crate).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use synack_core::{Config, Endpoint, Event, Instant, RecvMeta};
//!
//! let client_ip = "198.18.0.2".parse().unwrap();
//! let server_ip = "198.18.0.1".parse().unwrap();
//! let mut client = Endpoint::new(Config::default(), &[client_ip]);
//! let mut server = Endpoint::new(Config::default(), &[server_ip]);
//! let listener = server.listen(SocketAddr::new(server_ip, 80), 16).unwrap();
//!
//! let mut now = Instant::ZERO;
//! let conn = client.connect(now, SocketAddr::new(server_ip, 80)).unwrap();
//! let mut accepted = None;
//! let mut received = Vec::new();
//! let mut buf = vec![0u8; 65_536];
//! // Everything one side has to send goes to the other.
//! let carry = |from: &mut Endpoint, to: &mut Endpoint, now, buf: &mut [u8]| {
//!     while let Some(t) = from.poll_transmit(now, buf) {
//!         to.handle_packet(now, buf, RecvMeta::new(t.len));
//!     }
//! };
//! for _ in 0..100 {
//!     carry(&mut client, &mut server, now, &mut buf);
//!     carry(&mut server, &mut client, now, &mut buf);
//!     while let Some(event) = client.poll_event() {
//!         if event == Event::Connected(conn) {
//!             client.send(conn, b"hello, server").unwrap();
//!             client.close(now, conn).unwrap(); // FIN after the data
//!         }
//!     }
//!     while let Some(event) = server.poll_event() {
//!         if let Event::Incoming(l) = event {
//!             accepted = Some(server.accept(l).unwrap());
//!         }
//!     }
//!     if let Some(c) = accepted {
//!         let mut chunk = [0u8; 64];
//!         while let Ok(n @ 1..) = server.recv(now, c, &mut chunk) {
//!             received.extend_from_slice(&chunk[..n]);
//!         }
//!     }
//!     // Nothing in flight: jump to the next deadline (a delayed ACK, a retransmission).
//!     now = client.poll_timeout().into_iter().chain(server.poll_timeout()).min()
//!         .unwrap_or(now + Duration::from_millis(1));
//!     client.handle_timeout(now);
//!     server.handle_timeout(now);
//! }
//! assert_eq!(received, b"hello, server");
//! # let _ = listener;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod endpoint;
pub mod error;
pub mod isn;
pub mod options;
mod profile;
pub mod seq;
pub(crate) mod shrink;
pub mod stats;
pub(crate) mod syncookie;
pub mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod wire;

/// The shared byte buffer [`Endpoint::send_bytes`] takes, re-exported from `bytes`.
pub use bytes::Bytes;
pub use config::{
    Config, EcnMode, InterceptConfig, InvalidConfig, KeepaliveConfig, SynCookies, DEFAULT_MTU,
    IPV6_MIN_MTU, MAX_MTU, MIN_MTU,
};
pub use endpoint::{
    resolve_unspecified, ConnectionHandle, EndedUnfinished, Endpoint, Event, FastOpenCached,
    FastOpenKey, InterceptedDatagram, InterceptedSyn, ListenerHandle, PortSharing, RecvMeta,
    SharedBacklog, SynHandle, Transmit, UdpHandle, Unreachable, MAX_SYN_RETRIES, USER_MSS_MAX,
    USER_MSS_MIN,
};
pub use error::Error;
pub use options::{Linger2, SendFlags, SocketOptions};
pub use seq::SeqNumber;
pub use stats::{MemoryUsage, Stats};
/// The TTL / hop limit of what a socket sends unless it sets its own (Linux's default, 64).
pub use tcp::connection::output::HOP_LIMIT as DEFAULT_HOP_LIMIT;
pub use tcp::State;
pub use time::Instant;
