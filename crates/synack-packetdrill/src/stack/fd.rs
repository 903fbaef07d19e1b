//! What a file descriptor holds: a socket (what it is in the core, its options, and the
//! state the adapter keeps beside the core's), an epoll set, or one end of a pipe.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use synack_core::{ConnectionHandle, ListenerHandle, PortSharing};

use super::errqueue::ErrQueue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Fresh,
    Listener(ListenerHandle),
    Conn(ConnectionHandle),
}

/// Where a `connect` stands, for what the next `connect` returns (Linux's SS_* states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connecting {
    No,
    InProgress,
    Done,
}

impl Opts {
    /// How the socket shares its port: SO_REUSEADDR and SO_REUSEPORT.
    pub(super) fn sharing(&self) -> PortSharing {
        PortSharing {
            reuse_address: self.reuseaddr,
            reuse_port: self.reuseport,
        }
    }
}

/// Socket options that only the adapter keeps.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// SO_REUSEADDR.
    pub reuseaddr: bool,
    /// SO_REUSEPORT.
    pub reuseport: bool,
    /// SO_LINGER: `Some(seconds)` when on.
    pub linger: Option<i32>,
    /// SO_SNDBUF as Linux reports it (doubled).
    pub sndbuf: Option<i32>,
    /// SO_RCVBUF as Linux reports it (doubled).
    pub rcvbuf: Option<i32>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// TCP_CORK.
    pub cork: bool,
    /// TCP_NOTSENT_LOWAT, if set on the socket.
    pub notsent_lowat: Option<u32>,
    /// SO_RCVLOWAT, if set on the socket (as capped when it was set).
    pub rcvlowat: Option<u32>,
    /// TCP_INQ.
    pub inq: bool,
    /// TCP_MAXSEG, if set.
    pub maxseg: Option<u32>,
    /// TCP_USER_TIMEOUT in milliseconds, if set.
    pub user_timeout: Option<u32>,
    /// TCP_SYNCNT, if set.
    pub syncnt: Option<u32>,
    /// SO_ZEROCOPY: `MSG_ZEROCOPY` sends are numbered and reported on the error queue.
    pub zerocopy: bool,
    /// SO_TIMESTAMPING's `SOF_TIMESTAMPING_*` flags.
    pub timestamping: u32,
    /// SO_MARK: kept and reported; nothing here routes or filters by it.
    pub mark: u32,
    /// TCP_FASTOPEN_CONNECT.
    pub fastopen_connect: bool,
    /// TCP_FASTOPEN: a listener's queue of pending Fast Open connections, if set.
    pub fastopen: Option<u32>,
    /// TCP_DEFER_ACCEPT in seconds, as set (a negative value is 0).
    pub defer_accept: u32,
    /// TCP_LINGER2 as Linux keeps it: seconds (at most 120), 0 for unset, -1 for no wait.
    pub linger2: i32,
    /// TCP_FASTOPEN_KEY, if set.
    pub fastopen_key: Option<synack_core::FastOpenKey>,
    /// listen()'s backlog, once listening (`tcp_fastopen` 0x400 sizes the Fast Open queue
    /// of a listener without TCP_FASTOPEN by it).
    pub backlog: u32,
    /// SO_OOBINLINE: the urgent byte stays in the stream.
    pub oobinline: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE in seconds, if set.
    pub keepidle: Option<u32>,
    /// TCP_KEEPINTVL in seconds, if set.
    pub keepintvl: Option<u32>,
    /// TCP_KEEPCNT, if set.
    pub keepcnt: Option<u32>,
    /// IP_TOS and IPV6_TCLASS as set (ECN bits masked), IP_TTL and IPV6_UNICAST_HOPS, and
    /// IP_MTU_DISCOVER.
    pub ip: IpOpts,
}

/// The IP-level options (`SOL_IP`, `SOL_IPV6`): see `sockopt.rs`.
///
/// An IPv6 socket holds both families' options, and a connection sends with those of the
/// family on its wire: IP_TOS and IP_TTL for IPv4 (a peer at an IPv4-mapped address), and
/// IPV6_TCLASS and IPV6_UNICAST_HOPS for IPv6, as Linux's `ip_queue_xmit` reads
/// `inet->tos` and `inet->uc_ttl` and `inet6_csk_xmit` reads `np->tclass` and
/// `np->hop_limit`.
#[derive(Debug, Clone, Default)]
pub struct IpOpts {
    /// IP_TOS, if set.
    pub tos: Option<u8>,
    /// IPV6_TCLASS, if set.
    pub tclass: Option<u8>,
    /// IP_MTU_DISCOVER, if set.
    pub mtu_discover: Option<i32>,
    /// IP_FREEBIND: recorded and reported. A bind to an address that is not the stack's
    /// still fails (EADDRNOTAVAIL): the core answers only for its own addresses.
    pub freebind: bool,
    /// IP_TTL, if set (-1 returns to the default).
    pub ttl: Option<u8>,
    /// IPV6_UNICAST_HOPS, if set (-1 returns to the default).
    pub unicast_hops: Option<u8>,
}

impl IpOpts {
    /// The DS byte for the core, once the option of the wire's family was set.
    pub fn ds_byte(&self, wire_v6: bool) -> Option<u8> {
        if wire_v6 {
            self.tclass
        } else {
            self.tos
        }
    }

    /// The TTL or hop limit for the core, once the option of the wire's family was set.
    pub fn hop_limit(&self, wire_v6: bool) -> Option<u8> {
        if wire_v6 {
            self.unicast_hops
        } else {
            self.ttl
        }
    }
}

