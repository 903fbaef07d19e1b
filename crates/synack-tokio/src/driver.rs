//! The driver task: the only code that talks to the device.
//!
//! Each round it
//! 1. reads up to [`BATCH`] packets from the device, in bursts of [`RX_BURST`] read without
//!    the shard's lock, and feeds each burst to `handle_packet_shared` under it,
//! 2. calls `handle_timeout` if the core's deadline has passed,
//! 3. drains `poll_event`, collecting the wakers of the tasks each event concerns,
//! 4. takes up to [`BATCH`] packets from `poll_transmit` into its transmit queue
//!    ([`TxQueue`]),
//! 5. arms a tokio timer on `poll_timeout`,
//!
//! and then, without the lock, wakes those tasks and writes the queue to the device, telling
//! it when the burst is over ([`Device::poll_flush`]), so that a device that batches writes
//! what it holds. A device's read and write are where the kernel copies packets to and from
//! us (and, for a TUN write, runs its own receive of the packet): done under the lock, they
//! kept the application's tasks out of the shard, so that on a multi-thread runtime a task
//! writing or reading on another thread waited for the driver rather than working beside
//! it.
//!
//! With several shards (see [`crate::shard`]) there is one driver per shard, each with its own
//! device queue and its own [`Inner`]. Before reading the device a driver takes what other
//! shards handed it; each packet it reads for a flow another shard owns is handed on to that
//! shard instead of being fed to its own endpoint.
//!
//! Then it sleeps until the device, the timer, a hand-off, or a user command (through the
//! waker stored in [`Inner`]) wakes it. It is written as a hand-rolled `poll` rather than an `async fn` so that
//! a device that is slow to accept packets never stops the stack from *receiving*: a packet
//! the device refused waits in the transmit queue and is retried when the device wakes us, while the
//! receive side keeps running.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};

use synack_core::{Bytes, Event, RecvMeta, SynHandle};
use tokio::time::Sleep;
use tracing::{debug, error, info, trace, warn, Instrument};

use crate::device::Device;
use crate::rx_buffers::RxBuffers;
use crate::shard::{Flows, Handoff};
use crate::state::{Inner, Shared, ORPHAN_LINGER};
use crate::tx_queue::TxQueue;

/// A shard's link to the others: whose flow a packet is, and the channels to hand it over.
pub(crate) struct Router {
    pub(crate) flows: Arc<Flows>,
    /// This shard's number.
    pub(crate) me: usize,
    /// Every shard's hand-off channel, by shard number (our own is never used).
    pub(crate) peers: Vec<tokio::sync::mpsc::Sender<Handoff>>,
    /// What other shards hand us.
    pub(crate) inbox: tokio::sync::mpsc::Receiver<Handoff>,
}

