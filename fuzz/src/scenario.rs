//! The `endpoint` target: one [`Endpoint`] with two listeners and an active connection, fed an
//! arbitrary sequence of [`Op`]s in virtual time, with invariants checked after every step.
//!
//! Random bytes almost never reach a connection: the demultiplexer wants a live 4-tuple, the
//! state machine wants sequence numbers inside the window. So besides raw packets the fuzzer
//! gets a peer that *remembers* what the endpoint sent on each 4-tuple ([`Peer`]) and builds
//! segments relative to it: "seq = what you expect + 3", "ack = your SND.NXT − 100",
//! "timestamp echoing your last TSval". A handshake is then two small ops, and everything the
//! state machine does after ESTABLISHED is in reach.
//!
//! Invariants ([`Harness::check`]), after every op:
//! - nothing panics (libFuzzer catches it, including overflow checks and debug assertions);
//! - every packet `poll_transmit` writes parses back (IP, then TCP, UDP or ICMP, checksums
//!   verified), comes from one of the endpoint's addresses, and a TCP or UDP one fits the
//!   MTU, which an op may change (`Op::SetMtu`, the link's MTU changing under open
//!   connections);
//! - the UDP catch-all queue stays within its bound, and so does the endpoint's memory
//!   (UDP queues count in it);
//! - at most [`MAX_PACKETS_PER_STEP`] packets per op that carry no data, and no more data
//!   segments than every send buffer could fill twice at the smallest segment size
//!   ([`Harness::data_packet_limit`]: a peer announcing a tiny MSS and acknowledging quickly
//!   grows the window to thousands of segments, legitimately, as Linux's does);
//! - `connection_count() <= max_connections`;
//! - every `Stats` counter only grows, and `packets_in`/`packets_out` count exactly the
//!   packets handed in and written out;
//! - `poll_timeout()` is never in the past, and after `handle_timeout(now)` it is later than
//!   `now` (whatever was due has run).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;
use std::time::Duration;

use synack_core::endpoint::CATCH_ALL_DATAGRAMS;
use synack_core::testing::peer;
use synack_core::wire::{
    self, FastOpenCookie, IcmpRepr, IpProtocol, IpRepr, TcpFlags, TcpRepr, TcpTimestamp, UdpRepr,
};
use synack_core::{
    Bytes, ConnectionHandle, Event, KeepaliveConfig, Linger2, ListenerHandle, PortSharing,
    RecvMeta, SeqNumber, SocketOptions, Stats, SynHandle, UdpHandle, Unreachable,
};

mod input;
mod udp;
pub use input::{ConfigInput, IcmpInput, Op, Rel, Scenario, SegmentInput, Target, TsInput};
pub use udp::{UdpInput, UdpOp};

/// The endpoint's addresses ([`US`], [`US6`]) and the peer's ([`PEER`], [`PEER6`]): the
/// test kit's scripted peer, which this harness drives.
pub use synack_core::testing::peer::{PEER, PEER6, US, US6};
/// The port both listeners use.
pub const LISTEN_PORT: u16 = 80;
/// An address that is not the endpoint's: where intercepted clients connect.
pub const FOREIGN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 19, 0, 9));
/// The same in IPv6.
pub const FOREIGN6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x77));

/// Ops beyond this many are ignored: each input is a bounded run.
pub const MAX_OPS: usize = 256;
/// More packets without data than this from one op is a finding (output must stay bounded
/// per input).
pub const MAX_PACKETS_PER_STEP: usize = 1000;
/// The least payload a data segment carries: the core's smallest MSS (64) less a timestamp
/// option, rounded down.
const MIN_SEGMENT_PAYLOAD: usize = 40;
/// Connection handles and 4-tuples remembered (oldest forgotten first).
const MAX_REMEMBERED: usize = 64;
/// Payloads the peer sends are cut to this.
const MAX_PAYLOAD: usize = 4096;
/// The largest `send`/`recv` the application makes in one call.
const MAX_APP_IO: usize = 65536;

/// What the peer knows about one 4-tuple, learnt from the endpoint's own segments.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// The endpoint's side.
    local: SocketAddr,
    /// The peer's side.
    remote: SocketAddr,
    /// The endpoint's highest SEG.SEQ + SEG.LEN seen.
    snd_nxt: u32,
    /// The ACK field of the endpoint's last segment: what it expects next.
    rcv_nxt: u32,
    /// The endpoint's last TSval.
    tsval: u32,
    /// The sequence number of the endpoint's FIN, once one was sent (until its next SYN).
    fin: Option<u32>,
}

/// The endpoint under test, the peer's memory and the invariant checker.
pub struct Harness {
    /// The endpoint under test and its virtual clock (the kit's scripted-peer harness).
    script: peer::Harness,
    config: ConfigInput,
    max_connections: usize,
    mtu: usize,
    listeners: [Option<ListenerHandle>; 2],
    handles: VecDeque<ConnectionHandle>,
    peers: VecDeque<Peer>,
    stats: Stats,
    buf: Vec<u8>,
    data: Vec<u8>,
    /// Packets handed in since the last check.
    packets_in: u64,
    /// Intercepted SYNs announced (the latest 16), decided or not.
    held: VecDeque<SynHandle>,
    /// UDP sockets bound (the latest 16), open or closed.
    udp: VecDeque<UdpHandle>,
    /// Ports `Op::Bind` holds (at most [`MAX_BINDINGS`]), with their SO_REUSEADDR.
    bindings: VecDeque<(SocketAddr, PortSharing)>,
    /// Listeners `Op::Bind` made (at most [`MAX_BINDINGS`]; the oldest is closed).
    bound_listeners: VecDeque<ListenerHandle>,
}

