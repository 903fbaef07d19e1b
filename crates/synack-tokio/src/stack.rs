//! [`Stack`]: the user's handle on one endpoint, and the state it shares with the driver task.
//!
//! After quinn: the core's [`Endpoint`] lives in an `Arc<Mutex<Inner>>` together with the
//! wakers of every task waiting on it. User handles lock the mutex, issue one command to the
//! core, register a waker if the command would block, and wake the driver so that it flushes
//! whatever the command produced. The driver locks the same mutex to feed packets and timeouts
//! in and to drain events, waking the tasks the events concern. The mutex is a std one and is
//! never held across an `.await`, so no lock is ever held while a task sleeps.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use synack_core::{
    Config, ConnectionHandle, Endpoint, Error, InterceptConfig, ListenerHandle, MemoryUsage, Stats,
    SynHandle, UdpHandle,
};

use tracing::warn;

use crate::device::Device;
use crate::driver::Driver;
use crate::udp::UdpState;

/// Why a [`Stack`] could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackError {
    /// The configuration's `gso_max_size` ([`Config::gso_max_size`]) asks for super-segments
    /// larger than the device takes
    /// ([`DeviceCapabilities::gso_max_size`](crate::DeviceCapabilities::gso_max_size)); the
    /// core would build packets the device must refuse. Leave it unset to take the device's, or choose
    /// at most `device` (0 turns segmentation offload off).
    GsoMaxSize {
        /// What the configuration asked for.
        requested: usize,
        /// The most the device takes (0: no segmentation offload at all).
        device: usize,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::GsoMaxSize { requested, device } => write!(
                f,
                "Config::gso_max_size is {requested} bytes, but the device takes super-segments                  of at most {device} bytes"
            ),
        }
    }
}

impl std::error::Error for StackError {}

impl From<StackError> for io::Error {
    /// An [`io::ErrorKind::InvalidInput`] carrying the [`StackError`] (see
    /// [`io::Error::get_ref`]), for code that works in `io::Result`.
    fn from(e: StackError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// A handle on a running user-space TCP/IP stack.
///
/// Cloning is cheap (an `Arc`). Every clone, and every [`TcpStream`](crate::TcpStream),
/// [`TcpListener`](crate::TcpListener) and [`UdpSocket`](crate::UdpSocket) made from it,
/// keeps the stack alive. When the last of
/// them is dropped, the driver task keeps finishing the connections that are still closing
/// (their data and FINs are delivered, retransmitted as needed) for up to a minute, resets
/// what is left, and stops. It runs only while the tokio runtime does: a program that wants
/// what it wrote delivered calls [`Stack::shutdown`] before it returns from `main`, since
/// connections still unfinished when the runtime ends are reset.
#[derive(Clone)]
pub struct Stack {
    handle: Arc<StackHandle>,
}

/// The part whose drop means "no user is left": the driver holds `Shared` but not this.
struct StackHandle {
    shared: Arc<Shared>,
}

impl Drop for StackHandle {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.shared.inner.lock() {
            let unfinished = inner.endpoint.unfinished_count();
            if unfinished > 0 && !inner.shutting_down && !inner.driver_gone {
                warn!(
                    unfinished,
                    queued_bytes = inner.endpoint.memory(),
                    "synack: the last handle on the stack is gone while connections still \
                     deliver data; they finish only while the tokio runtime keeps running \
                     (and are reset after {} s). Call `Stack::shutdown().await` before \
                     returning from main.",
                    ORPHAN_LINGER.as_secs()
                );
            }
            inner.stopping = true;
            inner.wake_driver();
        }
    }
}

/// How long the driver keeps finishing the connections the application let go of, once
/// the last handle on the stack is gone: their queued data and FINs still go out and are
/// retransmitted as needed. Past it, what is left is reset.
pub(crate) const ORPHAN_LINGER: Duration = Duration::from_secs(60);

/// The state shared by user handles and the driver.
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
}

