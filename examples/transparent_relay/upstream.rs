//! The way out: kernel sockets made in the relay's own namespace or, by a thread that has
//! entered it, in another one (`--egress-netns`); TCP connections and UDP sockets to the
//! destination, directly or through a SOCKS5 proxy; and how a failed connect maps onto what
//! the client should hear.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use synack::tokio::Unreachable;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::socks5;

/// Why an upstream connect failed, as the client should hear it.
#[derive(Debug)]
pub(crate) enum Fail {
    /// An RST (ECONNREFUSED), or SOCKS5 reply 5.
    Refused,
    /// ENETUNREACH, EHOSTUNREACH or EACCES (a prohibit route), or SOCKS5 replies 2, 3, 4:
    /// the client hears the same reason (`Unreachable::from_io_error`; EPERM, a refusal on
    /// this host, is `Other`).
    Unreachable(Unreachable),
    /// Anything else (a blackhole route's EINVAL, the proxy down or speaking nonsense, no
    /// file descriptors left): the SYN is dropped and the client retries.
    Other(io::Error),
}

impl Fail {
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Fail::Refused => io::Error::from(io::ErrorKind::ConnectionRefused),
            Fail::Unreachable(why) => io::Error::other(format!("unreachable: {why:?}")),
            Fail::Other(e) => e,
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        match Unreachable::from_io_error(&e) {
            Some(Unreachable::Port) => Fail::Refused,
            Some(why) => Fail::Unreachable(why),
            None => Fail::Other(e),
        }
    }
}

/// Where upstream sockets are made.
pub(crate) enum Egress {
    /// In the relay's own namespace. The kernel must not route the destinations back into
    /// the TUN (a routing loop): route only prefixes into the TUN that this namespace
    /// reaches some other way, or use --egress-netns.
    Direct,
    /// By a thread that has entered another namespace; sockets keep the namespace they were
    /// made in.
    Netns(std::sync::mpsc::Sender<SocketRequest>),
}

/// A request to the egress thread.
pub(crate) struct SocketRequest {
    udp: bool,
    v6: bool,
    reply: oneshot::Sender<io::Result<Made>>,
}

/// A socket the egress thread made.
enum Made {
    Tcp(tokio::net::TcpSocket),
    Udp(std::net::UdpSocket),
}

impl Egress {
    /// Starts the thread that makes sockets inside namespace `name`, and waits until it is
    /// there (a missing namespace is an error here, not at the first flow).
    pub(crate) async fn in_netns(name: &str) -> io::Result<Egress> {
        let (tx, rx) = std::sync::mpsc::channel::<SocketRequest>();
        let (ready_tx, ready_rx) = oneshot::channel::<io::Result<()>>();
        let ready_tx = Arc::new(Mutex::new(Some(ready_tx)));
        let name = name.to_owned();
        std::thread::Builder::new()
            .name("egress".into())
            .spawn(move || {
                let ready = Arc::clone(&ready_tx);
                let served = synack::tokio::netns::run_in_named(&name, move || {
                    if let Some(t) = ready.lock().ok().and_then(|mut t| t.take()) {
                        let _ = t.send(Ok(()));
                    }
                    // Until every sender is gone, i.e. until the relay ends.
                    for req in rx {
                        // Its flow was cancelled while the request waited: no socket.
                        if req.reply.is_closed() {
                            continue;
                        }
                        let made = make_socket(req.udp, req.v6);
                        let _ = req.reply.send(made);
                    }
                });
                if let Err(e) = served {
                    if let Some(t) = ready_tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = t.send(Err(e));
                    }
                }
            })?;
        ready_rx
            .await
            .map_err(|_| io::Error::other("the egress thread ended before it started"))??;
        Ok(Egress::Netns(tx))
    }

    async fn make(&self, udp: bool, v6: bool) -> io::Result<Made> {
        match self {
            Egress::Direct => make_socket(udp, v6),
            Egress::Netns(requests) => {
                let (reply, made) = oneshot::channel();
                let gone = || io::Error::other("the egress namespace's thread has ended");
                requests
                    .send(SocketRequest { udp, v6, reply })
                    .map_err(|_| gone())?;
                made.await.map_err(|_| gone())?
            }
        }
    }

    /// A TCP socket, not connected yet, for `dst`'s family.
    async fn tcp_socket(&self, dst: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
        match self.make(false, dst.is_ipv6()).await? {
            Made::Tcp(s) => Ok(s),
            Made::Udp(_) => Err(io::Error::other("the egress thread made the wrong socket")),
        }
    }

    /// A UDP socket on an ephemeral port of the wildcard address of `dst`'s family.
    async fn udp_socket(&self, dst: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        match self.make(true, dst.is_ipv6()).await? {
            Made::Udp(s) => tokio::net::UdpSocket::from_std(s),
            Made::Tcp(_) => Err(io::Error::other("the egress thread made the wrong socket")),
        }
    }
}

