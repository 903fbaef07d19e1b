//! The endpoint behind packetdrill's calls: sockets as file descriptors, virtual time, and
//! blocking calls that wait on a condition variable. Safe code only; errors are errnos.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::Duration;

use synack_core::{
    ConnectionHandle, Endpoint, Error, Event, Instant, ListenerHandle, RecvMeta, State,
};

use crate::flags::{self, Flags, Sysctls};

mod sockopt;

/// A result whose error is an errno.
pub type SysResult<T> = Result<T, i32>;

/// packetdrill spins for the last 20 µs before an event (`MAX_SPIN_USECS`) after sleeping
/// until then; a virtual `usleep` sleeps those 20 µs too, so the spin ends at once.
const MAX_SPIN_USECS: u64 = 20;

/// Calls to `gettimeofday` in a row, with nothing else in between, after which the virtual
/// clock moves on by 1 µs (so that a spin for less than `MAX_SPIN_USECS` ends).
const SPIN_CALLS: u32 = 64;

/// The longest a blocked call waits in real time for the other thread before giving up
/// (a script that blocks forever fails instead of hanging).
const REAL_WAIT_LIMIT: Duration = Duration::from_secs(20);

thread_local! {
    /// The virtual time at which this thread's last blocking call completed: the
    /// `gettimeofday` that packetdrill makes right after the call returns reads it, even if the
    /// main thread has moved the clock on since.
    static END_TIME: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// poll/epoll bits (the same values in both on Linux).
pub mod ev {
    /// Readable.
    pub const IN: u32 = libc::POLLIN as u32;
    /// Writable.
    pub const OUT: u32 = libc::POLLOUT as u32;
    /// Error.
    pub const ERR: u32 = libc::POLLERR as u32;
    /// Hang-up.
    pub const HUP: u32 = libc::POLLHUP as u32;
    /// Normal data readable.
    pub const RDNORM: u32 = libc::POLLRDNORM as u32;
    /// Normal data writable.
    pub const WRNORM: u32 = libc::POLLWRNORM as u32;
    /// The peer shut down its sending side.
    pub const RDHUP: u32 = libc::POLLRDHUP as u32;
    /// epoll: edge-triggered.
    pub const ET: u32 = libc::EPOLLET as u32;
    /// epoll: one shot.
    pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
}

/// The errno Linux returns for each core error.
pub fn errno(e: Error) -> i32 {
    match e {
        Error::ConnectionRefused => libc::ECONNREFUSED,
        Error::ConnectionReset => libc::ECONNRESET,
        Error::TimedOut => libc::ETIMEDOUT,
        Error::ConnectionAborted => libc::ECONNABORTED,
        Error::BrokenPipe => libc::EPIPE,
        Error::HostUnreachable => libc::EHOSTUNREACH,
        Error::NetworkUnreachable => libc::ENETUNREACH,
        Error::WouldBlock => libc::EAGAIN,
        Error::AddrInUse => libc::EADDRINUSE,
        Error::AddrNotAvailable => libc::EADDRNOTAVAIL,
        Error::InvalidHandle => libc::EBADF,
        Error::NotConnected => libc::ENOTCONN,
        Error::InvalidInput => libc::EINVAL,
        Error::NoBufferSpace => libc::ENOBUFS,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fresh,
    Listener(ListenerHandle),
    Conn(ConnectionHandle),
}

/// Where a `connect` stands, for what the next `connect` returns (Linux's SS_* states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connecting {
    No,
    InProgress,
    Done,
}

/// Socket options that only the adapter keeps.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// SO_REUSEADDR.
    pub reuseaddr: bool,
    /// SO_LINGER: `Some(seconds)` when on.
    pub linger: Option<i32>,
    /// SO_SNDBUF as Linux reports it (doubled).
    pub sndbuf: Option<i32>,
    /// SO_RCVBUF as Linux reports it (doubled).
    pub rcvbuf: Option<i32>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// TCP_NOTSENT_LOWAT, if set on the socket.
    pub notsent_lowat: Option<u32>,
    /// TCP_INQ.
    pub inq: bool,
    /// TCP_MAXSEG, if set.
    pub maxseg: Option<u32>,
    /// TCP_USER_TIMEOUT in milliseconds, if set.
    pub user_timeout: Option<u32>,
    /// TCP_SYNCNT, if set.
    pub syncnt: Option<u32>,
}

#[derive(Debug)]
struct Socket {
    v6: bool,
    nonblock: bool,
    bound: Option<SocketAddr>,
    kind: Kind,
    /// Connections taken from the listener's accept queue by `poll`, not yet accepted.
    accepted: VecDeque<ConnectionHandle>,
    opts: Opts,
    shut_rd: bool,
    shut_wr: bool,
    /// The connection's error was reported once (SO_ERROR or a call); later reads see EOF.
    error_reported: bool,
    connecting: Connecting,
    /// Bumped on every core event for the socket, for edge-triggered epoll.
    ev_gen: u64,
}