/// Everything behind the mutex.
pub(crate) struct Inner {
    pub(crate) endpoint: Endpoint,
    /// The origin of the core's virtual clock.
    start: tokio::time::Instant,
    /// Connections that a user handle (stream, half, pending connect) refers to.
    pub(crate) conns: HashMap<ConnectionHandle, ConnState>,
    /// Listeners that a `TcpListener` refers to.
    pub(crate) listeners: HashMap<ListenerHandle, ListenerState>,
    driver_waker: Option<Waker>,
    /// The last user handle is gone: the driver finishes the closing connections (for at
    /// most `ORPHAN_LINGER`), then stops.
    pub(crate) stopping: bool,
    /// The driver task has ended (device failure or runtime shutdown); commands fail.
    pub(crate) driver_gone: bool,
    /// Why the device failed, if it did: every command reports it from then on.
    pub(crate) device_error: Option<(io::ErrorKind, String)>,
    /// `Stack::shutdown` began: no new connections or listeners.
    pub(crate) shutting_down: bool,
    /// Tasks in `Stack::shutdown`, woken when no connection is unfinished.
    pub(crate) idle_wakers: Vec<Waker>,
    /// Intercept mode: held SYNs announced and not yet handed to an `Interceptor`.
    pub(crate) intercepted: VecDeque<SynHandle>,
    /// Tasks waiting in `Interceptor::next`.
    pub(crate) intercept_wakers: Vec<Waker>,
    /// UDP sockets that a `UdpSocket` refers to.
    pub(crate) udp: HashMap<UdpHandle, UdpState>,
    /// Tasks whose datagram found the core's own-packet queue full (`UdpWritable`).
    pub(crate) udp_send_wakers: Vec<Waker>,
    /// Tasks waiting in `UdpInterceptor::recv` (`UdpIntercepted`).
    pub(crate) udp_intercept_wakers: Vec<Waker>,
}

/// The runtime's view of one connection.
pub(crate) struct ConnState {
    /// The task parked in `poll_read`.
    pub(crate) read_waker: Option<Waker>,
    /// The task parked in `poll_write`, or in `connect` waiting for the handshake.
    pub(crate) write_waker: Option<Waker>,
    /// The handshake completed.
    pub(crate) connected: bool,
    /// The core reported the connection closed.
    pub(crate) closed: bool,
    /// Why the core closed it, from `Event::Closed`.
    pub(crate) error: Option<Error>,
    /// `poll_shutdown` already sent our FIN.
    pub(crate) write_shutdown: bool,
    /// SO_LINGER: `Some(0)` resets the connection when the handle is dropped.
    pub(crate) linger: Option<std::time::Duration>,
    /// Every log line about this connection is emitted inside this span.
    pub(crate) span: tracing::Span,
}

impl ConnState {
    pub(crate) fn new(connected: bool, span: tracing::Span) -> Self {
        ConnState {
            read_waker: None,
            write_waker: None,
            connected,
            closed: false,
            error: None,
            write_shutdown: false,
            linger: None,
            span,
        }
    }
}

/// The runtime's view of one listener.
#[derive(Default)]
pub(crate) struct ListenerState {
    /// Tasks parked in `accept`; several tasks may share one `&TcpListener`.
    pub(crate) accept_wakers: Vec<Waker>,
}

/// Stores `cx`'s waker in `slot` unless the same task is already there.
pub(crate) fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Adds `cx`'s waker to `list` unless the same task is already there.
pub(crate) fn register_many(list: &mut Vec<Waker>, cx: &Context<'_>) {
    if !list.iter().any(|w| w.will_wake(cx.waker())) {
        list.push(cx.waker().clone());
    }
}

impl Inner {
    /// The core's virtual time: microseconds since the stack started, on tokio's clock (so that
    /// `tokio::time::pause` drives it in tests).
    pub(crate) fn now(&self) -> synack_core::Instant {
        let micros = tokio::time::Instant::now()
            .duration_since(self.start)
            .as_micros();
        synack_core::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core deadline.
    pub(crate) fn deadline(&self, at: synack_core::Instant) -> tokio::time::Instant {
        self.start + std::time::Duration::from_micros(at.total_micros())
    }

    /// Asks the driver to run: a command may have queued packets or changed the deadline.
    pub(crate) fn wake_driver(&self) {
        if let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    pub(crate) fn set_driver_waker(&mut self, cx: &Context<'_>) {
        register(&mut self.driver_waker, cx);
    }

    /// The error every command returns once the driver task has ended: the device's own
    /// error when it failed, so that the cause is not lost.
    pub(crate) fn gone_error(&self) -> io::Error {
        match &self.device_error {
            Some((kind, msg)) => io::Error::new(*kind, format!("synack: the device failed: {msg}")),
            None => io::Error::other("synack: the stack's driver task has stopped"),
        }
    }

    /// Fails a command that would open a connection or a listener once `Stack::shutdown`
    /// began.
    pub(crate) fn check_open(&self) -> io::Result<()> {
        if self.shutting_down {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "synack: the stack is shutting down",
            ));
        }
        Ok(())
    }

