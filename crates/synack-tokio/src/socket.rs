//! [`TcpSocket`]: a socket configured before it connects or listens, as
//! `tokio::net::TcpSocket` (bind before connect, buffer sizes, keepalive, linger, nodelay, TOS
//! and TTL, the listen backlog, TCP Fast Open on a listener).

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use synack_core::options::MIN_BUFFER;
use synack_core::{KeepaliveConfig, PortSharing, SocketOptions};

use crate::listener::TcpListener;
use crate::sockopt::{ds_byte, hop_limit, linger_secs};
use crate::stack::PortHold;
use crate::stack::Stack;
use crate::stream::TcpStream;

/// A TCP socket on a [`Stack`] that has not connected or listened yet. Its options become
/// the connection's (or, after [`listen`](Self::listen), every accepted connection's) and
/// show on the wire: the receive buffer bounds the window and the window scale offered, the
/// MSS option carries [`set_mss`](Self::set_mss), keepalive probes follow the keepalive
/// timing.
///
/// ```
/// # async fn demo(stack: synack_tokio::Stack) -> std::io::Result<()> {
/// use synack_tokio::TcpSocket;
///
/// let socket = TcpSocket::new_v4(&stack)?;
/// socket.set_recv_buffer_size(64 * 1024)?;
/// socket.set_nodelay(true)?;
/// socket.bind("198.18.0.2:40000".parse().unwrap())?;
/// let stream = socket.connect("198.18.0.1:80".parse().unwrap()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TcpSocket {
    stack: Stack,
    v6: bool,
    settings: Mutex<Settings>,
}

#[derive(Debug, Default)]
struct Settings {
    /// The bound address and its port, held on every shard.
    bound: Option<PortHold>,
    /// The connection's or the listener's options, SO_REUSEADDR (`reuse_address`) among
    /// them.
    options: SocketOptions,
    linger: Option<Duration>,
    /// `bind` picked the port (it was asked for port 0).
    auto_port: bool,
    /// SO_BINDTODEVICE: the interface the socket is bound to, if any.
    device: Option<Vec<u8>>,
    /// An IPv6 socket bound to an IPv4-mapped address: it holds the IPv4 one and shows it
    /// mapped, as Linux's dual-stack socket does.
    mapped: bool,
}

/// How a socket with `options` shares its port (SO_REUSEADDR off unless set, as on Linux).
fn sharing(options: &SocketOptions) -> PortSharing {
    PortSharing {
        reuse_address: options.reuse_address.unwrap_or(false),
        reuse_port: options.reuse_port,
    }
}

impl TcpSocket {
    /// A socket for IPv4 connections on `stack`.
    pub fn new_v4(stack: &Stack) -> io::Result<TcpSocket> {
        Ok(Self::new(stack, false))
    }

    /// A socket for IPv6 connections on `stack`.
    pub fn new_v6(stack: &Stack) -> io::Result<TcpSocket> {
        Ok(Self::new(stack, true))
    }

    fn new(stack: &Stack, v6: bool) -> TcpSocket {
        TcpSocket {
            stack: stack.clone(),
            v6,
            settings: Mutex::new(Settings::default()),
        }
    }