impl Socket {
    fn new(v6: bool) -> Socket {
        Socket {
            v6,
            nonblock: false,
            bound: None,
            kind: Kind::Fresh,
            accepted: VecDeque::new(),
            opts: Opts::default(),
            shut_rd: false,
            shut_wr: false,
            error_reported: false,
            connecting: Connecting::No,
            ev_gen: 1,
        }
    }
}

#[derive(Debug, Default)]
struct Epoll {
    /// fd -> (events, data, the socket's `ev_gen` last reported)
    interest: BTreeMap<i32, (u32, u64, u64)>,
}

#[derive(Debug)]
enum Fd {
    Socket(Box<Socket>),
    Epoll(Epoll),
}

/// One `recv` result with what `recvmsg` reports beside the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes read.
    pub len: usize,
    /// TCP_INQ: bytes still queued after the read, when the socket asked for it.
    pub inq: Option<i32>,
}

/// The mutable state: the endpoint, the clock, the file descriptors and the packets sent.
pub struct Stack {
    flags: Flags,
    ep: Option<Endpoint>,
    sys: Option<Sysctls>,
    now: Instant,
    wall_base_us: u64,
    fds: BTreeMap<i32, Fd>,
    conn_fd: HashMap<ConnectionHandle, i32>,
    listener_fd: HashMap<ListenerHandle, i32>,
    out: VecDeque<(Vec<u8>, Instant)>,
    buf: Vec<u8>,
    blocked: usize,
    gen: u64,
    pending: usize,
    wait_deadlines: Vec<Instant>,
    spin_calls: u32,
    main_thread: ThreadId,
}

/// The stack and the condition variable its blocked callers wait on.
pub struct Shared {
    state: Mutex<Stack>,
    cv: Condvar,
}

type Guard<'a> = MutexGuard<'a, Stack>;

impl Stack {
    fn ep(&mut self) -> &mut Endpoint {
        if self.ep.is_none() {
            let (config, sys) = flags::config(&self.flags);
            let addrs = [self.flags.local4, self.flags.local6];
            self.ep = Some(Endpoint::new(config, &addrs));
            self.sys = Some(sys);
        }
        self.ep.as_mut().expect("just made")
    }

    fn sys(&mut self) -> &Sysctls {
        self.ep();
        self.sys.as_ref().expect("made with the endpoint")
    }

    fn socket(&mut self, fd: i32) -> SysResult<&mut Socket> {
        match self.fds.get_mut(&fd) {
            Some(Fd::Socket(s)) => Ok(s),
            Some(Fd::Epoll(_)) => Err(libc::ENOTSOCK),
            None => Err(libc::EBADF),
        }
    }

    fn alloc_fd(&self) -> SysResult<i32> {
        let fd = crate::ffi::reserve_fd()?;
        debug_assert!(!self.fds.contains_key(&fd));
        Ok(fd)
    }

    /// Send what the endpoint has to send, stamped with the current time, and route its
    /// events to the sockets they concern.
    fn drain(&mut self) {
        let now = self.now;
        if self.buf.len() < 65536 {
            self.buf.resize(65536, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        self.ep();
        let ep = self.ep.as_mut().expect("made above");
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            self.out.push_back((buf[..t.len].to_vec(), now));
        }
        self.buf = buf;
        while let Some(event) = self.ep().poll_event() {
            let fd = match event {
                Event::Connected(h)
                | Event::Readable(h)
                | Event::Writable(h)
                | Event::Closed(h, _) => self.conn_fd.get(&h).copied(),
                Event::Incoming(l) => self.listener_fd.get(&l).copied(),
            };
            if let Some(Fd::Socket(s)) = fd.and_then(|fd| self.fds.get_mut(&fd)) {
                s.ev_gen += 1;
            }
        }
    }

    /// The next virtual deadline: the endpoint's, or a blocked call's timeout.
    fn next_deadline(&mut self) -> Option<Instant> {
        let now = self.now;
        let t = self.ep().poll_timeout();
        let w = self
            .wait_deadlines
            .iter()
            .copied()
            .filter(|&d| d > now)
            .min();
        match (t, w) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Move the clock to `t` (never backwards) and run the timers due.
    fn step_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
        }
        let now = self.now;
        self.ep().handle_timeout(now);
        self.drain();
    }

    /// Give a new connection the options set on its socket (or its listener) before it
    /// existed.
    fn apply_opts(&mut self, h: ConnectionHandle, o: &Opts) {
        let ep = self.ep();
        if o.nodelay {
            let _ = ep.set_nodelay(h, true);
        }
        if let Some(b) = o.sndbuf {
            let _ = ep.set_send_buffer(h, b as usize);
        }
        if let Some(b) = o.rcvbuf {
            let _ = ep.set_recv_buffer(h, b as usize);
        }
        if let Some(ms) = o.user_timeout {
            let t = (ms > 0).then(|| Duration::from_millis(u64::from(ms)));
            let _ = ep.set_user_timeout(h, t);
        }
        if let Some(n) = o.syncnt {
            let _ = ep.set_syn_retries(h, n);
        }
        if let Some(m) = o.maxseg {
            let _ = ep.clamp_mss(h, m as usize);
        }
    }