    /// The io::Error for a failed command on `conn`: the core's error, except that a handle the
    /// core no longer knows reports why the connection closed, when we know it.
    pub(crate) fn conn_error(&self, conn: ConnectionHandle, e: Error) -> io::Error {
        if e == Error::InvalidHandle {
            if let Some(reason) = self.conns.get(&conn).and_then(|c| c.error) {
                return reason.into();
            }
        }
        e.into()
    }
}

/// Builds a [`Stack`]: its configuration and addresses, then the device it runs on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use synack_tokio::{device::MemoryDevice, Config, Stack};
///
/// let (device, _peer) = MemoryDevice::pair();
/// let mut config = Config::default();
/// config.nodelay(true);
/// let stack = Stack::builder()
///     .config(config)
///     .address("198.18.0.2".parse().unwrap())
///     .build(device)
///     .unwrap();
/// # drop(stack); }
/// ```
#[derive(Debug, Default)]
pub struct StackBuilder {
    config: Config,
    addresses: Vec<IpAddr>,
}

impl StackBuilder {
    /// The core's configuration (`Config::default()` if not given).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Transparent mode: the stack takes connections to any address routed into its device,
    /// handed out by [`Stack::intercept`], and datagrams, handed out by
    /// [`Stack::intercept_udp`] (sets [`Config::intercept`]).
    pub fn intercept(mut self, intercept: InterceptConfig) -> Self {
        self.config.intercept(Some(intercept));
        self
    }

    /// One more address the stack owns and answers on.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.addresses.push(address);
        self
    }

    /// More addresses the stack owns.
    pub fn addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses.extend(addresses);
        self
    }

    /// Starts the stack on `device`: spawns its driver task on the current tokio runtime, as
    /// [`Stack::new`] does, and fails as it does when the configuration asks for more than
    /// the device can do.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn build<D: Device>(self, device: D) -> Result<Stack, StackError> {
        Stack::new(self.config, device, &self.addresses)
    }
}