/// Ports and listeners `Op::Bind` keeps at most.
const MAX_BINDINGS: usize = 8;

/// Our own address of a family.
fn own(v6: bool) -> IpAddr {
    if v6 {
        US6
    } else {
        US
    }
}

/// The listening addresses: the IPv4 address itself, and the IPv6 wildcard.
fn listen_addr(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), LISTEN_PORT)
    } else {
        SocketAddr::new(US, LISTEN_PORT)
    }
}

/// Runs one scenario; panics on the first invariant that fails. Returns the final counters
/// (the `corpus_stats` example uses them to show how deep a corpus reaches).
pub fn run(scenario: &Scenario) -> Stats {
    let mut h = Harness::new(scenario.config.clone());
    for op in scenario.ops.iter().take(MAX_OPS) {
        h.step(op);
    }
    h.stats
}

impl Harness {
    /// Listen on the IPv4 or the IPv6 address. The IPv6 listener does TCP Fast Open's
    /// server side (its queue the backlog), taking SYN data without a cookie when the
    /// configuration's backlog byte has its top bit set; both set SO_REUSEPORT when its
    /// next bit is, so that `Op::Bind`'s listeners may join their groups.
    fn listen(&mut self, v6: bool) -> Result<ListenerHandle, synack_core::Error> {
        let backlog = 1 + usize::from(self.config.backlog % 8);
        let opts = SocketOptions {
            fast_open: v6.then_some(backlog as u32),
            fast_open_no_cookie: Some(self.config.backlog & 0x80 != 0),
            reuse_port: self.config.backlog & 0x40 != 0,
            // TCP_DEFER_ACCEPT and TCP_LINGER2, passed on to the connections accepted.
            defer_accept: (self.config.backlog & 0x20 != 0).then(|| Duration::from_secs(3)),
            linger2: match self.config.backlog & 0x18 {
                0 => None,
                0x08 => Some(Linger2::Abort),
                0x10 => Some(Linger2::Timeout(Duration::from_secs(5))),
                _ => Some(Linger2::Timeout(Duration::from_secs(90))),
            },
            ..Default::default()
        };
        self.script.ep.listen_with(listen_addr(v6), backlog, &opts)
    }

    /// An endpoint listening on 198.18.0.2:80 and [::]:80, with a connection to the peer's
    /// port 8080 under way.
    pub fn new(config: ConfigInput) -> Harness {
        let built = config.build();
        let mtu = 296 + usize::from(config.mtu % 8705);
        let mut h = Harness {
            max_connections: 1 + usize::from(config.max_connections % 16),
            script: peer::Harness::new(built),
            config,
            mtu,
            listeners: [None, None],
            handles: VecDeque::new(),
            peers: VecDeque::new(),
            stats: Stats::default(),
            buf: vec![0; 1 << 16],
            data: (0..MAX_APP_IO).map(|i| (i % 251) as u8).collect(),
            packets_in: 0,
            held: VecDeque::new(),
            udp: VecDeque::new(),
            bindings: VecDeque::new(),
            bound_listeners: VecDeque::new(),
        };
        for v6 in [false, true] {
            let l = h.listen(v6);
            h.listeners[usize::from(v6)] = Some(l.expect("listen on a fresh endpoint"));
        }
        let first = h
            .script
            .ep
            .connect(h.script.now, SocketAddr::new(PEER, 8080));
        h.remember_handle(first.expect("connect on a fresh endpoint"));
        h.check(false);
        h
    }

    fn remember_handle(&mut self, c: ConnectionHandle) {
        if self.handles.len() == MAX_REMEMBERED {
            self.handles.pop_front();
        }
        self.handles.push_back(c);
    }

    /// Handle `i` modulo the count; one index past the end names no connection at all.
    fn handle(&self, i: u8) -> ConnectionHandle {
        let i = usize::from(i) % (self.handles.len() + 1);
        // Handles count up from 1, so 0 is never valid.
        self.handles.get(i).copied().unwrap_or(ConnectionHandle(0))
    }

    fn inject(&mut self, packet: &[u8]) {
        self.packets_in += 1;
        if self.packets_in.is_multiple_of(2) {
            // Every other packet in memory of its own, as a driver hands packets over: the
            // endpoint may keep its payload there (`handle_packet_shared`).
            let frame = Bytes::copy_from_slice(packet);
            let now = self.script.now;
            let meta = RecvMeta::new(frame.len());
            self.script.ep.handle_packet_shared(now, &frame, meta);
        } else {
            self.script.inject_raw(packet);
        }
    }

    fn run_timers(&mut self) {
        self.script.ep.handle_timeout(self.script.now);
        if let Some(t) = self.script.ep.poll_timeout() {
            assert!(
                t > self.script.now,
                "poll_timeout {t:?} not after handle_timeout({:?})",
                self.script.now
            );
        }
    }