/// Packets read, or written, per round: lets timers and events interleave with bulk traffic.
const BATCH: usize = 64;
/// Packets read without the lock before it is taken to feed them to the core.
const RX_BURST: usize = 8;
/// Rounds per `poll` before the driver yields to the tokio scheduler, so that a busy link
/// cannot starve the application's own tasks on a current-thread runtime. This is the
/// driver's only bound: it runs outside tokio's cooperative budget (see `Driver::spawn`).
const ROUNDS: usize = 8;
/// How often the driver asks the device whether it still works: the bound on how long a
/// vanished device goes unnoticed.
const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a stopping driver goes on writing what the core has left (every connection's
/// FIN or RST, see `Driver::drop`): tens of thousands of them take tens of milliseconds on a
/// TUN, and a process's exit on Linux notifies every peer, however many. The bound is one of
/// time, so that a device that takes everything forever cannot hold up a runtime's
/// shutdown; it was 1,024 packets, and a proxy with more connections than that left the
/// rest of its peers waiting on connections that would never answer again.
const FINAL_FLUSH_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// What a round found.
enum Round {
    /// Nothing left to do until something wakes us.
    Idle,
    /// More work is likely ready right now.
    Busy,
    /// The stack is finished.
    Stop,
}

pub(crate) struct Driver<D: Device> {
    shared: Arc<Shared>,
    /// Dropped after `Drop::drop`, in the order of the fields: before `_released` says so.
    device: D,
    rx: RxBuffers,
    /// Packets read without the lock, waiting to be fed to the core under it.
    rx_burst: Vec<(Bytes, RecvMeta)>,
    /// Packets the core made under the lock, written to the device without it.
    tx: TxQueue,
    timer: Pin<Box<Sleep>>,
    /// The core deadline the timer is armed for: never later than the core's own next
    /// deadline (see step 5 of `round`).
    armed: Option<synack_core::Instant>,
    /// The timer has been polled since it was last armed, so that its firing wakes us.
    timer_polled: bool,
    /// Tasks to wake once the lock is released.
    wakers: Vec<Waker>,
    /// `Stack::shutdown`'s tasks, woken once what the core made has been written too.
    idle_wakers: Vec<Waker>,
    /// Once the last handle is gone: when the driver stops finishing what is left.
    linger_until: Option<synack_core::Instant>,
    /// When to ask the device whether it still works ([`Device::check`]).
    next_check: synack_core::Instant,
    /// With several shards: the flows' owners and the hand-off channels.
    router: Option<Router>,
    /// How the stack follows the link's MTU ([`Device::link_mtu`]).
    mtu: MtuPolicy,
    /// Says the device is gone once it is: the last field, dropped after `device`.
    _released: Released,
}

/// How a stack follows its link's MTU ([`Device::link_mtu`]), asked with every
/// [`Device::check`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MtuPolicy {
    /// The MTU the configuration chose ([`Config::mtu`]), a ceiling the link's does not
    /// lift; `None`: the link's, whatever it becomes.
    ///
    /// [`Config::mtu`]: synack_core::Config::mtu
    pub(crate) chosen: Option<usize>,
    /// The stack has an IPv6 address, which a link below 1280 bytes cannot carry.
    pub(crate) ipv6: bool,
    /// The link's MTU when last asked: only a change is acted on (and logged).
    pub(crate) seen: Option<usize>,
}

impl MtuPolicy {
    /// The link's MTU is `link`: the endpoint takes it (within `chosen`) if it changed.
    fn follow(&mut self, endpoint: &mut synack_core::Endpoint, link: usize) {
        if self.seen.replace(link) == Some(link) {
            return;
        }
        // Beyond the largest IP packet, as when the stack started: what a packet can be.
        let most = link.min(synack_core::MAX_MTU);
        let mtu = self.chosen.map_or(most, |chosen| chosen.min(most));
        if mtu == endpoint.config().get_mtu() {
            return;
        }
        match endpoint.set_mtu(mtu) {
            Ok(()) => info!(mtu, "synack: the link's MTU is now {link}; following it"),
            Err(_) => warn!(
                link,
                "synack: the link's MTU is below {}; keeping {}",
                synack_core::MIN_MTU,
                endpoint.config().get_mtu()
            ),
        }
        if self.ipv6 && mtu < synack_core::IPV6_MIN_MTU {
            warn!(
                mtu,
                "synack: the link's MTU is below IPv6's minimum, 1280 bytes (RFC 8200 §5); \
                 Linux turns IPv6 off on such a link"
            );
        }
    }
}

