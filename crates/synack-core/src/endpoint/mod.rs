//! The endpoint: every connection and listener of one stack, demultiplexed by 4-tuple.
//!
//! It parses each packet once, hands TCP segments to their connection (a hash map lookup on
//! the 4-tuple, O(1)), to a listener, or answers them with an RST (RFC 9293 §3.10.7.1); it
//! answers pings and maps ICMP errors onto the connections they name. Connections that have
//! something to send sit in a FIFO of "dirty" handles; their deadlines sit in a binary heap
//! with lazy deletion, so neither output nor timers scan every connection.
//!
//! This file holds the [`Endpoint`] type, its accessors and the application's commands on
//! connections (`send`, `recv`, `close`, the socket options). The rest is split by concern,
//! each module adding its own `impl Endpoint` block:
//!
//! - `connect`: the active open (`connect` and its variants), the ephemeral port search and
//!   TCP Fast Open's client cache;
//! - `demux`: a packet in ([`RecvMeta`], `handle_packet`): parsing, the 4-tuple lookup,
//!   handing segments to connections, RSTs for closed ports;
//! - `listen`: listeners, their SYN and accept queues, SYN cookies, and the `listen`,
//!   `accept` and `close_listener` commands;
//! - `time_wait`: the compact TIME-WAIT table and the segments that reach it;
//! - `icmp`: echo replies, and ICMP errors mapped onto connections;
//! - `intercept`: transparent mode, SYNs to any address held for the application's decision;
//! - `udp`: UDP sockets by handle, their bounded queues, the intercept catch-all queue for
//!   datagrams no socket takes, ICMP port unreachable (rate-limited) for the rest;
//! - `schedule`: the timer heap (`handle_timeout`, `poll_timeout`);
//! - `output`: packets and events out ([`Transmit`], `poll_transmit`, `poll_event`), and the
//!   queue of the endpoint's own packets;
//! - `connections`: the connection table's slots, who holds each connection, the
//!   bookkeeping after every change (`after`: events, accept queue, memory accounting,
//!   output and timer flags), and release.
//!
//! Below them are leaves that know nothing of the endpoint: `handle` (the handles), `table`
//! (the seeded hash tables and the 4-tuple key) and `slab` (connections by handle). What a
//! connection does with a segment, a timeout, an ICMP error or at TIME-WAIT is the
//! connection's own (`tcp::connection`); the endpoint calls its methods.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes};

use crate::config::Config;
use crate::error::Error;
use crate::isn::Secrets;
use crate::options::SendFlags;
use crate::stats::{MemoryUsage, Stats};
use crate::tcp::connection::{ConnConfig, Connection};
use crate::tcp::info::TcpInfo;
use crate::tcp::State;
use crate::time::Instant;

mod bind;
pub use bind::PortSharing;
mod connect;
pub use connect::resolve_unspecified;
mod connections;
mod demux;
mod fast_open;
mod handle;
mod icmp;
mod icmp_limit;
mod intercept;
mod listen;
pub use listen::SharedBacklog;
mod output;
mod path_mtu;
mod port_use;
mod reassembly;
pub use reassembly::{
    DATAGRAM_OVERHEAD as FRAGMENT_DATAGRAM_OVERHEAD, PIECE_OVERHEAD as FRAGMENT_PIECE_OVERHEAD,
};
mod schedule;
mod slab;
mod table;
mod time_wait;
mod udp;

use bind::Bindings;
use connections::{Owner, Slot};
pub use demux::{ipv4_mapped, needs_scope_id, unmapped, RecvMeta};
pub use fast_open::{FastOpenCached, FastOpenKey};
pub use handle::{ConnectionHandle, ListenerHandle, UdpHandle};
pub use icmp::Unreachable;
use intercept::Intercepts;
pub use intercept::{InterceptedSyn, SynHandle};
use listen::Listener;
pub use output::{Transmit, MAX_EVENTS};
use slab::Slab;
use table::{table, Table, Tuple};
use time_wait::TimeWaitTable;
use udp::Udp;
pub use udp::{
    InterceptedDatagram, CATCH_ALL_BYTES, CATCH_ALL_DATAGRAMS, CATCH_ALL_PER_SOURCE,
    DATAGRAM_OVERHEAD, MAX_MEMBERSHIPS, MAX_MEMBERSHIPS_V6, MULTICAST_HOPS, SEND_QUEUE_PACKETS,
    UDP_MAX_PAYLOAD,
};

/// The most SYN retransmissions a connection may be given ([`Endpoint::set_syn_retries`]):
/// Linux's `MAX_TCP_SYNCNT`.
pub const MAX_SYN_RETRIES: u32 = 127;

/// The least MSS a connection may be clamped to ([`Endpoint::clamp_mss`], `TCP_MAXSEG`):
/// Linux's `TCP_MIN_MSS`.
pub const USER_MSS_MIN: usize = 88;

/// The most: Linux's `MAX_TCP_WINDOW`, the largest unscaled window.
pub const USER_MSS_MAX: usize = 32767;

/// Something the application may want to act on. Events are hints: the state they announce
/// can be read back at any time (`recv`, `send_capacity`, `state`, `take_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An active open completed: the connection is ESTABLISHED.
    Connected(ConnectionHandle),
    /// A listener's accept queue holds a connection.
    Incoming(ListenerHandle),
    /// Data, the peer's FIN, or an error can be read.
    Readable(ConnectionHandle),
    /// Space opened in the send buffer for an application that found it full (a write cut
    /// short or refused, `send_capacity_or_wait` or `poll_writable` saying no): a third of
    /// it free and fewer than half the `TCP_NOTSENT_LOWAT` bytes unsent, as Linux's
    /// `sk_stream_write_space` wakes a writer; or the connection opened or closed.
    Writable(ConnectionHandle),
    /// The connection reached CLOSED or TIME-WAIT; `None` for a clean close, else why it
    /// failed.
    Closed(ConnectionHandle, Option<Error>),
    /// Intercept mode: a SYN no listener took is held for a decision (see
    /// [`Endpoint::intercepted`] and [`Endpoint::accept_intercepted`]).
    Intercepted(SynHandle),
    /// A UDP socket has a datagram to read, or an ICMP error to report
    /// ([`Endpoint::udp_recv_from`]).
    UdpReadable(UdpHandle),
    /// The own-packet queue has room for datagrams again after a UDP send returned
    /// `WouldBlock`.
    UdpWritable,
    /// Intercept mode: the catch-all queue holds a datagram that no socket took
    /// ([`Endpoint::udp_recv_intercepted`]).
    UdpIntercepted,
}