    /// Runs one op, then drains output and events and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        let now = self.script.now;
        let mut timers_ran = false;
        match op {
            Op::Raw(bytes) => {
                let bytes = &bytes[..bytes.len().min(2048)];
                self.inject(bytes);
            }
            Op::Segment(s) => {
                if let Some(p) = self.segment(s) {
                    self.inject(&p);
                }
            }
            Op::Icmp(i) => {
                if let Some(p) = self.icmp(i) {
                    self.inject(&p);
                }
            }
            Op::Advance(ms) => {
                self.script.now += Duration::from_millis(u64::from(*ms));
                self.run_timers();
                timers_ran = true;
            }
            Op::AdvanceSecs(s) => {
                self.script.now += Duration::from_secs(u64::from(*s));
                self.run_timers();
                timers_ran = true;
            }
            Op::NextTimeout => {
                if let Some(t) = self.script.ep.poll_timeout() {
                    self.script.now = self.script.now.max(t);
                }
                self.run_timers();
                timers_ran = true;
            }
            Op::Connect {
                v6,
                port,
                fast_open,
            } => {
                // One port in four: our own address (looped back inside the endpoint), on
                // the listening port or a closed one.
                let remote = match (*v6, port % 4 == 3) {
                    (false, false) => SocketAddr::new(PEER, *port),
                    (true, false) => SocketAddr::new(PEER6, *port),
                    (v6, true) if port % 8 == 3 => SocketAddr::new(own(v6), LISTEN_PORT),
                    (v6, true) => SocketAddr::new(own(v6), *port),
                };
                let c = match fast_open {
                    0 => self.script.ep.connect(now, remote),
                    1 => {
                        let opts = synack_core::SocketOptions {
                            fast_open_connect: Some(true),
                            ..Default::default()
                        };
                        self.script.ep.connect_with(now, remote, None, &opts)
                    }
                    n => {
                        let len = (usize::from(*n) * 16).min(MAX_APP_IO);
                        let opts = synack_core::SocketOptions::default();
                        let data = &self.data[..len];
                        self.script
                            .ep
                            .connect_fast_open(now, remote, None, &opts, data)
                            .map(|(c, sent)| {
                                assert!(sent <= len, "connect_fast_open took {sent} of {len}");
                                c
                            })
                    }
                };
                if let Ok(c) = c {
                    // An ephemeral port is never one a bind gave to something still using
                    // it (the new connection adds no such use).
                    let local = self.script.ep.local_addr(c).expect("a new connection");
                    let bound = self.script.ep.port_bound_by_bind(local.port());
                    assert!(!bound, "an ephemeral connect took {local}, a bind's port");
                    self.remember_handle(c);
                }
            }
            Op::Send { conn, len } => {
                let len = usize::from(*len).min(MAX_APP_IO);
                let c = self.handle(*conn);
                if let Ok(n) = self.script.ep.send(c, &self.data[..len]) {
                    assert!(n <= len, "send accepted {n} of {len} bytes");
                }
            }
            Op::Recv { conn, len } if len % 2 == 1 => {
                // An odd length reads into an empty `Vec` as a `BufMut`: at most its spare
                // room, appended in place.
                let c = self.handle(*conn);
                let mut buf = Vec::with_capacity(usize::from(*len));
                let room = buf.capacity();
                if let Ok(n) = self.script.ep.recv_buf(now, c, &mut buf) {
                    assert!(n <= room, "recv_buf returned {n} into {room} of room");
                    assert_eq!(buf.len(), n, "recv_buf said {n}, appended {}", buf.len());
                }
            }
            Op::Recv { conn, len } => {
                let c = self.handle(*conn);
                let mut buf = vec![0u8; usize::from(*len)];
                if let Ok(n) = self.script.ep.recv(now, c, &mut buf) {
                    assert!(n <= buf.len(), "recv returned {n} into {}", buf.len());
                }
            }
            Op::Shutdown(i) => {
                let _ = self.script.ep.shutdown(self.handle(*i));
            }
            Op::Close(i) => {
                let _ = self.script.ep.close(now, self.handle(*i));
            }
            Op::Abort(i) => {
                let _ = self.script.ep.abort(self.handle(*i));
            }
            Op::Nodelay(i, on) => {
                let _ = self.script.ep.set_nodelay(self.handle(*i), *on);
            }
            Op::SetOption { conn, which, value } => {
                self.set_option(now, self.handle(*conn), *which, *value);
            }
            Op::Accept(v6) => self.accept(*v6),
            Op::RestartListener(v6) => {
                if let Some(l) = self.listeners[usize::from(*v6)].take() {
                    let _ = self.script.ep.close_listener(now, l);
                }
                self.listeners[usize::from(*v6)] = self.listen(*v6).ok();
            }
            Op::Decide { which, how } => {
                let syn = self
                    .held
                    .get(usize::from(*which) % (self.held.len() + 1))
                    .copied()
                    .unwrap_or(SynHandle(u64::MAX));
                let ep = &mut self.script.ep;
                let why = match how / 4 % 4 {
                    0 => Unreachable::Network,
                    1 => Unreachable::Host,
                    2 => Unreachable::Port,
                    _ => Unreachable::Prohibited,
                };
                let decided = match how % 4 {
                    0 => ep
                        .accept_intercepted(now, syn, &SocketOptions::default())
                        .map(|c| self.handles.push_back(c)),
                    1 => ep.refuse_intercepted(syn),
                    2 => ep.unreachable_intercepted(now, syn, why).map(drop),
                    _ => ep.drop_intercepted(syn),
                };
                if decided.is_ok() {
                    self.held.retain(|&h| h != syn);
                }
            }
            Op::Udp(u) => self.udp_op(u),
            Op::Bind {
                v6,
                port,
                reuse,
                then,
            } => self.bind(now, *v6, *port, *reuse, *then),
            Op::Inspect(i) => {
                let c = self.handle(*i);
                let _ = self.script.ep.state(c);
                let _ = self.script.ep.local_addr(c);
                let _ = self.script.ep.peer_addr(c);
                let _ = self.script.ep.send_capacity(c);
                let _ = self.script.ep.recv_ready(c);
                let _ = self.script.ep.take_error(c);
                let _ = self.script.ep.send_queue_len(c);
                let _ = self.script.ep.urgent_mark(c);
                let _ = self.script.ep.urgent_pending(c);
                if let Ok(i) = self.script.ep.info(self.script.now, c) {
                    // TCP_INFO's counts agree with one another: what was acknowledged was
                    // sent first (the data's first transmissions, the SYN and the FIN).
                    assert!(
                        i.data_segs_out <= i.segs_out && i.data_segs_in <= i.segs_in,
                        "{i:?}"
                    );
                    let first_sent = i.bytes_sent - i.bytes_retrans;
                    assert!(i.bytes_acked <= first_sent + 2, "{i:?}");
                }
            }
            Op::Urgent { conn, how, len } => {
                let c = self.handle(*conn);
                match how % 4 {
                    0 => {
                        let _ = self.script.ep.recv_urgent(c);
                    }
                    1 => {
                        let _ = self.script.ep.peek_urgent(c);
                    }
                    2 => {
                        let _ = self.script.ep.set_oob_inline(c, len % 2 == 1);
                    }
                    _ => {
                        let len = usize::from(*len).min(MAX_APP_IO);
                        let flags = synack_core::SendFlags::default();
                        if let Ok(n) = self.script.ep.send_urgent(c, &self.data[..len], flags) {
                            assert!(n <= len, "send_urgent accepted {n} of {len} bytes");
                        }
                    }
                }
            }
            Op::SetMtu(m) => {
                // Every packet from here on fits the new MTU (`learn` checks), retransmissions
                // of what went out at a larger one included.
                self.mtu = 296 + usize::from(m % 8705);
                let set = self.script.ep.set_mtu(self.mtu);
                assert!(set.is_ok(), "set_mtu({}) refused: {set:?}", self.mtu);
            }
        }
        self.check(timers_ran);
    }

    /// `Op::Bind`: a socket binds, and keeps the port, gives it back, connects from it or
    /// listens on it. A bind that succeeds holds a port no ephemeral pick takes.
    fn bind(&mut self, now: synack_core::Instant, v6: bool, port: u8, reuse: bool, then: u8) {
        let ip = match port % 2 {
            0 => own(v6),
            _ if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let number = match (port / 2) % 6 {
            0 => 0,
            1 => LISTEN_PORT,
            n => 6998 + u16::from(n),
        };
        let ep = &mut self.script.ep;
        let sharing = PortSharing {
            reuse_address: reuse,
            reuse_port: then & 4 != 0,
        };
        let Ok(bound) = ep.bind_socket(SocketAddr::new(ip, number), sharing, &[]) else {
            return;
        };
        assert!(bound.port() != 0, "bind left port 0");
        assert_eq!(bound.ip(), ip, "bind moved the address");
        let opts = SocketOptions {
            reuse_address: Some(reuse),
            reuse_port: sharing.reuse_port,
            ..Default::default()
        };
        match then % 4 {
            0 => {
                if self.bindings.len() == MAX_BINDINGS {
                    let (a, r) = self.bindings.pop_front().expect("full");
                    ep.release_binding(a, r).expect("a held binding");
                }
                self.bindings.push_back((bound, sharing));
            }
            1 => ep.release_binding(bound, sharing).expect("just bound"),
            2 => {
                let remote = SocketAddr::new(if v6 { PEER6 } else { PEER }, 8000 + u16::from(port));
                let c = ep.connect_with(now, remote, Some(bound), &opts);
                ep.release_binding(bound, sharing).expect("just bound");
                if let Ok(c) = c {
                    let local = ep.local_addr(c).expect("a new connection");
                    assert_eq!(local.port(), bound.port(), "connected from another port");
                    self.remember_handle(c);
                }
            }
            _ => {
                ep.release_binding(bound, sharing).expect("just bound");
                match ep.listen_with(bound, 4, &opts) {
                    Ok(l) => {
                        if self.bound_listeners.len() == MAX_BINDINGS {
                            let old = self.bound_listeners.pop_front().expect("full");
                            let _ = ep.close_listener(now, old);
                        }
                        self.bound_listeners.push_back(l);
                    }
                    // A listener clashes where a binding did not (two reuse bindings, one
                    // listening already): the socket stays bound, as on Linux, until here.
                    Err(e) => assert_eq!(e, synack_core::Error::AddrInUse, "listen: {e:?}"),
                }
            }
        }
    }

    /// `Op::SetOption`: every setter takes any value without a panic, and refuses only
    /// what it documents (a SYN retry count outside 1 to 127).
    fn set_option(&mut self, now: synack_core::Instant, c: ConnectionHandle, which: u8, v: u16) {
        let ep = &mut self.script.ep;
        let on = v & 1 != 0;
        let secs = |n: u16| Duration::from_secs(u64::from(n));
        let _ = match which % 13 {
            0 => ep.set_cork(c, on),
            1 => ep.set_quickack(c, on),
            2 => ep.set_notsent_lowat(c, (v != 0).then_some(usize::from(v))),
            3 => ep.set_rcvlowat(c, usize::from(v)).map(drop),
            // 0 to 128 KiB, as the configuration's buffers.
            4 => ep.set_send_buffer(c, usize::from(v) * 2),
            5 => ep.set_recv_buffer(c, usize::from(v) * 2),
            6 => ep.set_user_timeout(c, (v != 0).then(|| Duration::from_millis(u64::from(v)))),
            7 => {
                let keepalive = on.then(|| KeepaliveConfig {
                    idle: secs(1 + (v >> 1) % 16),
                    interval: secs(1 + (v >> 5) % 4),
                    probes: 1 + u32::from((v >> 7) % 4),
                });
                ep.set_keepalive(now, c, keepalive)
            }
            8 => ep.set_linger2(
                c,
                match v % 4 {
                    0 => None,
                    1 => Some(Linger2::Abort),
                    _ => Some(Linger2::Timeout(secs(v >> 2))),
                },
            ),
            9 => ep.rearm_keepalive(now, c),
            10 => {
                let r = ep.set_syn_retries(c, u32::from(v % 256));
                if !(1..=127).contains(&(v % 256)) {
                    assert_eq!(r, Err(synack_core::Error::InvalidInput), "TCP_SYNCNT {v}");
                }
                r
            }
            11 => ep.set_tos(c, v as u8),
            _ => ep.set_hop_limit(c, v as u8),
        };
    }

    fn accept(&mut self, v6: bool) {
        if let Some(l) = self.listeners[usize::from(v6)] {
            if let Ok(c) = self.script.ep.accept(l) {
                self.remember_handle(c);
            }
        }
    }

    /// Builds the peer's segment, or `None` when the target names nothing.
    fn segment(&mut self, s: &SegmentInput) -> Option<Vec<u8>> {
        let peer = match s.target {
            Target::Known(i) => {
                if self.peers.is_empty() {
                    return None;
                }
                self.peers[usize::from(i) % self.peers.len()]
            }
            Target::Listener { v6, port } => {
                let (us, them) = if v6 { (US6, PEER6) } else { (US, PEER) };
                Peer {
                    local: SocketAddr::new(us, LISTEN_PORT),
                    remote: SocketAddr::new(them, port),
                    snd_nxt: 0,
                    rcv_nxt: 0,
                    tsval: 0,
                    fin: None,
                }
            }
            Target::Foreign { v6, port } => {
                let (there, them) = if v6 {
                    (FOREIGN6, PEER6)
                } else {
                    (FOREIGN, PEER)
                };
                Peer {
                    local: SocketAddr::new(there, port),
                    remote: SocketAddr::new(them, 40001),
                    snd_nxt: 0,
                    rcv_nxt: 0,
                    tsval: 0,
                    fin: None,
                }
            }
            Target::Closed { v6, port } => {
                let (us, them) = if v6 { (US6, PEER6) } else { (US, PEER) };
                let port = if port == LISTEN_PORT { port + 1 } else { port };
                Peer {
                    local: SocketAddr::new(us, port),
                    remote: SocketAddr::new(them, 40000),
                    snd_nxt: 0,
                    rcv_nxt: 0,
                    tsval: 0,
                    fin: None,
                }
            }
        };
        let payload_len = usize::from(s.payload_len).min(MAX_PAYLOAD);
        let payload = &self.data[..payload_len];
        let mut t = TcpRepr::new(
            peer.remote.port(),
            peer.local.port(),
            TcpFlags(s.flags),
            SeqNumber(s.seq.apply(peer.rcv_nxt)),
            SeqNumber(s.ack.apply(peer.snd_nxt)),
        );
        t.window_len = s.window;
        t.urgent_pointer = s.urgent;
        t.max_seg_size = s.mss;
        t.window_scale = s.window_scale;
        t.sack_permitted = s.sack_permitted;
        for (slot, &(back, len)) in t.sack_ranges.iter_mut().zip(s.sack.iter()) {
            let left = peer.snd_nxt.wrapping_sub(u32::from(back));
            *slot = Some((
                SeqNumber(left),
                SeqNumber(left.wrapping_add(u32::from(len))),
            ));
        }
        t.timestamp = match s.ts {
            TsInput::None => None,
            TsInput::Auto => Some(TcpTimestamp {
                // The peer's clock ticks in milliseconds from an arbitrary origin.
                tsval: (self.script.now.total_millis() as u32).wrapping_add(0x1000_0000),
                tsecr: peer.tsval,
            }),
            TsInput::Raw(tsval, tsecr) => Some(TcpTimestamp { tsval, tsecr }),
        };
        t.fast_open = s.fast_open.and_then(|n| match n {
            0 => Some(FastOpenCookie::REQUEST),
            n => FastOpenCookie::new(&[n; 16][..4 + usize::from(n % 13)]),
        });
        t.payload = payload;
        crate::wire::tcp_packet(peer.remote.ip(), peer.local.ip(), &t)
    }

    /// Builds an ICMP packet from the peer to the endpoint.
    fn icmp(&mut self, i: &IcmpInput) -> Option<Vec<u8>> {
        let peer = if self.peers.is_empty() {
            Peer {
                local: SocketAddr::new(US, 32768),
                remote: SocketAddr::new(PEER, 8080),
                snd_nxt: 0,
                rcv_nxt: 0,
                tsval: 0,
                fin: None,
            }
        } else {
            self.peers[usize::from(i.target) % self.peers.len()]
        };
        // The quote: our IP header as we sent it, then the first bytes of the TCP header.
        let quoted_ip =
            IpRepr::new(peer.local.ip(), peer.remote.ip(), IpProtocol::Tcp, 20, 64).ok()?;
        let mut quote = vec![0u8; quoted_ip.header_len() + 20];
        quoted_ip.emit(&mut quote);
        let tcp = &mut quote[quoted_ip.header_len()..];
        tcp[0..2].copy_from_slice(&peer.local.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&peer.remote.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&i.seq.apply(peer.snd_nxt).to_be_bytes());
        quote.truncate(quoted_ip.header_len() + usize::from(i.quote_len % 21));
        let echo = &self.data[..usize::from(i.data_len)];
        let msg = match i.kind % 5 {
            0 => IcmpRepr::DstUnreachable {
                code: i.code,
                invoking: &quote,
            },
            1 => IcmpRepr::PacketTooBig {
                mtu: u32::from(i.mtu),
                invoking: &quote,
            },
            2 => IcmpRepr::TimeExceeded {
                code: i.code,
                invoking: &quote,
            },
            3 => IcmpRepr::EchoRequest {
                ident: u16::from(i.code),
                seq_no: i.mtu,
                data: echo,
            },
            _ => IcmpRepr::Other {
                icmp_type: i.code,
                code: i.kind,
            },
        };
        let (src, dst) = (peer.remote.ip(), peer.local.ip());
        let protocol = if src.is_ipv4() {
            IpProtocol::Icmp
        } else {
            IpProtocol::Icmpv6
        };
        let ip = IpRepr::new(src, dst, protocol, msg.buffer_len(), 64).ok()?;
        let mut packet = vec![0u8; ip.buffer_len()];
        ip.emit(&mut packet);
        let body = &mut packet[ip.header_len()..];
        match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => msg.emit_v6(body, s, d),
            _ => msg.emit_v4(body),
        }
        Some(packet)
    }

    /// The most data segments one op may bring out: every connection's send buffer sent
    /// twice over (once, and once more in retransmissions) at the smallest payload.
    fn data_packet_limit(&self) -> usize {
        let send_buffer = 1024usize << (self.config.buffer_shift % 8);
        MAX_PACKETS_PER_STEP + 2 * self.max_connections * send_buffer / MIN_SEGMENT_PAYLOAD
    }

    /// Drains output and events, and checks every invariant.
    fn check(&mut self, timers_ran: bool) {
        let (mut control, mut data) = (0usize, 0usize);
        let data_limit = self.data_packet_limit();
        let mut buf = std::mem::take(&mut self.buf);
        let (peers, mtu, intercept) = (&mut self.peers, self.mtu, self.config.intercept());
        // Traffic between our own sockets loops back inside the endpoint, a burst a
        // `poll_transmit`, the rest due at once: drained until it settles.
        for round in 0.. {
            let looped = self.script.ep.stats().looped_back;
            self.script.drain_with(&mut buf, |packet, _| {
                if learn(peers, mtu, intercept, packet) {
                    data += 1;
                    assert!(
                        data <= data_limit,
                        "more than {data_limit} data segments from one step"
                    );
                } else {
                    control += 1;
                    assert!(
                        control <= MAX_PACKETS_PER_STEP,
                        "more than {MAX_PACKETS_PER_STEP} packets without data from one step"
                    );
                }
                ControlFlow::Continue(())
            });
            let now = self.script.now;
            let due = self.script.ep.poll_timeout().is_some_and(|t| t <= now);
            if !due || self.script.ep.stats().looped_back == looped {
                break;
            }
            assert!(
                round < 10_000,
                "traffic to our own addresses does not settle"
            );
            self.script.ep.handle_timeout(now);
        }
        self.buf = buf;

        let mut events = 0usize;
        while let Some(e) = self.script.ep.poll_event() {
            events += 1;
            assert!(events <= 1 << 17, "event queue does not drain");
            if let Event::Incoming(l) = e {
                if self.config.auto_accept {
                    if let Ok(c) = self.script.ep.accept(l) {
                        self.remember_handle(c);
                    }
                }
            }
            if let Event::Intercepted(syn) = e {
                if self.held.len() >= 16 {
                    self.held.pop_front();
                }
                self.held.push_back(syn);
            }
        }
        let caught = self.script.ep.udp_intercepted_count();
        assert!(caught <= CATCH_ALL_DATAGRAMS, "{caught} datagrams caught");
        let pending = self.script.ep.intercepted_count();
        assert!(pending <= 4, "{pending} SYNs held, max_pending is 4");

        // Every port `Op::Bind` holds is held, and one held without SO_REUSEADDR or
        // SO_REUSEPORT is used by no connection or TIME-WAIT entry: the bind refused such a
        // port, and no ephemeral pick takes a held one.
        assert_eq!(
            self.script.ep.bindings(),
            self.bindings.len(),
            "bindings held"
        );
        let used = self.script.ep.used_local_addrs();
        let alone = PortSharing::default();
        for &(held, _) in self.bindings.iter().filter(|(_, s)| *s == alone) {
            let clash = used.keys().find(|a| {
                a.port() == held.port()
                    && a.is_ipv4() == held.is_ipv4()
                    && (a.ip() == held.ip()
                        || a.ip().is_unspecified()
                        || held.ip().is_unspecified())
            });
            assert!(clash.is_none(), "{clash:?} uses the port bound at {held}");
        }

        let count = self.script.ep.connection_count();
        assert!(
            count <= self.max_connections,
            "{count} connections ({} in TIME-WAIT), max_connections is {}",
            self.script.ep.time_wait_count(),
            self.max_connections
        );

        let stats = self.script.ep.stats().clone();
        check_stats_grow(&self.stats, &stats);
        // A packet looped back to our own address counts out and in.
        let looped = stats.looped_back - self.stats.looped_back;
        assert_eq!(
            stats.packets_in - self.stats.packets_in,
            self.packets_in + looped,
            "packets_in counts the packets handed in"
        );
        assert_eq!(
            stats.packets_out - self.stats.packets_out,
            (control + data) as u64 + looped,
            "packets_out counts the packets written"
        );
        self.stats = stats;
        self.packets_in = 0;

        if let Some(t) = self.script.ep.poll_timeout() {
            assert!(
                t >= self.script.now,
                "poll_timeout {t:?} is before now {:?}",
                self.script.now
            );
            if timers_ran {
                // Output drained after the timers may arm new ones, but none that is due.
                assert!(t > self.script.now, "a due timer survived handle_timeout");
            }
        }
    }
}