impl<D: Device> Driver<D> {
    /// Spawns the driver for `shared` on the current tokio runtime.
    pub(crate) fn spawn(shared: Arc<Shared>, device: D, router: Option<Router>, mtu: MtuPolicy) {
        // Room for any IP packet: the core needs at least the MTU (at most `MAX_MTU`) for
        // `poll_transmit`, and a device may hand us anything up to its MTU, or a super-packet
        // of up to the largest IP packet (an IPv6 header and 65535 bytes of payload); a device
        // that says its MTU is larger has no larger IP packet to hand.
        let len = 40 + usize::from(u16::MAX);
        let gather = device.capabilities().tx_gather;
        let shared_for_release = Arc::clone(&shared);
        let mut driver = Driver {
            shared,
            device,
            rx: RxBuffers::new(len, RX_BURST),
            rx_burst: Vec::with_capacity(RX_BURST),
            tx: TxQueue::new(len, gather),
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            timer_polled: false,
            wakers: Vec::new(),
            idle_wakers: Vec::new(),
            linger_until: None,
            next_check: synack_core::Instant::ZERO,
            _released: Released(Arc::clone(&shared_for_release)),
            router,
            mtu,
        };
        let span = match &driver.router {
            Some(r) => tracing::debug_span!("synack_driver", shard = r.me),
            None => tracing::debug_span!("synack_driver"),
        };
        tokio::spawn(
            async move {
                debug!("driver started");
                // Outside tokio's cooperative budget: the driver budgets itself (`BATCH`
                // packets each way a round, `ROUNDS` rounds, then it yields). Under the
                // runtime's budget (128 operations a poll, reads, writes and hand-offs
                // together) a busy driver was cut off after one round's worth: its device
                // reported "nothing to read" although the kernel's queue to us was full, and
                // it waited behind every runnable task. With hundreds of connections' tasks
                // queued, the TUN's queue (500 packets) overflowed, and SYNs, requests, FINs
                // and RSTs were dropped with the ACKs around them (BENCHMARKS.md, thirtieth
                // session: 500 parallel downloads lost 14 to 33 in 1,000; unbudgeted, none).
                tokio::task::unconstrained(std::future::poll_fn(|cx| driver.poll_drive(cx))).await;
                debug!("driver stopped");
            }
            .instrument(span),
        );
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS {
            match self.round(cx) {
                Round::Idle => return Poll::Pending,
                Round::Busy => continue,
                Round::Stop => return Poll::Ready(()),
            }
        }
        // Still busy: let other tasks run, then come straight back. Not by waking ourselves:
        // a task that wakes itself is rescheduled as a yield, and a multi-thread runtime
        // then wakes a parked worker to steal it, so that the driver hops between threads
        // every few hundred packets (futex wakes and context switches on both). `yield_now`
        // defers the wake instead: the worker first polls the reactor and the timers and
        // runs what is queued, then runs us again itself.
        let mut yielded = std::pin::pin!(tokio::task::yield_now());
        let _pending = yielded.as_mut().poll(cx);
        Poll::Pending
    }

    fn round(&mut self, cx: &mut Context<'_>) -> Round {
        let shared = Arc::clone(&self.shared);
        // What the device could not take last round goes first, ahead of anything new.
        let tx_blocked = self.tx.poll_write(&mut self.device, cx).is_pending();
        // The first burst is read before the lock is taken, as every later one is.
        let mut read = self.read_burst(cx, RX_BURST);
        let Ok(mut guard) = shared.inner.lock() else {
            // A user command panicked inside the core: nothing sane is left to drive.
            return Round::Stop;
        };
        guard.set_driver_waker(cx);
        let now = guard.now();

        if guard.stopping {
            // The connections the application let go of still deliver what they hold, as
            // the kernel finishes an orphaned socket; the stack stops once they are done or
            // the linger time is over, and resets what is left.
            let until = *self.linger_until.get_or_insert(now + ORPHAN_LINGER);
            if now >= until || guard.endpoint.unfinished_count() == 0 {
                guard.endpoint.abort_unfinished();
                self.final_flush(&mut guard, cx);
                return Round::Stop;
            }
        }

        let mut busy = false;

        // 0. Is the device still there? (A deleted TUN fails no read: nothing wakes us.)
        if now >= self.next_check {
            self.next_check = now + CHECK_INTERVAL;
            if let Err(e) = self.device.check() {
                error!(error = %e, "the device stopped working; stopping the stack");
                guard.device_error = Some(e.to_string());
                return Round::Stop;
            }
            // And has its MTU changed?
            if let Some(link) = self.device.link_mtu() {
                self.mtu.follow(&mut guard.endpoint, link);
            }
        }

        // 0. What other shards handed us: packets of our flows that arrived on their queues.
        if let Some(router) = &mut self.router {
            let mut taken = 0;
            while taken < BATCH {
                match router.inbox.poll_recv(cx) {
                    Poll::Ready(Some(h)) => {
                        guard.handoffs_received += 1;
                        guard.endpoint.handle_packet(now, &h.packet, h.meta);
                        taken += 1;
                    }
                    // Pending: the channel wakes us when one comes. (It never closes: our
                    // own sender, in `peers`, lives as long as we do.)
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            busy |= taken == BATCH;
        }

        // 1. Receive a batch, a burst at a time: each read without the lock, so that the
        //    application's tasks on other threads are not kept out while the kernel copies
        //    packets to us, then fed to the core under it.
        let mut received = 0;
        loop {
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    // A device that cannot be read is gone for good (TUN torn down); every
                    // waiting task learns it, with this cause, when we drop.
                    error!(error = %e, "device receive failed; stopping the stack");
                    guard.device_error = Some(e.to_string());
                    self.rx_burst.clear();
                    return Round::Stop;
                }
            };
            self.feed_burst(&mut guard, now);
            received += n;
            if n < RX_BURST || received >= BATCH {
                break;
            }
            drop(guard);
            read = self.read_burst(cx, RX_BURST.min(BATCH - received));
            guard = match shared.inner.lock() {
                Ok(g) => g,
                Err(_) => return Round::Stop,
            };
        }
        busy |= received >= BATCH;
        let now = guard.now();
        let inner = &mut *guard;

        // 2. Timers.
        if inner.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            inner.endpoint.handle_timeout(now);
        }

