//! [`UdpSocket`], shaped like tokio's, and [`UdpInterceptor`], transparent mode's datagrams.
//!
//! Each call is one command on the core under the stack's lock, as for streams: a datagram
//! is taken from the socket's bounded queue in the core, or the task's waker is stored under
//! the same lock, so the driver's `UdpReadable` event cannot slip in between. Sending queues
//! the datagram, whole, in the core's bounded own-packet queue; a full queue parks the
//! sender until the driver has written some of it (`UdpWritable`). There is no channel and
//! no second buffer: what the core drops (a full receive queue, the memory cap) is counted in
//! [`Stack::stats`].
//!
//! With several workers, UDP lives on shard 0 (see [`crate::shard`]): every socket is there,
//! its lock is the one taken, and other shards hand it the datagrams that reach their queues.
//! A socket bound to a port must see every datagram to it whatever the sender, which no
//! per-flow split of the 4-tuples would give.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use synack_tokio::{device::MemoryDevice, Stack, UdpSocket};
//!
//! let (a, b) = MemoryDevice::pair();
//! let client = Stack::builder().address("198.18.0.2".parse().unwrap()).build(a)?;
//! let server = Stack::builder().address("198.18.0.1".parse().unwrap()).build(b)?;
//!
//! let echo = UdpSocket::bind(&server, "198.18.0.1:7").await?;
//! tokio::spawn(async move {
//!     let mut buf = [0u8; 1500];
//!     while let Ok((n, from)) = echo.recv_from(&mut buf).await {
//!         echo.send_to(&buf[..n], from).await?;
//!     }
//!     std::io::Result::Ok(())
//! });
//!
//! let socket = UdpSocket::bind(&client, "0.0.0.0:0").await?;
//! socket.connect("198.18.0.1:7").await?;
//! socket.send(b"hello").await?;
//! let mut buf = [0u8; 16];
//! let n = socket.recv(&mut buf).await?;
//! assert_eq!(&buf[..n], b"hello");
//! # Ok(()) }
//! ```

use crate::addr::{first_ok, socket_addrs, ToSocketAddrs};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll, Waker};

use bytes::BufMut;
use synack_core::{Error, UdpHandle};
use tokio::io::{Interest, ReadBuf, Ready};

use crate::state::{register_many, remove_handle, Inner, UdpState};
use crate::Stack;

mod intercept;

pub use intercept::UdpInterceptor;
pub use synack_core::InterceptedDatagram;

/// A UDP socket on a [`Stack`], after tokio's `UdpSocket`: `send_to`/`recv_from`, or
/// `connect` then `send`/`recv`; their `poll_` and `try_` forms with `ready`, `readable` and
/// `writable`; receives into a `BufMut` (`recv_buf_from`); the peeks (`peek_from`, `peek`,
/// `peek_sender`); `take_error`, `set_ttl`, `set_tos` (and `set_tos_v4`, `set_tclass_v6`) and
/// `set_broadcast`. Not `Clone`: share it with an `Arc`, as tokio's. Dropping it closes the
/// socket in the core (its queued datagrams are dropped, its port is free).
///
/// Broadcast: a datagram to the limited (255.255.255.255) or the link's broadcast address is
/// `PermissionDenied` until [`set_broadcast`](Self::set_broadcast), as on Linux; one that
/// arrives, or that an own socket sent (Linux loops each back), goes to the socket bound to
/// that broadcast address or to `0.0.0.0` on its port, with no option. A socket on
/// `[::]` is dual stack, as Linux's default: it receives IPv4 datagrams too, their senders
/// IPv4-mapped (`::ffff:a.b.c.d`), and sends to such an address (or a plain IPv4 one) in
/// IPv4; an IPv6 socket bound to a particular address has no IPv4 (`NetworkUnreachable`,
/// but a connect to a plain IPv4 address EAFNOSUPPORT, kind `InvalidInput`, as Linux's).
/// One bound to an IPv4-mapped address (`::ffff:a.b.c.d`, or `::ffff:0.0.0.0`) binds the
/// IPv4 one, as Linux's: it speaks IPv4 only (to a native IPv6 destination, EAFNOSUPPORT)
/// and sees its addresses mapped. A datagram to one of the stack's own addresses loops back
/// inside it. Multicast is joined per socket ([`join_multicast_v4`](Self::join_multicast_v4),
/// [`join_multicast_v6`](Self::join_multicast_v6)). Not here: a loopback link: a datagram to
/// 127.0.0.1 or `::1` is `NetworkUnreachable`.
///
/// A datagram larger than the MTU goes in IP fragments, as Linux sends one; past what the
/// length fields allow ([`UDP_MAX_PAYLOAD`](synack_core::endpoint::UDP_MAX_PAYLOAD): 65,507
/// bytes over IPv4, 65,527 over IPv6) it is refused with `InvalidInput` ("message too long",
/// Linux's EMSGSIZE). Fragmented datagrams that come in are reassembled. A connected socket
/// receives only
/// from its peer, and an ICMP port unreachable for what it sent fails its next `recv` or
/// `send` with `ConnectionRefused`, as on Linux.
pub struct UdpSocket {
    stack: Stack,
    handle: UdpHandle,
}

