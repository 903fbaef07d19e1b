//! Names looked up through the stack: hickory-resolver with a synack [`Stack`] as its network.
//!
//! tokio's `lookup_host`, and hickory's own tokio runtime, ask the host's resolver over the
//! host's sockets, so for a stack's application the query would go where its connections do
//! not (a VPN's DNS leak), to a server the stack's network may not even have. [`StackRuntime`]
//! is a hickory `RuntimeProvider` whose UDP sockets are the stack's [`UdpSocket`]s and whose
//! TCP connections are its [`TcpStream`]s: every query and answer crosses the stack's device,
//! from the stack's address, as the application's traffic does. hickory does the DNS (RFC
//! 1035; EDNS, RFC 6891; TCP when an answer comes truncated, RFC 7766 §5), the retries,
//! timeouts and the cache.
//!
//! Given to the stack ([`Stack::set_resolver`]), a resolver looks up every host name the
//! stack's socket calls are given, as tokio::net's calls look names up, and
//! [`lookup_host`](crate::lookup_host) gives its answers; [`resolver`] builds one for given
//! name servers.
//!
//! ```no_run
//! # async fn run(stack: synack_tokio::Stack) -> Result<(), Box<dyn std::error::Error>> {
//! use synack_tokio::integration::hickory::resolver;
//! use synack_tokio::TcpStream;
//!
//! stack.set_resolver(Some(resolver(&stack, &["198.18.0.1".parse()?])?));
//! let stream = TcpStream::connect(&stack, "files.synack.test:80").await?;
//! for addr in synack_tokio::lookup_host(&stack, "files.synack.test:80").await? {
//!     println!("{addr}");
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup_ip::LookupIp;
use hickory_resolver::net::runtime::{
    DnsTcpStream, DnsUdpSocket, RuntimeProvider, TokioHandle, TokioTime,
};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::Resolver;
use tokio::io::{AsyncRead as TokioRead, AsyncWrite as TokioWrite, ReadBuf};

use crate::lookup::{next_answer, telling, AddrLookup};
use crate::stack::WeakStack;
use crate::{Stack, TcpSocket, TcpStream, UdpSocket};

/// The hickory-resolver this module is built against, for naming its types (its
/// `ResolverConfig`, `ResolverOpts`, `LookupIp`, errors).
pub use hickory_resolver;

/// A hickory resolver whose queries go through a synack stack: what
/// [`Stack::set_resolver`] takes. It derefs to hickory's `Resolver`, for hickory's own
/// lookups (`lookup_ip`, `mx_lookup`, `reverse_lookup`, ...).
///
/// Build one with [`resolver`], or with hickory's `ResolverConfig` and `ResolverOpts`
/// ([`StackResolver::with_config`]); a `Resolver<StackRuntime>` built with hickory's own
/// builder converts too ([`From`]), but then synack does not know its search list, and a
/// connection to a name not ending in `.` waits for both its A and its AAAA answer.
#[derive(Clone)]
pub struct StackResolver {
    resolver: Resolver<StackRuntime>,
    /// Whether hickory asks for a name as it is and for nothing else (no search list, no
    /// default domain), so that a connection's A and AAAA queries may go apart (RFC 8305
    /// §3) and still be answered for the same name. With a search list each would walk it
    /// on its own and stop at the first name that has its type, which need not be the
    /// same name for both (hickory's `lookup_ip`, as glibc's `getaddrinfo`, stops at the
    /// first name that has either).
    one_name: bool,
}

impl StackResolver {
    /// A resolver on `stack` with hickory's `config` (name servers, search list) and
    /// `options` (timeouts, attempts, address families, the hosts file, the cache).
    pub fn with_config(
        stack: &Stack,
        config: ResolverConfig,
        options: ResolverOpts,
    ) -> io::Result<StackResolver> {
        let one_name = config.domain().is_none() && config.search().is_empty();
        let resolver = Resolver::builder_with_config(config, StackRuntime::new(stack))
            .with_options(options)
            .build()
            .map_err(io::Error::other)?;
        Ok(StackResolver { resolver, one_name })
    }
}

impl From<Resolver<StackRuntime>> for StackResolver {
    /// A resolver built with hickory's builder on a [`StackRuntime`]. Its search list is not
    /// known here, so only names ending in `.` get their A and AAAA queries apart.
    fn from(resolver: Resolver<StackRuntime>) -> StackResolver {
        StackResolver {
            resolver,
            one_name: false,
        }
    }
}

