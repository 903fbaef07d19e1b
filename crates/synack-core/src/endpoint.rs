//! The endpoint: every connection and listener of one stack, demultiplexed by 4-tuple.
//!
//! SKELETON: the public API below is fixed; the bodies are being written.
#![allow(unused_variables, missing_docs)]

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::error::Error;
use crate::stats::Stats;
use crate::tcp::State;
use crate::time::Instant;

/// An opaque handle to one connection; it stays valid until [`Endpoint::close`] or
/// [`Endpoint::abort`] releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub usize);

/// An opaque handle to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerHandle(pub usize);

/// Something the application may want to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An active open completed: the connection is ESTABLISHED.
    Connected(ConnectionHandle),
    /// A listener's accept queue holds a connection.
    Incoming(ListenerHandle),
    /// Data, or the peer's FIN, can be read.
    Readable(ConnectionHandle),
    /// Space opened in the send buffer.
    Writable(ConnectionHandle),
    /// The connection reached CLOSED (or TIME-WAIT after a clean close); `None` for a clean
    /// close, else why it failed.
    Closed(ConnectionHandle, Option<Error>),
}

/// One packet written by [`Endpoint::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes of the IP packet at the start of the buffer.
    pub len: usize,
}

/// A sans-IO TCP/IP endpoint.
#[derive(Debug)]
pub struct Endpoint {}

impl Endpoint {
    /// An endpoint that owns the given local addresses.
    pub fn new(config: Config, addresses: &[IpAddr]) -> Endpoint {
        unimplemented!()
    }
    pub fn config(&self) -> &Config {
        unimplemented!()
    }
    pub fn stats(&self) -> &Stats {
        unimplemented!()
    }
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {}
    pub fn handle_timeout(&mut self, now: Instant) {}
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        None
    }
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionHandle, Error> {
        unimplemented!()
    }
    pub fn listen(&mut self, local: SocketAddr, backlog: usize) -> Result<ListenerHandle, Error> {
        unimplemented!()
    }
    pub fn accept(&mut self, listener: ListenerHandle) -> Result<ConnectionHandle, Error> {
        unimplemented!()
    }
    pub fn close_listener(&mut self, now: Instant, listener: ListenerHandle) -> Result<(), Error> {
        unimplemented!()
    }
    pub fn send(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        data: &[u8],
    ) -> Result<usize, Error> {
        unimplemented!()
    }
    pub fn recv(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        unimplemented!()
    }
    pub fn shutdown(&mut self, now: Instant, conn: ConnectionHandle) -> Result<(), Error> {
        unimplemented!()
    }
    pub fn close(&mut self, now: Instant, conn: ConnectionHandle) -> Result<(), Error> {
        unimplemented!()
    }
    pub fn abort(&mut self, now: Instant, conn: ConnectionHandle) -> Result<(), Error> {
        unimplemented!()
    }
    pub fn set_nodelay(&mut self, conn: ConnectionHandle, nodelay: bool) -> Result<(), Error> {
        unimplemented!()
    }
    pub fn state(&self, conn: ConnectionHandle) -> Result<State, Error> {
        unimplemented!()
    }
    pub fn local_addr(&self, conn: ConnectionHandle) -> Result<SocketAddr, Error> {
        unimplemented!()
    }
    pub fn peer_addr(&self, conn: ConnectionHandle) -> Result<SocketAddr, Error> {
        unimplemented!()
    }
    pub fn listener_addr(&self, listener: ListenerHandle) -> Result<SocketAddr, Error> {
        unimplemented!()
    }
    /// Bytes that `send` would accept now.
    pub fn send_capacity(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        unimplemented!()
    }
    /// Bytes (or EOF) that `recv` would return now.
    pub fn recv_ready(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        unimplemented!()
    }
    /// The error the connection failed with, if any.
    pub fn take_error(&mut self, conn: ConnectionHandle) -> Result<Option<Error>, Error> {
        unimplemented!()
    }
}