        // 3. Events.
        drain_events(inner, &mut self.wakers);

        // 4. Transmit: the core's packets into the queue, written below without the lock.
        //    Not while the device is full: it wakes us when it has room.
        if !tx_blocked {
            let made = self.tx.fill(&mut inner.endpoint, now, BATCH);
            // The batch, or as much as the queue holds: the core may have more.
            busy |= made == BATCH || (made > 0 && self.tx.is_full());
        }
        drain_events(inner, &mut self.wakers);
        if (inner.stopping || !inner.idle_wakers.is_empty())
            && inner.endpoint.unfinished_count() == 0
        {
            self.idle_wakers.append(&mut inner.idle_wakers);
            // Stopping: the next round's check ends the driver now, not at the next packet.
            busy |= inner.stopping;
        }

        // 5. The next deadline (the linger time's end and the device check are too).
        let mut next = inner.endpoint.poll_timeout();
        for other in self.linger_until.into_iter().chain([self.next_check]) {
            next = Some(next.map_or(other, |t| t.min(other)));
        }
        match next {
            Some(t) if t <= now => busy = true,
            // The timer only ever moves earlier (or on once it has fired): a deadline that
            // moved later is reached by letting the armed one fire, finding nothing due, and
            // arming again. A busy connection moves its deadline with nearly every packet
            // (a delayed ACK, a loss probe, the retransmission timer), and each move of a
            // tokio timer is a removal and an insertion in its wheel and a poll to register
            // again: about 500 instructions a request of a keep-alive HTTP connection
            // (callgrind; BENCHMARKS.md, thirty-ninth session). The price is a round at a
            // deadline that had moved on, at most one for each that passes.
            Some(t) => {
                if self.armed.is_none_or(|armed| t < armed || armed <= now) {
                    self.timer.as_mut().reset(inner.deadline(t));
                    self.armed = Some(t);
                    self.timer_polled = false;
                }
            }
            None => self.armed = None,
        }
        drop(guard);