impl UdpSocket {
    /// Binds a socket to `addr`. Port 0 picks an ephemeral port (`AddrInUse` when all are
    /// held, as Linux); an unspecified IP means every stack address of that family.
    /// `AddrInUse` if another UDP socket holds the port there. In transparent mode
    /// (intercept) a socket may bind any unicast address, not only the stack's own (like
    /// `IP_TRANSPARENT`); otherwise an address that is not the stack's is
    /// `AddrNotAvailable`. `[::]` is dual stack, as Linux's default: it takes the
    /// IPv4 datagrams no IPv4 socket takes. Unlike Linux, `0.0.0.0` may be bound beside it on
    /// the same port (Linux refuses that unless the first is `IPV6_V6ONLY`) and then takes
    /// the IPv4 datagrams.
    ///
    /// `addr` is anything tokio::net's `bind` takes, a host name looked up through the
    /// stack's resolver (see [`ToSocketAddrs`]); with several addresses, the first that
    /// binds is taken, else the last error is returned.
    pub async fn bind(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        first_ok(stack, &addr, |a| async move { Self::bind_one(stack, a) }).await
    }

    fn bind_one(stack: &Stack, addr: SocketAddr) -> io::Result<UdpSocket> {
        let mut inner = stack.lock_udp()?;
        inner.check_open()?;
        let handle = inner.endpoint.udp_bind(addr)?;
        inner.udp.insert(handle, UdpState::default());
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
        })
    }

    /// The local address (after `connect` on an unspecified bind, the address it sends from).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self
            .stack
            .lock_udp()?
            .endpoint
            .udp_local_addr(self.handle)?)
    }

    /// The connected peer; `NotConnected` if the socket is not connected, or is connected to
    /// port 0 (as Linux's `getpeername`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.stack.lock_udp()?.endpoint.udp_peer_addr(self.handle)?)
    }

    /// IP_TTL (IPv4) / IPV6_UNICAST_HOPS (IPv6), as tokio's `UdpSocket::set_ttl`: the TTL or
    /// hop limit of the datagrams sent from now on. 1 to 255, or `u32::MAX` (-1) for the default,
    /// 64; anything else is `InvalidInput`. On an IPv6 socket this departs from tokio's, which
    /// sets IP_TTL whatever the family (only IPv4-mapped datagrams would use it): synack sets
    /// the hop limit of the IPv6 datagrams.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = crate::sockopt::hop_limit(ttl)?;
        Ok(self
            .stack
            .lock_udp()?
            .endpoint
            .udp_set_hop_limit(self.handle, ttl)?)
    }

    /// The TTL set with [`set_ttl`](Self::set_ttl), else 64.
    pub fn ttl(&self) -> io::Result<u32> {
        let hop_limit = self.stack.lock_udp()?.endpoint.udp_hop_limit(self.handle)?;
        Ok(u32::from(hop_limit))
    }

    /// IP_TOS (IPv4) / IPV6_TCLASS (IPv6), as tokio's `UdpSocket::set_tos`: the DS byte of
    /// the datagrams sent from now on, all eight bits (a UDP application chooses its own ECN
    /// codepoint, as QUIC does). The value is read as Linux reads the option of the
    /// socket's family: IP_TOS keeps its low eight bits, and IPV6_TCLASS past 255 is
    /// `InvalidInput`. On an IPv6 socket this departs from tokio's, which sets IP_TOS whatever
    /// the family: synack sets the traffic class of the IPv6 datagrams.
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        let tos = crate::sockopt::ds_byte(tos, self.local_addr()?.is_ipv6())?;
        Ok(self
            .stack
            .lock_udp()?
            .endpoint
            .udp_set_tos(self.handle, tos)?)
    }

    /// The DS byte set with [`set_tos`](Self::set_tos), else 0.
    pub fn tos(&self) -> io::Result<u32> {
        let tos = self.stack.lock_udp()?.endpoint.udp_tos(self.handle)?;
        Ok(u32::from(tos))
    }

    /// IP_TOS, as tokio's `UdpSocket::set_tos_v4`: [`set_tos`](Self::set_tos) on an IPv4
    /// socket (256 is 0, as Linux keeps the low eight bits); on an IPv6 one it does nothing,
    /// as tokio's documentation warns (synack keeps one DS byte a socket, which
    /// [`set_tclass_v6`](Self::set_tclass_v6) sets for both families of a dual-stack socket
    /// on `[::]`; Linux keeps two).
    pub fn set_tos_v4(&self, tos: u32) -> io::Result<()> {
        match self.local_addr()?.is_ipv6() {
            false => self.set_tos(tos),
            true => Ok(()),
        }
    }

    /// The DS byte [`set_tos_v4`](Self::set_tos_v4) set on an IPv4 socket, else 0.
    pub fn tos_v4(&self) -> io::Result<u32> {
        match self.local_addr()?.is_ipv6() {
            false => self.tos(),
            true => Ok(0),
        }
    }

    /// IPV6_TCLASS, as tokio's `UdpSocket::set_tclass_v6`: [`set_tos`](Self::set_tos) on an
    /// IPv6 socket. On an IPv4 one it fails with ENOPROTOOPT
    /// ([`ProtocolNotAvailable`](synack_core::Error::ProtocolNotAvailable), kind
    /// `Unsupported`), as Linux's does.
    pub fn set_tclass_v6(&self, tclass: u32) -> io::Result<()> {
        match self.local_addr()?.is_ipv6() {
            true => self.set_tos(tclass),
            false => Err(synack_core::Error::ProtocolNotAvailable.into()),
        }
    }

    /// The DS byte [`set_tclass_v6`](Self::set_tclass_v6) set on an IPv6 socket. On an IPv4
    /// one it fails with EOPNOTSUPP (kind `Unsupported`), as Linux's does.
    pub fn tclass_v6(&self) -> io::Result<u32> {
        match self.local_addr()?.is_ipv6() {
            true => self.tos(),
            false => Err(synack_core::Error::OperationNotSupported.into()),
        }
    }

    /// SO_BROADCAST, as tokio's `UdpSocket::set_broadcast`: whether this socket may send to
    /// (and connect to) a broadcast address, the limited one or the link's (a TUN's
    /// `host_addr` prefix gives it: 198.18.0.255 on 198.18.0.0/24). Off by default, when
    /// such a datagram is `PermissionDenied`. Receiving a broadcast needs no option.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        Ok(self
            .stack
            .lock_udp()?
            .endpoint
            .udp_set_broadcast(self.handle, on)?)
    }

    /// Whether [`set_broadcast`](Self::set_broadcast) turned broadcast on.
    pub fn broadcast(&self) -> io::Result<bool> {
        Ok(self.stack.lock_udp()?.endpoint.udp_broadcast(self.handle)?)
    }

    /// SO_BINDTODEVICE, as [`TcpSocket::bind_device`](crate::TcpSocket::bind_device): the
    /// stack's one interface ([`Stack::interface_name`]) is taken, `None` or an empty name
    /// unbinds, any other name is ENODEV.
    pub fn bind_device(&self, interface: Option<&[u8]>) -> io::Result<()> {
        let device = self.stack.device_binding(interface)?;
        let mut inner = self.stack.lock_udp()?;
        let state = inner
            .udp
            .get_mut(&self.handle)
            .ok_or(synack_core::Error::InvalidHandle)?;
        state.device = device;
        Ok(())
    }

    /// The interface [`bind_device`](Self::bind_device) bound the socket to, if any.
    pub fn device(&self) -> io::Result<Option<Vec<u8>>> {
        let inner = self.stack.lock_udp()?;
        let state = inner
            .udp
            .get(&self.handle)
            .ok_or(synack_core::Error::InvalidHandle)?;
        Ok(state.device.clone())
    }

    /// IP_ADD_MEMBERSHIP, as tokio's `UdpSocket::join_multicast_v4`: the socket joins
    /// `multiaddr` on `interface`, the unspecified address or one of the stack's (the stack
    /// has one link; another address is ENODEV, as Linux's for an address no interface has).
    /// From then on the stack takes the group's datagrams in and gives each to every socket on
    /// its port bound to the group or to the unspecified address, as Linux's default
    /// (`IP_MULTICAST_ALL`). Joining announces nothing on the link (no IGMP): the kernel at
    /// the TUN's other end sends a group into it by its routes (`ip route add 239.0.0.0/8 dev
    /// TUN`) or a sender's `IP_MULTICAST_IF`. Errors as Linux's: not a multicast address
    /// `InvalidInput`, joined already `AddrInUse`, past 20 groups (`igmp_max_memberships`)
    /// ENOBUFS. Any socket may join an IPv4 group, IPv6 sockets included (membership is the
    /// host's).
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        let mut inner = self.stack.lock_udp()?;
        check_interface_v4(&inner, interface)?;
        Ok(inner
            .endpoint
            .udp_join_multicast(self.handle, multiaddr.into())?)
    }

    /// IPV6_ADD_MEMBERSHIP, as tokio's `UdpSocket::join_multicast_v6`: as
    /// [`join_multicast_v4`](Self::join_multicast_v4) for an IPv6 group (no MLD is sent), on
    /// an IPv6 socket (on an IPv4 one ENOPROTOOPT, as Linux's). `interface` is an interface
    /// index: 0 (any) names the stack's one link; any other is ENODEV.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        check_interface_v6(interface)?;
        let mut inner = self.stack.lock_udp()?;
        Ok(inner
            .endpoint
            .udp_join_multicast(self.handle, (*multiaddr).into())?)
    }

    /// IP_DROP_MEMBERSHIP, as tokio's `UdpSocket::leave_multicast_v4`: the socket leaves the
    /// group, and the stack stops taking it in once no socket has it joined.
    /// `AddrNotAvailable` if this socket had not joined it, or `interface` is neither the
    /// unspecified address nor one of the stack's (Linux's EADDRNOTAVAIL: no membership
    /// matches).
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        let mut inner = self.stack.lock_udp()?;
        if check_interface_v4(&inner, interface).is_err() {
            return Err(Error::AddrNotAvailable.into());
        }
        Ok(inner
            .endpoint
            .udp_leave_multicast(self.handle, multiaddr.into())?)
    }

    /// IPV6_DROP_MEMBERSHIP, as tokio's `UdpSocket::leave_multicast_v6`; as
    /// [`leave_multicast_v4`](Self::leave_multicast_v4) (an index but 0 matches no
    /// membership: `AddrNotAvailable`), but an address that is not a multicast one is
    /// `InvalidInput` first, as Linux's `ipv6_sock_mc_drop` checks it.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        if multiaddr.is_multicast() && check_interface_v6(interface).is_err() {
            return Err(Error::AddrNotAvailable.into());
        }
        let mut inner = self.stack.lock_udp()?;
        Ok(inner
            .endpoint
            .udp_leave_multicast(self.handle, (*multiaddr).into())?)
    }

    /// IP_MULTICAST_LOOP, as tokio's `UdpSocket::set_multicast_loop_v4`: whether this
    /// socket's datagrams to an IPv4 group that the stack has joined are delivered to its
    /// own members too (this socket included). On by default, as on Linux.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.set_multicast_loop(false, on)
    }

    /// Whether [`set_multicast_loop_v4`](Self::set_multicast_loop_v4) left the loop on.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.multicast_loop(false)
    }

    /// IPV6_MULTICAST_LOOP, as tokio's `UdpSocket::set_multicast_loop_v6`; as
    /// [`set_multicast_loop_v4`](Self::set_multicast_loop_v4) for IPv6 groups.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.set_multicast_loop(true, on)
    }

    /// Whether [`set_multicast_loop_v6`](Self::set_multicast_loop_v6) left the loop on.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.multicast_loop(true)
    }

    fn set_multicast_loop(&self, v6: bool, on: bool) -> io::Result<()> {
        let mut inner = self.stack.lock_udp()?;
        Ok(inner.endpoint.udp_set_multicast_loop(self.handle, v6, on)?)
    }

    fn multicast_loop(&self, v6: bool) -> io::Result<bool> {
        let inner = self.stack.lock_udp()?;
        Ok(inner.endpoint.udp_multicast_loop(self.handle, v6)?)
    }

    /// IP_MULTICAST_TTL, as tokio's `UdpSocket::set_multicast_ttl_v4`: the TTL of this
    /// socket's datagrams to IPv4 groups (1 until set: they stay on the link; 0: they stay on
    /// this host, for its own members only). `u32::MAX` (the -1 tokio hands the kernel)
    /// restores the default, as Linux does; other values past 255 are `InvalidInput`, as
    /// Linux's EINVAL.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        let ttl = match ttl {
            u32::MAX => synack_core::endpoint::MULTICAST_HOPS,
            ttl => u8::try_from(ttl).map_err(|_| Error::InvalidInput)?,
        };
        let mut inner = self.stack.lock_udp()?;
        Ok(inner
            .endpoint
            .udp_set_multicast_hops(self.handle, false, ttl)?)
    }

    /// The TTL [`set_multicast_ttl_v4`](Self::set_multicast_ttl_v4) set.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        let inner = self.stack.lock_udp()?;
        Ok(inner
            .endpoint
            .udp_multicast_hops(self.handle, false)?
            .into())
    }

    /// Connects to `addr`: `send` goes there and only its datagrams are received. No packet
    /// is sent. A socket bound to an unspecified address takes the source it sends from as
    /// its local address; on a dual-stack `[::]` socket and an IPv4 peer, that is the
    /// IPv4-mapped source (`::ffff:a.b.c.d`), as Linux's. With several addresses (see [`ToSocketAddrs`]), the
    /// first that the socket can connect to is taken, else the last error is returned.
    ///
    /// A link-local IPv6 peer (fe80::/10, or an ff01:: or ff02:: group) needs a scope id
    /// (`fe80::1%3`): without one it is `InvalidInput`, as Linux's EINVAL (Linux takes one
    /// on a socket bound to a device, synack does not); the stack has one link, which any
    /// scope id names, and [`peer_addr`](Self::peer_addr) shows it back.
    ///
    /// Port 0 is taken, as Linux takes it: only the peer's address is then matched (its
    /// datagrams from any port are received), [`peer_addr`](Self::peer_addr) is
    /// `NotConnected`, and `send` sends to port 0 (the port unreachable that answers fails
    /// the next call with `ConnectionRefused`). `send_to` port 0 is `InvalidInput` (EINVAL).
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        first_ok(&self.stack, &addr, |a| async move {
            Ok(self
                .stack
                .lock_udp()?
                .endpoint
                .udp_connect(self.handle, a)?)
        })
        .await
    }

    /// Sends `buf` as one datagram to `target` (its first address, as tokio::net's: see
    /// [`ToSocketAddrs`]); returns its length once it is queued.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = socket_addrs(&self.stack, &target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
            })?;
        crate::state::wait_listed(
            |cx| self.send_to_listed(cx, buf, target),
            |w| self.forget_waiter(w),
        )
        .await
    }

    /// Receives one datagram into `buf` (the rest of a longer one is discarded); returns the
    /// bytes copied and the sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut rb = ReadBuf::new(buf);
        let from = crate::state::wait_listed(
            |cx| self.recv_from_listed(cx, &mut rb),
            |w| self.forget_waiter(w),
        )
        .await?;
        Ok((rb.filled().len(), from))
    }

    /// Sends to the connected peer; `NotConnected` if there is none.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        crate::state::wait_listed(|cx| self.send_listed(cx, buf), |w| self.forget_waiter(w)).await
    }

    /// Receives one datagram (from the peer, if connected).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    /// Receives one datagram into `buf`'s room, advancing it, as tokio's `recv_buf_from`;
    /// returns the bytes added and the sender. As tokio's, it goes into `buf.chunk_mut()`
    /// only: what does not fit is discarded, and a buffer is never grown to hold it (a
    /// `Vec::new()` gets the 64 bytes `BufMut` reserves; give it the capacity of the
    /// largest datagram wanted). The datagram is put straight in: the room is never zeroed
    /// first.
    pub async fn recv_buf_from<B: BufMut>(&self, buf: &mut B) -> io::Result<(usize, SocketAddr)> {
        crate::state::wait_listed(
            |cx| {
                let mut inner = self.stack.lock_udp()?;
                let taken = take_into(&mut inner, self.handle, buf);
                self.received(&mut inner, cx, taken)
            },
            |w| self.forget_waiter(w),
        )
        .await
    }

    /// [`recv_buf_from`](Self::recv_buf_from) without the sender.
    pub async fn recv_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        self.recv_buf_from(buf).await.map(|(n, _)| n)
    }

    /// [`recv_buf_from`](Self::recv_buf_from) without waiting: `WouldBlock` when no datagram
    /// has come (see [`try_recv_from`](Self::try_recv_from)).
    pub fn try_recv_buf_from<B: BufMut>(&self, buf: &mut B) -> io::Result<(usize, SocketAddr)> {
        let mut inner = self.stack.lock_udp()?;
        if_readable(&inner, self.handle)?;
        Ok(take_into(&mut inner, self.handle, buf)?)
    }

    /// [`try_recv_buf_from`](Self::try_recv_buf_from) without the sender.
    pub fn try_recv_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        self.try_recv_buf_from(buf).map(|(n, _)| n)
    }

    /// Sends `buf` to `target` if it can be queued now: `WouldBlock` when the stack's send
    /// queue is full (wait with [`writable`](Self::writable)).
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let mut inner = self.stack.lock_udp()?;
        let result = inner.endpoint.udp_send_to(self.handle, target, buf);
        try_sent(&mut inner, result)
    }

    /// [`try_send_to`](Self::try_send_to) to the connected peer.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.stack.lock_udp()?;
        let result = inner.endpoint.udp_send(self.handle, buf);
        try_sent(&mut inner, result)
    }

    /// Takes a datagram if one has come, without waiting: `WouldBlock` when none has (wait
    /// with [`readable`](Self::readable)). As [`recv_from`](Self::recv_from) otherwise: a
    /// pending ICMP error comes first, once, when a datagram is there to take. As tokio's,
    /// which makes the system call only once the socket is readable, an error with no
    /// datagram behind it is `WouldBlock` here (take it with [`take_error`](Self::take_error),
    /// or wait for it with [`recv`](Self::recv) or `ready(Interest::ERROR)`).
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut inner = self.stack.lock_udp()?;
        if_readable(&inner, self.handle)?;
        Ok(inner.endpoint.udp_recv_from(self.handle, buf)?)
    }

    /// Copies the next datagram into `buf` (truncated) and returns its length and sender,
    /// leaving it for the next receive (`MSG_PEEK`). Waits while none has come.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut rb = ReadBuf::new(buf);
        let from = crate::state::wait_listed(
            |cx| self.peek_from_listed(cx, &mut rb),
            |w| self.forget_waiter(w),
        )
        .await?;
        Ok((rb.filled().len(), from))
    }

    /// Polls for [`peek_from`](Self::peek_from): fills `buf` and returns the sender.
    pub fn poll_peek_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        self.poll_latest(cx, Direction::Recv, |cx| self.peek_from_listed(cx, buf))
    }

    /// [`poll_peek_from`](Self::poll_peek_from) for a wait that lists its task with the
    /// others (see [`poll_latest`](Self::poll_latest)).
    fn peek_from_listed(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        let mut inner = self.stack.lock_udp()?;
        let peeked = inner
            .endpoint
            .udp_peek_from(self.handle, buf.initialize_unfilled())
            .map(|(n, from)| {
                buf.advance(n);
                from
            });
        self.received(&mut inner, cx, peeked)
    }

    /// [`peek_from`](Self::peek_from) without waiting: `WouldBlock` when none has come (see
    /// [`try_recv_from`](Self::try_recv_from)).
    pub fn try_peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut inner = self.stack.lock_udp()?;
        if_readable(&inner, self.handle)?;
        Ok(inner.endpoint.udp_peek_from(self.handle, buf)?)
    }

    /// [`peek_from`](Self::peek_from) without the sender (a connected socket's datagrams
    /// all come from its peer).
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peek_from(buf).await.map(|(n, _)| n)
    }

    /// Polls for [`peek`](Self::peek).
    pub fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_peek_from(cx, buf).map_ok(drop)
    }

    /// [`peek`](Self::peek) without waiting: `WouldBlock` when none has come.
    pub fn try_peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_peek_from(buf).map(|(n, _)| n)
    }

    /// The sender of the next datagram, which stays queued, as tokio's `peek_sender`: no
    /// buffer needed to learn where it came from. Waits while none has come.
    pub async fn peek_sender(&self) -> io::Result<SocketAddr> {
        crate::state::wait_listed(
            |cx| self.peek_from_listed(cx, &mut ReadBuf::new(&mut [])),
            |w| self.forget_waiter(w),
        )
        .await
    }

    /// Polls for [`peek_sender`](Self::peek_sender).
    pub fn poll_peek_sender(&self, cx: &mut Context<'_>) -> Poll<io::Result<SocketAddr>> {
        self.poll_peek_from(cx, &mut ReadBuf::new(&mut []))
    }

    /// [`peek_sender`](Self::peek_sender) without waiting: `WouldBlock` when none has come.
    pub fn try_peek_sender(&self) -> io::Result<SocketAddr> {
        self.try_peek_from(&mut []).map(|(_, from)| from)
    }

    /// [`try_recv_from`](Self::try_recv_from) without the sender.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_recv_from(buf).map(|(n, _)| n)
    }

    /// Waits until the socket is ready for any of `interest` and says which, as tokio's
    /// `UdpSocket::ready`: readable when a datagram has come (a pending ICMP error alone is
    /// `ERROR`, as Linux's `EPOLLERR`, not readable), writable when one can be queued.
    ///
    /// While an ICMP error waits for the next call (Linux's `sk_err`), `WRITABLE` interest
    /// is answered `WRITE_CLOSED` too, even with no room to queue (then alone), as tokio's
    /// socket on the kernel sees it: Linux's `udp_poll` says `EPOLLERR | EPOLLOUT` (or
    /// `EPOLLERR` alone), which mio reads as write-closed. Here that lasts while the error
    /// does: once a send, a receive or [`take_error`](Self::take_error) has taken it, the
    /// socket is writable as before (tokio's readiness keeps `WRITE_CLOSED` for good once
    /// the kernel said it, since tokio never clears a closed bit; nothing is closed on a
    /// UDP socket after its error is reported).
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        crate::state::wait_ready(
            interest,
            |cx| {
                crate::state::poll_interest_bits(
                    cx,
                    interest,
                    |cx| self.recv_ready_listed(cx).map_ok(|()| Ready::READABLE),
                    |cx| self.poll_write_bits(cx),
                    |cx, interest| self.poll_error_ready(cx, interest),
                )
            },
            |w| self.forget_waiter(w),
        )
        .await
    }

    /// What `WRITABLE` interest sees: `WRITABLE` when a datagram can be queued, with
    /// `WRITE_CLOSED` while an error is pending (alone if there is no room); else the task
    /// waits for room and, with the receivers, for an error.
    fn poll_write_bits(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        let mut inner = self.stack.lock_udp()?;
        let pending = inner.endpoint.udp_error_pending(self.handle)?;
        let room = inner.endpoint.udp_send_ready();
        let ready = match (room, pending) {
            (true, true) => Ready::WRITABLE | Ready::WRITE_CLOSED,
            (true, false) => Ready::WRITABLE,
            (false, true) => Ready::WRITE_CLOSED,
            (false, false) => {
                self.park_sender(&mut inner, cx);
                return Poll::Pending;
            }
        };
        Poll::Ready(Ok(ready))
    }

    /// Parks a task that waits to send: for room in the own-packet queue (`UdpWritable`),
    /// and for an ICMP error, which the socket's receivers hear (`UdpReadable`), since the
    /// send would report it (Linux's `sock_alloc_send_pskb` wakes with `sk_err`).
    fn park_sender(&self, inner: &mut Inner, cx: &Context<'_>) {
        register_many(&mut inner.udp_send_wakers, cx);
        if let Some(s) = inner.udp.get_mut(&self.handle) {
            register_many(&mut s.recv_wakers, cx);
        }
        inner.wake_driver();
    }

    /// `ERROR` while an ICMP error waits for the next call to report it (Linux's `EPOLLERR`
    /// while `sk_err` is set); otherwise the task waits with the receivers, whom an error
    /// wakes. (`PRIORITY` never holds for UDP.)
    fn poll_error_ready(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<io::Result<Ready>> {
        let mut inner = self.stack.lock_udp()?;
        let pending = match inner.endpoint.udp_error_pending(self.handle) {
            Ok(pending) => pending,
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        if interest.is_error() && pending {
            return Poll::Ready(Ok(Ready::ERROR));
        }
        self.received(&mut inner, cx, Err(Error::WouldBlock))
    }

    /// Waits until a datagram has come, for [`try_recv_from`](Self::try_recv_from). A
    /// pending ICMP error alone does not end the wait, as on Linux, where it sets
    /// `EPOLLERR` and not `EPOLLIN`: [`recv`](Self::recv) and `ready(Interest::ERROR)`
    /// report it.
    pub async fn readable(&self) -> io::Result<()> {
        crate::state::wait_listed(|cx| self.recv_ready_listed(cx), |w| self.forget_waiter(w)).await
    }

    /// Polls for [`readable`](Self::readable).
    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_latest(cx, Direction::Recv, |cx| self.recv_ready_listed(cx))
    }

    /// [`poll_recv_ready`](Self::poll_recv_ready) for a wait that lists its task with the
    /// others.
    fn recv_ready_listed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.stack.lock_udp()?;
        let ready = match inner.endpoint.udp_recv_ready(self.handle) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::WouldBlock),
            Err(e) => Err(e),
        };
        self.received(&mut inner, cx, ready)
    }

    /// Waits until a datagram can be queued, for [`try_send_to`](Self::try_send_to), or an
    /// ICMP error is pending, which the next send reports (tokio's on the kernel returns
    /// then too: see [`ready`](Self::ready)).
    pub async fn writable(&self) -> io::Result<()> {
        crate::state::wait_listed(
            |cx| self.poll_write_bits(cx).map_ok(drop),
            |w| self.forget_waiter(w),
        )
        .await
    }

    /// Polls for [`writable`](Self::writable).
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_latest(cx, Direction::Send, |cx| {
            self.poll_write_bits(cx).map_ok(drop)
        })
    }

    /// The pending error of a connected socket (an ICMP error for what it sent), taken, as
    /// `SO_ERROR`; otherwise the next send or receive reports it, once. While it is
    /// pending, `ready(Interest::WRITABLE)` says `WRITE_CLOSED` and `ready(Interest::ERROR)`
    /// says `ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut inner = self.stack.lock_udp()?;
        Ok(inner.endpoint.udp_take_error(self.handle)?.map(Into::into))
    }

    /// Polls for a datagram from the connected peer, as [`recv`](Self::recv) does.
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_recv_from(cx, buf).map_ok(drop)
    }

    /// Polls for a datagram, as [`recv_from`](Self::recv_from) does: fills `buf` and returns
    /// the sender. Cancel-safe: a datagram is taken only when this is ready.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        self.poll_latest(cx, Direction::Recv, |cx| self.recv_from_listed(cx, buf))
    }

    /// [`poll_recv_from`](Self::poll_recv_from) for a wait that lists its task with the
    /// others.
    fn recv_from_listed(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        let mut inner = self.stack.lock_udp()?;
        let taken = take_into(&mut inner, self.handle, buf).map(|(_, from)| from);
        self.received(&mut inner, cx, taken)
    }

    /// tokio's contract for the `poll_` forms: only the waker of the latest call, of the
    /// receiving ones or of the sending ones, is woken. The async waits share the socket's
    /// lists, one waker for each waiting task, and take theirs out when they finish or are
    /// dropped (`wait_listed`); a `poll_` caller never says it stopped, so the waker its
    /// previous call parked is taken out when the next call parks another, or finishes. A
    /// caller polling with a new waker each time (each future of a `FuturesUnordered`, say)
    /// used to leave all of them listed, on a send-only socket for good.
    fn poll_latest<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let result = poll(cx);
        let previous = self.stack.lock_udp().ok().and_then(|mut inner| {
            let state = inner.udp.get_mut(&self.handle)?;
            let slot = match direction {
                Direction::Recv => &mut state.poll_recv_waker,
                Direction::Send => &mut state.poll_send_waker,
            };
            if result.is_pending() {
                slot.replace(cx.waker().clone())
                    .filter(|old| !old.will_wake(cx.waker()))
            } else {
                slot.take()
            }
        });
        if let Some(old) = previous {
            self.forget_waiter(&old);
        }
        result
    }

    /// A receive command's result for a polling task: ready, or on `WouldBlock` the task
    /// parked for the socket's `UdpReadable`, under the same lock as the command.
    /// A finished or cancelled wait's clean-up ([`crate::state::wait_listed`]): the task
    /// leaves the socket's list of receivers and the list of senders waiting for room;
    /// whether it was in one.
    fn forget_waiter(&self, waker: &Waker) -> bool {
        let Some(mut inner) = self.stack.lock_for_drop(0) else {
            return false;
        };
        let received = inner
            .udp
            .get_mut(&self.handle)
            .is_some_and(|s| crate::state::unlist(&mut s.recv_wakers, waker));
        crate::state::unlist(&mut inner.udp_send_wakers, waker) | received
    }

    fn received<T>(
        &self,
        inner: &mut Inner,
        cx: &Context<'_>,
        result: Result<T, Error>,
    ) -> Poll<io::Result<T>> {
        match result {
            Err(Error::WouldBlock) => {
                if let Some(s) = inner.udp.get_mut(&self.handle) {
                    register_many(&mut s.recv_wakers, cx);
                }
                Poll::Pending
            }
            r => Poll::Ready(r.map_err(Into::into)),
        }
    }

    /// Polls to send `buf` to `target`, as [`send_to`](Self::send_to) does.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.poll_latest(cx, Direction::Send, |cx| {
            self.send_to_listed(cx, buf, target)
        })
    }

    /// [`poll_send_to`](Self::poll_send_to) for a wait that lists its task with the others.
    fn send_to_listed(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.stack.lock_udp()?;
        let result = inner.endpoint.udp_send_to(self.handle, target, buf);
        self.sent(&mut inner, cx, result)
    }

    /// Polls to send `buf` to the connected peer, as [`send`](Self::send) does.
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_latest(cx, Direction::Send, |cx| self.send_listed(cx, buf))
    }

    /// [`poll_send`](Self::poll_send) for a wait that lists its task with the others.
    fn send_listed(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut inner = self.stack.lock_udp()?;
        let result = inner.endpoint.udp_send(self.handle, buf);
        self.sent(&mut inner, cx, result)
    }

    /// [`sent`] for this socket: a send parked for room is woken by an ICMP error too.
    fn sent(
        &self,
        inner: &mut Inner,
        cx: &Context<'_>,
        result: Result<usize, Error>,
    ) -> Poll<io::Result<usize>> {
        if result == Err(Error::WouldBlock) {
            if let Some(s) = inner.udp.get_mut(&self.handle) {
                register_many(&mut s.recv_wakers, cx);
            }
        }
        sent(inner, cx, result)
    }
}