    /// An address of the other family than the socket's, for `bind` or `connect`, fails as
    /// tokio's `TcpSocket` on Linux fails it: an IPv6 one on an IPv4 socket EAFNOSUPPORT
    /// (`inet_bind`, `tcp_v4_connect`: kind `InvalidInput`, the errno inside), an IPv4 one
    /// on an IPv6 socket EINVAL (`inet6_bind` and `tcp_v6_connect` find a `sockaddr_in`
    /// too short for an IPv6 address before they look at its family). Measured on Linux
    /// 6.18 (`kernel_tcp_family_mismatches_fail_as_on_the_kernel`).
    fn check_family(&self, addr: SocketAddr) -> io::Result<()> {
        match (self.v6, addr) {
            (true, SocketAddr::V4(_)) => Err(synack_core::Error::InvalidInput.into()),
            (false, SocketAddr::V6(_)) => Err(synack_core::Error::AddressFamilyNotSupported.into()),
            _ => Ok(()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Settings) -> T) -> T {
        f(&mut self.settings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Binds the socket to `addr`, one of the stack's addresses or the unspecified one (in
    /// transparent mode any address routed to the stack), with a port, or 0 for an
    /// ephemeral one, which is picked now, as Linux picks it at `bind(2)`:
    /// [`local_addr`](Self::local_addr) then shows it. As from `bind(2)`, the error comes
    /// at once: `AddrNotAvailable` for an address that is not the stack's, `AddrInUse` for
    /// port 0 with no ephemeral port free, or for a port that a listener holds, or that
    /// another bound socket holds or a connection or a TIME-WAIT entry uses, unless both
    /// sockets set [`set_reuseaddr`](Self::set_reuseaddr)
    /// (a connection accepted by a [`TcpListener::bind`](crate::TcpListener::bind) listener
    /// has it; one a [`TcpStream::connect`](crate::TcpStream::connect) opened has not);
    /// `InvalidInput` for a socket already bound (Linux's EINVAL), and for an address of
    /// the other family (EAFNOSUPPORT for an IPv6 one on an IPv4 socket, EINVAL for an IPv4
    /// one on an IPv6 socket, as Linux's).
    ///
    /// The port is the socket's from then on, as Linux reserves it: no ephemeral port is
    /// it, and no other socket binds it, until this socket is dropped, or its connection
    /// or listener holds it.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.check_family(addr)?;
        let mut settings = self.settings.lock().unwrap_or_else(PoisonError::into_inner);
        if settings.bound.is_some() {
            // Linux's `inet_bind` on a bound socket: EINVAL.
            return Err(synack_core::Error::InvalidInput.into());
        }
        let v4 = crate::addr::unmapped(addr);
        let held = v4.unwrap_or(addr);
        let sharing = sharing(&settings.options);
        settings.bound = Some(PortHold::bind(&self.stack, held, sharing)?);
        settings.auto_port = addr.port() == 0;
        settings.mapped = v4.is_some();
        Ok(())
    }

    /// The address [`bind`](Self::bind) gave the socket, its ephemeral port included;
    /// unbound, the unspecified address and port 0, as `getsockname(2)` says of a socket
    /// that is not bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self
            .with(|s| {
                s.bound
                    .as_ref()
                    .map(|b| crate::addr::shown(b.local(), s.mapped))
            })
            .unwrap_or_else(|| self.unspecified()))
    }

    /// The unspecified address of the socket's family, port 0.
    fn unspecified(&self) -> SocketAddr {
        let ip: std::net::IpAddr = if self.v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        SocketAddr::new(ip, 0)
    }