/// A sans-IO TCP/IP endpoint.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    /// What every connection copies from `config`, computed once.
    conn_config: std::sync::Arc<ConnConfig>,
    addresses: Vec<IpAddr>,
    secrets: Secrets,
    connections: Slab<Slot>,
    by_tuple: Table<Tuple, ConnectionHandle>,
    listeners: Table<ListenerHandle, Listener>,
    by_local: Table<SocketAddr, ListenerHandle>,
    /// The listeners that share an address with SO_REUSEPORT, where there are two or more
    /// (`by_local` holds the first of each): a new connection's 4-tuple picks one.
    reuseport_groups: HashMap<SocketAddr, Vec<ListenerHandle>>,
    /// Ports held by sockets bound but not connected or listening.
    bindings: Bindings,
    /// The local addresses connections use, by port (TIME-WAIT entries keep their own).
    conn_ports: port_use::PortUse,
    /// The packet being taken in is one of ours to one of our own addresses, looped back by
    /// `poll_transmit`: its own source is then no LAND attack.
    looping: bool,
    /// Every own address is a loopback one: the link is a loopback link, where loopback
    /// destinations and own sources are ordinary (see `handle_ip`).
    loopback_only: bool,
    /// `poll_transmit` stopped at its loopback burst with more to loop: due at once.
    loopback_due: Option<Instant>,
    next_handle: usize,
    events: VecDeque<Event>,
    /// An event was dropped since [`Endpoint::take_event_overflow`] last looked.
    events_overflowed: bool,
    /// The endpoint's own packets, each with the counter it moves once it leaves.
    control: VecDeque<(Vec<u8>, output::Own)>,
    dirty: VecDeque<ConnectionHandle>,
    /// Connections whose deadline may have moved (their `stale` flag is set; a handle whose
    /// flag was cleared, or whose connection is gone, is skipped). Deadlines are recomputed
    /// once per connection when a deadline is asked for or due, not after every segment.
    stale: Vec<ConnectionHandle>,
    timers: BinaryHeap<Reverse<(Instant, ConnectionHandle)>>,
    /// How many binds to port 0 came before (see `Secrets::bind_port_offset`).
    next_ephemeral: u32,
    /// The ephemeral connects' counters, by destination bucket (`ephemeral_port`); made on
    /// the first connect.
    ephemeral_counters: Vec<u32>,
    /// Passive connections in SYN-RECEIVED, across all listeners.
    half_open: usize,
    /// Released connections in TIME-WAIT, held compactly.
    time_wait: TimeWaitTable,
    /// Bytes all connections and UDP queues hold (see `Config::max_memory`).
    memory: usize,
    /// Under memory pressure (see `Config::max_memory`): set at the pressure level, cleared
    /// below the low level.
    memory_pressure: bool,
    /// When out-of-order data was last pruned across the connections (`prune_out_of_order`).
    last_prune: Option<Instant>,
    /// Connections the memory cap held back, to wake once memory drains.
    memory_waiters: Vec<ConnectionHandle>,
    /// SYNs held for the application in intercept mode.
    intercepts: Intercepts,
    reassembly: reassembly::Reassembly,
    /// UDP sockets and the catch-all queue.
    udp: Udp,
    /// The limits on the ICMP errors it sends.
    icmp_limit: icmp_limit::IcmpLimiter,
    /// TCP Fast Open cookies servers gave us.
    fast_open_cookies: fast_open::FastOpenCookies,
    /// The key our Fast Open listeners make their cookies with, unless they have their own.
    fast_open_key: FastOpenKey,
    /// The path MTUs ICMP errors lowered, by destination, for TCP and UDP (`path_mtu.rs`).
    path_mtus: path_mtu::PathMtus,
    stats: Stats,
}

