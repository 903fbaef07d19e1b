//! Path MTUs that ICMP errors lowered, per destination (RFC 1191, RFC 8201): what Linux
//! keeps as exceptions on the route to each destination (`fib_nh_exception` for IPv4,
//! `rt6_exception` for IPv6), which every socket sending there sees, TCP and UDP alike. A
//! Packet Too Big (or IPv4's fragmentation needed) quoting a segment or datagram of ours
//! lowers the path MTU to its destination for `Config::pmtu_expires` (10 minutes, Linux's
//! `ip_rt_mtu_expires`).
//!
//! - UDP, as Linux for a socket with the default `IP_PMTUDISC_WANT` /
//!   `IPV6_PMTUDISC_WANT`: a datagram that fits the link goes whole (IPv4 with DF set), and
//!   later datagrams larger than the path's MTU go in fragments of it (`ip_fragment`,
//!   `ip6_fragment`). Without it, a datagram between the path's MTU and the link's is lost
//!   at that hop every time: IPv4's because of its DF bit, IPv6's because routers never
//!   fragment.
//! - TCP: each connection keeps the report it took itself (`PathMtu`, with its own expiry
//!   and Linux's rules for weighing reports); a connection that starts while one is in force
//!   for its peer starts from it (`Connection::inherit_path_mtu`), as a Linux socket from its
//!   route's exception, rather than losing its first full-sized segments to learn it again.
//!
//! The table is bounded: an error about a destination not in it, once it is full, takes the
//! place of the entry that expires first.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::IPV6_MIN_MTU;
use crate::time::Instant;

/// Destinations whose lowered path MTU is kept at most.
const KEPT: usize = 1024;

/// Linux's smallest IPv4 path MTU (`ip_rt_min_pmtu`): a lower report sets this, and the
/// path is then "locked", its datagrams sent without DF (`__ip_rt_update_pmtu`).
const MIN_V4: u16 = 552;

/// One destination's lowered path MTU.
#[derive(Debug, Clone, Copy)]
struct Entry {
    mtu: u16,
    /// IPv4: a report below [`MIN_V4`] came; datagrams go without DF.
    locked: bool,
    expires: Instant,
}

/// The destinations whose path MTU an ICMP error lowered.
#[derive(Debug, Default)]
pub(super) struct PathMtus {
    entries: HashMap<IpAddr, Entry>,
    /// The earliest expiry held, so that forgetting costs nothing until it comes.
    next_expiry: Option<Instant>,
}

impl PathMtus {
    /// A report that `dst`'s path carries `reported` bytes at most, with `link` the device's
    /// MTU; kept until `expires`. A report at or above what is known already changes
    /// nothing (`__ip_rt_update_pmtu`, `rt6_do_update_pmtu` only lower it). Returns whether
    /// the path MTU went down.
    pub(super) fn lower(
        &mut self,
        dst: IpAddr,
        reported: u32,
        link: usize,
        expires: Instant,
    ) -> bool {
        let (mtu, locked) = if dst.is_ipv6() {
            // IPv6's minimum link MTU (RFC 8200 §5): RFC 8201 §4 forbids going below it.
            (reported.max(IPV6_MIN_MTU as u32), false)
        } else if reported < u32::from(MIN_V4) {
            (u32::from(MIN_V4), true)
        } else {
            (reported, false)
        };
        let known = self.get(dst).map_or(link, |(m, _)| usize::from(m));
        if mtu as usize >= known {
            return false;
        }
        if !self.entries.contains_key(&dst) && self.entries.len() >= KEPT {
            let first = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(ip, _)| *ip);
            if let Some(ip) = first {
                self.entries.remove(&ip);
            }
        }
        // `mtu` < `known` <= the link's MTU, which fits a u16 for any device that matters;
        // saturate all the same.
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
        self.entries.insert(
            dst,
            Entry {
                mtu,
                locked,
                expires,
            },
        );
        self.next_expiry = Some(self.next_expiry.map_or(expires, |t| t.min(expires)));
        true
    }

    /// The path MTU to `dst` if an error lowered it, and whether it is locked (IPv4: no DF).
    pub(super) fn get(&self, dst: IpAddr) -> Option<(u16, bool)> {
        self.entries.get(&dst).map(|e| (e.mtu, e.locked))
    }

    /// What [`get`](Self::get) returns for `dst`, with when it expires.
    pub(super) fn get_until(&self, dst: IpAddr) -> Option<(u16, bool, Instant)> {
        self.entries.get(&dst).map(|e| (e.mtu, e.locked, e.expires))
    }

    /// Forget what expired by `now`: the path is probed again at the link's MTU.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        self.next_expiry = self.entries.values().map(|e| e.expires).min();
    }

    /// The link's MTU is now `link`: a path MTU at or above it says nothing the link does not,
    /// and is forgotten, as Linux lowers its route exceptions to a device's new MTU and
    /// unlocks them (`fib_nhc_update_mtu`, `rt6_mtu_change_route`).
    pub(super) fn forget_at_or_above(&mut self, link: usize) {
        if self.entries.is_empty() {
            return;
        }
        self.entries.retain(|_, e| usize::from(e.mtu) < link);
        self.next_expiry = self.entries.values().map(|e| e.expires).min();
    }

    /// How many destinations are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_lower_reports_count_and_they_expire() {
        let mut p = PathMtus::default();
        let v6: IpAddr = "2001:2::9".parse().unwrap();
        let v4: IpAddr = "198.18.0.9".parse().unwrap();
        let t = Instant::from_secs(100);
        let later = t + Duration::from_secs(600);
        assert!(!p.lower(v6, 1500, 1500, later), "not below the link");
        assert!(p.lower(v6, 1400, 1500, later));
        assert!(!p.lower(v6, 1450, 1500, later), "not below what is known");
        assert!(p.lower(v6, 600, 1500, later));
        assert_eq!(p.get(v6), Some((1280, false)), "never below IPv6's minimum");
        assert!(p.lower(v4, 300, 1500, later));
        assert_eq!(p.get(v4), Some((552, true)), "Linux's floor, locked");
        p.expire(t + Duration::from_secs(599));
        assert_eq!(p.len(), 2);
        p.expire(later);
        assert_eq!(p.len(), 0);
    }

    /// A link MTU at or below a path's makes the report say nothing more: it goes, lock and
    /// all, and the earliest expiry is the one left.
    #[test]
    fn a_lower_link_forgets_the_reports_it_makes_meaningless() {
        let mut p = PathMtus::default();
        let (a, b): (IpAddr, IpAddr) = (
            "198.18.0.9".parse().unwrap(),
            "198.18.0.10".parse().unwrap(),
        );
        let t = Instant::from_secs(100);
        assert!(p.lower(a, 1200, 1500, t + Duration::from_secs(10)));
        assert!(p.lower(b, 300, 1500, t + Duration::from_secs(20)));
        p.forget_at_or_above(1200);
        assert_eq!((p.get(a), p.get(b)), (None, Some((552, true))));
        assert_eq!(p.next_expiry, Some(t + Duration::from_secs(20)));
        p.forget_at_or_above(552);
        assert_eq!((p.len(), p.next_expiry), (0, None));
        // And a report is weighed against the new link from then on.
        assert!(!p.lower(a, 1200, 1000, t + Duration::from_secs(30)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut p = PathMtus::default();
        let t = Instant::from_secs(100);
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + i));
            p.lower(ip, 1400, 1500, t + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(p.len(), KEPT);
    }
}