#[derive(Debug)]
pub(super) struct Socket {
    pub(super) v6: bool,
    pub(super) nonblock: bool,
    pub(super) bound: Option<SocketAddr>,
    /// The port `bind` holds in the endpoint's bind table (`Endpoint::bind_socket`), with
    /// the SO_REUSEADDR it was held with, until the socket connects, listens or closes.
    pub(super) binding: Option<(SocketAddr, PortSharing)>,
    pub(super) kind: Kind,
    /// Connections taken from the listener's accept queue by `poll`, not yet accepted.
    pub(super) accepted: VecDeque<ConnectionHandle>,
    pub(super) opts: Opts,
    pub(super) shut_rd: bool,
    pub(super) shut_wr: bool,
    /// The connection's error was reported once (SO_ERROR or a call); later reads see EOF.
    pub(super) error_reported: bool,
    pub(super) connecting: Connecting,
    /// Bumped on every core event for the socket (a blocked writer sleeps until it moves).
    pub(super) ev_gen: u64,
    /// The wake-ups so far by their keys, for edge-triggered epoll.
    pub(super) wakes: Wakes,
    /// The peer's FIN has woken the socket (its first wake-up after the FIN is a state
    /// change, whatever event brought it).
    pub(super) fin_woken: bool,
    /// The error queue (MSG_ERRQUEUE).
    pub(super) errq: ErrQueue,
    /// A TCP Fast Open connect whose SYN waits for the first write (TCP_FASTOPEN_CONNECT
    /// with a cookie): writes go through in SYN-SENT.
    pub(super) fastopen_deferred: bool,
    /// What a disconnect (connect to `AF_UNSPEC`) that reset the connection left: Linux's
    /// `sk_err` of ECONNRESET, reported once by the next read, write or SO_ERROR, and
    /// cleared by the next connect.
    pub(super) pending_error: Option<i32>,
    /// Made by `accept`: a passive open, whose `tcpi_bytes_acked` starts past its SYN (an
    /// active open's counts the SYN's acknowledgment).
    pub(super) passive: bool,
}

impl Socket {
    pub(super) fn new(v6: bool) -> Socket {
        Socket {
            v6,
            nonblock: false,
            bound: None,
            binding: None,
            kind: Kind::Fresh,
            accepted: VecDeque::new(),
            opts: Opts::default(),
            shut_rd: false,
            shut_wr: false,
            error_reported: false,
            connecting: Connecting::No,
            ev_gen: 1,
            wakes: Wakes {
                all: 1,
                ..Wakes::default()
            },
            fin_woken: false,
            errq: ErrQueue::default(),
            fastopen_deferred: false,
            pending_error: None,
            passive: false,
        }
    }
}

/// How a socket's wait queue was woken, counted by the wake-up's key as Linux's
/// `ep_poll_callback` filters them: an edge-triggered entry sees an edge only from a wake-up
/// whose key meets its events (`sock_def_readable`'s EPOLLIN, `sk_stream_write_space`'s
/// EPOLLOUT), or one with no key or EPOLLERR's, which every entry takes (a state change,
/// an error, the error queue).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wakes {
    /// Wake-ups every entry sees.
    pub(super) all: u64,
    /// Data to read (EPOLLIN | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND).
    pub(super) rd: u64,
    /// Room to write (EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND).
    pub(super) wr: u64,
}

/// Which wake-up a socket had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    All,
    Read,
    Write,
}

impl Wakes {
    /// Whether an entry for `events` that last reported at `last` has an edge since.
    pub(super) fn edge_since(&self, last: &Wakes, events: u32) -> bool {
        const RD: u32 =
            (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDNORM | libc::EPOLLRDBAND) as u32;
        const WR: u32 = (libc::EPOLLOUT | libc::EPOLLWRNORM | libc::EPOLLWRBAND) as u32;
        self.all > last.all
            || (events & RD != 0 && self.rd > last.rd)
            || (events & WR != 0 && self.wr > last.wr)
    }
}

impl Socket {
    /// The socket's wait queue is woken with `key`.
    pub(super) fn wake(&mut self, key: Wake) {
        self.ev_gen += 1;
        match key {
            Wake::All => self.wakes.all += 1,
            Wake::Read => self.wakes.rd += 1,
            Wake::Write => self.wakes.wr += 1,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Epoll {
    /// fd -> (events, data, the socket's wake-ups when it last reported)
    pub(super) interest: BTreeMap<i32, (u32, u64, Wakes)>,
}

#[derive(Debug)]
pub(super) enum Fd {
    Socket(Box<Socket>),
    Epoll(Epoll),
    /// One end of a pipe (see `pipe.rs`).
    Pipe(super::pipe::PipeEnd),
}

impl Opts {
    /// The keepalive timing the socket asks for: its own TCP_KEEP* values, else the
    /// namespace's sysctls, as Linux's `keepalive_time_when` and friends read them; `None`
    /// while SO_KEEPALIVE is off.
    pub fn keepalive_config(&self) -> Option<synack_core::KeepaliveConfig> {
        if !self.keepalive {
            return None;
        }
        let (idle, intvl, cnt) = crate::flags::keepalive_sysctls();
        let secs = |s: u32| std::time::Duration::from_secs(u64::from(s));
        Some(synack_core::KeepaliveConfig {
            idle: secs(self.keepidle.unwrap_or(idle)),
            interval: secs(self.keepintvl.unwrap_or(intvl)),
            probes: self.keepcnt.unwrap_or(cnt),
        })
    }
}
