//! The limits on the ICMP errors the endpoint sends (port unreachable, intercepted SYNs'
//! unreachables, parameter problems, reassembly timeouts), as Linux 6.12+ applies them in
//! `icmp_send`: a bucket per destination first (`icmpv4_xrlim_allow`, `icmpv6_xrlim_allow`:
//! `inet_peer_xrlim_allow` with `icmp_ratelimit`, 1 s, and a burst of 6), and a global
//! bucket (`icmp_global_allow`: `icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50) that each
//! message sent draws an unpredictable 0, 1 or 2 credits from (`icmp_global_consume`).
//!
//! The order and the random draw are Linux's answer to CVE-2020-25705 (SAD DNS): with one
//! global bucket of fixed cost, an off-path attacker spends the burst on datagrams spoofed
//! from a DNS server to a range of guessed ports, then sends one of its own to a closed
//! port; an answer means one guess hit the resolver's open port and drew no error. Here the
//! spoofed datagrams draw at most six errors from the server's own bucket, and what they
//! take from the global one cannot be counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::isn::Secrets;
use crate::time::Instant;

/// ICMP errors the endpoint sends per second at most, on average (Linux's
/// `icmp_msgs_per_sec`).
const MSGS_PER_SEC: u64 = 1000;
/// ... and in a burst (Linux's `icmp_msgs_burst`).
const MSGS_BURST: u64 = 50;
/// A destination earns one error a second (Linux's `icmp_ratelimit`, 1000 ms) ...
const PEER_INTERVAL_US: u64 = 1_000_000;
/// ... and saves up at most six (`XRLIM_BURST_FACTOR`).
const PEER_BURST: u64 = 6;
/// Destinations whose buckets are kept; past that the oldest entry goes (a bucket forgotten
/// is a full one again, as for a destination Linux's peer cache no longer holds), so that
/// spoofed sources cannot grow the table. 4096 entries take about 200 KiB.
const PEERS_KEPT: usize = 4096;

/// The global and per-destination ICMP buckets.
#[derive(Debug, Default)]
pub(super) struct IcmpLimiter {
    /// Global credit in microseconds (one message costs `1_000_000 / MSGS_PER_SEC`); below
    /// zero after a draw of 2, as Linux's may go.
    credit: i64,
    filled: Option<Instant>,
    /// Per destination: credit in microseconds, and when it was last filled.
    peers: HashMap<IpAddr, (u64, Instant)>,
    /// The destinations in `peers`, in the order they came.
    order: VecDeque<IpAddr>,
    /// Messages sent: the count each random draw is keyed with.
    sent: u64,
}

impl IcmpLimiter {
    /// Whether an ICMP error to `peer` may go now; if so it is charged to both buckets.
    pub(super) fn allow(&mut self, now: Instant, peer: IpAddr, secrets: &Secrets) -> bool {
        let cost = (1_000_000 / MSGS_PER_SEC) as i64;
        let cap = cost * MSGS_BURST as i64;
        let elapsed = match self.filled {
            Some(t) => now.saturating_duration_since(t).as_micros(),
            None => cap as u128,
        };
        self.credit = (self.credit as i128 + elapsed as i128).min(cap as i128) as i64;
        self.filled = Some(now);
        // `icmp_global_allow`: any credit left lets the per-destination test decide.
        if self.credit <= 0 || !self.peer_allows(now, peer) {
            return false;
        }
        self.credit -= cost * secrets.icmp_credit(self.sent) as i64;
        self.sent = self.sent.wrapping_add(1);
        true
    }

    /// `inet_peer_xrlim_allow`: `peer`'s bucket, one error a second and six saved at most.
    fn peer_allows(&mut self, now: Instant, peer: IpAddr) -> bool {
        let full = PEER_BURST * PEER_INTERVAL_US;
        let (credit, last) = match self.peers.get_mut(&peer) {
            Some(entry) => entry,
            None => {
                if self.peers.len() >= PEERS_KEPT {
                    if let Some(old) = self.order.pop_front() {
                        self.peers.remove(&old);
                    }
                }
                self.order.push_back(peer);
                self.peers.entry(peer).or_insert((full, now))
            }
        };
        let earned = now.saturating_duration_since(*last).as_micros();
        *credit = (u128::from(*credit) + earned).min(u128::from(full)) as u64;
        *last = now;
        if *credit < PEER_INTERVAL_US {
            return false;
        }
        *credit -= PEER_INTERVAL_US;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i))
    }

    #[test]
    fn six_to_a_destination_then_one_a_second() {
        let secrets = Secrets::new(Some([3; 32]));
        let mut l = IcmpLimiter::default();
        let mut now = Instant::from_secs(10);
        let sent = (0..100).filter(|_| l.allow(now, ip(1), &secrets)).count();
        assert_eq!(sent, 6);
        now += Duration::from_millis(999);
        assert!(!l.allow(now, ip(1), &secrets));
        now += Duration::from_millis(1);
        assert!(l.allow(now, ip(1), &secrets));
        // Another destination has a bucket of its own.
        assert!(l.allow(now, ip(2), &secrets));
    }

    #[test]
    fn the_global_bucket_averages_one_credit_a_message() {
        let secrets = Secrets::new(Some([4; 32]));
        let mut l = IcmpLimiter::default();
        let now = Instant::from_secs(10);
        // One message to each of many destinations: only the global bucket limits, about
        // 50 credits' worth, whatever each draw was.
        let sent = (0..1000).filter(|&i| l.allow(now, ip(i), &secrets)).count();
        assert!((30..=80).contains(&sent), "{sent}");
        // A second later it has earned a thousand more credits.
        let later = now + Duration::from_secs(1);
        let more = (1000..3000)
            .filter(|&i| l.allow(later, ip(i), &secrets))
            .count();
        assert!(
            (30..=80).contains(&more),
            "{more}: refilled only up to the burst"
        );
    }

    #[test]
    fn the_table_of_destinations_is_bounded() {
        let secrets = Secrets::new(Some([5; 32]));
        let mut l = IcmpLimiter::default();
        let mut now = Instant::from_secs(10);
        for i in 0..20_000 {
            now += Duration::from_millis(1);
            l.allow(now, ip(i), &secrets);
        }
        assert!(l.peers.len() <= PEERS_KEPT && l.order.len() == l.peers.len());
    }
}
