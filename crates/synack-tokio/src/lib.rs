//! The tokio runtime for synack.
//!
//! A [`Stack`] owns a sans-IO [`synack_core::Endpoint`] and a driver task that moves packets
//! between it and a [`Device`] (a TUN device, an in-memory pair, or a pcap-writing wrapper);
//! on a multi-queue TUN, one of each per worker, each a shard owning its share of the flows
//! (see [`shard`]).
//! [`TcpStream`], [`TcpListener`] and [`UdpSocket`] mirror tokio's own types: streams
//! implement [`AsyncRead`](tokio::io::AsyncRead) and [`AsyncWrite`](tokio::io::AsyncWrite),
//! listeners accept with a cancel-safe `accept()`, UDP sockets `send_to` and `recv_from`.
//!
//! Two stacks joined by an in-memory link, a listener on one and a client on the other (on a
//! TUN device, the kernel is the other side; see `device::TunDevice`):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use synack_tokio::{device::MemoryDevice, Stack, TcpListener, TcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (a, b) = MemoryDevice::pair();
//! let client = Stack::builder().address("198.18.0.2".parse().unwrap()).build(a)?;
//! let server = Stack::builder().address("198.18.0.1".parse().unwrap()).build(b)?;
//!
//! let listener = TcpListener::bind(&server, "198.18.0.1:7").await?;
//! let echo = tokio::spawn(async move {
//!     let (mut stream, _peer) = listener.accept().await?;
//!     let (mut rx, mut tx) = stream.split();
//!     tokio::io::copy(&mut rx, &mut tx).await?;
//!     tx.shutdown().await
//! });
//!
//! let mut stream = TcpStream::connect(&client, "198.18.0.1:7").await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // FIN: the echo ends
//! let mut back = Vec::new();
//! stream.read_to_end(&mut back).await?;
//! assert_eq!(back, b"hello");
//! echo.await??;
//! drop(stream);
//! client.shutdown(Duration::from_secs(5)).await?; // every FIN exchanged
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// All unsafe code lives in `sys` modules, each with its own `#[allow(unsafe_code)]` and a
// SAFETY comment on every block.
#![deny(unsafe_code)]

mod addr;
pub mod device;
mod driver;
pub mod integration;
pub mod intercept;
pub mod listener;
mod lookup;
#[cfg(feature = "netns")]
pub mod netns;
mod rx_buffers;
pub mod shard;
pub mod socket;
mod sockopt;
pub mod stack;
mod state;
pub mod stream;
mod tx_queue;
pub mod udp;

// Every type a user names to call the API (what `Stack`'s methods and those of what they
// return take and give back, `Config`'s setters' arguments included) is here at the root,
// so that no one has to know which module, or which crate, defines it.
pub use addr::{lookup_host, ToSocketAddrs};
pub use device::{Device, DeviceCapabilities};
pub use intercept::{IncomingSyn, Interceptor};
pub use listener::TcpListener;
pub use shard::{FlowSteering, ShardStats};
pub use socket::TcpSocket;
pub use stack::{Stack, StackBuilder, StackError};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpStream, WriteHalf};
pub use synack_core::tcp::info::TcpInfo;
pub use synack_core::{
    Bytes, Config, EcnMode, FastOpenKey, InterceptConfig, InterceptedSyn, KeepaliveConfig,
    MemoryUsage, SocketOptions, State, Stats, SynCookies, Unreachable,
};
pub use udp::{InterceptedDatagram, UdpInterceptor, UdpSocket};