    /// SO_REUSEADDR, as Linux has it (`inet_bind_conflict`): two sockets that both set it
    /// may be bound to one port (only one of them can listen on it), and a socket may bind
    /// or listen on a port that connections or TIME-WAIT entries still use if their sockets
    /// set it too. The socket's connection, and its listener's accepted connections, keep
    /// it, into TIME-WAIT. Off by default, as on a Linux socket (tokio's
    /// `TcpListener::bind` turns it on, and so does synack's). Set after `bind`, it counts
    /// for the binds that come later.
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.with(|s| {
            s.options.reuse_address = Some(reuseaddr);
            if let Some(hold) = &mut s.bound {
                hold.set_sharing(sharing(&s.options));
            }
        });
        Ok(())
    }

    /// The SO_REUSEADDR value set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        Ok(self.with(|s| s.options.reuse_address.unwrap_or(false)))
    }

    /// SO_REUSEPORT, as Linux has it: sockets that all set it may bind one address and
    /// port, and listen on it side by side; each new connection goes to one of their
    /// listeners by a keyed hash of its addresses and ports (Linux's
    /// `reuseport_select_sock`), so that several accept loops share the clients, each with
    /// its own [`TcpListener`]. A listener's accepted connections keep it. Off by default,
    /// as on Linux. Set after `bind`, it counts for the binds and the `listen` that come
    /// later; a listener keeps what it had when it listened. (Linux also asks that the
    /// sockets have one owner's uid; every socket of a stack is the one program's.)
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.with(|s| {
            s.options.reuse_port = reuseport;
            if let Some(hold) = &mut s.bound {
                hold.set_sharing(sharing(&s.options));
            }
        });
        Ok(())
    }

    /// The SO_REUSEPORT value set.
    pub fn reuseport(&self) -> io::Result<bool> {
        Ok(self.with(|s| s.options.reuse_port))
    }

    /// SO_BINDTODEVICE: binds the socket to the interface named `interface`, or with
    /// `None` (or an empty name) unbinds it, as tokio's on Linux. The stack has one link,
    /// its device's ([`Stack::interface_name`]), which every socket of it uses anyway: that
    /// name is taken (and [`device`](Self::device) then gives it back); any other is
    /// ENODEV, as on Linux for a name no interface has, and so is any name on a device
    /// without one (a memory pair).
    pub fn bind_device(&self, interface: Option<&[u8]>) -> io::Result<()> {
        let device = self.stack.device_binding(interface)?;
        self.with(|s| s.device = device);
        Ok(())
    }

    /// The interface [`bind_device`](Self::bind_device) bound the socket to, if any.
    pub fn device(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.with(|s| s.device.clone()))
    }

    /// SO_RCVBUF: the receive buffer in bytes of payload (at least [`MIN_BUFFER`]); it
    /// bounds the window and turns receive auto-tuning off for the connection.
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.with(|s| s.options.recv_buffer = Some(size as usize));
        Ok(())
    }

    /// The SO_RCVBUF the connection gets: the value set, raised to the floor, or the
    /// stack's default. (Linux reports twice what was set, half of it for its own
    /// overhead; synack's buffer counts payload only.)
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        let default = self.stack.with_config(|c| c.get_recv_buffer());
        let set = self.with(|s| s.options.recv_buffer);
        // A default of 4 GiB or more (a `usize` in the stack's config) reads as the most a
        // `u32` says, not truncated.
        let size = set.map_or(default, |n| n.max(MIN_BUFFER));
        Ok(u32::try_from(size).unwrap_or(u32::MAX))
    }

    /// SO_SNDBUF: the send buffer in bytes of payload (at least [`MIN_BUFFER`]).
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.with(|s| s.options.send_buffer = Some(size as usize));
        Ok(())
    }

    /// The SO_SNDBUF the connection gets: the value set, raised to the floor, or the
    /// stack's default.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        let default = self.stack.with_config(|c| c.get_send_buffer());
        let set = self.with(|s| s.options.send_buffer);
        let size = set.map_or(default, |n| n.max(MIN_BUFFER));
        Ok(u32::try_from(size).unwrap_or(u32::MAX))
    }

    /// TCP_MAXSEG: the largest segment payload advertised and sent (at most what the MTU
    /// allows). 0 takes the default back; anything else below 88 or above 32767 is
    /// `InvalidInput`, as Linux's EINVAL.
    pub fn set_mss(&self, mss: u16) -> io::Result<()> {
        let usable = synack_core::USER_MSS_MIN..=synack_core::USER_MSS_MAX;
        if mss != 0 && !usable.contains(&usize::from(mss)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TCP_MAXSEG {mss}: the MSS must be 88 to 32767 (or 0 for the default)"),
            ));
        }
        self.with(|s| s.options.max_segment = (mss != 0).then_some(mss));
        Ok(())
    }

    /// TCP_NODELAY: Nagle's algorithm off.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.with(|s| s.options.nodelay = Some(nodelay));
        Ok(())
    }

    /// The TCP_NODELAY value set, or the stack's default.
    pub fn nodelay(&self) -> io::Result<bool> {
        let default = self.stack.with_config(|c| c.get_nodelay());
        Ok(self.with(|s| s.options.nodelay).unwrap_or(default))
    }

    /// IP_TOS (IPv4) / IPV6_TCLASS (IPv6), as tokio's `TcpSocket::set_tos`: the DS byte of
    /// every packet of the connection, its SYN or SYN-ACK included. Only the six DSCP bits
    /// are used; the two ECN bits are the stack's (RFC 3168). The value is read as Linux
    /// reads the option of the socket's family: IP_TOS keeps its low eight bits, and
    /// IPV6_TCLASS past 255 is `InvalidInput`. On an IPv6 socket this departs from tokio's,
    /// which sets IP_TOS whatever the family: synack sets the IPv6 traffic class.
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        let tos = ds_byte(tos, self.v6)?;
        self.with(|s| s.options.tos = Some(tos & !0b11));
        Ok(())
    }

    /// The DSCP bits set with [`set_tos`](Self::set_tos), or 0.
    pub fn tos(&self) -> io::Result<u32> {
        Ok(u32::from(self.with(|s| s.options.tos).unwrap_or(0)))
    }

    /// IP_TOS, as tokio's `TcpSocket::set_tos_v4`: [`set_tos`](Self::set_tos) on an IPv4
    /// socket (256 is 0, as Linux keeps the low eight bits). On an IPv6 one it has no
    /// effect, as tokio's documentation warns: synack keeps one DS byte a socket, which
    /// [`set_tclass_v6`](Self::set_tclass_v6) sets for both the IPv6 and the IPv4 clients of
    /// a dual-stack listener on `[::]` (Linux keeps two, and marks the IPv4 ones with IP_TOS).
    pub fn set_tos_v4(&self, tos: u32) -> io::Result<()> {
        match self.v6 {
            false => self.set_tos(tos),
            true => Ok(()),
        }
    }

    /// The DSCP bits [`set_tos_v4`](Self::set_tos_v4) set on an IPv4 socket, or 0.
    pub fn tos_v4(&self) -> io::Result<u32> {
        match self.v6 {
            false => self.tos(),
            true => Ok(0),
        }
    }

    /// IPV6_TCLASS, as tokio's `TcpSocket::set_tclass_v6`: [`set_tos`](Self::set_tos) on an
    /// IPv6 socket. On an IPv4 one it fails with ENOPROTOOPT
    /// ([`ProtocolNotAvailable`](synack_core::Error::ProtocolNotAvailable), kind
    /// `Unsupported`), as Linux's does.
    pub fn set_tclass_v6(&self, tclass: u32) -> io::Result<()> {
        match self.v6 {
            true => self.set_tos(tclass),
            false => Err(synack_core::Error::ProtocolNotAvailable.into()),
        }
    }

    /// The DSCP bits [`set_tclass_v6`](Self::set_tclass_v6) set on an IPv6 socket. On an
    /// IPv4 one it fails with EOPNOTSUPP (kind `Unsupported`), as Linux's does.
    pub fn tclass_v6(&self) -> io::Result<u32> {
        match self.v6 {
            true => self.tos(),
            false => Err(synack_core::Error::OperationNotSupported.into()),
        }
    }

    /// IP_TTL (IPv4) / IPV6_UNICAST_HOPS (IPv6): the TTL or hop limit of every packet of the
    /// connection, its SYN or SYN-ACK included (64 unless set). 1 to 255, or `u32::MAX` (-1) for
    /// the default; anything else is `InvalidInput`, as Linux refuses such an IP_TTL.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = hop_limit(ttl)?;
        self.with(|s| s.options.hop_limit = Some(ttl));
        Ok(())
    }

    /// The TTL set with [`set_ttl`](Self::set_ttl), or the default, 64.
    pub fn ttl(&self) -> io::Result<u32> {
        Ok(u32::from(
            self.with(|s| s.options.hop_limit)
                .unwrap_or(synack_core::DEFAULT_HOP_LIMIT),
        ))
    }

    /// TCP_FASTOPEN, for a socket that will [`listen`](Self::listen): TCP Fast Open's server
    /// side (RFC 7413). A client that holds a cookie from this stack sends its request in
    /// the SYN; the listener hands the connection to `accept` at once, with that data
    /// readable, and the reply can be written before the handshake's final ACK, saving the
    /// client a round trip. A client without a cookie gets one in the SYN-ACK. `queue`
    /// bounds the connections taken that way and not yet past their handshake (§5.1,
    /// against SYN floods with stolen cookies: past it a SYN is a plain SYN; at most the
    /// stack's `max_backlog`); 0 turns Fast Open off. Data in a SYN can arrive twice if
    /// the network duplicates the SYN (§6): serve only idempotent requests this way.
    ///
    /// Cookies are made with the stack's key (see [`Stack::set_fast_open_key`]).
    pub fn set_fast_open(&self, queue: u32) -> io::Result<()> {
        self.with(|s| s.options.fast_open = Some(queue));
        Ok(())
    }

    /// The TCP_FASTOPEN queue set, or 0.
    pub fn fast_open(&self) -> io::Result<u32> {
        Ok(self.with(|s| s.options.fast_open).unwrap_or(0))
    }

    /// TCP_DEFER_ACCEPT, for a socket that will [`listen`](Self::listen): a connection
    /// whose handshake ends with a bare ACK is not handed to `accept` until its first data
    /// arrives, for about `period` (Linux counts it in SYN-ACK retransmissions, from 1 s
    /// doubling: 2 s covers 3 s; [`defer_accept`](Self::defer_accept) reads it back so). The
    /// SYN-ACK is resent at the period's end, the client's last chance; a bare ACK after
    /// that completes the handshake. For protocols where the client speaks first (HTTP):
    /// connections that never send a request never reach the application. Zero turns it
    /// off.
    pub fn set_defer_accept(&self, period: Duration) -> io::Result<()> {
        self.with(|s| s.options.defer_accept = Some(period));
        Ok(())
    }

    /// The TCP_DEFER_ACCEPT period as the stack counts it (zero: off).
    pub fn defer_accept(&self) -> io::Result<Duration> {
        let set = self.with(|s| s.options.defer_accept).unwrap_or_default();
        Ok(synack_core::options::defer_accept_period(set))
    }

    /// TCP_FASTOPEN_CONNECT: TCP Fast Open's client side (RFC 7413) for this socket's
    /// [`connect`](Self::connect). Without a cookie for the server, the connect goes as
    /// usual, its SYN asking for one, and the stack keeps what the server gives (one per
    /// server, bounded). With one, `connect` returns at once, before any packet leaves, and
    /// the SYN goes with the stream's first write, carrying its start (up to an MSS less the
    /// option room; the rest follows once connected): the request arrives a round trip
    /// sooner. As on Linux, a refused or timed-out connect then shows on that write or the
    /// next read, and the stream must be written first (a write of no bytes sends the SYN
    /// alone). Data in a SYN can arrive twice if the network duplicates it (§6): use it for
    /// idempotent requests.
    pub fn set_fast_open_connect(&self, on: bool) -> io::Result<()> {
        self.with(|s| s.options.fast_open_connect = Some(on));
        Ok(())
    }

    /// Whether TCP_FASTOPEN_CONNECT is on.
    pub fn fast_open_connect(&self) -> io::Result<bool> {
        Ok(self.with(|s| s.options.fast_open_connect).unwrap_or(false))
    }

    /// SO_KEEPALIVE: on, with the stack's timing (`Config::keepalive`, as Linux's sockets
    /// take the sysctls' `tcp_keepalive_*`), or without one Linux's defaults (first probe
    /// after 2 hours idle, then every 75 s, 9 probes); or off, even where the stack's
    /// `Config::keepalive` has every connection probe.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        let timing = self.stack.with_config(|c| c.get_keepalive());
        self.set_keepalive_config(keepalive.then(|| timing.unwrap_or_default()))
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT; `None` turns it off.
    /// Timing Linux refuses (see [`KeepaliveConfig::check`]) is `InvalidInput`, as its
    /// EINVAL.
    pub fn set_keepalive_config(&self, config: Option<KeepaliveConfig>) -> io::Result<()> {
        if let Some(k) = &config {
            k.check()?;
        }
        self.with(|s| {
            s.options.keepalive = config;
            s.options.keepalive_off = config.is_none();
        });
        Ok(())
    }

    /// Whether the socket's connections will probe: as set, or as the stack's
    /// `Config::keepalive` says (SO_KEEPALIVE as `getsockopt` reads it).
    pub fn keepalive(&self) -> io::Result<bool> {
        let default = self.stack.with_config(|c| c.get_keepalive().is_some());
        Ok(self.with(|s| !s.options.keepalive_off && (s.options.keepalive.is_some() || default)))
    }

    /// SO_LINGER, in whole seconds as Linux keeps it: `Some(Duration::ZERO)` (or less than
    /// a second) makes dropping the stream reset the connection (see
    /// [`TcpStream::set_linger`]).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.with(|s| s.linger = linger_secs(linger));
        Ok(())
    }

    /// The SO_LINGER value set.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.with(|s| s.linger))
    }

    /// SO_LINGER of zero, as tokio's `set_zero_linger`: the connection's stream resets it
    /// when dropped, discarding what is still queued (see [`TcpStream::set_zero_linger`]).
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.set_linger(Some(Duration::ZERO))
    }

    /// SO_ERROR, as tokio's `TcpSocket::take_error`: always `None`, since a socket that
    /// has not connected or listened has nothing to fail with (a failed `connect` returns
    /// its error).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    /// Connects to `addr` from the bound address (or one of the stack's, with an ephemeral
    /// port), with this socket's options. An address of the other family than the socket's
    /// is `InvalidInput`, as for [`bind`](Self::bind) (Linux's errnos: see
    /// `check_family`).
    ///
    /// A port [`bind`](Self::bind) picked (port 0) gives way if it is taken towards `addr`
    /// by then (another socket's connection, or one in TIME-WAIT): the connection takes
    /// another ephemeral port rather than fail.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.check_family(addr)?;
        let Settings {
            bound,
            options,
            linger,
            auto_port,
            mapped,
            ..
        } = self
            .settings
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        // Bound to an IPv4-mapped address, the socket speaks IPv4 only (Linux's
        // `tcp_v6_connect`: EAFNOSUPPORT for a native IPv6 destination, as measured against
        // tokio::net).
        // `[::]` is this host, over IPv4 for such a socket (Linux's `tcp_v6_connect` makes it
        // `::ffff:127.0.0.1`).
        let addr = match addr {
            SocketAddr::V6(v6) if mapped && v6.ip().is_unspecified() => SocketAddr::new(
                std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().into(),
                v6.port(),
            ),
            addr => addr,
        };
        if mapped && crate::addr::unmapped(addr).is_none() {
            return Err(synack_core::Error::AddressFamilyNotSupported.into());
        }
        // The port stays held until the connection is open (then the connection holds it),
        // or has failed. A mapped one is shown mapped, as `connect_with` takes it.
        let local = bound
            .as_ref()
            .map(|b| crate::addr::shown(b.local(), mapped));
        match TcpStream::connect_with(&self.stack, addr, local, &options, linger).await {
            // The port picked at `bind` is taken towards `addr` (EADDRNOTAVAIL, as Linux's
            // connect): another one.
            Err(e) if auto_port && e.kind() == io::ErrorKind::AddrNotAvailable => {
                let any_port = local.map(|l| SocketAddr::new(l.ip(), 0));
                TcpStream::connect_with(&self.stack, addr, any_port, &options, linger).await
            }
            r => r,
        }
    }

    /// Listens on the bound address with at most `backlog + 1` connections waiting to be
    /// accepted, as Linux's `listen(2)` holds one more than it is told
    /// (`sk_acceptq_is_full`: 0 holds one), and as many half-open; every accepted connection
    /// takes this socket's options. With several workers the accept queue's bound is still
    /// the socket's, over every shard; the half-open ones are shared out, each shard taking
    /// its share rounded up (see [`TcpListener`]). A socket never bound listens on every
    /// address of its family with an ephemeral port, as Linux binds one on `listen(2)`
    /// (`inet_autobind`). Without [`set_reuseaddr`](Self::set_reuseaddr) it takes no port
    /// that a connection or a TIME-WAIT entry still uses, as a Linux socket without
    /// SO_REUSEADDR (where [`TcpListener::bind`] sets it).
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let unspecified = self.unspecified();
        let Settings {
            bound,
            mut options,
            linger,
            mapped,
            ..
        } = self
            .settings
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        options.reuse_address.get_or_insert(false);
        let held = (backlog as usize).saturating_add(1);
        let local = bound.as_ref().map_or(unspecified, PortHold::local);
        let listener = TcpListener::listen_with(&self.stack, local, bound, held, &options, linger)?;
        // Bound IPv4-mapped: its clients and its own address show mapped too.
        Ok(match mapped {
            true => listener.map_to_v6(),
            false => listener,
        })
    }
}
