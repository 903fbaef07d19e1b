//! Connecting to a host name: Happy Eyeballs (RFC 8305), so that a family whose path is
//! broken (an IPv6 route into a black hole, the usual case on VPNs) costs a name a quarter
//! of a second, not the 246 s of SYN retries before one attempt gives up; and a family whose
//! name server never answers (a middlebox that drops AAAA queries) costs it 50 ms, not the
//! resolver's whole timeout.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use synack_core::SocketOptions;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::TcpStream;
use crate::lookup::{next_answer, telling, AddrLookup};
use crate::Stack;

/// RFC 8305 §3: "the recommended value for the Resolution Delay is 50 milliseconds": how
/// long the other family's answer, come first, waits for the preferred one's.
pub(crate) const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// RFC 8305 §5: once a connection is made, "the DNS client resolver SHOULD still process
/// DNS replies from the network for a short period of time (recommended to be 1 second), as
/// they will populate the DNS cache": how long the lookups still out then run on.
pub(crate) const LATE_ANSWERS: Duration = Duration::from_secs(1);

/// RFC 8305 §5: "the recommended value for the Connection Attempt Delay is 250
/// milliseconds": how long an attempt has before the next one starts beside it.
pub(crate) const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The most attempts running at once. RFC 8305 §5 sets no bound, but a name can have
/// thousands of addresses (a 64 KiB answer over TCP), each a connection in SYN-SENT for
/// minutes if nobody answers: without one, a single `connect` to a hostile name held about
/// a thousand connections. Past this many, the next attempt waits for one to fail (hyper-util
/// runs two at most, tokio one).
pub(crate) const MAX_ATTEMPTS_IN_FLIGHT: usize = 8;