        for w in self.wakers.drain(..) {
            w.wake();
        }
        // The packets, then the end of the burst: what the device holds to batch goes out
        // now, not whenever the next round happens to come. Every round, so that a flush the
        // device could not finish (pending: it wakes us when it has room) is retried even if
        // nothing more is sent.
        let written = self.tx.poll_write(&mut self.device, cx).is_ready();
        flush(&mut self.device, cx);
        if written {
            // What `Stack::shutdown` waits for is done, and on the wire.
            for w in self.idle_wakers.drain(..) {
                w.wake();
            }
        }
        if busy {
            return Round::Busy;
        }
        // A timer armed since the last poll must be polled once for its firing to wake us;
        // polled, it keeps our waker (a spawned task's, which does not change).
        if self.armed.is_some() && !self.timer_polled {
            if self.timer.as_mut().poll(cx).is_ready() {
                return Round::Busy;
            }
            self.timer_polled = true;
        }
        Round::Idle
    }

    /// Reads up to `max` packets from the device into `rx_burst`, without the lock; returns
    /// how many.
    fn read_burst(&mut self, cx: &mut Context<'_>, max: usize) -> std::io::Result<usize> {
        let mut n = 0;
        while n < max {
            match self.device.poll_recv(cx, self.rx.current()) {
                Poll::Ready(Ok(mut meta)) => {
                    // A device never reports more than it was given; a faulty one must not
                    // make the core read past the buffer.
                    meta.len = meta.len.min(self.rx.current().len());
                    trace!(len = meta.len, gso = ?meta.segment_size, "packet in");
                    self.rx_burst.push((self.rx.take(), meta));
                    n += 1;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        Ok(n)
    }

    /// Feeds the packets `read_burst` read to the core (or to the shard that owns their
    /// flow), under the lock, and takes their buffers back.
    fn feed_burst(&mut self, inner: &mut Inner, now: synack_core::Instant) {
        for (buf, meta) in self.rx_burst.drain(..) {
            let packet = &buf[..meta.len];
            let owner = self
                .router
                .as_ref()
                .and_then(|r| r.flows.route(packet).filter(|&o| o != r.me));
            match (owner, &self.router) {
                (Some(owner), Some(router)) => hand_off(inner, router, owner, packet, meta),
                // Shared: the core may keep a bulk payload where it is (`rx_buffers`).
                _ => inner.endpoint.handle_packet_shared(now, &buf, meta),
            }
            self.rx.give_back(buf);
        }
    }

    /// The driver is ending: every stream has already called `close` (queuing its FIN, or an
    /// RST if it left data unread), every listener `close_listener`, and what could not be
    /// finished was reset. Push out what the core has queued, without waiting for a device
    /// that is full.
    fn final_flush(&mut self, inner: &mut Inner, cx: &mut Context<'_>) {
        let now = inner.now();
        let until = std::time::Instant::now() + FINAL_FLUSH_TIME;
        let mut written = 0;
        loop {
            let Poll::Ready(n) = self.tx.poll_write(&mut self.device, cx) else {
                debug!(written, "the device took no more of what was left");
                break;
            };
            written += n;
            if std::time::Instant::now() >= until {
                warn!(
                    written,
                    "stopped writing what was left after {FINAL_FLUSH_TIME:?}: some peers \
                     are not told their connections ended"
                );
                break;
            }
            if self.tx.fill(&mut inner.endpoint, now, BATCH) == 0 {
                break;
            }
        }
        flush(&mut self.device, cx);
    }
}

/// Hands a packet read here to the shard that owns its flow, counting it; a full (or closed)
/// channel drops it, counted too, as a full queue on a wire would.
fn hand_off(inner: &mut Inner, router: &Router, owner: usize, packet: &[u8], meta: RecvMeta) {
    let handoff = Handoff {
        packet: packet.into(),
        meta,
    };
    match router.peers[owner].try_send(handoff) {
        Ok(()) => {
            trace!(owner, len = meta.len, "handed off");
            inner.handed_off += 1;
        }
        Err(_) => {
            debug!(
                owner,
                len = meta.len,
                "hand-off channel full; packet dropped"
            );
            inner.handoff_dropped += 1;
        }
    }
}

/// Ends a burst of sends ([`Device::poll_flush`]). A device that cannot write now wakes the
/// driver when it can, and its next burst flushes again; an error is a lost packet, as in
/// `send`.
fn flush<D: Device>(device: &mut D, cx: &mut Context<'_>) {
    if let Poll::Ready(Err(e)) = device.poll_flush(cx) {
        debug!(error = %e, "device dropped what it held");
    }
}

/// Announced intercepted SYNs the runtime queues for `Interceptor::next` at most (the core
/// holds at most `InterceptConfig::max_pending` undecided; the rest are stale).
const MAX_INTERCEPTED: usize = 1 << 16;

/// A waker for the last flush from `Drop`: nothing will poll the driver again.
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Moves the waker of every task parked on the shard's connections, listeners and sockets
/// into `wakers`.
fn take_every_waker(inner: &mut Inner, wakers: &mut Vec<Waker>) {
    wakers.append(&mut inner.intercept_wakers);
    wakers.append(&mut inner.udp_send_wakers);
    wakers.append(&mut inner.udp_intercept_wakers);
    for s in inner.udp.values_mut() {
        wakers.append(&mut s.recv_wakers);
    }
    for c in inner.conns.values_mut() {
        c.take_readers(wakers);
        c.take_writers(wakers);
    }
    for l in inner.listeners.values_mut() {
        wakers.append(&mut l.accept_wakers);
    }
}

/// Drains the core's events into the runtime's per-connection state, collecting the wakers of
/// the tasks they concern. If the core had to drop some (more were left undrained than it
/// keeps), every parked task is woken instead: each looks at its own connection, listener or
/// socket again (their poll methods read the core's state, not the events), so none sleeps
/// through an event that was lost.
fn drain_events(inner: &mut Inner, wakers: &mut Vec<Waker>) {
    let overflow = inner.endpoint.take_event_overflow();
    if overflow {
        debug!("the core dropped events; waking every parked task");
        take_every_waker(inner, wakers);
    }
    while let Some(event) = inner.endpoint.poll_event() {
        match event {
            Event::Connected(h) => {
                if let Some(c) = inner.conns.get_mut(&h) {
                    c.connected = true;
                    c.span.in_scope(|| debug!("established"));
                    c.take_writers(wakers);
                    c.take_readers(wakers);
                }
            }
            Event::Incoming(l) => {
                if let Some(state) = inner.listeners.get_mut(&l) {
                    trace!(listener = l.0, "incoming");
                    wakers.append(&mut state.accept_wakers);
                }
            }
            Event::Readable(h) => {
                if let Some(c) = inner.conns.get_mut(&h) {
                    c.take_readers(wakers);
                }
            }
            Event::Writable(h) => {
                if let Some(c) = inner.conns.get_mut(&h) {
                    c.take_writers(wakers);
                }
            }
            Event::Closed(h, reason) => {
                if let Some(c) = inner.conns.get_mut(&h) {
                    c.closed = true;
                    c.error = c.error.or(reason);
                    c.span.in_scope(|| debug!(error = ?reason, "closed"));
                    c.take_writers(wakers);
                    c.take_readers(wakers);
                } else {
                    trace!(conn = h.0, error = ?reason, "released connection closed");
                }
            }
            Event::Intercepted(s) => {
                trace!(syn = s.0, "intercepted SYN");
                queue_intercepted(inner, s);
                wakers.append(&mut inner.intercept_wakers);
            }
            Event::UdpReadable(h) => {
                if let Some(s) = inner.udp.get_mut(&h) {
                    wakers.append(&mut s.recv_wakers);
                }
            }
            Event::UdpWritable => wakers.append(&mut inner.udp_send_wakers),
            Event::UdpIntercepted => wakers.append(&mut inner.udp_intercept_wakers),
        }
    }
    if overflow {
        // The events that were kept are drained: the held SYNs newer than every one
        // announced are those whose announcements were dropped (the rest, the application
        // already has or has in its queue).
        let last = inner.last_intercepted;
        let missed: Vec<SynHandle> = inner
            .endpoint
            .held_syns()
            .filter(|&h| last.is_none_or(|l| h > l))
            .collect();
        for h in missed {
            queue_intercepted(inner, h);
        }
    }
}

/// Queues a held SYN for `Interceptor::next`; once `Stack::shutdown` began, refuses it
/// instead, as a closed port would.
fn queue_intercepted(inner: &mut Inner, syn: SynHandle) {
    if inner.shutting_down {
        let _ = inner.endpoint.refuse_intercepted(syn);
        return;
    }
    // Handles of SYNs that expired unseen are skipped by `Interceptor::next`; the queue is
    // bounded all the same.
    if inner.intercepted.len() >= MAX_INTERCEPTED {
        inner.intercepted.pop_front();
    }
    // A client's retransmission (`InterceptedSyn::retransmission`) goes before the first SYNs
    // waiting: behind a flood the application cannot keep up with it would expire unseen,
    // as its first SYN did.
    let retransmission = inner
        .endpoint
        .intercepted(syn)
        .is_ok_and(|i| i.retransmission);
    if retransmission {
        inner.intercepted.push_front(syn);
    } else {
        inner.intercepted.push_back(syn);
    }
    inner.last_intercepted = inner.last_intercepted.max(Some(syn));
}

/// The end of a driver's device: once the driver's fields are dropped, its device among
/// them, the shard says so and wakes the tasks in `Stack::closed`.
struct Released(Arc<Shared>);

impl Drop for Released {
    fn drop(&mut self) {
        let mut inner = self.0.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.device_released = true;
        let wakers = std::mem::take(&mut inner.closed_wakers);
        drop(inner);
        for w in wakers {
            w.wake();
        }
    }
}

impl<D: Device> Drop for Driver<D> {
    /// However the driver ends (stack dropped, device failure, runtime shutdown, panic), every
    /// parked task is woken and every later command fails instead of waiting forever.
    ///
    /// A driver dropped with connections unfinished is one whose runtime is shutting down
    /// (the process is ending): they cannot be finished, so they end as Linux ends a
    /// process's sockets at exit. One with everything it sent acknowledged and nothing
    /// unread sends its FIN (the peer reads the end of the stream); the others, which would
    /// need retransmissions no one will make, are reset. Whatever the core has queued (those
    /// FINs and RSTs, and any queued before: a stream dropped with linger 0 or with unread
    /// data just before `main` returned) is handed to the device now, so that no peer is
    /// left waiting on a connection that will never answer again.
    fn drop(&mut self) {
        let shared = Arc::clone(&self.shared);
        let (mut inner, poisoned) = match shared.inner.lock() {
            Ok(inner) => (inner, false),
            Err(poisoned) => (poisoned.into_inner(), true),
        };
        // After a panic under the lock (the driver's own, in the core or the device's
        // `check`, or a command's) the core may have stopped halfway through a change: it is
        // left alone, and the waiters are only told. Running it could panic again, and the
        // waiters, woken below, would never have been.
        if poisoned {
            error!("the stack's state was left inconsistent by a panic; its connections end unannounced");
        } else if inner.device_error.is_none() {
            // As a process's sockets end at its exit: a FIN where nothing is lost with it,
            // an RST where something is (see `Endpoint::end_unfinished`).
            let now = inner.now();
            let ended = inner.endpoint.end_unfinished(now);
            if ended.reset > 0 {
                let (reset, lost) = (ended.reset, ended.lost);
                if inner.stopping || inner.shutting_down {
                    // Already said: by the last handle's drop, or by `Stack::shutdown`.
                    debug!(reset, lost, "driver dropped while stopping; resetting");
                } else {
                    // Not through `Stack::shutdown`: data the application wrote is lost.
                    warn!(
                        reset,
                        lost,
                        closed = ended.closed,
                        "the runtime stopped the stack with connections unfinished; {reset} \
                         are reset and {lost} bytes written to them are lost (call \
                         `Stack::shutdown` before returning from `main`)"
                    );
                }
            } else if ended.closed > 0 {
                debug!(
                    closed = ended.closed,
                    "driver dropped; idle connections closed"
                );
            }
            let waker = Waker::from(Arc::new(NoWake));
            self.final_flush(&mut inner, &mut Context::from_waker(&waker));
        }
        inner.driver_gone = true;
        let mut wakers = std::mem::take(&mut inner.idle_wakers);
        wakers.append(&mut self.idle_wakers);
        take_every_waker(&mut inner, &mut wakers);
        drop(inner);
        for w in wakers {
            w.wake();
        }
    }
}