/// Checks one packet the endpoint wrote and updates the peer's memory of its 4-tuple.
/// Checks a packet the endpoint sent and remembers what the peer learns from it; returns
/// whether it is a TCP segment carrying data.
fn learn(peers: &mut VecDeque<Peer>, mtu: usize, intercept: bool, packet: &[u8]) -> bool {
    // A UDP datagram or an echo reply past the MTU leaves in fragments: each a valid one,
    // within the MTU, from one of ours.
    if let Err(wire::WireError::Fragment) = wire::ip::parse(packet) {
        let f =
            wire::fragment::Fragment::parse(packet).expect("the endpoint emits valid fragments");
        assert!(
            matches!(
                f.protocol,
                IpProtocol::Udp | IpProtocol::Icmp | IpProtocol::Icmpv6
            ),
            "only UDP and ICMP go in fragments"
        );
        assert!(
            packet.len() <= mtu,
            "a {}-byte fragment on a {}-byte MTU",
            packet.len(),
            mtu
        );
        assert!(
            f.src == US || f.src == US6 || intercept,
            "a fragment from {}",
            f.src
        );
        assert!(
            f.dst != US && f.dst != US6,
            "a fragment to our own address {} reached the link",
            f.dst
        );
        return false;
    }
    let (ip, payload) = wire::ip::parse(packet).expect("the endpoint emits valid IP");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    assert!(
        dst != US && dst != US6,
        "a packet to our own address {dst} reached the link"
    );
    // In intercept mode the endpoint answers for any unicast address a packet went to.
    let unicast = match src {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    };
    assert!(
        src == US || src == US6 || (intercept && unicast),
        "sent from {src}, not one of ours"
    );
    match (ip.protocol(), src, dst) {
        (IpProtocol::Tcp, _, _) => {
            let seg =
                TcpRepr::parse(payload, src, dst, false).expect("the endpoint emits valid TCP");
            assert!(
                packet.len() <= mtu,
                "a {}-byte TCP packet on a {}-byte MTU",
                packet.len(),
                mtu
            );
            remember_segment(peers, &seg, src, dst);
            return !seg.payload.is_empty();
        }
        (IpProtocol::Udp, _, _) => {
            UdpRepr::parse(payload, src, dst, false).expect("the endpoint emits valid UDP");
            assert!(
                packet.len() <= mtu,
                "a {}-byte UDP packet on a {}-byte MTU",
                packet.len(),
                mtu
            );
        }
        (IpProtocol::Icmp, IpAddr::V4(_), _) => {
            IcmpRepr::parse_v4(payload).expect("the endpoint emits valid ICMPv4");
        }
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            IcmpRepr::parse_v6(payload, s, d).expect("the endpoint emits valid ICMPv6");
        }
        (p, _, _) => panic!("the endpoint emitted protocol {p:?}"),
    }
    false
}

