//! The state each shard's driver task shares with the user handles on it, behind the
//! shard's mutex (see [`crate::stack`] for how they use it): the core [`Endpoint`], the
//! runtime's view of its connections, listeners and UDP sockets, and the wakers of the tasks
//! waiting on them; and the helpers with which a task parks on that state and is woken.
//!
//! A leaf: it imports none of the modules that use it (`stack`, `driver`, the sockets), so
//! that the driver and the sockets depend on it and not on one another.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use synack_core::{ConnectionHandle, Endpoint, Error, ListenerHandle, SynHandle, UdpHandle};
use tokio::io::{Interest, Ready};

/// How long the driver keeps finishing the connections the application let go of, once
/// the last handle on the stack is gone: their queued data and FINs still go out and are
/// retransmitted as needed. Past it, what is left is reset.
pub(crate) const ORPHAN_LINGER: Duration = Duration::from_secs(60);

/// The maps from the core's handles to the runtime's state for them, looked up a few times a
/// packet and a read or write (waking a connection's tasks, registering a reader). Keyed by
/// handles the core hands out, never by anything a peer picks, so foldhash, as the core's
/// own tables use, rather than std's SipHash, which cost 140 instructions a lookup (three
/// lookups a request of a keep-alive HTTP connection; BENCHMARKS.md, thirty-ninth session).
pub(crate) type HandleMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Removes `key`'s entry, and gives back the room a peak grew the map to once it could hold
/// over four times what is left (by the core's rule for its own tables): a flood of
/// connections must not cost its memory for the stack's life.
pub(crate) fn remove_handle<K: Eq + std::hash::Hash, V>(
    map: &mut HandleMap<K, V>,
    key: &K,
) -> Option<V> {
    let value = map.remove(key);
    let room = 2 * map.len().max(64);
    if map.capacity() > 2 * room {
        map.shrink_to(room);
    }
    value
}

/// The state shared by user handles and the driver.
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
}

/// Everything behind the mutex.
pub(crate) struct Inner {
    pub(crate) endpoint: Endpoint,
    /// The origin of the core's virtual clock.
    pub(crate) start: tokio::time::Instant,
    /// Connections that a user handle (stream, half, pending connect) refers to.
    pub(crate) conns: HandleMap<ConnectionHandle, ConnState>,
    /// Listeners that a `TcpListener` refers to.
    pub(crate) listeners: HandleMap<ListenerHandle, ListenerState>,
    pub(crate) driver_waker: Option<Waker>,
    /// The last user handle is gone: the driver finishes the closing connections (for at
    /// most `ORPHAN_LINGER`), then stops.
    pub(crate) stopping: bool,
    /// The driver task has ended (device failure or runtime shutdown); commands fail.
    pub(crate) driver_gone: bool,
    /// The driver has dropped its device, after `driver_gone` (see [`Stack::closed`]).
    ///
    /// [`Stack::closed`]: crate::Stack::closed
    pub(crate) device_released: bool,
    /// Tasks in `Stack::closed`, woken once the device is dropped.
    pub(crate) closed_wakers: Vec<Waker>,
    /// Why the device failed, if it did: every command reports it from then on.
    pub(crate) device_error: Option<String>,
    /// `Stack::shutdown` began: no new connections or listeners.
    pub(crate) shutting_down: bool,
    /// Tasks in `Stack::shutdown`, woken when no connection is unfinished.
    pub(crate) idle_wakers: Vec<Waker>,
    /// Intercept mode: held SYNs announced and not yet handed to an `Interceptor`.
    pub(crate) intercepted: VecDeque<SynHandle>,
    /// The newest SYN ever queued in `intercepted`: after an event overflow, the core's held
    /// SYNs past it are the ones whose announcements were lost.
    pub(crate) last_intercepted: Option<SynHandle>,
    /// Tasks waiting in `Interceptor::next`.
    pub(crate) intercept_wakers: Vec<Waker>,
    /// UDP sockets that a `UdpSocket` refers to.
    pub(crate) udp: HandleMap<UdpHandle, UdpState>,
    /// Tasks whose datagram found the core's own-packet queue full (`UdpWritable`).
    pub(crate) udp_send_wakers: Vec<Waker>,
    /// Tasks waiting in `UdpInterceptor::recv` (`UdpIntercepted`).
    pub(crate) udp_intercept_wakers: Vec<Waker>,
    /// The live interceptors' shared token (shard 0's only): UDP is caught while one lives.
    /// A `udp::InterceptorToken`, which holds the `Stack`; named as `Any` here so that this
    /// module need not import `udp` (nor, through the token, `stack`), which import it.
    pub(crate) udp_interceptors: std::sync::Weak<dyn std::any::Any + Send + Sync>,
    /// Packets read here and handed to the shard owning their flow.
    pub(crate) handed_off: u64,
    /// Packets other shards handed here.
    pub(crate) handoffs_received: u64,
    /// Packets that could not be handed off (the owner's channel full or closed).
    pub(crate) handoff_dropped: u64,
}

