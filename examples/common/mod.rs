//! What the examples share: the command line every TUN example takes (README.md,
//! "Examples"), opening the stack on the default (offloading) TUN, logging, error exits, and
//! an HTTP/1.1 body that streams a file.
//!
//! Each example includes this with `mod common;`; not every example uses every item.
#![allow(dead_code)]

use std::io::{self, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame};
use synack::tokio::device::tun::{Ipv4Cidr, Ipv6Cidr};
use synack::tokio::device::{Device, PcapDevice, TunConfig, TunDevice};
use synack::tokio::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncRead, ReadBuf};

mod sys;

/// The flags of every example that opens a TUN device.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// The TUN device to create (or with --attach, to attach to).
    #[arg(long, default_value = "synack0")]
    pub tun: String,
    /// Attach to the TUN --tun that exists already instead of creating one: a persistent
    /// interface an administrator made for the user that runs the example (`ip tuntap add
    /// dev NAME mode tun user USER [multi_queue]`, its addresses and routes set), so that
    /// the example needs no privileges. --host-addr and --host-addr6 then say what the
    /// interface has; nothing is set on it.
    #[arg(long)]
    pub attach: bool,
    /// Run on the TUN file this process inherited as descriptor N, instead of creating or
    /// attaching to one: a privileged helper made the interface (its addresses, routes and
    /// link state), opened it and started the example with the file, so that the example
    /// needs no privilege and opens nothing. The file says which interface and whether it
    /// has the offloads' virtio-net header; --host-addr and --host-addr6 say what the
    /// interface has. One file is one queue: one worker.
    #[arg(long, value_name = "N", conflicts_with_all = ["tun", "attach", "no_offload"])]
    pub tun_fd: Option<i32>,
    /// The kernel's address on the device, with the prefix routed to it.
    #[arg(long, default_value = "198.18.0.1/24")]
    pub host_addr: Ipv4Cidr,
    /// The stack's own address.
    #[arg(long, default_value = "198.18.0.2")]
    pub addr: Ipv4Addr,
    /// The kernel's IPv6 address on the device, with its prefix (dual stack; e.g.
    /// 2001:2::1/64). Off unless given.
    #[arg(long)]
    pub host_addr6: Option<Ipv6Cidr>,
    /// The stack's own IPv6 address (with --host-addr6; default: the next address after
    /// the kernel's).
    #[arg(long)]
    pub addr6: Option<Ipv6Addr>,
    /// SYN retransmissions before connect() fails with 'connection timed out': 1 to 127, as
    /// Linux's tcp_syn_retries.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=127))]
    pub syn_retries: u32,
    /// Use the plain TUN (one system call per packet) instead of the kernel's TUN offloads
    /// (virtio-net header, TSO/GSO, checksum offload), which are the default where the
    /// kernel has them.
    #[arg(long)]
    pub no_offload: bool,
    /// Write every packet, both directions, to this pcap file (Wireshark reads it). A
    /// recording runs one worker.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Workers (shards, one TUN queue each); default: one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Print the stack's counters to stderr when the example ends: packets, segments,
    /// retransmissions and drops by reason, and with more than one worker each shard's
    /// connections and hand-offs.
    #[arg(long)]
    pub stats: bool,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Starts logging to stderr at `level`, unless RUST_LOG says otherwise.
pub fn init_tracing_at(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only for a terminal: a log piped or sent to a file stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .init();
}

impl NetArgs {
    /// Starts logging to stderr at the level -v asks for, unless RUST_LOG says otherwise.
    pub fn init_tracing(&self) {
        init_tracing_at(match self.verbose {
            0 => "warn",
            1 => "debug",
            _ => "trace",
        });
    }

    /// The TUN device these flags describe.
    pub fn tun_config(&self) -> TunConfig {
        TunConfig {
            name: self.tun.clone(),
            host_addr: Some(self.host_addr),
            host_addr6: self.host_addr6,
            offload: !self.no_offload,
            ..TunConfig::default()
        }
    }