/// Updates the peer's memory of the 4-tuple `seg` was sent on.
fn remember_segment(peers: &mut VecDeque<Peer>, seg: &TcpRepr<'_>, src: IpAddr, dst: IpAddr) {
    let local = SocketAddr::new(src, seg.src_port);
    let remote = SocketAddr::new(dst, seg.dst_port);
    let end = seg.seq_number.0.wrapping_add(seg.seq_len() as u32);
    let found = peers
        .iter()
        .position(|p| p.local == local && p.remote == remote);
    let mut peer = match found {
        Some(i) => peers.remove(i).expect("index from position"),
        None => Peer {
            local,
            remote,
            snd_nxt: end,
            rcv_nxt: 0,
            tsval: 0,
            fin: None,
        },
    };
    // Nothing occupies sequence space past the FIN (RFC 9293 §3.10.4: after CLOSE, "queue
    // this until all preceding SENDs have been segmentized, then form a FIN segment"; no
    // SEND is taken after it). A SYN begins a new connection; an RST's seq is the ACK it
    // answers, and a probe's is below SND.UNA.
    if let Some(fin) = peer
        .fin
        .filter(|_| !seg.flags.intersects(TcpFlags::SYN | TcpFlags::RST))
    {
        assert!(
            (end.wrapping_sub(fin.wrapping_add(1)) as i32) <= 0,
            "{local} -> {remote}: a segment ending at {end}, past the FIN at {fin}"
        );
    }
    if seg.flags.contains(TcpFlags::SYN) {
        peer.fin = None;
    }
    if seg.flags.contains(TcpFlags::FIN) && peer.fin.is_none() {
        peer.fin = Some(seg.seq_number.0.wrapping_add(seg.payload.len() as u32));
    }
    // SND.NXT only moves forward (mod 2^32); an RST's or a retransmission's seq does not
    // pull it back.
    if (end.wrapping_sub(peer.snd_nxt) as i32) > 0 || seg.flags.contains(TcpFlags::SYN) {
        peer.snd_nxt = end;
    }
    if seg.flags.contains(TcpFlags::ACK) {
        peer.rcv_nxt = seg.ack_number.0;
    }
    if let Some(ts) = seg.timestamp {
        peer.tsval = ts.tsval;
    }
    if peers.len() == MAX_REMEMBERED {
        peers.pop_front();
    }
    peers.push_back(peer);
}