/// Makes a socket in the calling thread's namespace. A UDP socket is bound and
/// non-blocking, ready for tokio's `UdpSocket::from_std`.
fn make_socket(udp: bool, v6: bool) -> io::Result<Made> {
    if udp {
        let any = if v6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let s = std::net::UdpSocket::bind(any)?;
        s.set_nonblocking(true)?;
        Ok(Made::Udp(s))
    } else if v6 {
        Ok(Made::Tcp(tokio::net::TcpSocket::new_v6()?))
    } else {
        Ok(Made::Tcp(tokio::net::TcpSocket::new_v4()?))
    }
}

/// Where flows go: kernel sockets made by [`Egress`], straight to the destination or to a
/// SOCKS5 proxy.
pub(crate) struct Upstream {
    pub(crate) egress: Egress,
    pub(crate) socks5: Option<SocketAddr>,
}

impl Upstream {
    pub(crate) fn describe(&self, netns: Option<&str>) -> String {
        let via = match self.socks5 {
            Some(proxy) => format!("through SOCKS5 proxy {proxy}"),
            None => "direct".to_owned(),
        };
        match netns {
            Some(ns) => format!("{via}, sockets in namespace {ns}"),
            None => via,
        }
    }

    /// A connection to `dst`, directly or through the proxy's CONNECT.
    pub(crate) async fn connect_tcp(&self, dst: SocketAddr) -> Result<tokio::net::TcpStream, Fail> {
        match self.socks5 {
            // A socket that cannot be made says nothing of the destination (an LSM's
            // EACCES is no prohibit route): only the connect's own error is passed on.
            None => {
                let socket = self.egress.tcp_socket(dst).await.map_err(Fail::Other)?;
                Ok(socket.connect(dst).await?)
            }
            Some(proxy) => {
                let mut control = self.proxy_connection(proxy).await?;
                socks5::request(&mut control, socks5::CONNECT, dst).await?;
                Ok(control)
            }
        }
    }

    /// A session's upstream for `dst`: a kernel UDP socket connected to it, or a SOCKS5 UDP
    /// association (RFC 1928 §7) and a socket connected to the proxy's relay address.
    ///
    /// [`Fail::Unreachable`] when the connect's route lookup finds no way to `dst`
    /// (ENETUNREACH, EHOSTUNREACH, EACCES for a prohibit route): the client should hear what
    /// a router without that route would answer its datagram (Linux's `ip_error`). Anything
    /// else, the SOCKS5 association's failures included (they are about the proxy, not
    /// the destination), is [`Fail::Other`].
    pub(crate) async fn open_udp(&self, dst: SocketAddr) -> Result<UdpUpstream, Fail> {
        match self.socks5 {
            None => {
                // As in `connect_tcp`, only the connect's own error is about `dst`.
                let socket = self.egress.udp_socket(dst).await.map_err(Fail::Other)?;
                socket
                    .connect(dst)
                    .await
                    .map_err(|e| match Unreachable::from_io_error(&e) {
                        Some(why) if why != Unreachable::Port => Fail::Unreachable(why),
                        _ => Fail::Other(e),
                    })?;
                Ok(UdpUpstream {
                    socket,
                    control: None,
                })
            }
            Some(proxy) => self.open_udp_association(proxy).await.map_err(Fail::Other),
        }
    }

    /// A SOCKS5 UDP association through `proxy`, and a socket connected to its relay.
    async fn open_udp_association(&self, proxy: SocketAddr) -> io::Result<UdpUpstream> {
        let mut control = self.proxy_connection(proxy).await.map_err(Fail::into_io)?;
        // We do not know our own address as the proxy sees it: zeros (§7).
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let bound = socks5::request(&mut control, socks5::UDP_ASSOCIATE, any)
            .await
            .map_err(Fail::into_io)?;
        // The relay's address is where every datagram goes: a name (which we cannot
        // resolve) or port 0 would send them to the proxy's port 0.
        let mut relay_at = match bound {
            Some(a) if a.port() != 0 => a,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "SOCKS5 proxy {proxy}: UDP ASSOCIATE replied no usable relay \
                         address (a name, or port 0)"
                    ),
                ))
            }
        };
        // A proxy that answers with the unspecified address means its own.
        if relay_at.ip().is_unspecified() {
            relay_at.set_ip(proxy.ip());
        }
        let socket = self.egress.udp_socket(relay_at).await?;
        socket.connect(relay_at).await?;
        Ok(UdpUpstream {
            socket,
            control: Some(control),
        })
    }

    /// A connection to the proxy that has passed the method negotiation. A proxy that
    /// refuses or cannot be reached is the relay's problem, not the destination's: the SYN
    /// is dropped ([`Fail::Other`]), not refused.
    async fn proxy_connection(&self, proxy: SocketAddr) -> Result<tokio::net::TcpStream, Fail> {
        let proxy_down = |e: io::Error| {
            Fail::Other(io::Error::new(
                e.kind(),
                format!("SOCKS5 proxy {proxy}: {e}"),
            ))
        };
        let socket = self.egress.tcp_socket(proxy).await.map_err(proxy_down)?;
        let mut s = socket.connect(proxy).await.map_err(proxy_down)?;
        let _ = s.set_nodelay(true);
        socks5::negotiate(&mut s).await.map_err(proxy_down)?;
        Ok(s)
    }
}