impl std::ops::Deref for StackResolver {
    type Target = Resolver<StackRuntime>;

    fn deref(&self) -> &Resolver<StackRuntime> {
        &self.resolver
    }
}

impl std::fmt::Debug for StackResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackResolver")
            .field("one_name", &self.one_name)
            .finish_non_exhaustive()
    }
}

/// How long a TCP connection to a name server may take when hickory sets no limit: its own
/// tokio runtime's (`CONNECT_TIMEOUT`), five seconds.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// hickory's runtime on a synack [`Stack`]: the stack's sockets, tokio's tasks and timers.
///
/// [`resolver`] and [`StackResolver::with_config`] build resolvers with it; hickory's own
/// builder can too, `Resolver::builder_with_config(config, StackRuntime::new(&stack))`, as
/// hickory's examples build one with their tokio runtime.
/// Cloning it is cheap; every clone uses the same stack.
///
/// It does not keep the stack alive (so that the stack may hold a resolver built on it,
/// [`Stack::set_resolver`]): once every other handle on the stack is dropped, a query fails
/// with `NotConnected`. A TCP connection to a name server, a stream on the stack, does keep
/// it, while it is open: it closes itself after [`TCP_IDLE_CLOSE`] without a query.
#[derive(Clone)]
pub struct StackRuntime {
    stack: WeakStack,
    tasks: TokioHandle,
}

impl StackRuntime {
    /// The runtime for resolvers on `stack`.
    pub fn new(stack: &Stack) -> StackRuntime {
        StackRuntime {
            stack: stack.downgrade(),
            tasks: TokioHandle::default(),
        }
    }
}

impl std::fmt::Debug for StackRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackRuntime").finish_non_exhaustive()
    }
}

impl RuntimeProvider for StackRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = UdpSocket;
    type Tcp = DnsTcp;

    fn create_handle(&self) -> TokioHandle {
        self.tasks.clone()
    }

    /// A [`TcpStream`] to `server_addr`, from `bind_addr` if one is given, with TCP_NODELAY
    /// (a query is one small write that waits for its answer), within `timeout`.
    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<DnsTcp>>>> {
        let stack = self.stack.clone();
        Box::pin(async move {
            let stack = stack.upgrade()?;
            let socket = match server_addr {
                SocketAddr::V4(_) => TcpSocket::new_v4(&stack)?,
                SocketAddr::V6(_) => TcpSocket::new_v6(&stack)?,
            };
            if let Some(local) = bind_addr {
                socket.bind(local)?;
            }
            socket.set_nodelay(true)?;
            let limit = timeout.unwrap_or(TCP_CONNECT_TIMEOUT);
            match tokio::time::timeout(limit, socket.connect(server_addr)).await {
                Ok(stream) => stream.map(|s| DnsTcp::new(s, idle_close(timeout))),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "TCP connection to name server {server_addr} timed out after {limit:?}"
                    ),
                )),
            }
        })
    }

    /// A [`UdpSocket`] bound to `local_addr` (hickory picks a random port for each query,
    /// as RFC 5452 §9.2 asks), not connected.
    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        _server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<UdpSocket>>>> {
        let stack = self.stack.clone();
        Box::pin(async move { UdpSocket::bind(&stack.upgrade()?, local_addr).await })
    }
}

/// The stack's UDP socket is hickory's as it is.
impl DnsUdpSocket for UdpSocket {
    type Time = TokioTime;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buf = ReadBuf::new(buf);
        let from = std::task::ready!(UdpSocket::poll_recv_from(self, cx, &mut buf))?;
        Poll::Ready(Ok((buf.filled().len(), from)))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        UdpSocket::poll_send_to(self, cx, buf, target)
    }
}