/// Takes the socket's next datagram into `buf`'s next chunk, as much as fits (the rest is
/// discarded, as `recv_from` does, and as tokio's `recv_buf` receives into `chunk_mut()`
/// only): the bytes added and the sender. Taken whole from the core and put in with
/// `put_slice`, so that a caller's uninitialised buffer (64 KiB for a datagram socket, say)
/// is written, never zeroed first, and never grown past that chunk.
fn take_into<B: BufMut + ?Sized>(
    inner: &mut Inner,
    h: UdpHandle,
    buf: &mut B,
) -> Result<(usize, SocketAddr), Error> {
    let room = buf.chunk_mut().len();
    let (data, from, _to) = inner.endpoint.udp_recv(h)?;
    let n = data.len().min(room);
    buf.put_slice(&data[..n]);
    Ok((n, from))
}

/// `WouldBlock` unless a datagram has come: the readiness tokio's `try_` receives check
/// before their system call, so that a pending ICMP error alone (Linux's `EPOLLERR`) is
/// not taken by them.
fn if_readable(inner: &Inner, h: UdpHandle) -> Result<(), Error> {
    match inner.endpoint.udp_recv_ready(h)? {
        true => Ok(()),
        false => Err(Error::WouldBlock),
    }
}

/// An IPv4 multicast interface: the unspecified address or one of the stack's.
fn check_interface_v4(inner: &Inner, interface: Ipv4Addr) -> io::Result<()> {
    let own = inner.endpoint.addresses().contains(&IpAddr::V4(interface));
    match interface.is_unspecified() || own {
        true => Ok(()),
        false => Err(io::Error::from_raw_os_error(libc::ENODEV)),
    }
}