/// The runtime's view of one connection.
pub(crate) struct ConnState {
    /// The task parked in `poll_read`.
    pub(crate) read_waker: Option<Waker>,
    /// The task parked in `poll_write`, or in `connect` waiting for the handshake.
    pub(crate) write_waker: Option<Waker>,
    /// Tasks parked in the `async` readiness calls for reading (`readable`, `ready`, `peek`):
    /// every one of them is woken, as tokio's are. The `poll_` forms keep tokio's rule
    /// instead: only the latest caller's waker, in `read_waker`.
    pub(crate) read_waiters: Vec<Waker>,
    /// The same for writing (`writable`, `ready`), beside `write_waker`.
    pub(crate) write_waiters: Vec<Waker>,
    /// The handshake completed.
    pub(crate) connected: bool,
    /// The core reported the connection closed.
    pub(crate) closed: bool,
    /// Why the core closed it, from `Event::Closed`.
    pub(crate) error: Option<Error>,
    /// `poll_shutdown` already sent our FIN.
    pub(crate) write_shutdown: bool,
    /// The connection's failure (`error`, or the core's) was returned to a call once: later
    /// reads end, later writes fail with `BrokenPipe` (see `Inner::report_failure`).
    pub(crate) error_reported: bool,
    /// SO_LINGER: `Some(0)` resets the connection when the handle is dropped.
    pub(crate) linger: Option<std::time::Duration>,
    /// A write took nothing, and no `Writable` (nor any other wakeup of the writers) came
    /// since: writes and write readiness wait for the core's write-space rule
    /// ([`Endpoint::poll_writable`]) rather than taking what little room frees first. This
    /// is tokio's readiness on a kernel socket: EAGAIN clears it, and only the EPOLLOUT of
    /// `sk_stream_write_space`, a third of the buffer free, sets it again.
    pub(crate) write_blocked: bool,
    /// Every log line about this connection is emitted inside this span.
    pub(crate) span: tracing::Span,
}

impl ConnState {
    /// Moves every task parked to read into `wakers`.
    pub(crate) fn take_readers(&mut self, wakers: &mut Vec<Waker>) {
        wakers.extend(self.read_waker.take());
        wakers.append(&mut self.read_waiters);
    }

    /// Moves every task parked to write (or to connect) into `wakers`.
    pub(crate) fn take_writers(&mut self, wakers: &mut Vec<Waker>) {
        self.write_blocked = false;
        wakers.extend(self.write_waker.take());
        wakers.append(&mut self.write_waiters);
    }

    pub(crate) fn new(connected: bool, span: tracing::Span) -> Self {
        ConnState {
            read_waker: None,
            write_waker: None,
            read_waiters: Vec::new(),
            write_waiters: Vec::new(),
            connected,
            closed: false,
            error: None,
            write_shutdown: false,
            write_blocked: false,
            error_reported: false,
            linger: None,
            span,
        }
    }
}

/// The runtime's view of one listener.
pub(crate) struct ListenerState {
    /// Tasks parked in `accept`; several tasks may share one `&TcpListener`.
    pub(crate) accept_wakers: Vec<Waker>,
}

impl ListenerState {
    pub(crate) fn new() -> ListenerState {
        ListenerState {
            accept_wakers: Vec::new(),
        }
    }
}

/// Which tasks waiting on a connection an event wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A `poll_` call (and `AsyncRead`/`AsyncWrite`): the latest caller's task only, as
    /// tokio's `poll_read_ready` has it.
    Latest,
    /// An `async fn`: every task waiting, so that several may await one shared stream, and
    /// a half's `ready` does not take the other half's place.
    Every,
}