    /// Bytes waiting to be read (SIOCINQ, TCP_INQ).
    fn inq(&mut self, fd: i32) -> usize {
        let Ok(h) = self.conn(fd) else {
            return 0;
        };
        self.ep().recv_queue_len(h).unwrap_or(0)
    }

    fn conn(&mut self, fd: i32) -> SysResult<ConnectionHandle> {
        match self.socket(fd)?.kind {
            Kind::Conn(h) => Ok(h),
            _ => Err(libc::ENOTCONN),
        }
    }

    /// The connection's error, once: as a call's result the first time, then not again.
    fn take_conn_error(&mut self, fd: i32) -> SysResult<Option<i32>> {
        let h = self.conn(fd)?;
        let e = self.ep().take_error(h).map_err(errno)?;
        let s = self.socket(fd)?;
        match e {
            Some(e) if !s.error_reported => {
                s.error_reported = true;
                Ok(Some(errno(e)))
            }
            _ => Ok(None),
        }
    }

    /// poll/epoll readiness of `fd`, as Linux's tcp_poll computes it.
    fn readiness(&mut self, fd: i32) -> u32 {
        let Ok(s) = self.socket(fd) else {
            return libc::POLLNVAL as u32;
        };
        match s.kind {
            Kind::Fresh => ev::OUT | ev::WRNORM | ev::HUP,
            Kind::Listener(l) => {
                if s.accepted.is_empty() {
                    if let Ok(h) = self.ep.as_mut().expect("listening").accept(l) {
                        self.conn_fd.insert(h, fd);
                        if let Ok(s) = self.socket(fd) {
                            s.accepted.push_back(h);
                        }
                    }
                }
                match self.socket(fd) {
                    Ok(s) if !s.accepted.is_empty() => ev::IN | ev::RDNORM,
                    _ => 0,
                }
            }
            Kind::Conn(h) => {
                let (shut_rd, shut_wr, reported) = (s.shut_rd, s.shut_wr, s.error_reported);
                let lowat = s.opts.notsent_lowat.filter(|&l| l > 0);
                let lowat = lowat.unwrap_or_else(|| self.sys().notsent_lowat);
                let now = self.now;
                let ep = self.ep();
                let state = ep.state(h).unwrap_or(State::Closed);
                let error = ep.take_error(h).ok().flatten();
                let mut mask = 0;
                if error.is_some() && !reported {
                    mask |= ev::ERR;
                }
                let fin_in = matches!(
                    state,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                );
                let fin_out = matches!(
                    state,
                    State::FinWait1
                        | State::FinWait2
                        | State::Closing
                        | State::LastAck
                        | State::TimeWait
                );
                let closed = state == State::Closed;
                let rcv_shut = shut_rd || fin_in || closed;
                let snd_shut = shut_wr || fin_out || closed;
                if (rcv_shut && snd_shut) || closed {
                    mask |= ev::HUP;
                }
                if rcv_shut {
                    mask |= ev::IN | ev::RDNORM | ev::RDHUP;
                }
                if !matches!(state, State::SynSent | State::SynReceived) {
                    if ep.recv_ready(h).unwrap_or(false) {
                        mask |= ev::IN | ev::RDNORM;
                    }
                    if snd_shut {
                        mask |= ev::OUT | ev::WRNORM;
                    } else {
                        let free = ep.send_capacity(h).unwrap_or(0);
                        let queued = ep.send_queue_len(h).unwrap_or(0);
                        // tcp_stream_memory_free: fewer unsent bytes than the low-water mark.
                        let notsent = ep.info(now, h).map(|i| i.notsent_bytes).unwrap_or(0);
                        let lowat_ok = notsent < lowat;
                        // sk_stream_is_writeable: free space at least half what is queued.
                        if free > 0 && 2 * free >= queued && lowat_ok {
                            mask |= ev::OUT | ev::WRNORM;
                        }
                    }
                }
                mask
            }
        }
    }

    fn sockaddr_for(&self, fd_v6: bool, addr: SocketAddr) -> SocketAddr {
        match (fd_v6, addr) {
            (true, SocketAddr::V4(a)) => {
                SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port())
            }
            _ => addr,
        }
    }
}

/// The addresses in a socket call, v4-mapped IPv6 taken as IPv4 (the core's view).
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        _ => addr,
    }
}