/// An IPv6 multicast interface index: 0, the stack's one link.
fn check_interface_v6(interface: u32) -> io::Result<()> {
    match interface {
        0 => Ok(()),
        _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
    }
}

/// What a non-waiting send's result means: queued (the driver writes it), `WouldBlock`, or
/// failed.
fn try_sent(inner: &mut Inner, result: Result<usize, Error>) -> io::Result<usize> {
    if result.is_ok() {
        inner.wake_driver();
    }
    Ok(result?)
}

/// What a send command's result means for the task: queued (the driver writes it), parked
/// until the own-packet queue drains, or failed.
pub(super) fn sent(
    inner: &mut Inner,
    cx: &Context<'_>,
    result: Result<usize, Error>,
) -> Poll<io::Result<usize>> {
    match result {
        Ok(n) => {
            inner.wake_driver();
            Poll::Ready(Ok(n))
        }
        Err(Error::WouldBlock) => {
            register_many(&mut inner.udp_send_wakers, cx);
            inner.wake_driver();
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(e.into())),
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Some(mut inner) = self.stack.lock_for_drop(0) {
            let _ = inner.endpoint.udp_close(self.handle);
            if let Some(state) = remove_handle(&mut inner.udp, &self.handle) {
                // Tasks still parked on this socket through a shared reference cannot exist
                // (dropping needs ownership), but wake any stale registration all the same.
                for w in state.recv_wakers {
                    w.wake();
                }
            }
        }
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("handle", &self.handle.0)
            .finish_non_exhaustive()
    }
}

/// Which of a socket's `poll_` waiters a call is (see [`UdpSocket::poll_latest`]).
#[derive(Clone, Copy)]
enum Direction {
    Recv,
    Send,
}