/// A [`TcpStream`] to a name server in the I/O traits hickory reads and writes (the
/// `futures` ones, not tokio's).
///
/// It ends itself (reads end, as at the server's FIN) once no query has been written for
/// [`TCP_IDLE_CLOSE`] (or twice the resolver's query timeout, if longer), as RFC 7766
/// §6.2.3 asks of clients ("DNS clients SHOULD close idle sessions they are unlikely to
/// use"). hickory keeps a connection for the next query with no limit of its own, and the
/// stream holds its stack: without the limit a stack holding a resolver that once used TCP
/// would never be freed. Only our writes put it off: what the server sends does not, or a
/// server (or anyone on the path) sending a byte now and then would keep the connection,
/// and the stack, for ever.
#[derive(Debug)]
pub struct DnsTcp {
    stream: TcpStream,
    idle: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

/// How long a TCP connection to a name server stays open after the last query written, at
/// least: twice hickory's default query timeout, so that no query still waiting for its
/// answer loses it.
pub const TCP_IDLE_CLOSE: Duration = Duration::from_secs(10);

/// The idle close for a resolver whose queries time out after `timeout` (hickory hands its
/// query timeout to `connect_tcp`): [`TCP_IDLE_CLOSE`], or twice `timeout` if longer, so
/// that an answer the resolver still waits for always comes before the close.
fn idle_close(timeout: Option<Duration>) -> Duration {
    timeout.map_or(TCP_IDLE_CLOSE, |t| TCP_IDLE_CLOSE.max(t.saturating_mul(2)))
}

impl DnsTcp {
    fn new(stream: TcpStream, limit: Duration) -> DnsTcp {
        DnsTcp {
            stream,
            idle: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Puts off the idle close: a query went out.
    fn busy(&mut self) {
        let deadline = tokio::time::Instant::now() + self.limit;
        self.idle.as_mut().reset(deadline);
    }
}

impl DnsTcpStream for DnsTcp {
    type Time = TokioTime;
}

impl AsyncRead for DnsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Nothing to read: idle long enough, the read ends, and hickory drops the
            // connection (which closes it with a FIN).
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Ok(0)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for DnsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, buf));
        self.busy();
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = std::task::ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs));
        self.busy();
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A resolver on `stack` that asks `name_servers` (port 53, over UDP, and over TCP when an
/// answer comes truncated) with hickory's default options (5 s a query, two more attempts,
/// EDNS, a cache; the servers asked two at a time, the fastest first), but for two: it does
/// not read the host's `/etc/hosts`, whose names are the host's network's, not the stack's;
/// and it asks only for the address families the stack has (A alone for a stack with no
/// IPv6 address, AAAA alone for one with no IPv4; else both, IPv6 first).
///
/// For other ports, protocols, options or a search list, build one with
/// [`StackResolver::with_config`]. `InvalidInput` if `name_servers` is empty.
pub fn resolver(stack: &Stack, name_servers: &[IpAddr]) -> io::Result<StackResolver> {
    if name_servers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a resolver needs at least one name server",
        ));
    }
    let config = ResolverConfig::from_name_servers(
        name_servers
            .iter()
            .map(|&ip| NameServerConfig::udp_and_tcp(ip))
            .collect(),
    );
    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    let v4 = stack.addresses().iter().any(IpAddr::is_ipv4);
    let v6 = stack.addresses().iter().any(IpAddr::is_ipv6);
    options.ip_strategy = match (v4, v6) {
        (true, false) => LookupIpStrategy::Ipv4Only,
        (false, true) => LookupIpStrategy::Ipv6Only,
        _ => LookupIpStrategy::Ipv6AndIpv4,
    };
    StackResolver::with_config(stack, config, options)
}

/// `name` as hickory takes it: a name hickory cannot even parse (an empty label, a label
/// over 63 bytes, a NUL) is the caller's mistake, not a failed lookup.
fn parse(name: &str) -> io::Result<Name> {
    Name::from_utf8(name).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a host name: {e}"),
        )
    })
}

/// A failed lookup of `name` as an I/O error: `NotFound` when the name has no record of
/// the kind asked, the I/O error a query met, `TimedOut` when no server answered in time.
fn lookup_error(name: &str, e: NetError) -> io::Error {
    let kind = match &e {
        e if e.is_no_records_found() => io::ErrorKind::NotFound,
        NetError::Io(io) => io.kind(),
        NetError::Timeout => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("looking up {name}: {e}"))
}

/// `found` with `port`, or `NotFound` when there is no address in it (a name whose records
/// are none of them addresses).
fn with_port(name: &str, found: LookupIp, port: u16) -> io::Result<Vec<SocketAddr>> {
    some_address(
        name,
        found.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
    )
}