impl Endpoint {
    /// An endpoint that owns the given local addresses.
    pub fn new(config: Config, addresses: &[IpAddr]) -> Endpoint {
        let secrets = Secrets::new(config.seed);
        let seed = secrets.table_seed();
        let fast_open_key = FastOpenKey::new(secrets.fast_open_key());
        Endpoint {
            conn_config: std::sync::Arc::new(ConnConfig::from_config(&config)),
            config,
            addresses: addresses.to_vec(),
            secrets,
            connections: Slab::default(),
            by_tuple: table(seed),
            listeners: table(seed),
            by_local: table(seed),
            reuseport_groups: HashMap::new(),
            bindings: Bindings::default(),
            conn_ports: port_use::PortUse::new(seed),
            looping: false,
            loopback_only: !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback),
            loopback_due: None,
            next_handle: 1,
            events: VecDeque::new(),
            events_overflowed: false,
            control: VecDeque::new(),
            dirty: VecDeque::new(),
            stale: Vec::new(),
            timers: BinaryHeap::new(),
            next_ephemeral: 0,
            ephemeral_counters: Vec::new(),
            half_open: 0,
            time_wait: TimeWaitTable::new(seed),
            memory: 0,
            memory_pressure: false,
            last_prune: None,
            memory_waiters: Vec::new(),
            intercepts: Intercepts::default(),
            reassembly: Default::default(),
            udp: Udp::new(seed),
            icmp_limit: icmp_limit::IcmpLimiter::default(),
            fast_open_cookies: Default::default(),
            fast_open_key,
            path_mtus: Default::default(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The stack's own addresses.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// How many connections the endpoint holds, in every state (TIME-WAIT included).
    pub fn connection_count(&self) -> usize {
        self.connections.len() + self.time_wait.len()
    }

    /// How many connections still have something to deliver: a connection that has not
    /// sent its FIN, or whose data or FIN the peer has not acknowledged yet. Zero means that
    /// every byte written has arrived and every connection has closed its sending side:
    /// what a graceful shutdown of the whole endpoint waits for. Connections in FIN-WAIT-2
    /// (waiting only for the peer's FIN) and TIME-WAIT are finished.
    pub fn unfinished_count(&self) -> usize {
        self.connections
            .iter()
            .filter(|(_, s)| s.conn.is_unfinished())
            .count()
    }

    /// Bytes the unfinished connections (see [`Endpoint::unfinished_count`]) still hold for
    /// their peers: written and not yet acknowledged, sent or not.
    pub fn unfinished_send_queued(&self) -> usize {
        self.connections
            .iter()
            .filter(|(_, s)| s.conn.is_unfinished())
            .map(|(_, s)| s.conn.send_queue_len())
            .sum()
    }

    /// The unfinished connections (see [`Endpoint::unfinished_count`]).
    fn unfinished(&self) -> Vec<ConnectionHandle> {
        self.connections
            .iter()
            .filter(|(_, s)| s.conn.is_unfinished())
            .map(|(h, _)| h)
            .collect()
    }

    /// End every unfinished connection (see [`Endpoint::unfinished_count`]) as Linux ends a
    /// process's sockets when it exits, for a runtime that stops driving the endpoint
    /// without a shutdown: a connection with everything it sent acknowledged and nothing
    /// unread is closed (its FIN, if not already out, goes with the next `poll_transmit`,
    /// and the peer reads the end of the stream rather than a reset); the others are reset
    /// (data unsent or unacknowledged, which no one will retransmit now; data never read; a
    /// handshake under way; a connection never accepted, as Linux resets what a closed
    /// listener's queue held). Returns how many were closed and how many reset, and the
    /// bytes the reset ones still held for their peers.
    pub fn end_unfinished(&mut self, now: Instant) -> EndedUnfinished {
        let mut ended = EndedUnfinished::default();
        for h in self.unfinished() {
            let Some(slot) = self.connections.get_mut(&h) else {
                continue;
            };
            let queued = !matches!(slot.owner, Owner::AcceptQueue(_));
            if queued && slot.conn.can_end_cleanly() {
                slot.conn.close(now);
                ended.closed += 1;
            } else {
                ended.lost += slot.conn.send_queue_len();
                slot.conn.abort_with(Error::ConnectionAborted);
                ended.reset += 1;
            }
            self.after(h);
        }
        ended
    }

    /// Reset every unfinished connection (see [`Endpoint::unfinished_count`]) and release
    /// what the application no longer holds: the last resort of a shutdown that ran out of
    /// time, so that no peer is left waiting on a connection that will never answer again.
    /// The application's own handles stay valid and report `ConnectionAborted`.
    pub fn abort_unfinished(&mut self) {
        for h in self.unfinished() {
            if let Some(slot) = self.connections.get_mut(&h) {
                slot.conn.abort_with(Error::ConnectionAborted);
            }
            self.after(h);
        }
    }

    /// Bytes held against `Config::max_memory`: what the connections' buffers hold (data
    /// queued for sending, and the receive buffers' storage: data not yet read, out-of-order
    /// data and the holes between), and the UDP datagrams queued (payload plus
    /// [`DATAGRAM_OVERHEAD`] each). It follows the data: an idle connection holds nothing.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Where the endpoint's memory goes: buffered bytes against the cap, the heap the
    /// buffers hold, the connections' own state, and whether it is under pressure. It walks
    /// every connection: a call for monitoring, not for every packet.
    pub fn memory_usage(&self) -> MemoryUsage {
        let index = std::mem::size_of::<(Tuple, ConnectionHandle)>()
            + std::mem::size_of::<Reverse<(Instant, ConnectionHandle)>>();
        let (mut allocated, mut state) = (0, 0);
        for (_, slot) in self.connections.iter() {
            allocated += slot.conn.allocated();
            state += std::mem::size_of::<Slot>() + slot.conn.controller_size() + index;
        }
        state += self.time_wait.len() * self.time_wait.entry_size();
        state += self.intercepts.memory();
        state += self.ephemeral_counters.capacity() * std::mem::size_of::<u32>();
        MemoryUsage {
            buffered: self.memory,
            allocated,
            connections: self.connections.len(),
            time_wait: self.time_wait.len(),
            state,
            pressure: self.memory_pressure,
            cap: self.config.max_memory,
            reassembly: self.reassembly.memory(),
        }
    }

    /// How many released connections wait in the compact TIME-WAIT table.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Queue bytes for sending; returns how many fit. `Err(WouldBlock)` when the buffer is
    /// full ([`Event::Writable`] follows), `Err(BrokenPipe)` after shutdown.
    pub fn send(&mut self, conn: ConnectionHandle, data: &[u8]) -> Result<usize, Error> {
        self.app_write(conn, |c| c.send(data, SendFlags::default()))
    }

    /// [`Endpoint::send`] with `send(2)`'s segment-shaping flags: `MSG_MORE` (hold a short
    /// segment back for more) and `MSG_EOR` (end a record: later data never shares its last
    /// segment). See [`SendFlags`].
    pub fn send_with(
        &mut self,
        conn: ConnectionHandle,
        data: &[u8],
        flags: SendFlags,
    ) -> Result<usize, Error> {
        self.app_write(conn, |c| c.send(data, flags))
    }

    /// [`Endpoint::send_with`] for `MSG_OOB`: the last byte written is urgent (RFC 9293
    /// §3.8.5, RFC 6093 §3). Segments carry URG with the urgent pointer one past it until
    /// the peer acknowledges it, and Nagle's algorithm holds nothing back meanwhile (Linux
    /// `tcp_mark_urg`, `tcp_nagle_test`). RFC 6093 §5 advises new applications against
    /// urgent data; this is for those that speak a protocol using it (telnet, FTP's ABOR).
    pub fn send_urgent(
        &mut self,
        conn: ConnectionHandle,
        data: &[u8],
        flags: SendFlags,
    ) -> Result<usize, Error> {
        self.app_write(conn, |c| c.send_urgent(data, flags))
    }

    /// Queue bytes the application holds as [`Bytes`] (an HTTP body, a cached file) without
    /// copying them; returns how many were taken, and the caller keeps `data.slice(n..)`.
    /// Pieces under 1 KiB are copied (a chunk of their own would cost more than they
    /// hold). Otherwise as
    /// [`Endpoint::send`].
    pub fn send_bytes(&mut self, conn: ConnectionHandle, data: Bytes) -> Result<usize, Error> {
        self.app_write(conn, |c| c.send_bytes(data, SendFlags::default()))
    }

    /// A write by the application into `conn`, then the bookkeeping any change needs.
    fn app_write(
        &mut self,
        conn: ConnectionHandle,
        write: impl FnOnce(&mut Connection) -> Result<usize, Error>,
    ) -> Result<usize, Error> {
        self.app_slot(conn)?;
        self.set_budget(conn, 0);
        let slot = self.app_slot(conn)?;
        let result = write(&mut slot.conn);
        // Even a refused write may have listed the connection for waking (at the cap).
        self.after(conn);
        result
    }

    /// Read received bytes. `Ok(0)` is end of stream; `Err(WouldBlock)` means nothing yet
    /// ([`Event::Readable`] follows). A read stops at the urgent mark, and there skips the
    /// urgent byte unless [`set_oob_inline`](Self::set_oob_inline) keeps it in the stream
    /// (see [`recv_urgent`](Self::recv_urgent)).
    pub fn recv(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        mut buf: &mut [u8],
    ) -> Result<usize, Error> {
        // A slice is a `BufMut` whose one chunk is all of it.
        self.recv_buf(now, conn, &mut buf)
    }

    /// [`recv`](Self::recv) into a [`BufMut`]'s room, at most what its next chunk holds
    /// (`BufMut::chunk_mut`: the spare capacity of a `BytesMut` or a `Vec`, which makes room
    /// if there is none), written in place: the room is never zeroed first, and nothing is
    /// copied on the way. Returns the bytes added.
    pub fn recv_buf<B: BufMut + ?Sized>(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        buf: &mut B,
    ) -> Result<usize, Error> {
        let max = buf.chunk_mut().len();
        self.recv_with(now, conn, max, |part| buf.put_slice(part))
    }

    /// [`recv`](Self::recv) as one [`Bytes`] of at most `max` bytes, empty at the end of the
    /// stream. A large payload the connection kept where it arrived (see
    /// [`handle_packet_shared`](Self::handle_packet_shared)) is handed over without a copy,
    /// one such payload a call at most; bytes it copied are copied once more into the
    /// returned handle. The handle holds the packet's buffer alive, outside the memory cap,
    /// as long as the application keeps it.
    pub fn recv_bytes(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        max: usize,
    ) -> Result<Bytes, Error> {
        self.read_from(conn, max, |c| c.recv_bytes(now, max))
    }

    /// A read of at most `max` bytes, handed to `sink` in order.
    fn recv_with(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        max: usize,
        sink: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        self.read_from(conn, max, |c| c.recv_with(now, max, sink))
    }

    /// A read of at most `max` bytes by `read` on the connection, with the memory budget
    /// and the bookkeeping around it.
    fn read_from<T>(
        &mut self,
        conn: ConnectionHandle,
        max: usize,
        read: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // The window a read may open counts the memory the read itself gives back.
        let queued = self.app_conn(conn)?.recv_queue_len();
        self.set_budget(conn, queued.min(max));
        let slot = self.app_slot(conn)?;
        let result = read(&mut slot.conn);
        // Whatever the read took from the buffer changed the connection (a window to
        // announce, an emptied buffer's reclaim timer), even when it returns nothing: a read
        // that only skips the urgent byte at the mark is `WouldBlock`.
        if slot.conn.recv_queue_len() != queued {
            self.after(conn);
        }
        result
    }

    /// Copy received bytes into `buf` without consuming them (MSG_PEEK): the next `recv`
    /// returns them again. The same results as `recv` otherwise.
    pub fn peek(&self, conn: ConnectionHandle, buf: &mut [u8]) -> Result<usize, Error> {
        self.app_conn(conn)?.peek(buf)
    }

    /// Read the urgent byte (`recv(MSG_OOB)`, RFC 9293 §3.8.5 with Linux's semantics: the
    /// byte before the peer's urgent pointer, RFC 6093 §3), once. `Ok(None)` is end of
    /// stream. `Err(InvalidInput)` (EINVAL) when there is none to read: no urgent pointer
    /// came, the byte was read already, or [`set_oob_inline`](Self::set_oob_inline) keeps it
    /// in the stream; `Err(WouldBlock)` (EAGAIN, never worth blocking for) while the pointer
    /// came ahead of the byte. Normal reads stop at the byte's place (the mark) and skip it.
    pub fn recv_urgent(&mut self, conn: ConnectionHandle) -> Result<Option<u8>, Error> {
        self.app_slot(conn)?.conn.recv_urgent(false)
    }

    /// As [`recv_urgent`](Self::recv_urgent), but the byte stays to be read again
    /// (`MSG_OOB | MSG_PEEK`).
    pub fn peek_urgent(&mut self, conn: ConnectionHandle) -> Result<Option<u8>, Error> {
        self.app_slot(conn)?.conn.recv_urgent(true)
    }

    /// While the peer's urgent pointer is pending: how many bytes a read returns before it
    /// stops at the urgent mark, `Some(0)` at the mark itself (`SIOCATMARK`). `None` with no
    /// pending mark. The count may exceed what is buffered when the pointer came ahead of
    /// the data.
    pub fn urgent_mark(&self, conn: ConnectionHandle) -> Result<Option<usize>, Error> {
        Ok(self.app_conn(conn)?.urgent_mark())
    }

    /// Whether an urgent byte waits for [`recv_urgent`](Self::recv_urgent) (`POLLPRI`).
    pub fn urgent_pending(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.urgent_pending())
    }

    /// `SO_OOBINLINE`: keep the urgent byte in the stream, where normal reads return it
    /// (after stopping at the mark), instead of out of band for
    /// [`recv_urgent`](Self::recv_urgent).
    pub fn set_oob_inline(&mut self, conn: ConnectionHandle, inline: bool) -> Result<(), Error> {
        self.app_slot(conn)?.conn.set_oob_inline(inline);
        self.after(conn);
        Ok(())
    }

    /// Send FIN after the queued data (half-close); reading continues.
    pub fn shutdown(&mut self, conn: ConnectionHandle) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.conn.shutdown()?;
        self.after(conn);
        Ok(())
    }

