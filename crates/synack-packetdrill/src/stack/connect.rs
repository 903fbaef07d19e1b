//! Setting up connections: socket, bind, listen, accept and connect, and the options a new
//! connection takes from its socket.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use synack_core::{ConnectionHandle, Error, SocketOptions, State};

use super::errno::{errno, SysResult};
use super::fd::{Connecting, Fd, Kind, Opts, Socket};
use super::state::{Guard, Shared, Stack};
use crate::flags;

impl Stack {
    /// Give a new connection the options set on its socket (or its listener) before it
    /// existed.
    fn apply_opts(&mut self, h: ConnectionHandle, o: &Opts) {
        let now = self.now;
        let ep = self.ep();
        if o.nodelay {
            let _ = ep.set_nodelay(h, true);
        }
        if o.cork {
            let _ = ep.set_cork(h, true);
        }
        if o.oobinline {
            let _ = ep.set_oob_inline(h, true);
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
        // The IP options of the family on the connection's wire (see `IpOpts`).
        let wire_v6 = ep.peer_addr(h).is_ok_and(|a| a.is_ipv6());
        if let Some(tos) = o.ip.ds_byte(wire_v6) {
            let _ = ep.set_tos(h, tos);
        }
        if let Some(hop_limit) = o.ip.hop_limit(wire_v6) {
            let _ = ep.set_hop_limit(h, hop_limit);
        }
        if let Some(l) = o.notsent_lowat.filter(|&l| l > 0) {
            let _ = ep.set_notsent_lowat(h, Some(l as usize));
        }
        // After SO_RCVBUF, which bounds it: a child takes its listener's (sk_clone).
        if let Some(l) = o.rcvlowat {
            let _ = ep.set_rcvlowat(h, l as usize);
        }
        if let Some(k) = o.keepalive_config() {
            let _ = ep.set_keepalive(now, h, Some(k));
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

impl Shared {
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
        // Linux reads tcp_timestamps when a handshake starts: a script may change it between
        // connections.
        if let Some(on) = crate::flags::timestamps_sysctl() {
            g.ep().set_timestamps(on);
        }
        // tcp_ecn likewise (fastopen/server/pure-syn-data.pkt turns it on between listeners).
        if let Some(mode) = crate::flags::ecn_sysctl() {
            g.ep().set_ecn(mode);
        }
        // And the link's MTU, which the advertised MSS follows (the first socket makes the
        // endpoint, which `lock` found missing).
        if let Some(mtu) = crate::flags::link_mtu() {
            let _ = g.ep().set_mtu(mtu);
        }
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
        let s = g.socket(fd)?;
        if s.bound.is_some() || s.kind != Kind::Fresh {
            return Err(libc::EINVAL);
        }
        let reuse = s.opts.sharing();
        // The endpoint's bind table decides, as Linux's inet_csk_get_port: the port is the
        // socket's until it connects, listens or closes (a port 0 is picked now).
        let bound = g.ep().bind_socket(addr, reuse, &[]).map_err(errno)?;
        let s = g.socket(fd)?;
        s.bound = Some(bound);
        s.binding = Some((bound, reuse));
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
        // Linux's fastopen_queue_tune takes listen()'s own backlog, at most somaxconn.
        s.opts.backlog = (backlog - 1).min(4096) as u32;
        let opts = listener_options(s);
        let key = s.opts.fastopen_key;
        let binding = s.binding.take();
        // The namespace's Fast Open key (`net.ipv4.tcp_fastopen_key`), for listeners
        // without their own; read now, after the script's init set it.
        if let Some(k) = crate::flags::fastopen_key_sysctl() {
            g.ep().set_fast_open_key(k);
        }
        // The socket's own binding gives way to its listener; a listen that fails leaves
        // the socket bound, as Linux's.
        if let Some((a, reuse)) = binding {
            let _ = g.ep().release_binding(a, reuse);
        }
        let l = match g.ep().listen_with(addr, backlog, &opts) {
            Ok(l) => l,
            Err(e) => {
                if let Some((a, reuse)) = binding {
                    g.ep().hold_binding(a, reuse);
                    g.socket(fd)?.binding = binding;
                }
                return Err(errno(e));
            }
        };
        if let Some(key) = key {
            g.ep().set_listener_fast_open_key(l, key).map_err(errno)?;
        }
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
        s.passive = true;
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
            (Kind::Conn(_), Connecting::InProgress) => {
                let nonblock = s.nonblock;
                return self.finish_connect(g, fd, nonblock, true);
            }
            // Unconnected after an attempt that failed (Linux's SS_UNCONNECTED): a socket
            // whose connection is closed connects again, as a fresh one (`inet_stream_connect`
            // in TCP_CLOSE); one whose connection lives on is connected.
            (Kind::Conn(h), Connecting::No) => {
                if g.ep().state(h).unwrap_or(State::Closed) != State::Closed {
                    return Err(libc::EISCONN);
                }
                drop(g);
                self.disconnect(fd)?;
                g = self.lock();
            }
            (Kind::Fresh, _) => {}
        }
        let s = g.socket(fd)?;
        // A new connection starts without the last one's error (tcp_connect_init).
        s.pending_error = None;
        let nonblock = s.nonblock;
        let opts = s.opts.clone();
        // From the bound address, if any; the connection keeps the socket's SO_REUSEADDR.
        let binding = s.binding;
        let local = binding.map(|(a, _)| a);
        let now = g.now;
        let fast_open = opts.fastopen_connect && g.sys().fastopen & 1 != 0;
        // TCP_FASTOPEN_CONNECT: with a cookie the SYN waits for the first write and
        // connect() returns at once (Linux's tcp_fastopen_defer_connect); without one the
        // SYN asks for a cookie and connect() goes on as usual.
        let deferred = fast_open && g.ep().fast_open_cookie(addr.ip()).is_some();
        let core = SocketOptions {
            fast_open_connect: fast_open.then_some(true),
            reuse_address: Some(opts.reuseaddr),
            reuse_port: opts.reuseport,
            ..SocketOptions::default()
        };
        let h = g
            .ep()
            .connect_with(now, addr, local, &core)
            .map_err(errno)?;
        // The connection holds the port now.
        if let Some((a, reuse)) = binding {
            let _ = g.ep().release_binding(a, reuse);
            g.socket(fd)?.binding = None;
        }
        if deferred {
            g.apply_opts(h, &opts);
            g.conn_fd.insert(h, fd);
            let s = g.socket(fd)?;
            s.kind = Kind::Conn(h);
            s.connecting = Connecting::Done;
            s.fastopen_deferred = true;
            g.drain();
            self.kick(&mut g);
            return Ok(());
        }
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

    /// connect(2) to an `AF_UNSPEC` address: Linux's `tcp_disconnect`. A connection the
    /// peer knows of is reset (as `abort`: an RST from SYN-RECEIVED, ESTABLISHED,
    /// CLOSE-WAIT and the FIN-WAITs, none from SYN-SENT), a listener closes (resetting what
    /// its queue held), and the socket is left unconnected (`TCP_CLOSE`), free to connect or
    /// listen again. `shutdown(2)` of a socket in SYN-SENT comes here too.
    pub fn disconnect(&self, fd: i32) -> SysResult<()> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        let kind = std::mem::replace(&mut s.kind, Kind::Fresh);
        let accepted = std::mem::take(&mut s.accepted);
        s.connecting = Connecting::No;
        s.shut_rd = false;
        s.shut_wr = false;
        s.error_reported = false;
        s.fastopen_deferred = false;
        let listener = match kind {
            Kind::Listener(l) => Some(l),
            _ => None,
        };
        g.end_listening(accepted, listener)?;
        match kind {
            Kind::Fresh | Kind::Listener(_) => {}
            Kind::Conn(h) => {
                g.conn_fd.remove(&h);
                // An abort that sends an RST also leaves ECONNRESET on the socket, and so
                // does an attempt ended in SYN-SENT, with no RST (`tcp_disconnect`).
                let reset = g
                    .ep()
                    .state(h)
                    .is_ok_and(|s| s.resets_on_abort() || s == State::SynSent);
                g.ep().abort(h).map_err(errno)?;
                if reset {
                    g.socket(fd)?.pending_error = Some(libc::ECONNRESET);
                }
            }
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }

    /// sendto(2) with MSG_FASTOPEN (Linux's `tcp_sendmsg_fastopen`): connect to `addr` and
    /// send `data` in the SYN with the server's cookie. Without a cookie the SYN asks for
    /// one and nothing is taken: EINPROGRESS on a non-blocking socket; a blocking one waits
    /// for the connection and then sends as usual.
    pub fn send_fast_open(
        &self,
        fd: i32,
        data: &[u8],
        addr: Option<SocketAddr>,
        dontwait: bool,
        flags: synack_core::SendFlags,
        zerocopy: bool,
    ) -> SysResult<usize> {
        let mut g = self.lock();
        // The sysctl as it is now: a script may turn the client side off and on between
        // calls (Linux reads it at each sendmsg).
        let enabled = flags::fastopen_sysctl().unwrap_or(g.sys().fastopen);
        if enabled & 1 == 0 {
            return Err(libc::EOPNOTSUPP);
        }
        let s = g.socket(fd)?;
        match s.kind {
            // A connection on its way (SYN-SENT, not deferred): another Fast Open is in
            // progress. One deferred by TCP_FASTOPEN_CONNECT, or established: an ordinary
            // write (Linux 6.18 sends it, where `__inet_stream_connect` alone would say
            // EISCONN).
            Kind::Conn(h) if !s.fastopen_deferred => {
                if g.ep().state(h) == Ok(State::SynSent) {
                    return Err(libc::EALREADY);
                }
                drop(g);
                return self.send_parts(fd, data, &[], dontwait, flags, zerocopy);
            }
            Kind::Conn(_) => {
                drop(g);
                return self.send_parts(fd, data, &[], dontwait, flags, zerocopy);
            }
            Kind::Listener(_) => return Err(libc::EISCONN),
            Kind::Fresh => {}
        }
        let addr = unmap(addr.ok_or(libc::EDESTADDRREQ)?);
        let nonblock = s.nonblock || dontwait;
        let opts = s.opts.clone();
        let binding = s.binding;
        let now = g.now;
        // TCP_MAXSEG bounds the SYN's data, so it goes in before the data is sized; the rest
        // of the options follow as for connect.
        let core = SocketOptions {
            max_segment: opts.maxseg.and_then(|m| u16::try_from(m).ok()),
            reuse_address: Some(opts.reuseaddr),
            reuse_port: opts.reuseport,
            ..SocketOptions::default()
        };
        let local = binding.map(|(a, _)| a);
        let (h, n) = g
            .ep()
            .connect_fast_open(now, addr, local, &core, data)
            .map_err(errno)?;
        if let Some((a, reuse)) = binding {
            let _ = g.ep().release_binding(a, reuse);
            g.socket(fd)?.binding = None;
        }
        g.apply_opts(h, &opts);
        g.conn_fd.insert(h, fd);
        let s = g.socket(fd)?;
        s.kind = Kind::Conn(h);
        s.connecting = Connecting::InProgress;
        self.finish_fast_open_write(g, fd, h, data, n, nonblock, dontwait, flags, zerocopy)
    }

    /// A Fast Open write once its SYN took the first `n` bytes of `data` (`sendto` with
    /// MSG_FASTOPEN, or the first write on a `TCP_FASTOPEN_CONNECT` socket), as Linux's
    /// `tcp_sendmsg_fastopen` goes on: a non-blocking call returns what rode in the SYN, or
    /// EINPROGRESS if nothing did (a cookie request); a blocking one waits for the handshake,
    /// as connect would, and then sends the rest as any write, returning the whole.
    ///
    /// While it waits with data left over that the SYN could not carry, the writer counts
    /// as waiting (Linux's `sk_write_pending`: `tcp_send_syn_data` clears the request's data
    /// when the SYN took it all), which holds the SYN-ACK's ACK for that data to carry. The
    /// lock stays held from the handshake's end to the write of the rest: released in
    /// between, the main thread could find no thread at work and move the clock on (it once
    /// moved 60 s before the rest left).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_fast_open_write<'a>(
        &'a self,
        mut g: Guard<'a>,
        fd: i32,
        h: ConnectionHandle,
        data: &[u8],
        n: usize,
        nonblock: bool,
        dontwait: bool,
        flags: synack_core::SendFlags,
        zerocopy: bool,
    ) -> SysResult<usize> {
        if n > 0 {
            // Before the endpoint sends them: the error queue follows these bytes.
            g.note_write(fd, n, zerocopy, true);
        }
        g.drain();
        self.kick(&mut g);
        if nonblock {
            return if n > 0 { Ok(n) } else { Err(libc::EINPROGRESS) };
        }
        let more = n < data.len();
        if more {
            let _ = g.ep().set_write_pending(h, true);
        }
        let (mut g, r) = self.finish_connect_locked(g, fd, false, false);
        if more {
            let _ = g.ep().set_write_pending(h, false);
        }
        r?;
        if !more {
            return Ok(n);
        }
        Ok(n + self.write(g, fd, &data[n..], &[], dontwait, flags, zerocopy, false)?)
    }

    fn finish_connect(&self, g: Guard<'_>, fd: i32, nonblock: bool, again: bool) -> SysResult<()> {
        self.finish_connect_locked(g, fd, nonblock, again).1
    }

    /// [`finish_connect`](Self::finish_connect), keeping the lock.
    fn finish_connect_locked<'a>(
        &'a self,
        g: Guard<'a>,
        fd: i32,
        nonblock: bool,
        again: bool,
    ) -> (Guard<'a>, SysResult<()>) {
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
        if r.is_err() {
            return (g, r);
        }
        let closed = match g.conn(fd) {
            Ok(h) => g.ep().state(h).unwrap_or(State::Closed) == State::Closed,
            Err(_) => true,
        };
        let r = match g.take_conn_error(fd) {
            Err(e) => Err(e),
            Ok(Some(e)) => g
                .socket(fd)
                .map(|s| s.connecting = Connecting::No)
                .and(Err(e)),
            // Closed with its error already read (`SO_ERROR`): `sock_error` finds none, and
            // the attempt ends with ECONNABORTED (`inet_stream_connect`).
            Ok(None) if closed => g
                .socket(fd)
                .map(|s| s.connecting = Connecting::No)
                .and(Err(libc::ECONNABORTED)),
            Ok(None) => g.socket(fd).map(|s| s.connecting = Connecting::Done),
        };
        (g, r)
    }
}

/// The options a listener hands to the connections it accepts before `accept` can apply the
/// rest: those that shape the SYN-ACK (TCP_MAXSEG, IP_TOS, IP_TTL; SO_RCVBUF, which fixes the
/// window scale offered, as a child socket inherits the listener's locked buffer on Linux),
/// and keepalive, whose timer a child starts when it is made (`tcp_create_openreq_child`).
///
/// The IP options are those of the family the listener's children will have on their wire:
/// IPv4 for an IPv4 socket or one bound to an IPv4-mapped address, IPv6 otherwise (an IPv6
/// wildcard listener's IPv4 children take its IPv6 options, where Linux would give them its
/// IPv4 ones: one set of options is handed to all children).
pub(super) fn listener_options(s: &Socket) -> SocketOptions {
    let o = &s.opts;
    let wire_v6 = s.v6 && !matches!(s.bound, Some(SocketAddr::V4(_)));
    // TCP Fast Open's server side as Linux gates it: `tcp_fastopen` bit 0x2 turns it on,
    // for listeners that set TCP_FASTOPEN, or for all of them with 0x400 (their backlog
    // bounds the queue, as fastopen_queue_tune); 0x200 accepts data without a cookie. Read
    // when the listener is made or set, as scripts change the sysctl between listeners.
    let sysctl = crate::flags::fastopen_sysctl().unwrap_or(1);
    let queue = match o.fastopen {
        Some(q) => q,
        None if sysctl & 0x400 != 0 => o.backlog,
        None => 0,
    };
    SocketOptions {
        max_segment: o.maxseg.and_then(|m| u16::try_from(m).ok()),
        recv_buffer: o.rcvbuf.map(|b| b as usize),
        reuse_address: Some(o.reuseaddr),
        reuse_port: o.reuseport,
        tos: o.ip.ds_byte(wire_v6),
        hop_limit: o.ip.hop_limit(wire_v6),
        fast_open: (sysctl & 0x2 != 0 && queue > 0).then_some(queue),
        fast_open_no_cookie: Some(sysctl & 0x200 != 0),
        keepalive: o.keepalive_config(),
        defer_accept: Some(Duration::from_secs(u64::from(o.defer_accept))),
        linger2: super::sockopt::linger2_of(o.linger2),
        ..SocketOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    /// bind(2) goes through the endpoint's bind table, as Linux's `inet_csk_get_port`: a
    /// bound port is refused to another socket unless both set SO_REUSEADDR (set after the
    /// bind, it counts), two bound with it cannot both listen, a failed listen leaves the
    /// socket bound, and close gives the port back. Port 0 is picked at bind.
    #[test]
    fn bind_holds_the_port_as_linux_does() {
        let s = Shared::new(Flags::default());
        let stream = |s: &Shared| s.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let reuse = |s: &Shared, fd| {
            s.setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &int(1))
                .unwrap()
        };
        let addr: SocketAddr = "198.18.0.2:7000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        let a = stream(&s);
        s.bind(a, addr).unwrap();
        assert_eq!(s.bind(a, addr), Err(libc::EINVAL), "bound already");
        let b = stream(&s);
        assert_eq!(s.bind(b, any), Err(libc::EADDRINUSE));
        reuse(&s, b);
        assert_eq!(s.bind(b, addr), Err(libc::EADDRINUSE), "a has not set it");
        reuse(&s, a);
        s.bind(b, addr).unwrap();
        s.listen(a, 1).unwrap();
        assert_eq!(s.listen(b, 1), Err(libc::EADDRINUSE));
        s.close(a).unwrap();
        // b is still bound: a socket without the option is refused; b listens now.
        let c = stream(&s);
        assert_eq!(s.bind(c, addr), Err(libc::EADDRINUSE));
        s.listen(b, 1).unwrap();
        s.close(b).unwrap();
        s.bind(c, addr).unwrap();
        s.close(c).unwrap();
        let d = stream(&s);
        s.bind(d, addr).unwrap();

        let e = stream(&s);
        s.bind(e, "198.18.0.2:0".parse().unwrap()).unwrap();
        let picked = s.lock().socket(e).unwrap().bound.unwrap();
        assert_ne!(picked.port(), 0);
        let f = stream(&s);
        assert_eq!(s.bind(f, picked), Err(libc::EADDRINUSE));
        for fd in [d, e, f] {
            s.close(fd).unwrap();
        }
    }
}
