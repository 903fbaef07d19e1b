//! UDP: one session per (client, destination) pair, each with its own upstream socket or
//! SOCKS5 association so that replies find their client; the dispatcher that hands each
//! intercepted datagram to its session; and who gets a session when all are taken, so that a
//! flood from spoofed sources neither evicts answered sessions nor keeps new clients out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synack::tokio::{UdpInterceptor, Unreachable};
use tokio::sync::{mpsc, oneshot};

use crate::destination::{self, NotRelayed};
use crate::upstream::Fail;
use crate::Relay;

/// Client datagrams queued for upstream, across all sessions, at most (a flood fills this,
/// not the memory).
const UDP_QUEUE_BYTES: usize = 4 << 20;
/// Client datagrams one session queues while its upstream socket is busy or being opened.
const UDP_SESSION_QUEUE: usize = 64;

/// One client datagram on its way upstream; its bytes count against [`UDP_QUEUE_BYTES`]
/// until it is dropped.
struct Queued {
    data: Vec<u8>,
    budget: Arc<AtomicUsize>,
}

impl Queued {
    fn take(budget: &Arc<AtomicUsize>, data: &[u8]) -> Option<Queued> {
        let len = data.len();
        if budget.fetch_add(len, Ordering::Relaxed) + len > UDP_QUEUE_BYTES {
            budget.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(Queued {
            data: data.to_vec(),
            budget: Arc::clone(budget),
        })
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

/// The dispatcher's handle on a session task.
struct Session {
    to_upstream: mpsc::Sender<Queued>,
    activity: Arc<Activity>,
    /// Dropped with the session's entry: ends the task even while it opens its upstream.
    _cancel: oneshot::Sender<()>,
}

/// What the dispatcher and a session task both see of the session.
struct Activity {
    /// Milliseconds since [`Relay::epoch`] of the last datagram either way.
    last: AtomicU64,
    /// Whether a reply ever came back from the destination.
    replied: AtomicBool,
}

impl Activity {
    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn replied(&self) -> bool {
        self.replied.load(Ordering::Relaxed)
    }
}

/// How long the session that would be evicted must have been quiet, when it never had a
/// reply, before the first datagram of a new pair may take its place (see [`UdpSessions`]).
const UDP_SETTLE_MS: u64 = 1000;

/// How many pairs whose first datagram was held back are remembered, as 32-bit tags and
/// when (1 MiB): a flood reaching the dispatcher at 50,000 new pairs a second takes over
/// 2 s to overwrite a given slot, longer than a resolver waits before it retries.
const UDP_HELD_BACK_SLOTS: usize = 1 << 17;

/// A held-back pair seen again sooner than this is not a retry: a client waits for an
/// answer before it sends again (a resolver a second or more, QUIC and DTLS their first
/// timeouts), where a flood that sends each datagram twice, back to back, to pass as a retry
/// does not. Without it such a flood, aimed at a live server so that its own sessions are
/// answered, left a real client's new session the only unanswered one, evicted by the
/// flood's next pair milliseconds after it began (found by an attacker's audit).
const UDP_RETRY_MIN_MS: u64 = 200;

/// The UDP sessions by (client, destination), and who gets one when all
/// `--max-udp-sessions` are taken.
///
/// Anything can be sent into a TUN, so a flood of datagrams from spoofed sources to random
/// destinations must neither evict real clients' sessions nor keep new ones out. Two rules:
/// - As with Linux conntrack's early drop, a session that never had a reply is evicted
///   before one that has, the longest idle first. A flood's sessions get no replies, so they
///   evict one another and leave answered sessions alone.
/// - While the sessions churn (the one to evict, answered or not, was active less than
///   [`UDP_SETTLE_MS`] ago), the first datagram of a pair seen for the first time is
///   dropped and the pair remembered by a keyed hash; its retry, at least
///   [`UDP_RETRY_MIN_MS`] later, gets a session. Real clients retry (a resolver after a
///   second or so, QUIC and DTLS their handshakes) and a flood of one datagram to each random
///   pair, or of each sent twice at once, does not, so the flood costs a hash lookup a
///   datagram instead of a socket, the dispatcher keeps up with it, and a retry is not lost
///   in the stack's queue behind it.
pub(crate) struct UdpSessions {
    map: HashMap<(SocketAddr, SocketAddr), Session>,
    /// Held-back pairs by their hash: a tag in the high 32 bits, when (ms, wrapping) in the
    /// low; 0 is an empty slot.
    held_back: Box<[u64]>,
    /// Keyed per process: a sender cannot choose pairs that overwrite a given slot.
    hasher: RandomState,
    /// Before this time (ms since [`Relay::epoch`]) the sessions churn: the session to evict,
    /// when last looked at, had been active after it minus [`UDP_SETTLE_MS`], and a
    /// datagram, a reply or an eviction only makes the next one to evict younger. So a
    /// flood's datagrams are held back without a scan of the table. (Should the sessions go
    /// quiet sooner, holding back goes on until this time: at most [`UDP_SETTLE_MS`].)
    churn_until: u64,
}

/// What [`UdpSessions::make_room`] decided for a new pair at the limit.
enum Room {
    /// A session was evicted (or one is ending on its own): wait for its permit.
    Wait,
    /// The datagram is held back; the pair is remembered.
    HeldBack,
}

impl UdpSessions {
    fn new() -> UdpSessions {
        UdpSessions {
            map: HashMap::new(),
            held_back: vec![0; UDP_HELD_BACK_SLOTS].into_boxed_slice(),
            hasher: RandomState::new(),
            churn_until: 0,
        }
    }

    /// Removes the entries of sessions that ended on their own (idle, failed).
    fn sweep(&mut self) {
        self.map.retain(|_, s| !s.to_upstream.is_closed());
    }

    /// All sessions are taken and `key` has none: evicts one, or holds the datagram back.
    fn make_room(&mut self, key: (SocketAddr, SocketAddr), now_ms: u64) -> Room {
        // While the sessions are known to churn, a new pair costs a hash lookup, no scan.
        if now_ms < self.churn_until && !self.is_retry(key, now_ms) {
            return Room::HeldBack;
        }
        let retried = now_ms < self.churn_until;
        self.sweep();
        // The victim: unanswered before answered, then the longest idle.
        let victim = self
            .map
            .iter()
            .map(|(k, s)| (*k, s.activity.replied(), s.activity.last()))
            .min_by_key(|&(_, replied, last)| (replied, last));
        let Some((victim, _, last)) = victim else {
            // Every permit is held by a session that is ending: its permit comes back.
            return Room::Wait;
        };
        // Answered or not: a flood aimed at a live server gets its sessions answered, and
        // an answered session active a moment ago is no idle one to make room.
        let settled = last.saturating_add(UDP_SETTLE_MS);
        if now_ms < settled {
            self.churn_until = settled;
            if !retried && !self.is_retry(key, now_ms) {
                return Room::HeldBack;
            }
        }
        self.map.remove(&victim);
        Room::Wait
    }

    /// Whether `key` was held back at least [`UDP_RETRY_MIN_MS`] before (and is now let
    /// through); if it was not held back, remembers it.
    fn is_retry(&mut self, key: (SocketAddr, SocketAddr), now_ms: u64) -> bool {
        let (slot, tag) = self.slot(key);
        match self.held_back_since(slot, tag) {
            Some(since) if now_ms.wrapping_sub(since) & u64::from(u32::MAX) >= UDP_RETRY_MIN_MS => {
                self.held_back[slot] = 0;
                true
            }
            Some(_) => false,
            None => {
                self.held_back[slot] = (u64::from(tag) << 32) | (now_ms & u64::from(u32::MAX));
                false
            }
        }
    }

    /// When the pair with `tag` in `slot` was held back (ms, the low 32 bits), if it is the
    /// one remembered there.
    fn held_back_since(&self, slot: usize, tag: u32) -> Option<u64> {
        let v = self.held_back[slot];
        ((v >> 32) as u32 == tag).then_some(v & u64::from(u32::MAX))
    }

    /// Where `key` is remembered, and its tag there.
    fn slot(&self, key: (SocketAddr, SocketAddr)) -> (usize, u32) {
        let h = self.hasher.hash_one(key);
        // The low bits pick the slot, the high ones are the tag; never 0.
        (
            (h as usize) & (UDP_HELD_BACK_SLOTS - 1),
            (h >> 32) as u32 | 1,
        )
    }
}

/// Hands each intercepted datagram to the session of its (client, destination) pair, making
/// one if needed: one upstream socket per pair, so replies find their client. At
/// `--max-udp-sessions`, [`UdpSessions`] says which session goes, or whether the datagram
/// waits for its client's retry. Returns only when the stack stops.
pub(crate) async fn udp_loop(interceptor: UdpInterceptor, relay: Arc<Relay>) -> io::Result<()> {
    let mut sessions = UdpSessions::new();
    let mut buf = vec![0u8; 65535];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let d = tokio::select! {
            d = interceptor.recv(&mut buf) => d?,
            _ = sweep.tick() => {
                sessions.sweep();
                continue;
            }
        };
        let stats = &relay.stats;
        stats.udp_datagrams_in.fetch_add(1, Ordering::Relaxed);
        // A datagram from port 0 cannot be answered (one to port 0 the stack answers itself
        // as at a closed port, and never hands over).
        if d.src.port() == 0 {
            stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Loopback and other martian destinations (the relay host's own services), and the
        // stack's own addresses and the TUN's prefixes (a socket to them is routed back into
        // the TUN and its datagrams would come back here, forever): dropped, before any
        // session or socket is made.
        match destination::not_relayed(&relay.link, d.dst.ip()) {
            None => {}
            Some(NotRelayed::OwnLink) => {
                stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                stats.udp_own_link.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Some(why @ NotRelayed::Martian) => {
                stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                stats.udp_martian.fetch_add(1, Ordering::Relaxed);
                if relay.verbose {
                    println!(
                        "udp {} -> {} martian dropped {} B ({})",
                        d.src,
                        d.dst,
                        d.len,
                        why.reason()
                    );
                }
                continue;
            }
        }
        let key = (d.src, d.dst);
        let Some(queued) = Queued::take(&relay.udp_queued, &buf[..d.len]) else {
            stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(s) = sessions.map.get(&key) {
            match s.to_upstream.try_send(queued) {
                Ok(()) => {
                    s.activity.last.store(relay.now_ms(), Ordering::Relaxed);
                    continue;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Ended meanwhile (idle, failed): a new session takes over.
                Err(mpsc::error::TrySendError::Closed(queued)) => {
                    sessions.map.remove(&key);
                    start_session(&relay, &interceptor, &mut sessions, key, queued).await;
                    continue;
                }
            }
        }
        start_session(&relay, &interceptor, &mut sessions, key, queued).await;
    }
}

/// Starts the session of `key` with its first datagram. At --max-udp-sessions a session is
/// evicted first, and this waits until its task has closed its socket: the bound is on
/// sockets, not only on map entries. Or the datagram is held back (see [`UdpSessions`]).
async fn start_session(
    relay: &Arc<Relay>,
    interceptor: &UdpInterceptor,
    sessions: &mut UdpSessions,
    key: (SocketAddr, SocketAddr),
    first: Queued,
) {
    let permit = match Arc::clone(&relay.udp_permits).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            match sessions.make_room(key, relay.now_ms()) {
                Room::HeldBack => {
                    relay.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                    relay.stats.udp_held_back.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Room::Wait => {
                    relay.stats.udp_evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Ok(p) = Arc::clone(&relay.udp_permits).acquire_owned().await else {
                return; // never closed
            };
            p
        }
    };
    let (tx, rx) = mpsc::channel(UDP_SESSION_QUEUE);
    // Cannot fail: the channel is new and empty.
    let _ = tx.try_send(first);
    let (cancel, cancelled) = oneshot::channel();
    let activity = Arc::new(Activity {
        last: AtomicU64::new(relay.now_ms()),
        replied: AtomicBool::new(false),
    });
    sessions.map.insert(
        key,
        Session {
            to_upstream: tx,
            activity: Arc::clone(&activity),
            _cancel: cancel,
        },
    );
    let session = Arc::clone(relay).udp_session(interceptor.clone(), key, rx, cancelled, activity);
    tokio::spawn(async move {
        session.await;
        drop(permit);
    });
}

/// How a UDP session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UdpEnd {
    /// Nothing either way for --udp-timeout.
    Idle,
    /// Evicted to make room, or the relay is ending.
    Evicted,
    /// The upstream socket or association could not be opened, or failed.
    Failed,
}

impl Relay {
    /// The destination refused a datagram of `client`'s, or could not be reached (`why`, as
    /// the upstream socket learnt it from an ICMP error, or its route lookup found no way
    /// there): the same ICMP destination unreachable to the client from that destination
    /// (within the stack's ICMP rate limit), counted and shown with -v.
    fn unreachable_upstream(
        &self,
        interceptor: &UdpInterceptor,
        dst: SocketAddr,
        client: SocketAddr,
        why: Unreachable,
    ) {
        self.stats.udp_refused.fetch_add(1, Ordering::Relaxed);
        let answered = interceptor.unreachable(dst, client, why);
        if self.verbose {
            let what = match why {
                Unreachable::Port => "refused upstream".to_owned(),
                why => format!("unreachable upstream ({why:?})"),
            };
            let unanswered = match answered {
                Ok(true) => String::new(),
                Ok(false) => " (not answered: ICMP rate limit or a full queue)".to_owned(),
                Err(e) => format!(" (not answered: {e})"),
            };
            println!("udp {client} -> {dst} {what}{unanswered}");
        }
    }

    /// One session: opens the upstream socket (or SOCKS5 association), then carries
    /// datagrams both ways until it idles out, is evicted, or fails.
    async fn udp_session(
        self: Arc<Self>,
        interceptor: UdpInterceptor,
        (client, dst): (SocketAddr, SocketAddr),
        mut rx: mpsc::Receiver<Queued>,
        mut cancelled: oneshot::Receiver<()>,
        activity: Arc<Activity>,
    ) {
        let start = Instant::now();
        let (mut up_b, mut up_n, mut down_b, mut down_n) = (0u64, 0u64, 0u64, 0u64);
        let mut detail = String::new();
        let opened = tokio::select! {
            r = tokio::time::timeout(self.connect_timeout, self.upstream.open_udp(dst)) => Some(r),
            _ = &mut cancelled => None,
        };
        let end = match opened {
            None => UdpEnd::Evicted,
            Some(Err(_)) => {
                detail = " (upstream did not answer)".into();
                UdpEnd::Failed
            }
            // No route to the destination, or a prohibit route: its first datagram is
            // answered as a router without the route answers it (Linux's `ip_error`), and
            // the client's next one opens a session again (and is answered again, within the
            // stack's ICMP rate limit), as routes may change.
            Some(Ok(Err(Fail::Unreachable(why)))) => {
                self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                self.unreachable_upstream(&interceptor, dst, client, why);
                detail = format!(" (unreachable: {why:?})");
                UdpEnd::Failed
            }
            Some(Ok(Err(e))) => {
                detail = format!(" ({})", e.into_io());
                UdpEnd::Failed
            }
            Some(Ok(Ok(mut up))) => {
                if self.verbose {
                    println!("udp {client} -> {dst} session opened");
                }
                self.stats.udp_open.fetch_add(1, Ordering::Relaxed);
                let end = loop {
                    let idle_at =
                        self.epoch + Duration::from_millis(activity.last()) + self.udp_timeout;
                    tokio::select! {
                        _ = &mut cancelled => break UdpEnd::Evicted,
                        q = rx.recv() => match q {
                            None => break UdpEnd::Evicted,
                            Some(q) => match up.send(dst, &q.data).await {
                                Ok(()) => {
                                    up_b += q.data.len() as u64;
                                    up_n += 1;
                                    self.stats.udp_relayed(true, q.data.len());
                                }
                                // One datagram lost (ECONNREFUSED from an earlier ICMP error,
                                // or no route any more: the client hears of it as from the
                                // destination); the session goes on, as UDP does.
                                Err(e) => {
                                    self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                                    if let Some(why) = up.unreachable_on_send(&e) {
                                        self.unreachable_upstream(&interceptor, dst, client, why);
                                    }
                                }
                            }
                        },
                        r = up.recv(dst) => match r {
                            Ok(Some(reply)) => {
                                activity.last.store(self.now_ms(), Ordering::Relaxed);
                                activity.replied.store(true, Ordering::Relaxed);
                                if interceptor.send_from(&reply, dst, client).await.is_ok() {
                                    down_b += reply.len() as u64;
                                    down_n += 1;
                                    self.stats.udp_relayed(false, reply.len());
                                } else {
                                    self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(None) => {
                                self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            // The destination's port unreachable, or a hard ICMP error about
                            // it: the client gets the same from the destination, so that its
                            // connected socket fails at once, as it would without the relay.
                            Err(e) => match up.unreachable(&e) {
                                Some(why) => {
                                    self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                                    self.unreachable_upstream(&interceptor, dst, client, why);
                                }
                                None => {
                                    detail = format!(" ({e})");
                                    break UdpEnd::Failed;
                                }
                            },
                        },
                        _ = tokio::time::sleep_until(idle_at.into()) => {
                            let quiet = self.now_ms().saturating_sub(activity.last());
                            if Duration::from_millis(quiet) >= self.udp_timeout {
                                break UdpEnd::Idle;
                            }
                        }
                    }
                };
                self.stats.udp_open.fetch_sub(1, Ordering::Relaxed);
                end
            }
        };
        // What is still queued is dropped here, its budget returned.
        drop(rx);
        self.stats.record_udp(end);
        if self.verbose {
            let name = match end {
                UdpEnd::Idle => "idle",
                UdpEnd::Evicted => "evicted",
                UdpEnd::Failed => "failed",
            };
            println!(
                "udp {client} -> {dst} {name} up {up_b} B ({up_n} datagrams) down {down_b} B \
                 ({down_n} datagrams) {:.3} s{detail}",
                start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session of `key`, last active at `last` (ms), answered or not; its receivers are
    /// kept in `keep` so that it does not look ended.
    fn add(
        sessions: &mut UdpSessions,
        keep: &mut Vec<(mpsc::Receiver<Queued>, oneshot::Receiver<()>)>,
        key: (SocketAddr, SocketAddr),
        last: u64,
        replied: bool,
    ) {
        let (tx, rx) = mpsc::channel(1);
        let (cancel, cancelled) = oneshot::channel();
        keep.push((rx, cancelled));
        let activity = Arc::new(Activity {
            last: AtomicU64::new(last),
            replied: AtomicBool::new(replied),
        });
        sessions.map.insert(
            key,
            Session {
                to_upstream: tx,
                activity,
                _cancel: cancel,
            },
        );
    }

    fn pair(n: u16) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::from(([198, 18, 0, 1], 10_000 + n)),
            SocketAddr::from(([198, 19, 2, 2], 53)),
        )
    }

    /// A flood aimed at a live server, each datagram sent twice at once: its sessions are
    /// answered and active, and a real client's new session is the one unanswered. The
    /// flood's pairs are held back, duplicate and all, and the real session stays (it was
    /// evicted by the duplicate, milliseconds after it began); a retry at least
    /// `UDP_RETRY_MIN_MS` after the first datagram gets a session.
    #[test]
    fn a_duplicate_sent_at_once_is_no_retry() {
        let mut s = UdpSessions::new();
        let mut keep = Vec::new();
        for n in 0..4 {
            add(&mut s, &mut keep, pair(n), 4_900, true);
        }
        let real = pair(100);
        add(&mut s, &mut keep, real, 4_990, false);
        let flood = pair(200);
        assert!(matches!(s.make_room(flood, 5_000), Room::HeldBack));
        assert!(matches!(s.make_room(flood, 5_000), Room::HeldBack));
        assert!(matches!(s.make_room(flood, 5_150), Room::HeldBack));
        assert_eq!(s.map.len(), 5);
        assert!(
            s.map.contains_key(&real),
            "the young real session was evicted"
        );
        let retrying = pair(300);
        assert!(matches!(s.make_room(retrying, 5_100), Room::HeldBack));
        assert!(
            matches!(s.make_room(retrying, 6_100), Room::Wait),
            "a real retry"
        );
        assert_eq!(s.map.len(), 4);
    }

    /// Sessions that never had a reply and went quiet evict first, the longest idle, with
    /// no datagram held back; an answered one that went quiet is evicted only when no
    /// unanswered one is left.
    #[test]
    fn idle_unanswered_sessions_go_first() {
        let mut s = UdpSessions::new();
        let mut keep = Vec::new();
        add(&mut s, &mut keep, pair(0), 100, true);
        add(&mut s, &mut keep, pair(1), 300, false);
        add(&mut s, &mut keep, pair(2), 200, false);
        assert!(matches!(s.make_room(pair(9), 5_000), Room::Wait));
        assert!(!s.map.contains_key(&pair(2)));
        assert!(matches!(s.make_room(pair(8), 5_000), Room::Wait));
        assert!(!s.map.contains_key(&pair(1)));
        assert!(matches!(s.make_room(pair(7), 5_000), Room::Wait));
        assert!(s.map.is_empty());
    }
}