/// `addrs` in the order RFC 8305 §4 tries them: the families alternate, starting with IPv6
/// if `lead_v6` (and it has any), each family's addresses in their order.
pub(crate) fn interleave(addrs: Vec<SocketAddr>, lead_v6: bool) -> Vec<SocketAddr> {
    let (mut lead, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == lead_v6);
    let mut out = Vec::with_capacity(lead.len() + other.len());
    let (mut a, mut b) = (lead.drain(..), other.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// The addresses not tried yet, in the order they will be.
#[derive(Debug, Default)]
struct Plan {
    pending: Vec<SocketAddr>,
    /// Every address taken in, so that one given twice (by two lookups, or twice in one
    /// answer) is tried once.
    seen: HashSet<SocketAddr>,
    /// The family to begin with: the preferred lookup's first address's, once it answers.
    lead_v6: Option<bool>,
    /// The family of the last attempt started.
    last_v6: Option<bool>,
}

impl Plan {
    /// Takes in a lookup's answer. RFC 8305 §4: "If new addresses are received while
    /// connection attempts are in progress, they SHOULD be incorporated into the list of
    /// remaining addresses to try": the families still alternate, from the one the last
    /// attempt was not of.
    fn add(&mut self, addrs: Vec<SocketAddr>) {
        for addr in addrs {
            if self.seen.insert(addr) {
                self.pending.push(addr);
            }
        }
        let Some(&first) = self.pending.first() else {
            return;
        };
        let lead_v6 = match (self.last_v6, self.lead_v6) {
            (Some(last), _) => !last,
            (None, Some(lead)) => lead,
            (None, None) => first.is_ipv6(),
        };
        self.pending = interleave(std::mem::take(&mut self.pending), lead_v6);
    }

    fn next(&mut self) -> Option<SocketAddr> {
        if self.pending.is_empty() {
            return None;
        }
        let addr = self.pending.remove(0);
        self.last_v6 = Some(addr.is_ipv6());
        Some(addr)
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Connects to a host name whose addresses `lookups` find (the preferred one first: the
/// AAAA query before the A one, RFC 8305 §3's default), RFC 8305's way:
///
/// - §3: the attempts start as soon as the preferred lookup has answered; another's answer,
///   come first, waits [`RESOLUTION_DELAY`] for it, and then goes ahead alone. Answers that
///   come later join the addresses still to try (§4).
/// - §5: one attempt at a time, the next started when the last fails or has had
///   [`CONNECTION_ATTEMPT_DELAY`] without an answer, the earlier ones still running beside
///   it, up to [`MAX_ATTEMPTS_IN_FLIGHT`] of them. The first connection made wins, and the
///   attempts still running are abandoned (their tasks aborted, as a cancelled `connect`
///   is).
///
/// If every attempt fails, the last attempt's error is returned, once every lookup has
/// answered or given up (an answer still to come may have the address that works); if
/// there were no attempts, the lookups' error (`NotFound` when the name has no address).
pub(crate) async fn first_to_connect(
    stack: &Stack,
    lookups: Vec<AddrLookup>,
) -> io::Result<TcpStream> {
    let stack = stack.clone();
    race(lookups, move |addr| {
        let stack = stack.clone();
        async move {
            TcpStream::connect_with(&stack, addr, None, &SocketOptions::default(), None).await
        }
    })
    .await
}

/// [`first_to_connect`] with the connection attempt given: `connect(addr)` runs as a task
/// of its own.
async fn race<T, F, Fut>(lookups: Vec<AddrLookup>, connect: F) -> io::Result<T>
where
    T: Send + 'static,
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
{
    let mut lookups: Vec<Option<AddrLookup>> = lookups.into_iter().map(Some).collect();
    let mut plan = Plan::default();
    let mut attempts = JoinSet::new();
    let mut started = false;
    // When the first attempt starts without the preferred lookup's answer (§3).
    let mut resolution_ends: Option<Instant> = None;
    // When the next attempt starts beside those running (§5).
    let mut next_attempt = Instant::now();
    let (mut lookup_error, mut last_error) = (None, None);
    let later =
        |at: Option<Instant>| at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    // Starts an attempt; returns when the next may start beside it.
    let start = |attempts: &mut JoinSet<io::Result<T>>, addr| {
        attempts.spawn(connect(addr));
        Instant::now() + CONNECTION_ATTEMPT_DELAY
    };
    loop {
        let preferred_answered = lookups.first().is_none_or(Option::is_none);
        let delay_over = resolution_ends.is_some_and(|at| at <= Instant::now());
        let begin = !started && (preferred_answered || delay_over);
        // The first attempt, or the next at once when none is running (they all failed
        // while a lookup was still out).
        if begin || (started && attempts.is_empty()) {
            if let Some(addr) = plan.next() {
                started = true;
                next_attempt = start(&mut attempts, addr);
            }
        }
        let answering = lookups.iter().any(Option::is_some);
        if attempts.is_empty() && plan.is_empty() && !answering {
            return Err(last_error.or(lookup_error).unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "could not resolve to any address")
            }));
        }
        tokio::select! {
            (i, answer) = next_answer(&mut lookups), if answering => match answer {
                Ok(addrs) if addrs.is_empty() => {
                    let none = io::Error::new(io::ErrorKind::NotFound, "no address");
                    lookup_error = Some(telling(lookup_error, none));
                }
                Ok(addrs) => {
                    if i == 0 {
                        plan.lead_v6 = addrs.first().map(SocketAddr::is_ipv6);
                    } else if !started && resolution_ends.is_none() {
                        resolution_ends = Some(Instant::now() + RESOLUTION_DELAY);
                    }
                    plan.add(addrs);
                }
                Err(e) => lookup_error = Some(telling(lookup_error, e)),
            },
            joined = attempts.join_next(), if !attempts.is_empty() => match joined {
                Some(Ok(Ok(stream))) => {
                    // The other attempts are aborted as `attempts` drops; the lookups still
                    // out run on a little, for the cache.
                    for lookup in lookups.into_iter().flatten() {
                        tokio::spawn(tokio::time::timeout(LATE_ANSWERS, lookup));
                    }
                    return Ok(stream);
                }
                Some(Ok(Err(e))) => {
                    last_error = Some(e);
                    // A failed attempt starts the next at once (RFC 8305 §5).
                    if let Some(addr) = plan.next() {
                        next_attempt = start(&mut attempts, addr);
                    }
                }
                Some(Err(joined)) if joined.is_panic() => {
                    std::panic::resume_unwind(joined.into_panic())
                }
                // Cancelled: only the runtime shutting down does that.
                Some(Err(joined)) => last_error = Some(io::Error::other(joined)),
                None => {}
            },
            () = tokio::time::sleep_until(next_attempt),
                if started
                    && !attempts.is_empty()
                    && attempts.len() < MAX_ATTEMPTS_IN_FLIGHT
                    && !plan.is_empty() =>
            {
                if let Some(addr) = plan.next() {
                    next_attempt = start(&mut attempts, addr);
                }
            }
            () = tokio::time::sleep_until(later(resolution_ends)),
                if !started && resolution_ends.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_from_the_lead() {
        let mixed = addrs(&[
            "[2001:2::1]:80",
            "[2001:2::2]:80",
            "[2001:2::3]:80",
            "198.18.0.1:80",
            "198.18.0.2:80",
        ]);
        assert_eq!(
            interleave(mixed.clone(), true),
            addrs(&[
                "[2001:2::1]:80",
                "198.18.0.1:80",
                "[2001:2::2]:80",
                "198.18.0.2:80",
                "[2001:2::3]:80",
            ])
        );
        assert_eq!(
            interleave(mixed, false),
            addrs(&[
                "198.18.0.1:80",
                "[2001:2::1]:80",
                "198.18.0.2:80",
                "[2001:2::2]:80",
                "[2001:2::3]:80",
            ])
        );
        let v4 = addrs(&["198.18.0.1:80", "198.18.0.2:80"]);
        assert_eq!(interleave(v4.clone(), true), v4);
        assert!(interleave(Vec::new(), true).is_empty());
    }

    /// A lookup answering `list` (or failing with `kind`) after `ms` of virtual time.
    fn answer(ms: u64, list: &[&str]) -> AddrLookup {
        let list = addrs(list);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(list)
        })
    }

    fn fail(ms: u64, kind: io::ErrorKind) -> AddrLookup {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Err(io::Error::new(kind, "lookup"))
        })
    }

    fn never() -> AddrLookup {
        Box::pin(std::future::pending())
    }

    /// Runs a race in which `outcome(addr)` says how each attempt ends and after how long
    /// (`Ok` connects); returns what the race gave, when, and each attempt's start.
    async fn run(
        lookups: Vec<AddrLookup>,
        outcome: impl Fn(SocketAddr) -> (u64, io::Result<()>),
    ) -> (io::Result<SocketAddr>, u64, Vec<(u64, SocketAddr)>) {
        let t0 = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let log = starts.clone();
        let got = race(lookups, move |addr| {
            log.lock()
                .unwrap()
                .push(((Instant::now() - t0).as_millis() as u64, addr));
            let (ms, result) = outcome(addr);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                result.map(|()| addr)
            }
        })
        .await;
        let took = (Instant::now() - t0).as_millis() as u64;
        let starts = starts.lock().unwrap().clone();
        (got, took, starts)
    }

    const V6: &str = "[2001:2::1]:80";
    const V4: &str = "198.18.0.1:80";

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A name with a thousand addresses nobody answers at: the attempts start 250 ms apart
    /// up to `MAX_ATTEMPTS_IN_FLIGHT` running, then one more only as one fails. There
    /// was no bound: a single connect held a connection for every 250 ms of a SYN's
    /// timeout, about a thousand.
    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_are_bounded() {
        let many: Vec<String> = (0..1000)
            .map(|i| format!("198.18.{}.{}:80", i / 250, i % 250 + 1))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (got, took, starts) = run(vec![answer(0, &many)], |_| {
            (60_000, Err(io::ErrorKind::TimedOut.into()))
        })
        .await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(starts.len(), 1000);
        // The most running at once, from each attempt's 60 s span.
        let peak = starts
            .iter()
            .map(|&(t, _)| {
                starts
                    .iter()
                    .filter(|&&(u, _)| u <= t && t < u + 60_000)
                    .count()
            })
            .max()
            .unwrap();
        assert_eq!(peak, MAX_ATTEMPTS_IN_FLIGHT);
        let first: Vec<u64> = starts.iter().take(9).map(|&(t, _)| t).collect();
        assert_eq!(first, [0, 250, 500, 750, 1000, 1250, 1500, 1750, 60_000]);
        assert_eq!(took, 1000 / MAX_ATTEMPTS_IN_FLIGHT as u64 * 60_000 + 1750);
    }

    /// The AAAA answer first: its address is tried at once; the A answer joins later.
    #[tokio::test(start_paused = true)]
    async fn the_preferred_answer_starts_at_once() {
        let (got, took, starts) = run(vec![answer(10, &[V6]), answer(30, &[V4])], |addr| {
            if addr.is_ipv6() {
                (1_000, Err(io::ErrorKind::TimedOut.into()))
            } else {
                (5, Ok(()))
            }
        })
        .await;
        assert_eq!(got.unwrap(), a(V4));
        assert_eq!(starts, vec![(10, a(V6)), (260, a(V4))]);
        assert_eq!(took, 265);
    }

    /// The A answer first waits 50 ms for the AAAA one; come within them, IPv6 goes first.
    #[tokio::test(start_paused = true)]
    async fn the_other_answer_waits_the_resolution_delay() {
        let (got, _, starts) =
            run(vec![answer(40, &[V6]), answer(10, &[V4])], |_| (5, Ok(()))).await;
        assert_eq!(got.unwrap(), a(V6));
        assert_eq!(starts, vec![(40, a(V6))]);
    }

    /// An AAAA query never answered (a middlebox dropping them) costs the name the
    /// resolution delay, not the resolver's timeout; a late AAAA answer joins the race.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_aaaa_query_costs_fifty_milliseconds() {
        let (got, took, starts) = run(vec![never(), answer(10, &[V4])], |_| (5, Ok(()))).await;
        assert_eq!(got.unwrap(), a(V4));
        assert_eq!(starts, vec![(60, a(V4))]);
        assert_eq!(took, 65);

        let (got, _, starts) = run(
            vec![answer(100, &[V6]), answer(10, &[V4, "198.18.0.2:80"])],
            |addr| {
                if addr.is_ipv4() {
                    (10_000, Err(io::ErrorKind::TimedOut.into()))
                } else {
                    (5, Ok(()))
                }
            },
        )
        .await;
        assert_eq!(got.unwrap(), a(V6));
        // IPv4 at the end of the delay; the AAAA answer at 100 ms is next in turn, at 310.
        assert_eq!(starts, vec![(60, a(V4)), (310, a(V6))]);
    }

    /// A failure starts the next attempt at once; all failed, the last error is returned;
    /// attempts that failed while a lookup was out start again when it answers.
    #[tokio::test(start_paused = true)]
    async fn failures_move_on_and_the_last_is_returned() {
        let refused = |_| (3, Err(io::ErrorKind::ConnectionRefused.into()));
        let (got, took, starts) = run(
            vec![answer(0, &[V6, "[2001:2::2]:80"]), answer(0, &[V4])],
            refused,
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(starts.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(took, 9);

        let (got, took, starts) = run(vec![answer(0, &[V6]), answer(500, &[V4])], |addr| {
            if addr.is_ipv6() {
                (3, Err(io::ErrorKind::ConnectionRefused.into()))
            } else {
                (3, Ok(()))
            }
        })
        .await;
        assert_eq!(got.unwrap(), a(V4));
        assert_eq!(starts, vec![(0, a(V6)), (500, a(V4))]);
        assert_eq!(took, 503);
    }

    /// A failure starts the next attempt at once even beside one still running, and the
    /// next after that gets its own full delay.
    #[tokio::test(start_paused = true)]
    async fn a_failure_beside_a_running_attempt_starts_the_next() {
        let (got, _, starts) = run(
            vec![
                answer(0, &[V6, "[2001:2::2]:80"]),
                answer(0, &[V4, "198.18.0.2:80"]),
            ],
            |addr| match addr.to_string().as_str() {
                V6 => (260, Err(io::ErrorKind::ConnectionRefused.into())),
                "198.18.0.2:80" => (5, Ok(())),
                _ => (100_000, Err(io::ErrorKind::TimedOut.into())),
            },
        )
        .await;
        assert_eq!(got.unwrap(), a("198.18.0.2:80"));
        // V6 at 0, V4 at 250; V6 fails at 260 and ::2 starts then; 198.18.0.2 gets ::2's
        // full delay, 510 (not 500, V4's deadline), and connects at 515.
        assert_eq!(
            starts,
            vec![
                (0, a(V6)),
                (250, a(V4)),
                (260, a("[2001:2::2]:80")),
                (510, a("198.18.0.2:80"))
            ]
        );
    }

    /// An address given twice is tried once; an answer with no address neither starts
    /// anything nor spins.
    #[tokio::test(start_paused = true)]
    async fn duplicates_and_empty_answers() {
        let refused = |_| (3, Err(io::ErrorKind::ConnectionRefused.into()));
        let (got, _, starts) = run(vec![answer(0, &[V6, V6]), answer(0, &[V4, V4])], refused).await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(starts, vec![(0, a(V6)), (3, a(V4))]);

        let (got, took, starts) =
            run(vec![answer(100, &[V6]), answer(0, &[])], |_| (5, Ok(()))).await;
        assert_eq!(got.unwrap(), a(V6));
        assert_eq!((took, starts), (105, vec![(100, a(V6))]));
        let (got, _, _) = run(vec![answer(0, &[]), answer(0, &[])], |_| (5, Ok(()))).await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    /// Sets its flag when dropped.
    struct Dropped(Arc<Mutex<bool>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }

    /// The race given up (its future dropped) aborts its attempts and drops its lookups;
    /// won, it lets the lookups still out answer for another second (the cache), no longer.
    #[tokio::test(start_paused = true)]
    async fn cancelled_or_won_the_rest_is_let_go() {
        let flags: Vec<Arc<Mutex<bool>>> = (0..3).map(|_| Arc::default()).collect();
        let slow_lookup = |flag: Arc<Mutex<bool>>, ms: u64| -> AddrLookup {
            Box::pin(async move {
                let _guard = Dropped(flag);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(addrs(&["[2001:2::9]:80"]))
            })
        };
        let attempt_flags = flags[..2].to_vec();
        let n = Arc::new(Mutex::new(0));
        // Given up at 400 ms: the A answer's attempt started at 50, the second at 300.
        let given_up = tokio::time::timeout(
            Duration::from_millis(400),
            race(
                vec![
                    slow_lookup(flags[2].clone(), 10_000),
                    answer(0, &[V4, "198.18.0.2:80"]),
                ],
                move |_| {
                    let mut n = n.lock().unwrap();
                    let guard = Dropped(attempt_flags[*n].clone());
                    *n += 1;
                    async move {
                        let _guard = guard;
                        std::future::pending::<io::Result<()>>().await
                    }
                },
            ),
        )
        .await;
        assert!(given_up.is_err());
        tokio::task::yield_now().await;
        for (i, flag) in flags.iter().enumerate() {
            assert!(*flag.lock().unwrap(), "part {i} of the race outlived it");
        }

        // Won at 55 ms (the A answer, the 50 ms delay, 5 ms to connect): the AAAA lookup,
        // due at 500 ms, finishes on its own; one due at 5 s is dropped at 1,055 ms.
        let answered = Arc::new(Mutex::new(false));
        let done = answered.clone();
        let late: AddrLookup = Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            *done.lock().unwrap() = true;
            Ok(addrs(&[V6]))
        });
        let (got, took, _) = run(vec![late, answer(0, &[V4])], |_| (5, Ok(()))).await;
        assert_eq!((got.unwrap(), took), (a(V4), 55));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(*answered.lock().unwrap(), "the late answer was cut off");

        let dropped = Arc::new(Mutex::new(false));
        let (got, _, _) = run(
            vec![slow_lookup(dropped.clone(), 5_000), answer(0, &[V4])],
            |_| (5, Ok(())),
        )
        .await;
        assert!(got.is_ok());
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(!*dropped.lock().unwrap(), "dropped before its second");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(*dropped.lock().unwrap(), "kept past its second");
    }

    /// No address at all: the lookups' error, the telling one of the two.
    #[tokio::test(start_paused = true)]
    async fn without_addresses_the_lookup_error_is_returned() {
        let (got, _, starts) = run(
            vec![
                fail(5, io::ErrorKind::NotFound),
                fail(10, io::ErrorKind::TimedOut),
            ],
            |_| (1, Ok(())),
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(starts.is_empty());
        let (got, _, _) = run(
            vec![
                fail(5, io::ErrorKind::NotFound),
                fail(1, io::ErrorKind::NotFound),
            ],
            |_| (1, Ok(())),
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::NotFound);
        // One family failing does not stop the other.
        let (got, _, _) = run(
            vec![fail(5, io::ErrorKind::TimedOut), answer(1, &[V4])],
            |_| (1, Ok(())),
        )
        .await;
        assert_eq!(got.unwrap(), a(V4));
    }
}