thread_local! {
    /// Where upstream datagrams land before they are copied out at their size: the largest
    /// UDP payload, once per thread (the relay runs on one).
    static UDP_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 65535]);
}

/// A session's way out: a kernel UDP socket connected to the destination, or one that
/// talks to a SOCKS5 proxy's UDP relay, with the TCP connection that holds the association.
pub(crate) struct UdpUpstream {
    socket: tokio::net::UdpSocket,
    /// With SOCKS5: the association's control connection (RFC 1928 §7: the association
    /// ends when it closes).
    control: Option<tokio::net::TcpStream>,
}

impl UdpUpstream {
    /// What the client should hear of an error a send or a receive got: the same ICMP error
    /// from its destination, where one says the same (`Unreachable::from_udp_io_error`).
    /// Nothing through SOCKS5, where the socket talks to the proxy's relay and its errors
    /// are about the proxy.
    pub(crate) fn unreachable(&self, e: &io::Error) -> Option<Unreachable> {
        if self.control.is_some() {
            return None;
        }
        Unreachable::from_udp_io_error(e)
    }

    /// What the client should hear of a send's error. The route lookup of each send can
    /// fail as the session's connect would have (ENETUNREACH, EHOSTUNREACH, EACCES: the
    /// routes changed since it opened), and a router would answer with the same ICMP error;
    /// the socket may also hand back a hard ICMP error it held (ECONNREFUSED), which
    /// [`unreachable`](Self::unreachable) reads from a receive, and whose EHOSTUNREACH, an
    /// administratively prohibited code there, reads here as a host unreachable. So
    /// [`Unreachable::from_io_error`], as a connect's; nothing through SOCKS5.
    pub(crate) fn unreachable_on_send(&self, e: &io::Error) -> Option<Unreachable> {
        if self.control.is_some() {
            return None;
        }
        Unreachable::from_io_error(e)
    }

    pub(crate) async fn send(&mut self, dst: SocketAddr, data: &[u8]) -> io::Result<()> {
        match self.control {
            None => self.socket.send(data).await.map(drop),
            Some(_) => {
                let mut packet = Vec::with_capacity(22 + data.len());
                socks5::put_udp_header(&mut packet, dst);
                packet.extend_from_slice(data);
                self.socket.send(&packet).await.map(drop)
            }
        }
    }

    /// The next reply from `dst`: `Ok(None)` for one to drop (from elsewhere, fragmented,
    /// malformed), `Err` for an ICMP error about a datagram (the session goes on if
    /// [`unreachable`](Self::unreachable) says what to answer the client), any other `Err`
    /// when the session must end (the proxy closed the association).
    pub(crate) async fn recv(&mut self, dst: SocketAddr) -> io::Result<Option<Vec<u8>>> {
        let socket = &self.socket;
        let received = async {
            loop {
                // Received into the thread's one scratch buffer and copied out at the
                // datagram's size: an idle session holds no buffer, and a busy one neither
                // zeroes nor keeps 64 KiB per datagram.
                // ERROR too: an ICMP error pending on the socket (EPOLLERR alone) is no
                // readiness to read in tokio's eyes, and the session would not hear of it
                // until the next reply or send.
                let ready = socket
                    .ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR)
                    .await?;
                if ready.is_error() {
                    // SO_ERROR takes the error (the kernel clears it); tokio clears its
                    // error readiness only when an operation on that interest would block.
                    let pending = socket.take_error()?;
                    let _ = socket.try_io(tokio::io::Interest::ERROR, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                    if let Some(e) = pending {
                        // An ICMP error (the caller answers its client alike, if it can).
                        return Err(e);
                    }
                }
                if !ready.is_readable() {
                    continue;
                }
                let got = UDP_SCRATCH.with(|b| {
                    let mut b = b.borrow_mut();
                    socket.try_recv(&mut b).map(|n| b[..n].to_vec())
                });
                match got {
                    Ok(datagram) => return Ok(Some(datagram)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // An ICMP error reported on the connected socket (the caller answers
                    // its client alike); the session goes on.
                    Err(e) => return Err(e),
                }
            }
        };
        match &mut self.control {
            None => received.await,
            Some(control) => {
                let mut probe = [0u8; 1];
                tokio::select! {
                    r = received => Ok(r?.and_then(|packet| socks5::strip_udp_header(&packet, dst))),
                    _ = control.read(&mut probe) => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the SOCKS5 proxy ended the UDP association",
                    )),
                }
            }
        }
    }
}