impl Stack {
    /// A [`StackBuilder`], for a stack configured step by step.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// Spawns the driver task on the current tokio runtime.
    ///
    /// The stack owns `addresses` and answers packets sent to them. The core is configured
    /// from `config` and from the device's [`capabilities`](Device::capabilities):
    /// - segmentation offload: a `gso_max_size` the user never set becomes the device's; one
    ///   the user chose is kept if the device takes packets that large, and is otherwise
    ///   refused with [`StackError::GsoMaxSize`];
    /// - transmit checksum offload (`tx_checksum_offload`) is on exactly when the device
    ///   completes partial checksums
    ///   ([`DeviceCapabilities::tx_checksum_partial`](crate::DeviceCapabilities::tx_checksum_partial));
    /// - receive checksum offload needs no setting: the device reports it per packet.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn new<D: Device>(
        mut config: Config,
        device: D,
        addresses: &[IpAddr],
    ) -> Result<Stack, StackError> {
        let caps = device.capabilities();
        match config.gso_max_size_choice() {
            None => {
                config.gso_max_size(caps.gso_max_size);
            }
            Some(requested) if requested > caps.gso_max_size => {
                return Err(StackError::GsoMaxSize {
                    requested,
                    device: caps.gso_max_size,
                });
            }
            Some(_) => {}
        }
        config.tx_checksum_offload(caps.tx_checksum_partial);
        let endpoint = Endpoint::new(config, addresses);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                endpoint,
                start: tokio::time::Instant::now(),
                conns: HashMap::new(),
                listeners: HashMap::new(),
                driver_waker: None,
                stopping: false,
                driver_gone: false,
                device_error: None,
                shutting_down: false,
                idle_wakers: Vec::new(),
                intercepted: VecDeque::new(),
                intercept_wakers: Vec::new(),
                udp: HashMap::new(),
                udp_send_wakers: Vec::new(),
                udp_intercept_wakers: Vec::new(),
            }),
        });
        Driver::spawn(Arc::clone(&shared), device);
        Ok(Stack {
            handle: Arc::new(StackHandle { shared }),
        })
    }

    /// Closes the stack gracefully and waits, for at most `timeout`, until every byte written
    /// has been acknowledged and every connection has sent its FIN and seen it acknowledged.
    ///
    /// Listeners close (connections they had not handed out yet are reset, as closing a
    /// kernel listener resets them); every open stream sends its FIN after what it has
    /// queued, as [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) would;
    /// new connections and listeners are refused. Streams can still be read, so what the
    /// peers send until they close still arrives. If the time runs out, the connections
    /// still unfinished are reset, so that no peer waits on them, and the result is
    /// `TimedOut`.
    ///
    /// This is the way to end a program that wrote something it wants delivered: a stack
    /// lives in its process, and its connections end with the tokio runtime. A stack whose
    /// last handle is dropped with data still in flight keeps delivering it only while the
    /// runtime runs (for at most a minute, then resets), and when the runtime itself shuts
    /// down (returning from `main`), whatever is unfinished is reset at once.
    ///
    /// ```no_run
    /// # async fn demo(stack: synack_tokio::Stack, mut stream: synack_tokio::TcpStream) -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// stream.write_all(b"the last response").await?;
    /// drop(stream);
    /// stack.shutdown(Duration::from_secs(10)).await?; // delivered and acknowledged
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> io::Result<()> {
        {
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            let now = inner.now();
            inner.shutting_down = true;
            for (&l, state) in inner.listeners.iter_mut() {
                let _ = inner.endpoint.close_listener(now, l);
                for w in state.accept_wakers.drain(..) {
                    w.wake();
                }
            }
            for (&h, c) in inner.conns.iter_mut() {
                if inner.endpoint.shutdown(h).is_ok() {
                    c.write_shutdown = true;
                }
            }
            inner.wake_driver();
        }
        let idle = std::future::poll_fn(|cx| self.poll_idle(cx));
        match tokio::time::timeout(timeout, idle).await {
            Ok(done) => done,
            Err(_) => {
                let mut inner = self.lock()?;
                let unfinished = inner.endpoint.unfinished_count();
                inner.endpoint.abort_unfinished();
                inner.wake_driver();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("synack: {unfinished} connections unfinished after {timeout:?}; reset"),
                ))
            }
        }
    }

    /// Ready once no connection is unfinished (see [`Stack::shutdown`]).
    fn poll_idle(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock()?;
        if inner.endpoint.unfinished_count() == 0 {
            return Poll::Ready(Ok(()));
        }
        register_many(&mut inner.idle_wakers, cx);
        inner.wake_driver();
        Poll::Pending
    }

    /// A snapshot of the core's counters.
    pub fn stats(&self) -> Stats {
        self.with_endpoint(|e| e.stats().clone())
    }

    /// Connections the stack holds in every state, TIME-WAIT included: a bound on its state,
    /// for monitoring (and for tests that flood it).
    pub fn connection_count(&self) -> usize {
        self.with_endpoint(|e| e.connection_count())
    }

    /// Bytes the connections hold in their buffers, and the UDP datagrams queued, as counted
    /// against `Config::max_memory` (see [`synack_core::Endpoint::memory`]).
    pub fn memory(&self) -> usize {
        self.with_endpoint(|e| e.memory())
    }

    /// Where the stack's memory goes, for sizing a server: buffered bytes against the cap,
    /// the heap the buffers hold, the connections' own state, and whether the stack is
    /// under memory pressure (see [`synack_core::Endpoint::memory_usage`]). It walks every
    /// connection: call it for monitoring, not per packet.
    pub fn memory_usage(&self) -> MemoryUsage {
        self.with_endpoint(|e| e.memory_usage())
    }

    /// Read something from the stack's configuration.
    pub(crate) fn with_config<T>(&self, f: impl FnOnce(&Config) -> T) -> T {
        self.with_endpoint(|e| f(e.config()))
    }

    /// Read something from the endpoint, even if a panic poisoned the lock.
    fn with_endpoint<T>(&self, f: impl FnOnce(&synack_core::Endpoint) -> T) -> T {
        match self.handle.shared.inner.lock() {
            Ok(inner) => f(&inner.endpoint),
            Err(poisoned) => f(&poisoned.into_inner().endpoint),
        }
    }

    /// Locks the shared state for a user command; fails if the driver is gone or panicked.
    pub(crate) fn lock(&self) -> io::Result<MutexGuard<'_, Inner>> {
        let inner = self
            .handle
            .shared
            .inner
            .lock()
            .map_err(|_| io::Error::other("synack: the stack's driver panicked"))?;
        if inner.driver_gone {
            return Err(inner.gone_error());
        }
        Ok(inner)
    }

    /// Locks the shared state to release a handle in a `Drop`: `None` if a panic poisoned it
    /// (the core may be inconsistent, so we leave it alone).
    pub(crate) fn lock_for_drop(&self) -> Option<MutexGuard<'_, Inner>> {
        self.handle.shared.inner.lock().ok()
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack").finish_non_exhaustive()
    }
}