/// The addresses `resolver` finds for host `name`, with `port`, all of them at once (as
/// tokio's `lookup_host` gives them): `NotFound` when there are none (no such name, or
/// none of its records are addresses), the I/O error a query met, `TimedOut` when no
/// server answered in time.
///
/// The queries are those a connection to the name races ([`lookups`]), all awaited, the
/// preferred family's addresses first. When every one fails, the error is the one that
/// says most ([`telling`]): a family without addresses (`NotFound`) gives way to a server
/// that did not answer for the other, so that this agrees with `TcpStream::connect`.
/// (hickory's `lookup_ip` reports the AAAA query's error: `NotFound`, for an A query that
/// timed out.)
pub(crate) async fn lookup(
    resolver: &Arc<StackResolver>,
    name: &str,
    port: u16,
) -> io::Result<Vec<SocketAddr>> {
    let mut pending: Vec<Option<AddrLookup>> = lookups(resolver, name, port)?
        .into_iter()
        .map(Some)
        .collect();
    let mut answers: Vec<Option<io::Result<Vec<SocketAddr>>>> =
        pending.iter().map(|_| None).collect();
    for _ in 0..pending.len() {
        let (i, answer) = next_answer(&mut pending).await;
        answers[i] = Some(answer);
    }
    let (mut found, mut error) = (Vec::new(), None);
    for answer in answers.into_iter().flatten() {
        match answer {
            Ok(addrs) => found.extend(addrs),
            Err(e) => error = Some(telling(error, e)),
        }
    }
    match error {
        Some(e) if found.is_empty() => Err(e),
        _ => some_address(name, found),
    }
}

/// Everything a lookup's queries found: `NotFound` if that is nothing.
fn some_address(name: &str, addrs: Vec<SocketAddr>) -> io::Result<Vec<SocketAddr>> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("looking up {name}: no address"),
        ));
    }
    Ok(addrs)
}

/// All the addresses hickory's own `lookup_ip` finds for `name` (both families in one
/// lookup, by the resolver's strategy), with `port`.
async fn lookup_together(
    resolver: &StackResolver,
    name: &str,
    port: u16,
) -> io::Result<Vec<SocketAddr>> {
    let parsed = parse(name)?;
    let found = resolver
        .lookup_ip(parsed)
        .await
        .map_err(|e| lookup_error(name, e))?;
    with_port(name, found, port)
}

