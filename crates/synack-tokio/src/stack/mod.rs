//! [`Stack`]: the user's handle on the stack's shards, and the state each shares with its
//! driver task.
//!
//! After quinn: each shard's core [`Endpoint`] lives in an `Arc<Mutex<Inner>>` together with
//! the wakers of every task waiting on it. User handles lock the mutex of the shard their
//! connection lives on, issue one command to the core, register a waker if the command would
//! block, and wake that shard's driver so that it flushes whatever the command produced. The
//! driver locks the same mutex to feed packets and timeouts in and to drain events, waking
//! the tasks the events concern. The mutex is a std one and is never held across an `.await`,
//! so no lock is ever held while a task sleeps. Shards share no lock: see [`crate::shard`]
//! for how flows, listeners and UDP are spread over them.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use synack_core::{Config, ConnectionHandle, Endpoint, Error, MemoryUsage, SocketOptions, Stats};

use tracing::{debug, info, warn};

use crate::device::Device;
use crate::driver::{Driver, MtuPolicy, Router};
use crate::lookup::AddrLookup;
use crate::shard::{Flows, Handoff, ShardStats, HANDOFF_QUEUE};
use crate::state::{register_many, HandleMap, Inner, Shared, ORPHAN_LINGER};

mod bind;
mod builder;

pub(crate) use bind::PortHold;
use builder::default_workers;
pub use builder::{StackBuilder, StackError};

/// A handle on a running user-space TCP/IP stack.
///
/// Cloning is cheap (an `Arc`). Every clone, and every [`TcpStream`](crate::TcpStream),
/// [`TcpListener`](crate::TcpListener) and [`UdpSocket`](crate::UdpSocket) made from it,
/// keeps the stack alive. When the last of
/// them is dropped, the driver task keeps finishing the connections that are still closing
/// (their data and FINs are delivered, retransmitted as needed) for up to a minute, resets
/// what is left, and stops. It runs only while the tokio runtime does: a program that wants
/// what it wrote delivered calls [`Stack::shutdown`] before it returns from `main`, since
/// a connection still unfinished when the runtime ends is reset if it needs more than its
/// FIN (data written and not yet acknowledged, or data never read), as no one is left to
/// retransmit it; an idle one sends its FIN, as a Linux socket does when its process exits.
#[derive(Clone)]
pub struct Stack {
    handle: Arc<StackHandle>,
}

/// The part whose drop means "no user is left": the drivers hold their `Shared` but not this.
struct StackHandle {
    /// One per worker; index = shard number (see [`crate::shard`]).
    shards: Vec<Arc<Shared>>,
    /// The keyed flow hash naming each flow's shard.
    flows: Arc<Flows>,
    /// Whether the device took the flow hash (see [`Stack::flows_steered`]).
    flows_steered: bool,
    /// The stack's addresses, in the order given: a connect from an unspecified address uses
    /// the first of the remote's family, as the core does.
    addresses: Vec<IpAddr>,
    /// The name of the link's interface, if the device has one
    /// ([`Device::interface_name`]): the one name `bind_device` takes.
    interface: Option<String>,
    /// Round robin over the shards for outbound connects.
    next_connect: AtomicUsize,
    /// Varies the start of each ephemeral port search.
    port_counter: AtomicU64,
    /// Held while a `bind` or a `listen` decides on a port, shard by shard: one decision at
    /// a time for the whole stack, as Linux decides under the port's bind-bucket lock.
    binding: Mutex<()>,
    /// What looks up the host names socket calls are given ([`Stack::set_resolver`]).
    #[cfg(feature = "hickory")]
    resolver: Mutex<Option<Arc<crate::integration::hickory::StackResolver>>>,
}

/// A [`Stack`] that does not keep it alive: what a resolver on the stack holds, so that a
/// stack holding its resolver is still dropped with its last user handle.
#[cfg(feature = "hickory")]
#[derive(Clone)]
pub(crate) struct WeakStack(std::sync::Weak<StackHandle>);

#[cfg(feature = "hickory")]
impl WeakStack {
    /// The stack, if a user handle still holds it; else `NotConnected`.
    pub(crate) fn upgrade(&self) -> io::Result<Stack> {
        self.0
            .upgrade()
            .map(|handle| Stack { handle })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "synack: the stack is gone (every handle on it was dropped)",
                )
            })
    }
}