    /// The core's configuration these flags describe (the MTU comes from the device when the
    /// stack starts).
    pub fn config(&self) -> synack::core::Config {
        let mut config = synack::core::Config::default();
        config.syn_retries(self.syn_retries);
        config
    }

    /// Checks that the stack's address is on the TUN's subnet: otherwise the kernel would
    /// route its replies elsewhere.
    pub fn check(&self) -> io::Result<()> {
        if !self.host_addr.contains(self.addr) || self.host_addr.addr == self.addr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--addr {} must be another address in --host-addr {}",
                    self.addr, self.host_addr
                ),
            ));
        }
        // The subnet's broadcast address is the kernel's broadcast route (its clients
        // would get ENETUNREACH), and its network address names no host (RFC 1122
        // §3.2.1.3); a /31 or /32 has neither.
        let network = Ipv4Addr::from(u32::from(self.addr) & u32::from(self.host_addr.netmask()));
        if self
            .host_addr
            .broadcast()
            .is_some_and(|b| b == self.addr || network == self.addr)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--addr {} is the network or broadcast address of --host-addr {}",
                    self.addr, self.host_addr
                ),
            ));
        }
        match (self.host_addr6, self.addr6) {
            (None, Some(a)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--addr6 {a} needs --host-addr6"),
            )),
            // A /128 holds the kernel's address alone: the stack's has no room in it.
            (Some(h), _) if h.prefix_len == 128 => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--host-addr6 {h} is a /128, which holds the kernel's address alone: the \
                     stack's must be another in the prefix; give a shorter one (e.g. /64)"
                ),
            )),
            (Some(h), Some(a)) if !h.contains(a) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--addr6 {a} must be in --host-addr6 {h}"),
            )),
            // The default, the address after the kernel's, is past the prefix's end: the
            // kernel has its last address.
            (Some(h), None) if !h.contains(self.stack_addr6().unwrap_or(h.addr)) => {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "--host-addr6 {h} leaves no room for the stack's default IPv6 address \
                         (the one after the kernel's): give the stack one in the prefix with \
                         --addr6"
                    ),
                ))
            }
            (Some(h), _) if self.stack_addr6() == Some(h.addr) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--addr6 must be another address than the kernel's {}",
                    h.addr
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The stack's IPv6 address: --addr6, or the one after the kernel's.
    pub fn stack_addr6(&self) -> Option<Ipv6Addr> {
        let h = self.host_addr6?;
        Some(
            self.addr6
                .unwrap_or_else(|| Ipv6Addr::from(u128::from(h.addr).wrapping_add(1))),
        )
    }

    /// Every address the stack owns.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut v = vec![IpAddr::V4(self.addr)];
        v.extend(self.stack_addr6().map(IpAddr::V6));
        v
    }

    /// Whether `ip` is on the TUN's own link: one of the stack's addresses, or inside
    /// --host-addr's or --host-addr6's prefix. The kernel routes those prefixes into the
    /// TUN, so a program that forwards flows to such an address through a kernel socket
    /// sends them straight back into the TUN (a routing loop).
    pub fn on_tun_link(&self, ip: IpAddr) -> bool {
        if self.addresses().contains(&ip) {
            return true;
        }
        match ip {
            IpAddr::V4(v4) => self.host_addr.contains(v4),
            IpAddr::V6(v6) => {
                // A v4-mapped address reaches the IPv4 prefix on a dual-stack socket.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.on_tun_link(IpAddr::V4(v4));
                }
                self.host_addr6.is_some_and(|h| h.contains(v6))
            }
        }
    }

    /// With --stats, prints the stack's counters to stderr: the totals, then a line for each
    /// shard when there is more than one (how evenly the flows spread, and how many packets
    /// arrived on a queue that did not own them).
    pub fn print_stats(&self, stack: &Stack) {
        if !self.stats {
            return;
        }
        eprintln!("stack statistics: {:#?}", stack.stats());
        let shards = stack.shard_stats();
        if shards.len() > 1 {
            for (i, s) in shards.iter().enumerate() {
                eprintln!(
                    "shard {i}: connections {}, packets in {} out {}, handed off {}, \
                     received from other shards {}, hand-offs dropped {}",
                    s.connections,
                    s.stats.packets_in,
                    s.stats.packets_out,
                    s.handed_off,
                    s.handoffs_received,
                    s.handoff_dropped,
                );
            }
        }
    }

    /// Creates the TUN device in the current network namespace and starts the stack on it.
    ///
    /// Refuses to create one in the machine's initial namespace: these examples are meant
    /// to run inside one made for them (`ip netns exec NAME ...`). With --attach or
    /// --tun-fd the interface and its routes are someone else's, and any namespace will do.
    pub fn open_stack(&self) -> io::Result<Stack> {
        self.open_stack_with(|_| {})
    }

    /// [`open_stack`](Self::open_stack), with the core's configuration adjusted by `tune`
    /// first (the relay turns on transparent mode with it).
    pub fn open_stack_with(
        &self,
        tune: impl FnOnce(&mut synack::core::Config),
    ) -> io::Result<Stack> {
        self.check()?;
        let tun = if let Some(fd) = self.tun_fd {
            TunDevice::from_fd(sys::inherited_tun(fd)?)?
        } else if self.attach {
            TunDevice::attach(&self.tun_config())?
        } else {
            refuse_initial_netns()?;
            TunDevice::create(&self.tun_config())?
        };
        self.start_with(tun, tune)
    }

    /// Starts the stack on `device`, recording to --pcap if asked.
    pub fn start<D: Device>(&self, device: D) -> io::Result<Stack> {
        self.start_with(device, |_| {})
    }

    /// [`start`](Self::start), with the core's configuration adjusted by `tune` first.
    pub fn start_with<D: Device>(
        &self,
        device: D,
        tune: impl FnOnce(&mut synack::core::Config),
    ) -> io::Result<Stack> {
        let addrs = self.addresses();
        let mut config = self.config();
        tune(&mut config);
        let mut builder = Stack::builder()
            .config(config)
            .addresses(addrs.iter().copied());
        if let Some(n) = self.workers {
            builder = builder.workers(n);
        }
        Ok(match &self.pcap {
            Some(path) => builder.build(PcapDevice::new(device, path)?)?,
            None => builder.build(device)?,
        })
    }
}