/// Parks `cx`'s task on connection `c` for a read (`write` false) or a write, as `waiter`
/// says.
pub(crate) fn park(c: &mut ConnState, write: bool, waiter: Waiter, cx: &Context<'_>) {
    match (waiter, write) {
        (Waiter::Latest, false) => register(&mut c.read_waker, cx),
        (Waiter::Latest, true) => register(&mut c.write_waker, cx),
        (Waiter::Every, false) => register_many(&mut c.read_waiters, cx),
        (Waiter::Every, true) => register_many(&mut c.write_waiters, cx),
    }
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

/// Runs `poll` as an `async fn`'s `poll_fn` does, for a wait that parks its task in lists
/// of waiters ([`register_many`]), and takes the task out of them when the wait ends:
/// `forget` removes the task's waker from every list it may be in, and says whether it found
/// it anywhere (tokio's waiters leave their intrusive lists when they complete or are
/// dropped).
///
/// - Dropped before it finished (a `timeout` around `accept`, a `select!` that went the
///   other way): the waker would otherwise keep the task's memory until the socket's next
///   event; on an idle socket polled by many short-lived tasks, without bound.
/// - Finished after it parked: the event that ended it emptied one list, but the task may
///   be in another too (a UDP send waits for room and, with the receivers, for an error; a
///   `ready` for reading and writing ends on one of them). A send-only socket shared by
///   many tasks would otherwise collect one waker per task that ever waited, for good.
///
/// If the waker was found, the task is woken: another of its futures may have waited in the
/// same list under the same waker (`register_many` keeps one entry a task). A wait that
/// finishes without ever parking costs nothing more.
pub(crate) async fn wait_listed<T>(
    poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    forget: impl FnOnce(&Waker) -> bool,
) -> T {
    wait_in_lists(false, poll, forget).await
}

/// [`wait_listed`] for a `ready(interest)` whose polls may park the task in one list while
/// another answers ready at once (`several` kinds of readiness asked for): tidied whenever
/// it finishes, not only after it parked.
pub(crate) async fn wait_ready<T>(
    interest: Interest,
    poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    forget: impl FnOnce(&Waker) -> bool,
) -> T {
    let kinds = [
        interest.is_readable(),
        interest.is_writable(),
        interest.is_error() || interest.is_priority(),
    ];
    let several = kinds.iter().filter(|&&k| k).count() > 1;
    wait_in_lists(several, poll, forget).await
}

/// [`wait_listed`], tidying on completion after a park, or always with `always`.
async fn wait_in_lists<T>(
    always: bool,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    forget: impl FnOnce(&Waker) -> bool,
) -> T {
    struct Listed<G: FnOnce(&Waker) -> bool> {
        waker: Option<Waker>,
        forget: Option<G>,
    }
    impl<G: FnOnce(&Waker) -> bool> Listed<G> {
        fn tidy(&mut self) {
            if let (Some(waker), Some(forget)) = (self.waker.take(), self.forget.take()) {
                if forget(&waker) {
                    waker.wake();
                }
            }
        }
    }
    impl<G: FnOnce(&Waker) -> bool> Drop for Listed<G> {
        fn drop(&mut self) {
            self.tidy();
        }
    }
    let mut listed = Listed {
        waker: None,
        forget: Some(forget),
    };
    std::future::poll_fn(|cx| {
        // tokio's cooperative budget, spent as tokio::net's own sockets spend it (their
        // `poll_ready`): a task whose waits all finish at once yields now and then. Without
        // it, a loop that logs an error and carries on (`accept` after `Stack::shutdown`, a
        // UDP receive of ICMP errors) never yielded, and on a current-thread runtime starved
        // every other task, the shutdown that caused it among them.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let r = poll(cx);
        // The waker the task is listed under, if this poll or an earlier one may have listed
        // it: the latest, which `register_many` would not have added again.
        if (r.is_pending() || always || listed.waker.is_some())
            && !listed
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            listed.waker = Some(cx.waker().clone());
        }
        if r.is_ready() {
            coop.made_progress();
            listed.tidy();
        }
        r
    })
    .await
}

/// Takes `waker`'s task out of `list` (see [`wait_listed`]); whether it was there.
pub(crate) fn unlist(list: &mut Vec<Waker>, waker: &Waker) -> bool {
    let before = list.len();
    list.retain(|w| !w.will_wake(waker));
    list.len() != before
}