/// The lookups of `name`'s addresses with `port` that a connection to it races (RFC 8305
/// §3), the preferred first: with both families asked for (hickory's `Ipv6AndIpv4`, the
/// default, or `Ipv4AndIpv6`), the AAAA and the A query each on its own, so that the
/// connection need not wait for the slower (hickory's `lookup_ip` waits for both: a server
/// that never answers one would cost the resolver's whole timeout); with one family, its
/// query. hickory's own lookup, as one, where the two could be answered for different
/// names (a search list, unless the name ends in `.`: see [`StackResolver`]), and with the
/// `then` strategies, whose second query depends on the first's answer.
pub(crate) fn lookups(
    resolver: &Arc<StackResolver>,
    name: &str,
    port: u16,
) -> io::Result<Vec<AddrLookup>> {
    let parsed = parse(name)?;
    let query = |kind: Option<RecordType>| -> AddrLookup {
        let (resolver, parsed, name) = (resolver.clone(), parsed.clone(), name.to_owned());
        Box::pin(async move {
            let Some(kind) = kind else {
                return lookup_together(&resolver, &name, port).await;
            };
            let found = resolver.lookup(parsed, kind).await.map(LookupIp::from);
            with_port(&name, found.map_err(|e| lookup_error(&name, e))?, port)
        })
    };
    if !resolver.one_name && !parsed.is_fqdn() {
        return Ok(vec![query(None)]);
    }
    let (aaaa, a) = (Some(RecordType::AAAA), Some(RecordType::A));
    Ok(match resolver.options().ip_strategy {
        LookupIpStrategy::Ipv6AndIpv4 => vec![query(aaaa), query(a)],
        LookupIpStrategy::Ipv4AndIpv6 => vec![query(a), query(aaaa)],
        LookupIpStrategy::Ipv6Only => vec![query(aaaa)],
        LookupIpStrategy::Ipv4Only => vec![query(a)],
        _ => vec![query(None)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack holding a resolver built on it is still freed with its last user handle;
    /// a resolver kept apart then fails at once, rather than waiting out its timeouts.
    #[tokio::test]
    async fn a_resolver_does_not_keep_its_stack_alive() {
        let (stack, _link) = Stack::on_memory_link("198.18.0.2");
        let server: IpAddr = "198.18.0.1".parse().unwrap();
        stack.set_resolver(Some(resolver(&stack, &[server]).unwrap()));
        let apart = resolver(&stack, &[server]).unwrap();
        let runtime = StackRuntime::new(&stack);
        assert!(runtime.stack.upgrade().is_ok());
        drop(stack);
        let Err(e) = runtime.stack.upgrade() else {
            panic!("the stack outlived its last handle")
        };
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let failed = tokio::time::timeout(
            Duration::from_secs(2),
            lookup(&Arc::new(apart), "a.test", 80),
        )
        .await
        .expect("a query on a stack that is gone fails at once");
        assert!(failed.is_err());
    }

    /// A stack on a memory link to a second stack at 198.18.0.1, and the second.
    fn linked() -> (Stack, Stack) {
        let (ours, b) = Stack::on_memory_link("198.18.0.2");
        let theirs = Stack::builder()
            .address("198.18.0.1".parse().unwrap())
            .build(b)
            .unwrap();
        (ours, theirs)
    }

    /// `connect_tcp` binds where hickory asks, and gives up at hickory's limit with
    /// `TimedOut`.
    #[tokio::test]
    async fn tcp_to_a_name_server_binds_and_times_out_as_asked() {
        let (ours, theirs) = linked();
        let _server = crate::TcpListener::bind(&theirs, "198.18.0.1:53")
            .await
            .unwrap();
        let runtime = StackRuntime::new(&ours);
        let from: SocketAddr = "198.18.0.2:40053".parse().unwrap();
        let stream = runtime
            .connect_tcp("198.18.0.1:53".parse().unwrap(), Some(from), None)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().local_addr().unwrap(), from);
        assert!(stream.get_ref().nodelay().unwrap());

        // Nobody at the other end of this link: the SYN goes unanswered.
        let (lone, _silent) = Stack::on_memory_link("198.18.0.2");
        let started = tokio::time::Instant::now();
        let Err(e) = StackRuntime::new(&lone)
            .connect_tcp(
                "198.18.0.1:53".parse().unwrap(),
                None,
                Some(Duration::from_millis(300)),
            )
            .await
        else {
            panic!("a connection to nobody")
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A name server that never answers is `TimedOut`, within the resolver's own limit.
    #[tokio::test]
    async fn an_unanswered_query_is_timed_out() {
        let (lone, _silent) = Stack::on_memory_link("198.18.0.2");
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(200);
        options.attempts = 1;
        options.use_hosts_file = ResolveHosts::Never;
        let r = StackResolver::with_config(&lone, one_server(), options).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), lookup(&Arc::new(r), "a.test", 80))
            .await
            .expect("bounded by the resolver's own timeout")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    /// A lookup whose AAAA query finds no address (NODATA) and whose A query is never
    /// answered fails `TimedOut`, as a connection to the name does: the server that did not
    /// answer says more than the family without addresses. It used to be `NotFound`,
    /// hickory's `lookup_ip` reporting the AAAA query's error.
    #[tokio::test]
    async fn a_lookup_reports_the_query_that_timed_out_over_an_empty_family() {
        let (ours, theirs) = linked();
        let server = crate::UdpSocket::bind(&theirs, "198.18.0.1:53")
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                // The question's type follows its name, after the 12-byte header.
                let Some(end) = buf[12..n].iter().position(|&b| b == 0) else {
                    continue;
                };
                let qtype = u16::from_be_bytes([buf[13 + end], buf[14 + end]]);
                if qtype == 28 {
                    // AAAA: NOERROR, no answer. A: nothing.
                    let mut reply = buf[..n].to_vec();
                    reply[2] = 0x81;
                    reply[3] = 0x80;
                    let _ = server.send_to(&reply, from).await;
                }
            }
        });
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(300);
        options.attempts = 1;
        options.use_hosts_file = ResolveHosts::Never;
        options.ip_strategy = LookupIpStrategy::Ipv6AndIpv4;
        let r = Arc::new(StackResolver::with_config(&ours, one_server(), options).unwrap());
        let e = tokio::time::timeout(Duration::from_secs(10), lookup(&r, "a.test.", 80))
            .await
            .expect("bounded by the resolver's own timeout")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    /// What the name server sends does not keep a TCP connection open: it ends
    /// `TCP_IDLE_CLOSE` after the last query written, though a byte came every 4 s. It
    /// used to be put off by every byte read, so a server (or anyone on the path) could
    /// hold the connection, and the stack it holds, for ever. A resolver with a longer
    /// query timeout gets twice that.
    #[tokio::test(start_paused = true)]
    async fn only_queries_keep_a_name_server_connection_open() {
        assert_eq!(idle_close(None), TCP_IDLE_CLOSE);
        assert_eq!(idle_close(Some(Duration::from_secs(2))), TCP_IDLE_CLOSE);
        assert_eq!(
            idle_close(Some(Duration::from_secs(30))),
            Duration::from_secs(60)
        );
        let (ours, theirs) = linked();
        let listener = crate::TcpListener::bind(&theirs, "198.18.0.1:53")
            .await
            .unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut s, _) = listener.accept().await.unwrap();
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if s.write_all(&[0]).await.is_err() {
                    break;
                }
            }
        });
        let runtime = StackRuntime::new(&ours);
        let mut tcp = runtime
            .connect_tcp("198.18.0.1:53".parse().unwrap(), None, None)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        std::future::poll_fn(|cx| Pin::new(&mut tcp).poll_write(cx, &[0, 1, 0]))
            .await
            .unwrap();
        let (mut buf, mut got) = ([0u8; 16], 0);
        loop {
            let read = std::future::poll_fn(|cx| Pin::new(&mut tcp).poll_read(cx, &mut buf));
            let n = tokio::time::timeout(Duration::from_secs(60), read)
                .await
                .expect("the idle close")
                .unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert!(got >= 2, "the server's bytes came: {got}");
        let took = started.elapsed();
        assert!(
            took >= TCP_IDLE_CLOSE && took < TCP_IDLE_CLOSE + Duration::from_secs(1),
            "{took:?}"
        );
    }

    fn one_server() -> ResolverConfig {
        ResolverConfig::from_name_servers(vec![NameServerConfig::udp(
            "198.18.0.1".parse().unwrap(),
        )])
    }

    /// A connection's A and AAAA queries go apart only where hickory asks for the name as
    /// it is: no search list, or a name ending in `.`; else hickory's `lookup_ip`, one
    /// lookup, so that both families come from the same name. The families asked for
    /// follow the resolver's strategy.
    #[tokio::test]
    async fn the_queries_go_apart_only_for_one_name() {
        let (stack, _link) = Stack::on_memory_link("198.18.0.2");
        let count = |r: StackResolver, name: &str| lookups(&Arc::new(r), name, 80).unwrap().len();
        let options = ResolverOpts::default();
        let plain = StackResolver::with_config(&stack, one_server(), options.clone()).unwrap();
        assert_eq!(count(plain.clone(), "www.synack.test"), 2);
        let mut searching = one_server();
        searching.add_search("corp.synack.test".parse().unwrap());
        let searching = StackResolver::with_config(&stack, searching, options.clone()).unwrap();
        assert_eq!(count(searching.clone(), "wiki"), 1);
        assert_eq!(count(searching, "wiki.corp.synack.test."), 2);
        let built = StackResolver::from(
            Resolver::builder_with_config(one_server(), StackRuntime::new(&stack))
                .build()
                .unwrap(),
        );
        assert_eq!(count(built.clone(), "www.synack.test"), 1);
        assert_eq!(count(built, "www.synack.test."), 2);
        let mut v4 = options;
        v4.ip_strategy = LookupIpStrategy::Ipv4Only;
        let v4 = StackResolver::with_config(&stack, one_server(), v4).unwrap();
        assert_eq!(count(v4, "www.synack.test"), 1);
        // The stack's own resolver: both families on a dual-stack stack, one on this one.
        assert_eq!(
            count(
                resolver(&stack, &["198.18.0.1".parse().unwrap()]).unwrap(),
                "a.test"
            ),
            1
        );
        // hickory's own API, through Deref.
        assert_eq!(plain.options().ip_strategy, LookupIpStrategy::Ipv6AndIpv4);
    }

    #[tokio::test]
    async fn a_resolver_needs_a_name_server() {
        let (stack, _link) = Stack::on_memory_link("198.18.0.2");
        let Err(e) = resolver(&stack, &[]) else {
            panic!("a resolver without a name server")
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // A name that is no name is refused before any query.
        let r = Arc::new(resolver(&stack, &["198.18.0.1".parse().unwrap()]).unwrap());
        let long = "a".repeat(64);
        for bad in ["foo..bar", "a\0b", long.as_str()] {
            let e = lookup(&r, bad, 80).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
    }
}
