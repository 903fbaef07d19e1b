//! The tokio runtime for synack.
//!
//! A [`Stack`] owns one sans-IO [`synack_core::Endpoint`] and a driver task that moves packets
//! between it and a [`Device`] (a TUN device, an in-memory pair, or a pcap-writing wrapper).
//! [`TcpStream`] and [`TcpListener`] mirror tokio's own types: streams implement
//! [`AsyncRead`](tokio::io::AsyncRead) and [`AsyncWrite`](tokio::io::AsyncWrite), listeners
//! accept with a cancel-safe `accept()`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use synack_tokio::{device::MemoryDevice, Stack, TcpStream};
//! use tokio::io::AsyncWriteExt;
//!
//! let (dev, _peer) = MemoryDevice::pair();
//! let stack = Stack::new(Default::default(), dev, &["198.18.0.2".parse().unwrap()]);
//! let mut stream = TcpStream::connect(&stack, "198.18.0.1:7".parse().unwrap()).await?;
//! stream.write_all(b"hello").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod device;
mod driver;
pub mod listener;
pub mod netns;
pub mod socket;
pub mod stack;
pub mod stream;

pub use device::Device;
pub use listener::TcpListener;
pub use socket::TcpSocket;
pub use stack::Stack;
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpStream, WriteHalf};
pub use synack_core::{Bytes, Config, KeepaliveConfig, Stats};