fn lock(m: &Mutex<Stack>) -> Guard<'_> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A fresh stack; the endpoint itself is made at the first `socket` call, once the
    /// script's init command has set the namespace's sysctls.
    pub fn new(flags: Flags) -> Shared {
        let wall_base_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Shared {
            state: Mutex::new(Stack {
                flags,
                ep: None,
                sys: None,
                now: Instant::ZERO,
                wall_base_us,
                fds: BTreeMap::new(),
                conn_fd: HashMap::new(),
                listener_fd: HashMap::new(),
                out: VecDeque::new(),
                buf: Vec::new(),
                blocked: 0,
                gen: 0,
                pending: 0,
                wait_deadlines: Vec::new(),
                spin_calls: 0,
                main_thread: thread::current().id(),
            }),
            cv: Condvar::new(),
        }
    }

    /// With `--so_flags=verbose`, log a call and its result on stderr, at the virtual time.
    pub fn trace(&self, call: std::fmt::Arguments<'_>, result: &dyn std::fmt::Debug) {
        let g = lock(&self.state);
        if g.flags.verbose {
            eprintln!("synack-packetdrill: {} {call} = {result:?}", g.now);
        }
    }

    fn lock(&self) -> Guard<'_> {
        let mut g = lock(&self.state);
        g.spin_calls = 0;
        g
    }

    /// Something changed: blocked calls look again, and the clock waits until they have.
    fn kick(&self, g: &mut Guard<'_>) {
        if g.blocked > 0 {
            g.gen += 1;
            g.pending = g.blocked;
        }
        self.cv.notify_all();
    }

    /// Wait (in real time, bounded) until every blocked call has looked at the last change,
    /// so that one woken by it completes at the virtual time it was woken.
    fn barrier<'a>(&'a self, mut g: Guard<'a>) -> Guard<'a> {
        let limit = std::time::Instant::now() + Duration::from_secs(1);
        while g.pending > 0 && std::time::Instant::now() < limit {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.pending = 0;
        g
    }

    /// Move the virtual clock to `t`, stopping at each deadline on the way.
    fn advance_to<'a>(&'a self, mut g: Guard<'a>, t: Instant) -> Guard<'a> {
        for _ in 0..1_000_000 {
            g = self.barrier(g);
            match g.next_deadline() {
                Some(d) if d <= t => {
                    let before = g.now;
                    g.step_to(d);
                    self.kick(&mut g);
                    if d <= before {
                        // A deadline that is already due and changed nothing: go on.
                        break;
                    }
                }
                _ => break,
            }
        }
        g.step_to(t);
        self.kick(&mut g);
        self.barrier(g)
    }

    /// Block until `ready` gives a result, or the virtual `deadline` passes (`None`). The
    /// main thread drives the clock itself instead of waiting for it.
    fn block<'a, R>(
        &'a self,
        mut g: Guard<'a>,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Stack) -> Option<R>,
    ) -> (Guard<'a>, Option<R>) {
        if let Some(r) = ready(&mut g) {
            return (g, Some(r));
        }
        if thread::current().id() == g.main_thread {
            for _ in 0..100_000 {
                let next = g.next_deadline();
                let next = match (next, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let Some(t) = next else {
                    return (g, None);
                };
                g = self.advance_to(g, t);
                if let Some(r) = ready(&mut g) {
                    return (g, Some(r));
                }
                if deadline.is_some_and(|d| g.now >= d) {
                    return (g, None);
                }
            }
            return (g, None);
        }
        g.blocked += 1;
        if let Some(d) = deadline {
            g.wait_deadlines.push(d);
        }
        let mut seen = g.gen;
        let limit = std::time::Instant::now() + REAL_WAIT_LIMIT;
        let result = loop {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            let looked = g.gen != seen;
            if looked {
                seen = g.gen;
                g.pending = g.pending.saturating_sub(1);
            }
            if let Some(r) = ready(&mut g) {
                break Some(r);
            }
            if deadline.is_some_and(|d| g.now >= d) || std::time::Instant::now() > limit {
                break None;
            }
            if looked {
                self.cv.notify_all();
            }
        };
        g.blocked -= 1;
        if let Some(d) = deadline {
            if let Some(i) = g.wait_deadlines.iter().position(|&x| x == d) {
                g.wait_deadlines.swap_remove(i);
            }
        }
        END_TIME.with(|c| c.set(Some(g.now)));
        self.cv.notify_all();
        (g, result)
    }

    // -------------------------------------------------------------------------------------
    // Clock and packets
    // -------------------------------------------------------------------------------------

    /// Virtual wall-clock time in microseconds since the Unix epoch.
    pub fn gettimeofday(&self) -> u64 {
        if let Some(t) = END_TIME.with(|c| c.take()) {
            let g = lock(&self.state);
            return g.wall_base_us + t.total_micros();
        }
        let mut g = lock(&self.state);
        g.spin_calls += 1;
        if g.spin_calls >= SPIN_CALLS && thread::current().id() == g.main_thread {
            g.spin_calls = 0;
            let t = g.now + Duration::from_micros(1);
            g = self.advance_to(g, t);
        }
        g.wall_base_us + g.now.total_micros()
    }

    /// Sleep `usec` of virtual time (plus the spin packetdrill does after).
    pub fn usleep(&self, usec: u64) {
        let g = self.lock();
        let t = g.now + Duration::from_micros(usec + MAX_SPIN_USECS);
        drop(self.advance_to(g, t));
    }

    /// A packet from the script to the stack.
    pub fn netdev_send(&self, packet: &[u8]) {
        let mut g = self.lock();
        let now = g.now;
        g.ep()
            .handle_packet(now, packet, RecvMeta::new(packet.len()));
        g.drain();
        self.kick(&mut g);
        drop(self.barrier(g));
    }

    /// The next packet the stack sends, with its virtual wall-clock time in microseconds:
    /// the clock runs on to the next timer until one comes. `None` when nothing will ever
    /// come (no timer is pending).
    pub fn netdev_receive(&self) -> Option<(Vec<u8>, u64)> {
        let mut g = self.lock();
        for _ in 0..100_000 {
            if let Some((p, t)) = g.out.pop_front() {
                return Some((p, g.wall_base_us + t.total_micros()));
            }
            g = self.barrier(g);
            if !g.out.is_empty() {
                continue;
            }
            match g.next_deadline() {
                Some(t) => g = self.advance_to(g, t),
                None => {
                    // A blocked call on the other thread may still send something.
                    let limit = std::time::Instant::now() + Duration::from_millis(200);
                    while g.out.is_empty() && std::time::Instant::now() < limit {
                        g = self
                            .cv
                            .wait_timeout(g, Duration::from_millis(10))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    if g.out.is_empty() {
                        return None;
                    }
                }
            }
        }
        None
    }

    // -------------------------------------------------------------------------------------
    // Sockets
    // -------------------------------------------------------------------------------------

    /// socket(2).
    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> SysResult<i32> {
        let v6 = match domain {
            libc::AF_INET => false,
            libc::AF_INET6 => true,
            _ => return Err(libc::EAFNOSUPPORT),
        };
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        if base != libc::SOCK_STREAM {
            return Err(libc::ESOCKTNOSUPPORT);
        }
        if protocol != 0 && protocol != libc::IPPROTO_TCP {
            return Err(libc::EPROTONOSUPPORT);
        }
        let mut g = self.lock();
        g.ep();
        let fd = g.alloc_fd()?;
        let mut s = Socket::new(v6);
        s.nonblock = ty & libc::SOCK_NONBLOCK != 0;
        g.fds.insert(fd, Fd::Socket(Box::new(s)));
        Ok(fd)
    }

    /// bind(2).
    pub fn bind(&self, fd: i32, addr: SocketAddr) -> SysResult<()> {
        let mut g = self.lock();
        let addr = unmap(addr);
        let local = [g.flags.local4, g.flags.local6];
        if !addr.ip().is_unspecified() && !local.contains(&addr.ip()) {
            return Err(libc::EADDRNOTAVAIL);
        }
        let s = g.socket(fd)?;
        if s.bound.is_some() || s.kind != Kind::Fresh {
            return Err(libc::EINVAL);
        }
        let reuse = s.opts.reuseaddr;
        // inet_csk_bind_conflict, for sockets bound explicitly: the same port on an
        // overlapping address is taken unless both set SO_REUSEADDR and neither listens.
        if addr.port() != 0 {
            let taken = g.fds.iter().any(|(&other, f)| {
                let Fd::Socket(o) = f else { return false };
                let Some(b) = o.bound else { return false };
                other != fd
                    && matches!(o.kind, Kind::Fresh | Kind::Listener(_))
                    && b.port() == addr.port()
                    && (b.ip() == addr.ip()
                        || b.ip().is_unspecified()
                        || addr.ip().is_unspecified())
                    && (!reuse || !o.opts.reuseaddr || matches!(o.kind, Kind::Listener(_)))
            });
            if taken {
                return Err(libc::EADDRINUSE);
            }
        }
        g.socket(fd)?.bound = Some(addr);
        Ok(())
    }

    /// listen(2).
    pub fn listen(&self, fd: i32, backlog: i32) -> SysResult<()> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        match s.kind {
            Kind::Listener(_) => return Ok(()),
            Kind::Conn(_) => return Err(libc::EINVAL),
            Kind::Fresh => {}
        }
        let v6 = s.v6;
        let addr = s.bound.unwrap_or_else(|| {
            if v6 {
                "[::]:0".parse().expect("address")
            } else {
                "0.0.0.0:0".parse().expect("address")
            }
        });
        // Linux: the backlog is at least 1 and at most somaxconn; the accept queue holds
        // backlog + 1.
        let backlog = (backlog.max(0) as usize).saturating_add(1);
        let l = g.ep().listen(addr, backlog).map_err(errno)?;
        let bound = g.ep().listener_addr(l).map_err(errno)?;
        g.listener_fd.insert(l, fd);
        let s = g.socket(fd)?;
        s.kind = Kind::Listener(l);
        s.bound = Some(bound);
        Ok(())
    }

    /// accept(2): the new fd and the peer's address.
    pub fn accept(&self, fd: i32) -> SysResult<(i32, SocketAddr)> {
        let g = self.lock();
        let (g, r) = self.block(g, None, |st| {
            let s = match st.socket(fd) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let l = match s.kind {
                Kind::Listener(l) => l,
                _ => return Some(Err(libc::EINVAL)),
            };
            let nonblock = s.nonblock;
            if let Some(h) = s.accepted.pop_front() {
                return Some(Ok(h));
            }
            match st.ep().accept(l) {
                Ok(h) => Some(Ok(h)),
                Err(Error::WouldBlock) if nonblock => Some(Err(libc::EAGAIN)),
                Err(Error::WouldBlock) => None,
                Err(e) => Some(Err(errno(e))),
            }
        });
        let mut g = g;
        let h = r.unwrap_or(Err(libc::EAGAIN))?;
        let v6 = g.socket(fd)?.v6;
        let opts = g.socket(fd)?.opts.clone();
        let peer = g.ep().peer_addr(h).map_err(errno)?;
        let local = g.ep().local_addr(h).map_err(errno)?;
        g.apply_opts(h, &opts);
        let nfd = g.alloc_fd()?;
        let mut s = Socket::new(v6);
        s.kind = Kind::Conn(h);
        s.bound = Some(local);
        s.opts = opts;
        s.connecting = Connecting::Done;
        g.fds.insert(nfd, Fd::Socket(Box::new(s)));
        g.conn_fd.insert(h, nfd);
        g.drain();
        self.kick(&mut g);
        Ok((nfd, g.sockaddr_for(v6, peer)))
    }

    /// connect(2).
    pub fn connect(&self, fd: i32, addr: SocketAddr) -> SysResult<()> {
        let mut g = self.lock();
        let addr = unmap(addr);
        let s = g.socket(fd)?;
        match (s.kind, s.connecting) {
            (Kind::Listener(_), _) => return Err(libc::EISCONN),
            (Kind::Conn(_), Connecting::Done) => return Err(libc::EISCONN),
            (Kind::Conn(_), _) => {
                let nonblock = s.nonblock;
                return self.finish_connect(g, fd, nonblock, true);
            }
            (Kind::Fresh, _) => {}
        }
        let nonblock = s.nonblock;
        let opts = s.opts.clone();
        let now = g.now;
        let h = g.ep().connect(now, addr).map_err(errno)?;
        // Before the SYN is polled out, so that TCP_MAXSEG reaches its MSS option.
        g.apply_opts(h, &opts);
        g.conn_fd.insert(h, fd);
        let s = g.socket(fd)?;
        s.kind = Kind::Conn(h);
        s.connecting = Connecting::InProgress;
        g.drain();
        self.kick(&mut g);
        self.finish_connect(g, fd, nonblock, false)
    }

    fn finish_connect(&self, g: Guard<'_>, fd: i32, nonblock: bool, again: bool) -> SysResult<()> {
        let (mut g, r) = self.block(g, None, |st| {
            let h = st.conn(fd).ok()?;
            let state = st.ep().state(h).unwrap_or(State::Closed);
            match state {
                State::SynSent | State::SynReceived if nonblock => Some(Err(if again {
                    libc::EALREADY
                } else {
                    libc::EINPROGRESS
                })),
                State::SynSent | State::SynReceived => None,
                _ => Some(Ok(())),
            }
        });
        let r = r.unwrap_or(Err(libc::ETIMEDOUT));
        if r.is_ok() {
            if let Some(e) = g.take_conn_error(fd)? {
                g.socket(fd)?.connecting = Connecting::No;
                return Err(e);
            }
            g.socket(fd)?.connecting = Connecting::Done;
        }
        r
    }

    /// recv(2)/read(2) into `buf`; `peek` is MSG_PEEK, `dontwait` MSG_DONTWAIT.
    pub fn recv(&self, fd: i32, buf: &mut [u8], dontwait: bool, peek: bool) -> SysResult<Received> {
        if peek {
            // The core has no way to look without taking.
            return Err(libc::EOPNOTSUPP);
        }
        let g = self.lock();
        let (mut g, r) = self.block(g, None, |st| {
            let s = match st.socket(fd) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let nonblock = s.nonblock || dontwait;
            // After shutdown(SHUT_RD), Linux still hands out what is queued, then EOF.
            let shut_rd = s.shut_rd;
            let h = match s.kind {
                Kind::Conn(h) => h,
                _ if shut_rd => return Some(Ok(0)),
                _ => return Some(Err(libc::ENOTCONN)),
            };
            let now = st.now;
            match st.ep().recv(now, h, buf) {
                Ok(n) => Some(Ok(n)),
                Err(Error::WouldBlock) if shut_rd => Some(Ok(0)),
                Err(Error::WouldBlock) if nonblock => Some(Err(libc::EAGAIN)),
                Err(Error::WouldBlock) => None,
                Err(e) => {
                    let s = st.socket(fd).ok()?;
                    if s.error_reported {
                        Some(Ok(0))
                    } else {
                        s.error_reported = true;
                        Some(Err(errno(e)))
                    }
                }
            }
        });
        let n = r.unwrap_or(Err(libc::EAGAIN))?;
        let inq = if g.socket(fd)?.opts.inq {
            // Linux counts a received FIN as one byte when nothing else is left.
            let mut q = g.inq(fd) as i32;
            if q == 0 {
                if let Ok(h) = g.conn(fd) {
                    let state = g.ep().state(h).unwrap_or(State::Closed);
                    if matches!(
                        state,
                        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                    ) {
                        q = 1;
                    }
                }
            }
            Some(q)
        } else {
            None
        };
        g.drain();
        self.kick(&mut g);
        Ok(Received { len: n, inq })
    }

    /// send(2)/write(2). A blocking socket takes all of `data`, waiting for room.
    pub fn send(&self, fd: i32, data: &[u8], dontwait: bool) -> SysResult<usize> {
        let mut g = self.lock();
        let mut done = 0;
        loop {
            let (g2, r) = self.block(g, None, |st| {
                let s = match st.socket(fd) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                let nonblock = s.nonblock || dontwait;
                let h = match s.kind {
                    Kind::Conn(h) => h,
                    _ => return Some(Err(libc::EPIPE)),
                };
                if s.shut_wr {
                    return Some(Err(libc::EPIPE));
                }
                if s.error_reported && st.ep().take_error(h).ok().flatten().is_some() {
                    return Some(Err(libc::EPIPE));
                }
                let state = st.ep().state(h).unwrap_or(State::Closed);
                if matches!(state, State::SynSent | State::SynReceived) {
                    return if nonblock {
                        Some(Err(libc::EAGAIN))
                    } else {
                        None
                    };
                }
                match st.ep().send(h, &data[done..]) {
                    Ok(n) => Some(Ok(n)),
                    Err(Error::WouldBlock) if nonblock => Some(Err(libc::EAGAIN)),
                    Err(Error::WouldBlock) => None,
                    Err(e) => {
                        if let Ok(s) = st.socket(fd) {
                            s.error_reported = true;
                        }
                        Some(Err(errno(e)))
                    }
                }
            });
            g = g2;
            if g.flags.verbose {
                eprintln!(
                    "synack-packetdrill: t={} send({fd}) after {done}: {r:?}",
                    g.now
                );
            }
            match r.unwrap_or(Err(libc::EAGAIN)) {
                Ok(n) => {
                    done += n;
                    g.drain();
                    self.kick(&mut g);
                    let nonblock = g.socket(fd)?.nonblock || dontwait;
                    if done >= data.len() || nonblock || n == 0 {
                        return Ok(done);
                    }
                }
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(e),
            }
        }
    }

    /// close(2).
    pub fn close(&self, fd: i32) -> SysResult<()> {
        self.close_fd(fd, true)
    }

    fn close_fd(&self, fd: i32, release: bool) -> SysResult<()> {
        let mut g = self.lock();
        let now = g.now;
        let removed = g.fds.remove(&fd);
        if removed.is_some() && release {
            crate::ffi::release_fd(fd);
        }
        match removed {
            None => return Err(libc::EBADF),
            Some(Fd::Epoll(_)) => {}
            Some(Fd::Socket(s)) => {
                for (_, f) in g.fds.iter_mut() {
                    if let Fd::Epoll(e) = f {
                        e.interest.remove(&fd);
                    }
                }
                let linger = s.opts.linger;
                for h in s.accepted {
                    g.conn_fd.remove(&h);
                    let _ = g.ep().abort(h);
                }
                match s.kind {
                    Kind::Fresh => {}
                    Kind::Listener(l) => {
                        g.listener_fd.remove(&l);
                        g.ep().close_listener(now, l).map_err(errno)?;
                    }
                    Kind::Conn(h) => {
                        g.conn_fd.remove(&h);
                        match linger {
                            Some(0) => g.ep().abort(h).map_err(errno)?,
                            Some(secs) if release && g.ep().recv_queue_len(h).unwrap_or(0) == 0 => {
                                g = self.linger(g, h, secs);
                                let now = g.now;
                                g.ep().close(now, h).map_err(errno)?;
                            }
                            _ => g.ep().close(now, h).map_err(errno)?,
                        }
                    }
                }
            }
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }

    /// SO_LINGER with a timeout: close() sends the FIN and waits until it is acknowledged,
    /// or `secs` pass (Linux's inet_release, tcp_close).
    fn linger<'a>(&'a self, mut g: Guard<'a>, h: ConnectionHandle, secs: i32) -> Guard<'a> {
        let now = g.now;
        let _ = g.ep().shutdown(h);
        g.drain();
        self.kick(&mut g);
        let deadline = now + Duration::from_secs(secs.max(0) as u64);
        let (g, _) = self.block(g, Some(deadline), |st| {
            let state = st.ep().state(h).unwrap_or(State::Closed);
            matches!(state, State::FinWait2 | State::TimeWait | State::Closed).then_some(())
        });
        g
    }

    /// shutdown(2).
    pub fn shutdown(&self, fd: i32, how: i32) -> SysResult<()> {
        let mut g = self.lock();
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(libc::EINVAL),
        };
        let s = g.socket(fd)?;
        let h = match s.kind {
            Kind::Conn(h) => h,
            Kind::Listener(_) => return Err(libc::ENOTCONN),
            Kind::Fresh => return Err(libc::ENOTCONN),
        };
        s.shut_rd |= rd;
        let first_wr = wr && !s.shut_wr;
        s.shut_wr |= wr;
        s.ev_gen += 1;
        if first_wr {
            match g.ep().shutdown(h) {
                Ok(()) | Err(Error::BrokenPipe) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }

    /// fcntl(2): F_GETFL and F_SETFL (O_NONBLOCK).
    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i32) -> SysResult<i32> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        match cmd {
            libc::F_GETFL => Ok(libc::O_RDWR | if s.nonblock { libc::O_NONBLOCK } else { 0 }),
            libc::F_SETFL => {
                s.nonblock = arg & libc::O_NONBLOCK != 0;
                Ok(0)
            }
            _ => Err(libc::EINVAL),
        }
    }

    /// ioctl(2): SIOCINQ (FIONREAD) and SIOCOUTQ.
    pub fn ioctl(&self, fd: i32, request: libc::c_ulong) -> SysResult<i32> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        if matches!(s.kind, Kind::Listener(_)) {
            return Err(libc::EINVAL);
        }
        match request {
            r if r == libc::FIONREAD => Ok(g.inq(fd) as i32),
            r if r == libc::TIOCOUTQ => {
                let Ok(h) = g.conn(fd) else { return Ok(0) };
                Ok(g.ep().send_queue_len(h).unwrap_or(0) as i32)
            }
            _ => Err(libc::ENOTTY),
        }
    }

    /// poll(2) over `fds` (fd, events) -> revents, waiting up to `timeout_ms` (-1: forever).
    pub fn poll(&self, fds: &[(i32, i16)], timeout_ms: i32) -> SysResult<Vec<i16>> {
        let g = self.lock();
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        let scan = |st: &mut Stack| {
            let mut any = false;
            let revents: Vec<i16> = fds
                .iter()
                .map(|&(fd, events)| {
                    if fd < 0 {
                        return 0;
                    }
                    let r = st.readiness(fd);
                    let wanted = (events as u16 as u32) | ev::ERR | ev::HUP | libc::POLLNVAL as u32;
                    let r = (r & wanted) as u16 as i16;
                    any |= r != 0;
                    r
                })
                .collect();
            (any, revents)
        };
        let (mut g, r) = self.block(g, deadline, |st| {
            let (any, revents) = scan(st);
            any.then_some(revents)
        });
        Ok(r.unwrap_or_else(|| scan(&mut g).1))
    }

    /// epoll_create(2).
    pub fn epoll_create(&self) -> SysResult<i32> {
        let mut g = self.lock();
        let fd = g.alloc_fd()?;
        g.fds.insert(fd, Fd::Epoll(Epoll::default()));
        Ok(fd)
    }

    /// epoll_ctl(2).
    pub fn epoll_ctl(&self, epfd: i32, op: i32, fd: i32, events: u32, data: u64) -> SysResult<()> {
        let mut g = self.lock();
        g.socket(fd)?;
        let Some(Fd::Epoll(e)) = g.fds.get_mut(&epfd) else {
            return Err(libc::EINVAL);
        };
        match op {
            libc::EPOLL_CTL_ADD => {
                if e.interest.contains_key(&fd) {
                    return Err(libc::EEXIST);
                }
                e.interest.insert(fd, (events, data, 0));
            }
            libc::EPOLL_CTL_MOD => match e.interest.get_mut(&fd) {
                Some(entry) => *entry = (events, data, 0),
                None => return Err(libc::ENOENT),
            },
            libc::EPOLL_CTL_DEL => {
                if e.interest.remove(&fd).is_none() {
                    return Err(libc::ENOENT);
                }
            }
            _ => return Err(libc::EINVAL),
        }
        Ok(())
    }

    /// epoll_wait(2): up to `max` (events, data), waiting up to `timeout_ms`.
    pub fn epoll_wait(&self, epfd: i32, max: usize, timeout_ms: i32) -> SysResult<Vec<(u32, u64)>> {
        let g = self.lock();
        if max == 0 {
            return Err(libc::EINVAL);
        }
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        let scan = |st: &mut Stack| -> SysResult<Vec<(u32, u64)>> {
            let interest = match st.fds.get(&epfd) {
                Some(Fd::Epoll(e)) => e.interest.clone(),
                _ => return Err(libc::EBADF),
            };
            let mut out = Vec::new();
            for (fd, (events, data, last)) in interest {
                if out.len() >= max {
                    break;
                }
                let r = st.readiness(fd) & (events | ev::ERR | ev::HUP);
                let r = r & !(ev::ET | ev::ONESHOT);
                if r == 0 {
                    continue;
                }
                let gen = st.socket(fd).map(|s| s.ev_gen).unwrap_or(0);
                if events & ev::ET != 0 && gen <= last {
                    continue;
                }
                out.push((r, data));
                if let Some(Fd::Epoll(e)) = st.fds.get_mut(&epfd) {
                    if let Some(entry) = e.interest.get_mut(&fd) {
                        entry.2 = gen;
                        if events & ev::ONESHOT != 0 {
                            entry.0 = 0;
                        }
                    }
                }
            }
            Ok(out)
        };
        let (mut g, r) = self.block(g, deadline, |st| match scan(st) {
            Ok(v) if v.is_empty() => None,
            other => Some(other),
        });
        match r {
            Some(r) => r,
            None => scan(&mut g),
        }
    }

    /// Close everything (packetdrill is done with the library).
    pub fn shutdown_all(&self) {
        let fds: Vec<i32> = self.lock().fds.keys().copied().collect();
        for fd in fds {
            // packetdrill closes the descriptors itself.
            let _ = self.close_fd(fd, false);
        }
    }
}