impl Drop for StackHandle {
    fn drop(&mut self) {
        for shared in &self.shards {
            let Ok(mut inner) = shared.inner.lock() else {
                continue;
            };
            let unfinished = inner.endpoint.unfinished_count();
            if unfinished > 0 && !inner.shutting_down && !inner.driver_gone {
                warn!(
                    unfinished,
                    unacknowledged_bytes = inner.endpoint.unfinished_send_queued(),
                    "synack: the last handle on the stack is gone while connections still \
                     deliver data or their FIN; they finish only while the tokio runtime \
                     keeps running (and are reset after {} s). Call `Stack::shutdown().await` \
                     before returning from main.",
                    ORPHAN_LINGER.as_secs()
                );
            }
            inner.stopping = true;
            inner.wake_driver();
        }
    }
}

impl Stack {
    /// A [`StackBuilder`], for a stack configured step by step.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// Spawns the driver tasks on the current tokio runtime, one per worker: as many as the
    /// machine has cores, clamped to the queues the device offers (see
    /// [`StackBuilder::workers`] to choose).
    ///
    /// The stack owns `addresses` and answers packets sent to them. The core is configured
    /// from `config` and from the device's [`capabilities`](Device::capabilities):
    /// - the MTU: one the user never set becomes the device's; one the user chose is kept if
    ///   the device's is as large, and is otherwise refused with [`StackError::Mtu`];
    /// - segmentation offload: a `gso_max_size` the user never set becomes the device's; one
    ///   the user chose is kept if the device takes packets that large, and is otherwise
    ///   refused with [`StackError::GsoMaxSize`];
    /// - transmit checksum offload (`tx_checksum_offload`) is on exactly when the device
    ///   completes partial checksums
    ///   ([`DeviceCapabilities::tx_checksum_partial`](crate::DeviceCapabilities::tx_checksum_partial));
    /// - receive checksum offload needs no setting: the device reports it per packet.
    ///
    /// With several workers each shard's endpoint gets an equal share of
    /// [`Config::max_memory`], so that the stack as a whole stays within it; other limits
    /// (`max_connections`, backlogs) apply per shard.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn new<D: Device>(
        config: Config,
        device: D,
        addresses: &[IpAddr],
    ) -> Result<Stack, StackError> {
        Stack::start(config, device, addresses, None, true)
    }

    fn start<D: Device>(
        mut config: Config,
        mut device: D,
        addresses: &[IpAddr],
        workers: Option<usize>,
        steer: bool,
    ) -> Result<Stack, StackError> {
        let caps = device.capabilities();
        let mtu = MtuPolicy {
            chosen: config.mtu_choice(),
            ipv6: addresses.iter().any(IpAddr::is_ipv6),
            seen: None,
        };
        match config.mtu_choice() {
            None => {
                config.mtu(caps.mtu.min(synack_core::MAX_MTU));
            }
            Some(requested) if requested > caps.mtu => {
                return Err(StackError::Mtu {
                    requested,
                    device: caps.mtu,
                });
            }
            Some(_) => {}
        }
        // Checked once the device's MTU is in, which is held to the same floor as a chosen
        // one; and a link that carries IPv6 carries 1280-byte packets (RFC 8200 §5).
        config.check().map_err(StackError::Config)?;
        if config.get_mtu() < synack_core::IPV6_MIN_MTU && addresses.iter().any(IpAddr::is_ipv6) {
            return Err(StackError::Config(synack_core::InvalidConfig {
                setting: "mtu",
                reason: "below 1280 bytes, IPv6's minimum (RFC 8200 §5), with an IPv6 address",
            }));
        }
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
        let interface = device.interface_name();
        if config.get_broadcast_addresses().is_empty() {
            config.broadcast_addresses(device.broadcast_addresses());
        }

        let wanted = workers.unwrap_or_else(default_workers).max(1);
        let most = device.max_queues().max(1);
        if workers.is_some_and(|asked| asked > most) {
            // Asked for explicitly: say what runs instead (the default is clamped quietly).
            warn!(
                asked = wanted,
                workers = most,
                "synack: the device has at most {most} queue(s); running {most} worker(s)"
            );
        }
        let wanted = wanted.min(most);
        let mut devices = Vec::new();
        while devices.len() + 1 < wanted {
            match device.open_queue() {
                Ok(queue) => devices.push(queue),
                Err(e) => {
                    warn!(
                        error = %e,
                        workers = devices.len() + 1,
                        "synack: could not open another device queue; running fewer workers"
                    );
                    break;
                }
            }
        }
        devices.insert(0, device);
        let n = devices.len();
        if n > 1 {
            let share = (config.get_max_memory() / n).max(1);
            config.max_memory(share);
        }

        let flows = Arc::new(Flows::new(n));
        // The kernel delivers each flow to its shard if the device lets us tell it how;
        // otherwise the shards hand packets to each other (see `crate::shard`).
        let flows_steered = n > 1
            && steer
            && match devices[0].steer_flows(flows.steering()) {
                Ok(()) => {
                    debug!(
                        workers = n,
                        "synack: the device steers each flow to its shard"
                    );
                    true
                }
                Err(e) => {
                    info!(
                        error = %e,
                        "synack: the device cannot steer flows to their shards; packets on \
                         the wrong queue are handed over"
                    );
                    false
                }
            };
        let start = tokio::time::Instant::now();
        // One TCP Fast Open key for every shard: a client's next connection may hash to
        // another shard, which must accept the cookie the first one gave (RFC 7413 §4.1.2).
        let fast_open_key =
            synack_core::FastOpenKey::new(synack_core::isn::Secrets::new(None).fast_open_key());
        let shards: Vec<Arc<Shared>> = (0..n)
            .map(|_| {
                Arc::new(Shared {
                    inner: Mutex::new(Inner {
                        endpoint: {
                            let mut e = Endpoint::new(config.clone(), addresses);
                            e.set_fast_open_key(fast_open_key);
                            // UDP is caught only once the application asks for it
                            // (`Stack::intercept_udp`); until then a datagram no socket
                            // takes is answered as at a closed port.
                            e.set_udp_interception(false);
                            e
                        },
                        start,
                        conns: HandleMap::default(),
                        listeners: HandleMap::default(),
                        driver_waker: None,
                        stopping: false,
                        driver_gone: false,
                        device_released: false,
                        closed_wakers: Vec::new(),
                        device_error: None,
                        shutting_down: false,
                        idle_wakers: Vec::new(),
                        intercepted: VecDeque::new(),
                        last_intercepted: None,
                        intercept_wakers: Vec::new(),
                        udp: HandleMap::default(),
                        udp_send_wakers: Vec::new(),
                        udp_intercept_wakers: Vec::new(),
                        udp_interceptors: std::sync::Weak::<()>::new(),
                        handed_off: 0,
                        handoffs_received: 0,
                        handoff_dropped: 0,
                    }),
                })
            })
            .collect();
        if n == 1 {
            let device = devices.pop().expect("one device");
            Driver::spawn(Arc::clone(&shards[0]), device, None, mtu);
        } else {
            let (senders, inboxes): (Vec<_>, Vec<_>) = (0..n)
                .map(|_| tokio::sync::mpsc::channel::<Handoff>(HANDOFF_QUEUE))
                .unzip();
            for (me, (device, inbox)) in devices.into_iter().zip(inboxes).enumerate() {
                let router = Router {
                    flows: Arc::clone(&flows),
                    me,
                    peers: senders.clone(),
                    inbox,
                };
                Driver::spawn(Arc::clone(&shards[me]), device, Some(router), mtu);
            }
        }
        Ok(Stack {
            handle: Arc::new(StackHandle {
                shards,
                flows,
                flows_steered,
                addresses: addresses.to_vec(),
                interface,
                next_connect: AtomicUsize::new(0),
                port_counter: AtomicU64::new(0),
                binding: Mutex::new(()),
                #[cfg(feature = "hickory")]
                resolver: Mutex::new(None),
            }),
        })
    }

    /// The stack's addresses, in the order given.
    #[cfg(feature = "hickory")]
    pub(crate) fn addresses(&self) -> &[IpAddr] {
        &self.handle.addresses
    }

    /// A stack at `address` (one worker, default configuration) on one end of a memory
    /// link, and the link's other end: what unit tests that need a running stack start from.
    #[cfg(test)]
    pub(crate) fn on_memory_link(address: &str) -> (Stack, crate::device::MemoryDevice) {
        let (ours, other) = crate::device::MemoryDevice::pair();
        let stack = Stack::builder()
            .address(address.parse().expect("an IP address"))
            .build(ours)
            .expect("a stack on a memory link");
        (stack, other)
    }

    /// A handle that does not keep the stack alive.
    #[cfg(feature = "hickory")]
    pub(crate) fn downgrade(&self) -> WeakStack {
        WeakStack(Arc::downgrade(&self.handle))
    }

    /// Has `resolver` look up the host names that `connect`, `bind`, `send_to` and
    /// [`lookup_host`](crate::lookup_host) are given (`"files.synack.test:80"`,
    /// `("files.synack.test", 80)`), as tokio::net's calls look them up, but through this
    /// stack: build it with [`integration::hickory::resolver`](crate::integration::hickory::resolver)
    /// or [`StackResolver::with_config`](crate::integration::hickory::StackResolver::with_config)
    /// (on [`StackRuntime`](crate::integration::hickory::StackRuntime)), so that its queries
    /// leave through the stack's device, never through the host's resolver and network.
    /// `None` takes it away again: names are then `InvalidInput`, as they are by default.
    ///
    /// A resolver built on this stack does not keep it alive: the stack stops when its
    /// last other handle is dropped, resolver or not, but for the TCP connection to a name
    /// server it may have open, a stream on the stack, which closes itself after
    /// [`TCP_IDLE_CLOSE`](crate::integration::hickory::TCP_IDLE_CLOSE) (10 s) without a
    /// query.
    #[cfg(feature = "hickory")]
    pub fn set_resolver(&self, resolver: Option<crate::integration::hickory::StackResolver>) {
        *self
            .handle
            .resolver
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = resolver.map(Arc::new);
    }

    /// The addresses of host `name` (not an IP address) for `port`, as the resolver
    /// ([`set_resolver`](Self::set_resolver)) finds them: `NotFound` if it finds none,
    /// `InvalidInput` without one.
    pub(crate) async fn lookup(&self, name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        #[cfg(feature = "hickory")]
        if let Some(resolver) = self.resolver() {
            return crate::integration::hickory::lookup(&resolver, name, port).await;
        }
        let _ = port;
        Err(Self::no_resolver(name))
    }

    #[cfg(feature = "hickory")]
    fn resolver(&self) -> Option<Arc<crate::integration::hickory::StackResolver>> {
        self.handle
            .resolver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What a host name is without a resolver.
    fn no_resolver(name: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name:?} is a host name, and the stack has no resolver: synack looks names up \
                 only through the stack (Stack::set_resolver, the `hickory` feature), never \
                 with the host's resolver; or give an IP address"
            ),
        )
    }

    /// The lookups of host `name`'s addresses for `port` that a connection to it races
    /// (RFC 8305 §3): the AAAA and the A query apart, the preferred first (see
    /// `integration::hickory`); `InvalidInput` without a resolver.
    pub(crate) fn lookups(&self, name: &str, port: u16) -> io::Result<Vec<AddrLookup>> {
        #[cfg(feature = "hickory")]
        if let Some(resolver) = self.resolver() {
            return crate::integration::hickory::lookups(&resolver, name, port);
        }
        let _ = port;
        Err(Self::no_resolver(name))
    }

    /// The name of the interface the stack's device stands for (a TUN's), if it has one.
    pub fn interface_name(&self) -> Option<&str> {
        self.handle.interface.as_deref()
    }

    /// What a socket's `bind_device` (SO_BINDTODEVICE) with `interface` leaves it bound to,
    /// as Linux's `sock_setbindtodevice` reads the name: at most 15 bytes, up to a NUL;
    /// `None` or an empty name unbinds (`Ok(None)`). A stack has one link, so the one name
    /// it takes is its interface's ([`interface_name`](Self::interface_name)); any other is
    /// ENODEV, as Linux's for a name no interface has.
    pub(crate) fn device_binding(&self, interface: Option<&[u8]>) -> io::Result<Option<Vec<u8>>> {
        let name = interface.unwrap_or_default();
        let name = &name[..name.len().min(libc::IFNAMSIZ - 1)];
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if name.is_empty() {
            return Ok(None);
        }
        match self.interface_name() {
            Some(ours) if ours.as_bytes() == name => Ok(Some(name.to_vec())),
            _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        }
    }

    /// How many shards (workers) the stack runs.
    pub fn workers(&self) -> usize {
        self.handle.shards.len()
    }

    /// Whether the device delivers each TCP flow on its owner's queue
    /// ([`Device::steer_flows`]): a multi-queue TUN does when the kernel accepts its steering
    /// program. Without it, packets that arrive on another shard's queue are handed over
    /// ([`ShardStats::handed_off`]). Always `false` with one worker, which needs no steering.
    pub fn flows_steered(&self) -> bool {
        self.handle.flows_steered
    }

    /// Closes the stack gracefully and waits, for at most `timeout`, until every byte written
    /// has been acknowledged and every connection has sent its FIN and seen it acknowledged.
    ///
    /// Listeners close (connections they had not handed out yet are reset, as closing a kernel
    /// listener resets them), and a stack in transparent mode refuses with an RST the SYNs it
    /// holds and every SYN after (`Interceptor::next` fails); every open stream sends its FIN
    /// after what it has queued, as
    /// [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) would, and a task
    /// blocked writing to one gets `BrokenPipe` at once (as a kernel socket's writer gets
    /// EPIPE from `shutdown(2)`); a connect still
    /// waiting for its SYN-ACK ends at once with `ConnectionReset`, as Linux's `shutdown(2)`
    /// ends a socket's connect; new connections and listeners are refused. Streams can still
    /// be read, so what the peers send until they close still arrives. If the time runs out,
    /// the connections still unfinished are reset, so that no peer waits on them, and the
    /// result is `TimedOut`.
    ///
    /// This is the way to end a program that wrote something it wants delivered: a stack
    /// lives in its process, and its connections end with the tokio runtime. A stack whose
    /// last handle is dropped with data still in flight keeps delivering it only while the
    /// runtime runs (for at most a minute, then resets), and when the runtime itself shuts
    /// down (returning from `main`), whatever is unfinished is reset at once, but for idle
    /// connections (everything written acknowledged, nothing unread), which send their FIN.
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
        // A shard whose driver already stopped (its queue failed, or it panicked) has nothing
        // left to shut down; the others are shut down all the same, and its error is the
        // result once they are done.
        let mut stopped = None;
        for shard in 0..self.workers() {
            let mut guard = match self.lock_shard(shard) {
                Ok(guard) => guard,
                Err(e) => {
                    stopped.get_or_insert(e);
                    continue;
                }
            };
            let inner = &mut *guard;
            let now = inner.now();
            inner.shutting_down = true;
            let mut wakers = Vec::new();
            for (&l, state) in inner.listeners.iter_mut() {
                let _ = inner.endpoint.close_listener(now, l);
                wakers.append(&mut state.accept_wakers);
            }
            // A task blocked writing (the peer stopped reading) learns of the shutdown now,
            // with `BrokenPipe`, not when the time runs out: Linux's `inet_shutdown` wakes
            // the socket's waiters (`sk_state_change`), and a kernel socket's writer gets
            // EPIPE and its `writable()` returns.
            for (&h, c) in inner.conns.iter_mut() {
                if inner.endpoint.shutdown(h).is_ok() {
                    c.write_shutdown = true;
                    c.take_writers(&mut wakers);
                }
            }
            // Transparent mode: the SYNs held for a decision are refused, as a closing
            // listener resets what it had not handed out (and those that come later are
            // refused as they arrive, `queue_intercepted`); `Interceptor::next` fails.
            let held: Vec<_> = inner.endpoint.held_syns().collect();
            for syn in held {
                let _ = inner.endpoint.refuse_intercepted(syn);
            }
            inner.intercepted.clear();
            wakers.append(&mut inner.intercept_wakers);
            // And `UdpInterceptor::recv`, once it has taken what is queued.
            wakers.append(&mut inner.udp_intercept_wakers);
            inner.wake_driver();
            drop(guard);
            for w in wakers {
                w.wake();
            }
        }
        let idle = std::future::poll_fn(|cx| self.poll_idle(cx));
        match tokio::time::timeout(timeout, idle).await {
            Ok(done) => {
                // A shard whose driver stopped while this waited (its device vanished, it
                // panicked) counted as idle: what it had unacknowledged is lost with it,
                // and the shutdown did not deliver it.
                for shard in 0..self.workers() {
                    if let Err(e) = self.lock_shard(shard) {
                        stopped.get_or_insert(e);
                    }
                }
                done.and(stopped.map_or(Ok(()), Err))
            }
            Err(_) => {
                let mut unfinished = 0;
                for shard in 0..self.workers() {
                    let Ok(mut inner) = self.lock_shard(shard) else {
                        continue;
                    };
                    unfinished += inner.endpoint.unfinished_count();
                    inner.endpoint.abort_unfinished();
                    inner.wake_driver();
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("synack: {unfinished} connections unfinished after {timeout:?}; reset"),
                ))
            }
        }
    }

    /// Resolves once every driver of the stack has stopped and dropped its device: a TUN's
    /// file descriptor is closed, and an interface the stack created is gone with it. The
    /// drivers stop once every handle on the stack is dropped (the `Stack`, its clones, and
    /// the sockets made on it) and the connections left have finished (for at most 60 s, then
    /// they are reset), when the device fails, or when the runtime shuts down. A program that
    /// builds a new stack on the same interface (a VPN reconnecting, a proxy reloading its
    /// configuration) waits here first: until then the name is taken (`TunDevice::create`
    /// fails with `AlreadyExists`) and an attached interface is still read by this stack.
    ///
    /// The future holds no handle on the stack, so it may be taken before the last handle is
    /// dropped:
    ///
    /// ```no_run
    /// # async fn demo(stack: synack_tokio::Stack) -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// stack.shutdown(Duration::from_secs(10)).await?;
    /// let closed = stack.closed();
    /// drop(stack);
    /// closed.await; // the device is gone: a new stack may take its interface
    /// # Ok(()) }
    /// ```
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shards = self.handle.shards.clone();
        let listed_in = shards.clone();
        // A wait dropped unfinished (the losing branch of a `select!`, as a connection
        // task's shutdown race is written) takes its waker out again: the list is emptied
        // only when the device is released, and held every such task's waker till then.
        crate::state::wait_listed(
            move |cx| {
                let mut released = true;
                for shared in &shards {
                    let mut inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
                    if !inner.device_released {
                        register_many(&mut inner.closed_wakers, cx);
                        released = false;
                    }
                }
                if released {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            },
            move |waker| {
                let mut found = false;
                for shared in &listed_in {
                    let mut inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
                    found |= crate::state::unlist(&mut inner.closed_wakers, waker);
                }
                found
            },
        )
    }

    /// Ready once no connection is unfinished on any shard still running (see
    /// [`Stack::shutdown`]).
    fn poll_idle(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let mut idle = true;
        for shard in 0..self.workers() {
            let Ok(mut inner) = self.lock_shard(shard) else {
                continue;
            };
            if inner.endpoint.unfinished_count() > 0 {
                register_many(&mut inner.idle_wakers, cx);
                inner.wake_driver();
                idle = false;
            }
        }
        if idle {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// A snapshot of the core's counters, summed over the shards. A packet a shard read for
    /// another's flow and could not hand over (its channel full: see
    /// [`ShardStats::handoff_dropped`]) reached no endpoint: it is counted here in
    /// `packets_in` and `drop_other`, so that every packet read is counted and every drop
    /// has its reason.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for shared in &self.handle.shards {
            let inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
            total.merge(inner.endpoint.stats());
            total.packets_in += inner.handoff_dropped;
            total.drop_other += inner.handoff_dropped;
        }
        total
    }

    /// Each shard's counters, its connections and what it handed to other shards: how
    /// evenly the flows spread and how many packets arrived on a queue that did not own
    /// them (see [`crate::shard`]).
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.handle
            .shards
            .iter()
            .map(|shared| {
                let inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
                ShardStats {
                    stats: inner.endpoint.stats().clone(),
                    connections: inner.endpoint.connection_count(),
                    handed_off: inner.handed_off,
                    handoffs_received: inner.handoffs_received,
                    handoff_dropped: inner.handoff_dropped,
                }
            })
            .collect()
    }

    /// Connections the stack holds in every state, TIME-WAIT included: a bound on its state,
    /// for monitoring (and for tests that flood it). Summed over the shards.
    pub fn connection_count(&self) -> usize {
        let mut total = 0;
        self.each_endpoint(|e| total += e.connection_count());
        total
    }

    /// Bytes the connections hold in their buffers, and the UDP datagrams queued, as counted
    /// against `Config::max_memory` (see [`synack_core::Endpoint::memory`]). Summed over the
    /// shards.
    pub fn memory(&self) -> usize {
        let mut total = 0;
        self.each_endpoint(|e| total += e.memory());
        total
    }

    /// Where the stack's memory goes, for sizing a server: buffered bytes against the cap,
    /// the heap the buffers hold, the connections' own state, and whether the stack is
    /// under memory pressure (see [`synack_core::Endpoint::memory_usage`]). It walks every
    /// connection: call it for monitoring, not per packet. Summed over the shards (the cap
    /// is the sum of their shares; pressure, whether any shard is under it).
    pub fn memory_usage(&self) -> MemoryUsage {
        let mut total: Option<MemoryUsage> = None;
        self.each_endpoint(|e| {
            let usage = e.memory_usage();
            match &mut total {
                Some(t) => t.merge(&usage),
                None => total = Some(usage),
            }
        });
        total.unwrap_or_default()
    }

    /// Read something from the stack's configuration (shard 0's: they differ only in their
    /// share of `max_memory`).
    pub(crate) fn with_config<T>(&self, f: impl FnOnce(&Config) -> T) -> T {
        let inner = self.handle.shards[0]
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(inner.endpoint.config())
    }

    /// Sets the key TCP Fast Open listeners make and check their cookies with, on every
    /// shard (Linux's `net.ipv4.tcp_fastopen_key`; see
    /// [`TcpSocket::set_fast_open`](crate::TcpSocket::set_fast_open)). The stack starts
    /// with a random one; servers behind one address (a load balancer's pool) give each
    /// other's clients Fast Open by sharing a key, and a
    /// [backup key](synack_core::FastOpenKey::with_backup) keeps the old cookies working
    /// through a rotation.
    pub fn set_fast_open_key(&self, key: synack_core::FastOpenKey) {
        for shared in &self.handle.shards {
            let mut inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.endpoint.set_fast_open_key(key);
        }
    }

    /// A bind's decision, with every shard locked in shard order (the one order in which
    /// more than one is ever held), so that it sees every shard's connections at once (each
    /// look is a lookup of the port, not a walk) and no connect on another shard takes the
    /// port meanwhile: `decide` runs on shard 0's endpoint with the others' to look at, then
    /// `after` on each of the others with what it decided, before any lock goes.
    pub(crate) fn decide_on_every_shard<T: Copy>(
        &self,
        decide: impl FnOnce(&mut Endpoint, &[&Endpoint]) -> Result<T, Error>,
        mut after: impl FnMut(&mut Endpoint, T),
    ) -> io::Result<T> {
        let mut shards = (0..self.workers())
            .map(|s| self.lock_shard(s))
            .collect::<io::Result<Vec<_>>>()?;
        let (first, rest) = shards.split_first_mut().expect("a stack has a shard");
        let others: Vec<&Endpoint> = rest.iter().map(|s| &s.endpoint).collect();
        let decided = decide(&mut first.endpoint, &others)?;
        for shard in rest.iter_mut() {
            after(&mut shard.endpoint, decided);
        }
        Ok(decided)
    }

    /// Taken by a `bind` or `listen` for as long as it holds or checks a port on the shards,
    /// so that two of them racing for one port never each find the other's hold on some
    /// shard and both fail (Linux lets one win). Never taken under a shard's lock.
    pub(crate) fn lock_binding(&self) -> MutexGuard<'_, ()> {
        self.handle
            .binding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Visits every shard's endpoint, even if a panic poisoned a lock.
    fn each_endpoint(&self, mut f: impl FnMut(&synack_core::Endpoint)) {
        for shared in &self.handle.shards {
            let inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
            f(&inner.endpoint);
        }
    }

    /// Locks one shard's state for a user command; fails if its driver is gone or panicked.
    pub(crate) fn lock_shard(&self, shard: usize) -> io::Result<MutexGuard<'_, Inner>> {
        let inner = self.handle.shards[shard]
            .inner
            .lock()
            .map_err(|_| io::Error::other("synack: the stack's driver panicked"))?;
        if inner.driver_gone {
            return Err(inner.gone_error());
        }
        Ok(inner)
    }

    /// Locks the shard UDP lives on, shard 0 (see [`crate::shard`]), for a UDP command.
    pub(crate) fn lock_udp(&self) -> io::Result<MutexGuard<'_, Inner>> {
        self.lock_shard(0)
    }

    /// Locks one shard's state to release a handle in a `Drop`: `None` if a panic poisoned
    /// it (the core may be inconsistent, so we leave it alone).
    pub(crate) fn lock_for_drop(&self, shard: usize) -> Option<MutexGuard<'_, Inner>> {
        self.handle.shards[shard].inner.lock().ok()
    }

    /// Opens a connection to `remote` on the shard that will own it, locked, for the caller
    /// to register: a bound port opens on the shard its 4-tuple hashes to; otherwise the
    /// shards take turns, and the ephemeral port is one whose 4-tuple hashes to the chosen
    /// shard, so that the kernel's replies, and every later packet, belong to it.
    pub(crate) fn open_connection(
        &self,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        options: &SocketOptions,
    ) -> io::Result<(usize, MutexGuard<'_, Inner>, ConnectionHandle)> {
        let n = self.workers();
        // An unspecified destination is this host, as on Linux (the core's rule, applied
        // first here so that the shard is chosen for the flow as it will be).
        let bound_ip = local.map(|l| l.ip());
        let remote = synack_core::resolve_unspecified(remote, bound_ip, &self.handle.addresses);
        // TCP Fast Open's client cache is the host's on Linux; here each shard keeps its
        // own, so a connect takes what any shard learned of the server: the cookie one
        // shard's connection was given serves the next connect, on whichever shard it lands.
        let fast_open = match options.fast_open_connect {
            Some(true) if n > 1 => self.fast_open_cached(remote.ip())?,
            _ => None,
        };
        let learn = |endpoint: &mut synack_core::Endpoint| {
            if let Some(cached) = fast_open {
                endpoint.set_fast_open_cached(remote.ip(), cached);
            }
        };
        let local_ip = match local {
            Some(l) if !l.ip().is_unspecified() => Some(l.ip()),
            // To one of our own addresses (looped back in the core), from it.
            _ if self.handle.addresses.contains(&remote.ip()) => Some(remote.ip()),
            _ => self
                .handle
                .addresses
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == remote.is_ipv4()),
        };
        let (Some(local_ip), true) = (local_ip, n > 1) else {
            // One shard, or no address to hash with: the core decides (and reports any error).
            let shard = 0;
            let mut inner = self.lock_shard(shard)?;
            inner.check_open()?;
            let now = inner.now();
            let h = inner.endpoint.connect_with(now, remote, local, options)?;
            return Ok((shard, inner, h));
        };
        let port = local.map_or(0, |l| l.port());
        if port != 0 {
            let bound = SocketAddr::new(local_ip, port);
            let shard = self.handle.flows.owner(bound, remote);
            let mut inner = self.lock_shard(shard)?;
            inner.check_open()?;
            let now = inner.now();
            learn(&mut inner.endpoint);
            let h = inner
                .endpoint
                .connect_with(now, remote, Some(bound), options)?;
            return Ok((shard, inner, h));
        }
        // Shards in turn, each searching the ports whose flows it owns; when one has none
        // left the next is searched, so that AddrNotAvailable means the whole range is taken,
        // as on Linux, not one shard's share of it. Every shard is locked, in shard order,
        // for the search: a port that a bind gave to a connection on any shard is no
        // ephemeral port (Linux's bind bucket is the host's), and no bind decides meanwhile.
        let mut shards = (0..n)
            .map(|s| self.lock_shard(s))
            .collect::<io::Result<Vec<_>>>()?;
        for inner in &shards {
            inner.check_open()?;
        }
        if !shards[0].endpoint.may_own(local_ip) {
            return Err(Error::AddrNotAvailable.into());
        }
        let first = self.handle.next_connect.fetch_add(1, Ordering::Relaxed);
        let counter = self.handle.port_counter.fetch_add(1, Ordering::Relaxed);
        let start = self.handle.flows.port_start(remote, counter);
        for k in 0..n {
            let shard = first.wrapping_add(k) % n;
            let range = shards[shard].endpoint.config().get_ephemeral_ports();
            for port in self
                .handle
                .flows
                .ports_for(local_ip, remote, shard, range, start)
            {
                let bound_elsewhere = (shards.iter().enumerate())
                    .any(|(s, other)| s != shard && other.endpoint.port_bound_by_bind(port));
                if bound_elsewhere {
                    continue;
                }
                let inner = &mut shards[shard];
                let now = inner.now();
                let from = SocketAddr::new(local_ip, port);
                learn(&mut inner.endpoint);
                match (inner.endpoint).connect_from_ephemeral(now, remote, from, options) {
                    // A port an ephemeral connect may not take here (the address is ours:
                    // checked above).
                    Err(Error::AddrNotAvailable) => continue,
                    Err(e) => return Err(e.into()),
                    Ok(h) => return Ok((shard, shards.swap_remove(shard), h)),
                }
            }
        }
        Err(Error::AddrNotAvailable.into())
    }

    /// What the shards keep of `server` for TCP Fast Open's client side: an entry with a
    /// cookie if any shard has one, else any entry (see [`Stack::open_connection`]).
    fn fast_open_cached(&self, server: IpAddr) -> io::Result<Option<synack_core::FastOpenCached>> {
        let mut found = None;
        for shard in 0..self.workers() {
            let inner = self.lock_shard(shard)?;
            if let Some(cached) = inner.endpoint.fast_open_cached(server) {
                if inner.endpoint.fast_open_cookie(server).is_some() {
                    return Ok(Some(cached));
                }
                found.get_or_insert(cached);
            }
        }
        Ok(found)
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}
