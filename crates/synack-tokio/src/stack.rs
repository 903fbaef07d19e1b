//! [`Stack`]: the user's handle on one endpoint, and the state it shares with the driver task.
//!
//! After quinn: the core's [`Endpoint`] lives in an `Arc<Mutex<Inner>>` together with the
//! wakers of every task waiting on it. User handles lock the mutex, issue one command to the
//! core, register a waker if the command would block, and wake the driver so that it flushes
//! whatever the command produced. The driver locks the same mutex to feed packets and timeouts
//! in and to drain events, waking the tasks the events concern. The mutex is a std one and is
//! never held across an `.await`, so no lock is ever held while a task sleeps.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use synack_core::{Config, ConnectionHandle, Endpoint, Error, ListenerHandle, Stats};

use crate::device::Device;
use crate::driver::Driver;

/// A handle on a running user-space TCP/IP stack.
///
/// Cloning is cheap (an `Arc`). Every clone, and every [`TcpStream`](crate::TcpStream) and
/// [`TcpListener`](crate::TcpListener) made from it, keeps the stack alive; when the last of
/// them is dropped the driver task flushes the packets already queued and stops.
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
            inner.stopping = true;
            inner.wake_driver();
        }
    }
}

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
    /// The last user handle is gone: the driver should flush and stop.
    pub(crate) stopping: bool,
    /// The driver task has ended (device failure or runtime shutdown); commands fail.
    pub(crate) driver_gone: bool,
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

/// The error every command returns once the driver task has ended.
pub(crate) fn driver_gone() -> io::Error {
    io::Error::other("synack: the stack's driver task has stopped")
}

impl Stack {
    /// Spawns the driver task on the current tokio runtime.
    ///
    /// The stack owns `addresses` and answers packets sent to them. Segmentation offload
    /// follows the device: `config`'s `gso_max_size` is replaced by the device's
    /// [`Device::gso_max_size`].
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn new<D: Device>(mut config: Config, device: D, addresses: &[IpAddr]) -> Stack {
        config.gso_max_size(device.gso_max_size());
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
            }),
        });
        Driver::spawn(Arc::clone(&shared), device);
        Stack {
            handle: Arc::new(StackHandle { shared }),
        }
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

    /// Bytes the connections hold queued in their buffers, as counted against
    /// `Config::max_memory`.
    pub fn memory(&self) -> usize {
        self.with_endpoint(|e| e.memory())
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
            return Err(driver_gone());
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
