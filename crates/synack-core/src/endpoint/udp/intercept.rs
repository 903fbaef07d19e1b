//! Intercept mode's catch-all queue: the datagrams no socket takes, held for the application
//! with their original source and destination ([`Endpoint::udp_recv_intercepted`]), and the
//! datagrams it answers them with, sent from any address ([`Endpoint::udp_send_from`]).

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Datagram, DATAGRAM_OVERHEAD};
use crate::endpoint::demux::source_key;
use crate::endpoint::{Endpoint, Event};
use crate::error::Error;
use crate::tcp::connection::output::HOP_LIMIT;

/// Datagrams the intercept catch-all queue holds at most.
pub const CATCH_ALL_DATAGRAMS: usize = 4096;

/// Bytes (payload plus [`DATAGRAM_OVERHEAD`] each) the catch-all queue holds at most.
pub const CATCH_ALL_BYTES: usize = 4 << 20;

/// Datagrams from one source address the catch-all queue holds at most by default
/// ([`InterceptConfig::udp_max_per_source`](crate::InterceptConfig::udp_max_per_source)):
/// a flood from one client cannot take the whole queue from the others (as intercepted SYNs
/// are bounded per source).
pub const CATCH_ALL_PER_SOURCE: usize = CATCH_ALL_DATAGRAMS / 4;

/// A datagram read from the intercept catch-all queue ([`Endpoint::udp_recv_intercepted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterceptedDatagram {
    /// Bytes copied into the caller's buffer (the rest of a longer datagram is discarded,
    /// as `recv_from` does).
    pub len: usize,
    /// The client that sent it.
    pub src: SocketAddr,
    /// Where it was sent: the original destination.
    pub dst: SocketAddr,
}

impl Endpoint {
    /// The most datagrams from one source the catch-all queue holds (see
    /// [`InterceptConfig::udp_max_per_source`](crate::InterceptConfig::udp_max_per_source)).
    fn udp_max_per_source(&self) -> usize {
        self.config
            .intercept_config()
            .map_or(CATCH_ALL_PER_SOURCE, |c| c.udp_max_per_source)
    }

    /// Intercept mode: a datagram no socket took, held for the application.
    pub(super) fn udp_catch(&mut self, dst: SocketAddr, src: SocketAddr, data: &[u8]) {
        let cost = data.len() + DATAGRAM_OVERHEAD;
        let u = &self.udp;
        let from_source = u
            .caught_per_source
            .get(&source_key(src.ip()))
            .copied()
            .unwrap_or(0);
        if u.caught.len() >= CATCH_ALL_DATAGRAMS
            || from_source >= self.udp_max_per_source()
            || u.caught_bytes + cost > CATCH_ALL_BYTES
            || self.memory + cost > self.config.max_memory
        {
            self.stats.drop_udp_queue_full += 1;
            return;
        }
        let was_empty = self.udp.caught.is_empty();
        self.udp.caught.push_back(Datagram {
            src,
            dst,
            data: Bytes::copy_from_slice(data),
        });
        self.udp.caught_bytes += cost;
        *self
            .udp
            .caught_per_source
            .entry(source_key(src.ip()))
            .or_insert(0) += 1;
        self.memory += cost;
        self.memory_changed();
        self.stats.udp_intercepted += 1;
        if was_empty {
            self.push_event(Event::UdpIntercepted);
        }
    }

    /// Send a datagram from any `src` to `dst`, with no socket: how an application in
    /// intercept mode answers a datagram from the catch-all queue, from its original
    /// destination. Outside intercept mode `src` must be one of the stack's addresses
    /// (`AddrNotAvailable`). As [`Endpoint::udp_send_to`] otherwise.
    pub fn udp_send_from(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<usize, Error> {
        // A relay answers a flow's source, never a group.
        if src.port() == 0 || dst.port() == 0 {
            return Err(Error::InvalidInput);
        }
        if src.is_ipv4() != dst.is_ipv4() || dst.ip().is_multicast() {
            return Err(Error::InvalidInput);
        }
        if !self.may_own(src.ip()) {
            return Err(Error::AddrNotAvailable);
        }
        self.check_udp_destination(dst, false)?;
        self.udp_emit(src, dst, payload, (HOP_LIMIT, 0))
    }

    /// Intercept mode: the next datagram of the catch-all queue, copied into `buf`
    /// (truncated), with its original source and destination. `WouldBlock` when none is
    /// queued ([`Event::UdpIntercepted`] follows).
    pub fn udp_recv_intercepted(&mut self, buf: &mut [u8]) -> Result<InterceptedDatagram, Error> {
        let d = self.udp.caught.pop_front().ok_or(Error::WouldBlock)?;
        self.udp.caught_bytes -= d.cost();
        let source = source_key(d.src.ip());
        if let Some(n) = self.udp.caught_per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.udp.caught_per_source.remove(&source);
            }
        }
        self.memory -= d.cost();
        self.memory_changed();
        let len = d.data.len().min(buf.len());
        buf[..len].copy_from_slice(&d.data[..len]);
        Ok(InterceptedDatagram {
            len,
            src: d.src,
            dst: d.dst,
        })
    }

    /// In intercept mode, whether the datagrams no socket takes are caught for
    /// [`udp_recv_intercepted`](Self::udp_recv_intercepted) (the default) or answered with ICMP port
    /// unreachable, as a closed port answers them. A runtime whose application intercepts
    /// TCP only turns it off, so that UDP to its clients' destinations fails at once and
    /// nothing is queued that no one will read (which would also hold memory against
    /// `Config::max_memory`). Turning it off drops what is queued.
    pub fn set_udp_interception(&mut self, on: bool) {
        self.udp.catching = on;
        if !on {
            while let Some(d) = self.udp.caught.pop_front() {
                self.memory -= d.cost();
            }
            self.udp.caught_bytes = 0;
            self.udp.caught_per_source.clear();
            self.memory_changed();
        }
    }

    /// How many datagrams wait in the catch-all queue.
    pub fn udp_intercepted_count(&self) -> usize {
        self.udp.caught.len()
    }
}