/// Every counter is monotonic: none may go down between two checks.
fn check_stats_grow(before: &Stats, after: &Stats) {
    let pairs = [
        ("packets_in", before.packets_in, after.packets_in),
        ("packets_out", before.packets_out, after.packets_out),
        ("segments_in", before.segments_in, after.segments_in),
        ("segments_out", before.segments_out, after.segments_out),
        ("retransmits", before.retransmits, after.retransmits),
        (
            "connections_established",
            before.connections_established,
            after.connections_established,
        ),
        ("rsts_sent", before.rsts_sent, after.rsts_sent),
        (
            "challenge_acks",
            before.challenge_acks,
            after.challenge_acks,
        ),
        (
            "challenge_acks_limited",
            before.challenge_acks_limited,
            after.challenge_acks_limited,
        ),
        ("echo_replies", before.echo_replies, after.echo_replies),
        (
            "syncookies_sent",
            before.syncookies_sent,
            after.syncookies_sent,
        ),
        (
            "syncookies_validated",
            before.syncookies_validated,
            after.syncookies_validated,
        ),
        (
            "syncookies_failed",
            before.syncookies_failed,
            after.syncookies_failed,
        ),
        (
            "time_wait_recycled",
            before.time_wait_recycled,
            after.time_wait_recycled,
        ),
        (
            "events_dropped",
            before.events_dropped,
            after.events_dropped,
        ),
        (
            "time_wait_acks_limited",
            before.time_wait_acks_limited,
            after.time_wait_acks_limited,
        ),
        (
            "drop_malformed",
            before.drop_malformed,
            after.drop_malformed,
        ),
        ("drop_checksum", before.drop_checksum, after.drop_checksum),
        (
            "drop_bad_option",
            before.drop_bad_option,
            after.drop_bad_option,
        ),
        ("drop_signed", before.drop_signed, after.drop_signed),
        ("drop_fragment", before.drop_fragment, after.drop_fragment),
        (
            "drop_not_for_us",
            before.drop_not_for_us,
            after.drop_not_for_us,
        ),
        (
            "drop_unsupported",
            before.drop_unsupported,
            after.drop_unsupported,
        ),
        (
            "drop_out_of_window",
            before.drop_out_of_window,
            after.drop_out_of_window,
        ),
        ("drop_paws", before.drop_paws, after.drop_paws),
        (
            "drop_listen_overflow",
            before.drop_listen_overflow,
            after.drop_listen_overflow,
        ),
        ("drop_memory", before.drop_memory, after.drop_memory),
        (
            "refused_memory",
            before.refused_memory,
            after.refused_memory,
        ),
        ("drop_other", before.drop_other, after.drop_other),
        (
            "udp_datagrams_in",
            before.udp_datagrams_in,
            after.udp_datagrams_in,
        ),
        (
            "udp_datagrams_out",
            before.udp_datagrams_out,
            after.udp_datagrams_out,
        ),
        (
            "udp_intercepted",
            before.udp_intercepted,
            after.udp_intercepted,
        ),
        (
            "udp_port_unreachable_sent",
            before.udp_port_unreachable_sent,
            after.udp_port_unreachable_sent,
        ),
        (
            "udp_port_unreachable_limited",
            before.udp_port_unreachable_limited,
            after.udp_port_unreachable_limited,
        ),
        (
            "udp_port_unreachable_queue_full",
            before.udp_port_unreachable_queue_full,
            after.udp_port_unreachable_queue_full,
        ),
        (
            "drop_udp_no_socket",
            before.drop_udp_no_socket,
            after.drop_udp_no_socket,
        ),
        (
            "drop_udp_queue_full",
            before.drop_udp_queue_full,
            after.drop_udp_queue_full,
        ),
    ];
    for (name, b, a) in pairs {
        assert!(a >= b, "Stats::{name} went down: {b} -> {a}");
    }
}