    /// Shut the reading side (`shutdown(SHUT_RD)`): reads return what is queued, then the
    /// end of the stream. Data keeps coming in ESTABLISHED, but data that arrives after our
    /// FIN resets the connection (RFC 1122 §4.2.2.13, as Linux). For both directions, call
    /// this and [`shutdown`](Self::shutdown).
    pub fn shutdown_read(&mut self, conn: ConnectionHandle) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        let result = slot.conn.shutdown_read();
        self.after(conn);
        result
    }

    /// Release the handle. The connection closes gracefully in the background (FIN after the
    /// queued data, then TIME-WAIT), or is reset if received data was left unread.
    pub fn close(&mut self, now: Instant, conn: ConnectionHandle) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.owner = Owner::Nobody;
        if slot.accepting_intercepted() {
            // The application gave up an intercepted accept before the client's ACK (a
            // relay's accept timeout): reset, as ABORT in SYN-RECEIVED (RFC 9293 §3.10.5),
            // and as Linux drops a request whose listener went away. A close would queue a
            // FIN and resend the SYN-ACK for a minute, holding a connection that no
            // half-open limit counts: spoofed SYNs a relay gave up on could fill the table.
            slot.conn.abort();
        } else {
            slot.conn.close(now);
        }
        self.after(conn);
        self.maybe_remove(conn);
        Ok(())
    }

    /// Reset the connection and release the handle.
    pub fn abort(&mut self, conn: ConnectionHandle) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.owner = Owner::Nobody;
        slot.conn.abort();
        self.after(conn);
        Ok(())
    }

    /// Offer timestamps (RFC 7323 §3) in the handshakes that start from now on, or not, as a
    /// write to Linux's `net.ipv4.tcp_timestamps` does; connections already open keep what
    /// they negotiated.
    pub fn set_timestamps(&mut self, on: bool) {
        if self.config.timestamps != on {
            self.config.timestamps(on);
            self.conn_config = std::sync::Arc::new(ConnConfig::from_config(&self.config));
        }
    }

    /// The link's MTU changed (`ip link set DEV mtu N`), as Linux reads the device's MTU
    /// through the route each time it builds a packet:
    /// - the handshakes that start from now on advertise the MSS it allows (RFC 9293
    ///   §3.7.1), SYN cookies included (`dst_metric_advmss`);
    /// - connections already open send with it from their next segment, down or back up
    ///   to the peer's MSS, unless a path MTU report holds theirs lower (`tcp_current_mss`);
    ///   a SYN not yet answered is sent again with the lower MSS, if lower;
    /// - UDP and ICMP size what they send by it, and the path MTU reports it makes
    ///   meaningless are forgotten.
    ///
    /// The buffers the caller hands [`poll_transmit`](Self::poll_transmit) must hold a
    /// packet of the new MTU. `InvalidInput` outside
    /// [`MIN_MTU`](crate::MIN_MTU)..=[`MAX_MTU`](crate::MAX_MTU).
    pub fn set_mtu(&mut self, mtu: usize) -> Result<(), Error> {
        if !(crate::MIN_MTU..=crate::MAX_MTU).contains(&mtu) {
            return Err(Error::InvalidInput);
        }
        if mtu == self.config.get_mtu() {
            return Ok(());
        }
        self.config.mtu(mtu);
        self.path_mtus.forget_at_or_above(mtu);
        for slot in self.connections.values_mut() {
            let ipv6 = slot.conn.local().is_ipv6();
            slot.conn.set_link_mss(self.config.link_mss(ipv6));
        }
        Ok(())
    }

    /// Negotiate ECN (RFC 3168) in the handshakes that start from now on as `mode` says,
    /// as a write to Linux's `net.ipv4.tcp_ecn` does; connections already open keep what
    /// they agreed.
    pub fn set_ecn(&mut self, mode: crate::config::EcnMode) {
        if self.config.ecn != mode {
            self.config.ecn(mode);
            self.conn_config = std::sync::Arc::new(ConnConfig::from_config(&self.config));
        }
    }

    /// Turn Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, conn: ConnectionHandle, nodelay: bool) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.conn.set_nodelay(nodelay);
        self.after(conn);
        Ok(())
    }

    /// `TCP_QUICKACK` (Linux `__tcp_sock_set_quickack`): `true` leaves request/response
    /// (ping-pong) mode, where ACKs wait to ride on the reply, and sends an ACK that waits
    /// for the delayed-ACK timer now if everything received has been read (else at the read
    /// that empties the queue), in ESTABLISHED and CLOSE-WAIT; `false` enters that mode. Neither is for good, as in Linux: the delayed-ACK engine enters and leaves the
    /// mode again as the exchange goes.
    pub fn set_quickack(&mut self, conn: ConnectionHandle, on: bool) -> Result<(), Error> {
        self.app_slot(conn)?.conn.set_quickack(on);
        self.after(conn);
        Ok(())
    }

    /// Whether the connection is out of request/response mode (`TCP_QUICKACK` as Linux's
    /// `getsockopt` reads it).
    pub fn quickack(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.quickack())
    }

    /// `TCP_CORK`: while on, segments shorter than a full one wait, whatever is in flight,
    /// until it is turned off (then Nagle's usual rules decide), `set_nodelay(true)` pushes
    /// them, or the persist timer lets them out.
    pub fn set_cork(&mut self, conn: ConnectionHandle, cork: bool) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.conn.set_cork(cork);
        self.after(conn);
        Ok(())
    }

    /// Whether `TCP_CORK` is on for the connection.
    pub fn cork(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.cork())
    }

    /// `IP_TOS` (IPv4) / `IPV6_TCLASS` (IPv6): the DS byte of every packet the connection
    /// sends from now on (RFC 2474's DSCP, for the path's queues). Only the six DSCP bits
    /// are kept: the two ECN bits are the stack's to set (RFC 3168 §6.1; Linux masks them
    /// for TCP sockets too). For a connection's SYN or SYN-ACK, set it with
    /// [`SocketOptions::tos`](crate::SocketOptions::tos) instead.
    pub fn set_tos(&mut self, conn: ConnectionHandle, tos: u8) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.conn.set_tos(tos);
        Ok(())
    }

    /// The connection's DSCP bits as [`set_tos`](Self::set_tos) set them (the ECN bits read
    /// as zero).
    pub fn tos(&self, conn: ConnectionHandle) -> Result<u8, Error> {
        Ok(self.app_conn(conn)?.tos())
    }

    /// `IP_TTL` (IPv4) / `IPV6_UNICAST_HOPS` (IPv6): the TTL or hop limit of every packet the
    /// connection sends from now on (RFC 791 §3.2, RFC 8200 §3). For a connection's SYN or
    /// SYN-ACK, set it with [`SocketOptions::hop_limit`](crate::SocketOptions::hop_limit)
    /// instead. Any value goes, 0 included (a hop limit of 0 reaches only the link's
    /// other end, RFC 8200 §3); Linux takes 1 to 255 for `IP_TTL`.
    pub fn set_hop_limit(&mut self, conn: ConnectionHandle, hop_limit: u8) -> Result<(), Error> {
        let slot = self.app_slot(conn)?;
        slot.conn.set_hop_limit(hop_limit);
        Ok(())
    }

    /// The connection's TTL or hop limit: what [`set_hop_limit`](Self::set_hop_limit) or
    /// [`SocketOptions::hop_limit`](crate::SocketOptions::hop_limit) set, else 64.
    pub fn hop_limit(&self, conn: ConnectionHandle) -> Result<u8, Error> {
        Ok(self.app_conn(conn)?.hop_limit())
    }

    /// Whether the connection uses Explicit Congestion Notification (RFC 3168): both SYNs
    /// agreed to it (see [`Config::ecn`](crate::Config::ecn)).
    pub fn ecn(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.ecn_ok())
    }

    /// Whether Nagle's algorithm is off for the connection (`set_nodelay(true)`).
    pub fn nodelay(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.nodelay())
    }

    /// The connection's RFC 9293 state.
    pub fn state(&self, conn: ConnectionHandle) -> Result<State, Error> {
        Ok(self.app_conn(conn)?.state())
    }

    /// Whether the connection was taken with TCP Fast Open and still waits for its
    /// handshake's final ACK (SYN-RECEIVED): unlike other connections in that state it can
    /// be read and written already (RFC 7413 §4.2.2; Linux's `tcp_passive_fastopen`).
    pub fn is_fast_open_pending(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.is_fast_open_child())
    }

    /// Whether the application has a write waiting for the connection's handshake to end
    /// (Linux's `sk_write_pending`: a blocking Fast Open `sendto`). If so, the ACK of the
    /// SYN-ACK is held for that write's data to carry it, as Linux holds it, and a write
    /// leaving at once makes the connection request/response for the delayed-ACK engine.
    pub fn set_write_pending(
        &mut self,
        conn: ConnectionHandle,
        pending: bool,
    ) -> Result<(), Error> {
        self.app_slot(conn)?.conn.write_pending = pending;
        Ok(())
    }

    /// How many bytes of data the connection's first SYN may still carry: with TCP Fast
    /// Open and a cookie, before the SYN has left (a `TCP_FASTOPEN_CONNECT` connect waiting
    /// for its first write), the smaller of our MSS and the server's cached MSS, less 40
    /// bytes of option room (Linux's `tcp_send_syn_data`); otherwise 0. A first write of
    /// more than this is cut here by Linux's `sendmsg`, which sends the rest once connected.
    pub fn fast_open_syn_room(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        Ok(self.app_conn(conn)?.fast_open_syn_room())
    }

    /// The connection's local address.
    pub fn local_addr(&self, conn: ConnectionHandle) -> Result<SocketAddr, Error> {
        Ok(self.app_conn(conn)?.local())
    }

    /// The connection's remote address.
    pub fn peer_addr(&self, conn: ConnectionHandle) -> Result<SocketAddr, Error> {
        Ok(self.app_conn(conn)?.remote())
    }

    /// The address a listener listens on.
    pub fn listener_addr(&self, listener: ListenerHandle) -> Result<SocketAddr, Error> {
        self.listeners
            .get(&listener)
            .map(|l| l.local)
            .ok_or(Error::InvalidHandle)
    }

    /// Bytes that `send` would accept now: the send buffer's room, within what
    /// `Config::max_memory` leaves now (not the budget the connection last saw, which may
    /// predate memory other sockets gave back).
    pub fn send_capacity(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        Ok(self
            .app_conn(conn)?
            .send_capacity_within(self.memory_room()))
    }

    /// [`send_capacity`](Self::send_capacity) for an application about to wait for
    /// [`Event::Writable`] (a readiness check such as `TcpStream::writable`): when the
    /// memory cap, not the send buffer, leaves no room, the connection is listed to be woken
    /// once memory drains, as a refused `send` lists it. Without this, a connection that
    /// never had a write refused would wait for an event nothing owes it.
    pub fn send_capacity_or_wait(&mut self, conn: ConnectionHandle) -> Result<usize, Error> {
        let capacity = self.send_capacity(conn)?;
        let conn_ref = self.app_conn(conn)?;
        if capacity == 0 && conn_ref.send_capacity_within(usize::MAX) > 0 {
            self.wait_for_memory(conn);
        }
        if capacity == 0 {
            // The send buffer owes it `Writable` once writeable again.
            self.app_slot(conn)?.conn.nospace = true;
        }
        Ok(capacity)
    }

    /// Whether an application waiting to write should be told it may (`POLLOUT`), as
    /// Linux's `tcp_poll` decides: the send buffer at most two thirds charged, and fewer
    /// than half the `TCP_NOTSENT_LOWAT` bytes unsent. If not, [`Event::Writable`] follows
    /// once it is. This is stricter than `send_capacity` > 0: a writer woken then finds room
    /// for a large write, not a segment's worth.
    pub fn poll_writable(&mut self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_slot(conn)?.conn.poll_writeable())
    }

    /// Set the connection's `TCP_NOTSENT_LOWAT`: writes stop while this many bytes wait
    /// unsent, and [`Event::Writable`] comes once fewer than half as many do. `None`, or
    /// `Some(0)` as in Linux (`tcp_notsent_lowat`: 0 is "not set"; taken literally, no write
    /// could ever be made), returns it to the endpoint's
    /// [`Config::notsent_lowat`](crate::Config::notsent_lowat).
    pub fn set_notsent_lowat(
        &mut self,
        conn: ConnectionHandle,
        lowat: Option<usize>,
    ) -> Result<(), Error> {
        let lowat = lowat.filter(|&n| n > 0).or(self.config.notsent_lowat);
        self.app_slot(conn)?.conn.set_notsent_lowat(lowat);
        self.after(conn);
        Ok(())
    }

    /// Set the connection's `SO_RCVLOWAT`: [`Endpoint::recv_ready`] waits for this many
    /// bytes, or the end of the stream, an error, or a receive buffer or window too full to
    /// bring more (Linux's `tcp_epollin_ready`); [`Event::Readable`] still comes with any
    /// data, for the caller to ask. `recv` returns whatever is queued: a caller that blocks
    /// waits for the mark. At most half the largest receive buffer, at least 1; the buffer
    /// grows to hold the mark. Returns the mark in force.
    pub fn set_rcvlowat(&mut self, conn: ConnectionHandle, lowat: usize) -> Result<usize, Error> {
        let set = self.app_slot(conn)?.conn.set_rcvlowat(lowat);
        self.after(conn);
        Ok(set)
    }

    /// The connection's `SO_RCVLOWAT` (1 unless set).
    pub fn rcvlowat(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        Ok(self.app_conn(conn)?.rcvlowat())
    }

    /// Whether a reader should be woken: bytes up to the `SO_RCVLOWAT` mark (see
    /// [`Endpoint::set_rcvlowat`]), the end of the stream or an error.
    pub fn recv_ready(&self, conn: ConnectionHandle) -> Result<bool, Error> {
        Ok(self.app_conn(conn)?.recv_ready())
    }

    /// The error the connection failed with, if any.
    pub fn take_error(&mut self, conn: ConnectionHandle) -> Result<Option<Error>, Error> {
        Ok(self.app_conn(conn)?.error())
    }

    /// The soft error an ICMP report left on a connection that carries on (unreachable,
    /// time exceeded, parameter problem), taken: Linux's `SO_ERROR` returns `sk_err_soft`
    /// and clears it when there is no hard error (`sock_getsockopt`), after which a timeout
    /// fails with `TimedOut` rather than with it. `None` if there is none.
    pub fn take_soft_error(&mut self, conn: ConnectionHandle) -> Result<Option<Error>, Error> {
        let slot = self.app_slot(conn)?;
        Ok(slot.conn.soft_error.take())
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub fn send_queue_len(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        Ok(self.app_conn(conn)?.send_queue_len())
    }

    /// What Linux's `SIOCOUTQ` and `SIOCOUTQNSD` report: sequence space written and not yet
    /// acknowledged, and written and not yet sent, a queued FIN counting as one byte; both 0
    /// before the handshake ends (see `Connection::outq`).
    pub fn outq(&self, conn: ConnectionHandle) -> Result<(usize, usize), Error> {
        Ok(self.app_conn(conn)?.outq())
    }

    /// Bytes received in order and not yet read (what Linux's SIOCINQ reports).
    pub fn recv_queue_len(&self, conn: ConnectionHandle) -> Result<usize, Error> {
        Ok(self.app_conn(conn)?.recv_queue_len())
    }

    /// A snapshot of the connection, after Linux's `TCP_INFO` (what `ss -ti` shows).
    pub fn info(&self, now: Instant, conn: ConnectionHandle) -> Result<TcpInfo, Error> {
        Ok(self.app_conn(conn)?.info(now))
    }

    /// Fix the connection's send buffer at `bytes`, with no auto-tuning (Linux SO_SNDBUF).
    pub fn set_send_buffer(&mut self, conn: ConnectionHandle, bytes: usize) -> Result<(), Error> {
        self.app_slot(conn)?.conn.set_send_buffer(bytes);
        self.after(conn);
        Ok(())
    }

    /// Fix the connection's receive buffer at `bytes`, with no auto-tuning (Linux SO_RCVBUF);
    /// never below the window already offered.
    pub fn set_recv_buffer(&mut self, conn: ConnectionHandle, bytes: usize) -> Result<(), Error> {
        self.app_slot(conn)?.conn.set_recv_buffer(bytes);
        self.after(conn);
        Ok(())
    }

    /// The connection's user timeout (Linux TCP_USER_TIMEOUT); `None`, or zero as Linux's
    /// `TCP_USER_TIMEOUT` 0, for the endpoint's.
    pub fn set_user_timeout(
        &mut self,
        conn: ConnectionHandle,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), Error> {
        let timeout = timeout
            .filter(|t| !t.is_zero())
            .or(self.config.user_timeout)
            .filter(|t| !t.is_zero());
        self.app_slot(conn)?.conn.set_user_timeout(timeout);
        self.after(conn);
        Ok(())
    }

    /// Keepalive probes for this connection (SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL
    /// and TCP_KEEPCNT): `Some` turns them on with that timing, `None` off (RFC 9293
    /// §3.8.4, RFC 1122 §4.2.3.6). Timing Linux refuses is `InvalidInput`
    /// ([`KeepaliveConfig::check`](crate::KeepaliveConfig::check)).
    ///
    /// The idle time runs from the last segment received; but turned on at `now` from off,
    /// the first probe waits a whole idle time from `now`, as Linux's `tcp_set_keepalive`
    /// arms its timer, and a changed idle time counts from the last segment received, as
    /// `TCP_KEEPIDLE` does.
    pub fn set_keepalive(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        keepalive: Option<crate::KeepaliveConfig>,
    ) -> Result<(), Error> {
        if let Some(k) = &keepalive {
            k.check()?;
        }
        self.app_slot(conn)?.conn.set_keepalive(now, keepalive);
        self.after(conn);
        Ok(())
    }

    /// `TCP_LINGER2`: what the connection does in FIN-WAIT-2 once the application has
    /// closed it and our FIN is acknowledged, while the peer's FIN has not come: wait
    /// [`Linger2::Timeout`](crate::Linger2::Timeout) (capped at 120 s, at least 3.5 RTOs)
    /// instead of `Config::fin_timeout`, or not at all ([`Linger2::Abort`](crate::Linger2::Abort):
    /// reset). `None` goes back to `Config::fin_timeout`. As on Linux, a wait longer than
    /// TIME-WAIT's lasts twice its excess over TIME-WAIT (`tcp_keepalive_timer`).
    pub fn set_linger2(
        &mut self,
        conn: ConnectionHandle,
        linger2: Option<crate::Linger2>,
    ) -> Result<(), Error> {
        self.app_slot(conn)?.conn.set_linger2(linger2);
        Ok(())
    }

    /// The connection's `TCP_LINGER2`, as [`set_linger2`](Self::set_linger2) left it.
    pub fn linger2(&self, conn: ConnectionHandle) -> Result<Option<crate::Linger2>, Error> {
        Ok(self.app_conn(conn)?.linger2())
    }

    /// `TCP_KEEPIDLE` set to the idle time the connection already has: as on Linux, the
    /// keepalive timer is armed again from the last segment received (a changed idle time,
    /// set with [`set_keepalive`](Self::set_keepalive), does the same). A connection that
    /// was quiet longer than the idle time when keepalive was turned on is then probed now,
    /// not a whole idle time after that; a probe out unanswered is followed at once, not
    /// at its interval. Nothing with keepalive off.
    pub fn rearm_keepalive(&mut self, now: Instant, conn: ConnectionHandle) -> Result<(), Error> {
        self.app_slot(conn)?.conn.rearm_keepalive(now);
        self.after(conn);
        Ok(())
    }

    /// SYN retransmissions before this connection's active open fails (Linux TCP_SYNCNT):
    /// 1 to 127 (`MAX_TCP_SYNCNT`), else `InvalidInput`, as Linux's EINVAL.
    pub fn set_syn_retries(&mut self, conn: ConnectionHandle, retries: u32) -> Result<(), Error> {
        if !(1..=MAX_SYN_RETRIES).contains(&retries) {
            return Err(Error::InvalidInput);
        }
        self.app_slot(conn)?.conn.set_syn_retries(retries);
        Ok(())
    }

    /// Clamp the connection's MSS (Linux TCP_MAXSEG): the one advertised, if the SYN has not
    /// been sent yet (set it right after `connect`, before `poll_transmit`), and the one sent
    /// with. After the handshake it changes nothing, as on Linux, where the sending MSS is
    /// fixed by the handshake and the path MTU. `InvalidInput` for an MSS below 88 or above
    /// 32767, as Linux's EINVAL (`TCP_MIN_MSS`, `MAX_TCP_WINDOW`).
    pub fn clamp_mss(&mut self, conn: ConnectionHandle, mss: usize) -> Result<(), Error> {
        if !(USER_MSS_MIN..=USER_MSS_MAX).contains(&mss) {
            return Err(Error::InvalidInput);
        }
        self.app_slot(conn)?.conn.clamp_mss(mss);
        self.after(conn);
        Ok(())
    }
}

/// What [`Endpoint::end_unfinished`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedUnfinished {
    /// Connections closed with a FIN (or whose FIN was already on its way).
    pub closed: usize,
    /// Connections reset.
    pub reset: usize,
    /// Bytes the reset connections still held for their peers (written, not acknowledged).
    pub lost: usize,
}