/// A socket's `ready(interest)` from its readiness polls: the part of `interest` that holds
/// now, or pending once some is asked for and none holds (each poll asked for parks the task
/// for its own event). An error from any poll is the answer. The polls say which bits hold
/// once ready: a TCP stream's add `READ_CLOSED` and `WRITE_CLOSED` to `READABLE` and
/// `WRITABLE`, a UDP socket's `WRITE_CLOSED` while an ICMP error is pending, each worked
/// out under the same lock as the readiness it comes with, so that the two agree. `poll_other` answers
/// for `ERROR` (a failure not yet reported, Linux's `EPOLLERR` while `sk_err` is set) and
/// `PRIORITY` (an urgent byte waiting, `EPOLLPRI`), with what `interest` asks of them, and
/// parks the task for the event that would bring them: asked for alone, they too must
/// wake it.
pub(crate) fn poll_interest_bits(
    cx: &mut Context<'_>,
    interest: Interest,
    poll_read: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<Ready>>,
    poll_write: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<Ready>>,
    poll_other: impl FnOnce(&mut Context<'_>, Interest) -> Poll<io::Result<Ready>>,
) -> Poll<io::Result<Ready>> {
    let mut ready = Ready::EMPTY;
    if interest.is_readable() {
        if let Poll::Ready(bits) = poll_read(cx)? {
            ready |= bits;
        }
    }
    if interest.is_writable() {
        if let Poll::Ready(bits) = poll_write(cx)? {
            ready |= bits;
        }
    }
    if interest.is_error() || interest.is_priority() {
        if let Poll::Ready(bits) = poll_other(cx, interest)? {
            ready |= bits;
        }
    }
    if ready.is_empty() {
        Poll::Pending
    } else {
        Poll::Ready(Ok(ready))
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

    /// The error every command returns once the driver task has ended: when the device
    /// failed, `NetworkDown` (Linux's ENETDOWN, what a socket on a link gone down gets) with
    /// the device's own error in the message, so that the cause is not lost. The device's
    /// own kind was passed on before: a deleted TUN's ENODEV came out as a kind stable Rust
    /// cannot name, which no caller could tell from a passing failure.
    pub(crate) fn gone_error(&self) -> io::Error {
        match &self.device_error {
            Some(msg) => io::Error::new(
                io::ErrorKind::NetworkDown,
                format!("synack: the device failed: {msg}"),
            ),
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

    /// How a read, a write or `take_error` reports the core's error `e` on `conn`: `None`
    /// when it is the connection's failure (an RST, a timeout) and that was reported before,
    /// else the error to return. The failure is reported once, to whichever call comes
    /// first, as Linux's `sock_error` clears `sk_err` when a call returns it; after that a
    /// read sees the end of the stream and a write fails with `BrokenPipe` (EPIPE: the
    /// socket is shut down both ways), which the callers make of `None`.
    pub(crate) fn report_failure(&mut self, conn: ConnectionHandle, e: Error) -> Option<io::Error> {
        let known = self.endpoint.take_error(conn).ok().flatten();
        let state = self.conns.get_mut(&conn);
        let known = known.or_else(|| state.as_ref().and_then(|c| c.error));
        let failure = match e {
            Error::InvalidHandle => known,
            e if Some(e) == known => known,
            _ => None,
        };
        let Some(failure) = failure else {
            return Some(self.conn_error(conn, e));
        };
        match state {
            Some(c) if c.error_reported => None,
            Some(c) => {
                c.error_reported = true;
                Some(failure.into())
            }
            None => Some(failure.into()),
        }
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

/// The runtime's view of one UDP socket.
#[derive(Default)]
pub(crate) struct UdpState {
    /// Tasks parked in `recv_from`/`recv`; several may share one socket through an `Arc`.
    pub(crate) recv_wakers: Vec<std::task::Waker>,
    /// The waker the latest receiving `poll_` call parked, if it is still parked: taken
    /// out of the lists when another call parks (`UdpSocket::poll_latest`).
    pub(crate) poll_recv_waker: Option<std::task::Waker>,
    /// The same for the sending `poll_` calls.
    pub(crate) poll_send_waker: Option<std::task::Waker>,
    /// SO_BINDTODEVICE: the interface the socket is bound to, if any.
    pub(crate) device: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_maps_give_back_a_peak() {
        let mut map: HandleMap<u64, [u8; 200]> = HandleMap::default();
        for k in 0..20_000 {
            map.insert(k, [0; 200]);
        }
        let peak = map.capacity();
        // Churn below the floor, then everything goes.
        for k in 0..19_990 {
            assert!(remove_handle(&mut map, &k).is_some());
        }
        assert!(
            map.capacity() <= 4 * 64,
            "{} of {peak} kept",
            map.capacity()
        );
        for k in 19_990..20_000 {
            assert_eq!(map.get(&k), Some(&[0; 200]), "what is left stays");
        }
        assert_eq!(remove_handle(&mut map, &20_000), None);
        // A map that swings around one size is not rebuilt on each swing.
        let mut settled = None;
        for round in 0..10 {
            for k in 0..100 {
                map.insert(100_000 + k, [round; 200]);
            }
            for k in 0..100 {
                remove_handle(&mut map, &(100_000 + k));
            }
            assert_eq!(*settled.get_or_insert(map.capacity()), map.capacity());
        }
    }
}