/// A server example's listeners: on the stack's IPv4 address and, with --host-addr6, on its
/// IPv6 address too (dual stack), on one port.
pub struct Listeners {
    v4: TcpListener,
    v6: Option<TcpListener>,
}

impl Listeners {
    /// Listens on `port` at each of the stack's addresses.
    pub async fn bind(stack: &Stack, net: &NetArgs, port: u16) -> io::Result<Listeners> {
        let v4 = TcpListener::bind(stack, SocketAddr::new(net.addr.into(), port)).await?;
        let v6 = match net.stack_addr6() {
            Some(ip) => Some(TcpListener::bind(stack, SocketAddr::new(ip.into(), port)).await?),
            None => None,
        };
        Ok(Listeners { v4, v6 })
    }

    /// The addresses listened on.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let mut addrs = vec![self.v4.local_addr()?];
        if let Some(v6) = &self.v6 {
            addrs.push(v6.local_addr()?);
        }
        Ok(addrs)
    }

    /// The next connection on either listener. Cancel-safe, as each listener's `accept`.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.v6 {
            Some(v6) => tokio::select! {
                accepted = self.v4.accept() => accepted,
                accepted = v6.accept() => accepted,
            },
            None => self.v4.accept().await,
        }
    }
}

/// Fails unless this process is known to be in a network namespace made for it: one that
/// differs from PID 1's, or, where PID 1's cannot be read (a container, a sandbox, `/proc`
/// mounted with `hidepid`), one that `ip netns add` named (its `/var/run/netns` entry is
/// this namespace). It fails closed: otherwise the process may be in the host's, and a TUN
/// made there would route the host's own traffic.
pub fn refuse_initial_netns() -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let ours = std::fs::metadata("/proc/self/ns/net").map(id)?;
    let named = std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::metadata(e.path()).map(id).ok() == Some(ours));
    // PID 1's namespace, where it can be read, decides (a name can be given to the host's
    // own namespace too: `ip netns attach NAME 1`); else only a name does.
    let allowed = match std::fs::metadata("/proc/1/ns/net") {
        Ok(init) => id(init) != ours,
        Err(_) => named,
    };
    if allowed {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "refusing to create a TUN in what may be the host's network namespace; run inside \
         one made for it: ip netns add synack && ip netns exec synack <command> \
         (cargo run --example quickstart makes its own)",
    ))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: how a server example learns to stop, whether a
/// user or a service manager stops it.
pub async fn shutdown_signal() -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// Runs `work` until it ends or Ctrl-C (SIGINT) or SIGTERM comes, which ends the run like an
/// error: `work`'s future is dropped, and with it the stack, whose TUN device the runtime
/// then drops as it ends: an `--attach`ed interface is left without the offloads the device
/// gave it (`TunDevice::attach`), which a signal's default action would have left on. The
/// client examples (`http_get`, `bulk`) stop this way; the servers finish their connections
/// first.
pub async fn until_signal(
    work: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::select! {
        r = work => r,
        r = shutdown_signal() => Err(r.err().unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::Interrupted, "interrupted")
        })),
    }
}

/// How long a stopping server gives its open connections to finish (`Stack::shutdown`).
const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A server stops: every connection still open sends what it queued and its FIN, for up to
/// [`FINISH_TIMEOUT`], as `Stack::shutdown` does, before the process exits. What does not
/// finish in that time is reset, and said so on stderr; the server still stopped as asked.
pub async fn finish(stack: &Stack) {
    if let Err(e) = stack.shutdown(FINISH_TIMEOUT).await {
        eprintln!("stopping: {e}");
    }
}

/// Prints `name: error` on stderr and returns a failing exit code.
pub fn report(name: &str, result: io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An HTTP body that streams a file in 64 KiB frames, so that serving a large file to many
/// clients holds only a small buffer per client.
pub struct FileBody {
    file: tokio::fs::File,
    buf: Box<[u8]>,
    remaining: u64,
}

impl FileBody {
    /// Streams `len` bytes of `file` from its current position.
    pub fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            remaining: len,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being served",
                    ))));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read.filled())))))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// Where an `http://HOST[:PORT]/...` URL goes: its host, an IP address or a name, and its
/// port.
pub fn http_target(url: &hyper::Uri) -> io::Result<(String, u16)> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {what}"));
    if url.scheme_str() != Some("http") {
        return Err(invalid("only http:// URLs are supported"));
    }
    let host = url.host().ok_or_else(|| invalid("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), url.port_u16().unwrap_or(80)))
}

/// The `Host` header for `url`: its host, and its port if it names one (RFC 9110 §7.2),
/// never the user information an authority may carry.
fn host_header(url: &hyper::Uri) -> String {
    let host = url.host().unwrap_or_default();
    match url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A connection to an `http://HOST[:PORT]/...` URL's server through the stack. A host that
/// is not an IP address is looked up by the stack's resolver (`--dns`), through the stack
/// too, and its addresses tried as Happy Eyeballs tries them (`TcpStream::connect`).
pub async fn http_connect(stack: &Stack, url: &hyper::Uri) -> io::Result<TcpStream> {
    let (host, port) = http_target(url)?;
    TcpStream::connect(stack, (host.as_str(), port)).await
}

/// An HTTP/1.1 GET of `url` through the stack, with hyper over a synack `TcpStream` (see
/// [`http_connect`]). Hands each chunk of the body to `sink` as it arrives; returns the
/// status and the body's length.
pub async fn http_get(
    stack: &Stack,
    url: &hyper::Uri,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(hyper::StatusCode, u64)> {
    use http_body_util::BodyExt;

    let stream = http_connect(stack, url).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
    // The connection future drives the socket; it ends when the response is done.
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    });
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host_header(url))
        .header(hyper::header::USER_AGENT, "synack-http_get")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(io::Error::other)?;
    let status = response.status();
    let mut body = response.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            sink(data)?;
        }
    }
    drop(sender);
    let _ = driver.await;
    Ok((status, total))
}
