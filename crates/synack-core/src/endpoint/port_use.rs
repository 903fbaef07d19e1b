//! The local addresses that connections and TIME-WAIT entries use, by port, with how many
//! of them set SO_REUSEADDR and SO_REUSEPORT and how many have a port a bind gave: what Linux keeps in its
//! bind buckets, so that `bind(2)` and an ephemeral port search look a port up instead of
//! walking every connection.
//!
//! A port usually has one address (the stack's own), kept inline: an outgoing connection's
//! ephemeral port is a new port, and it then costs no allocation. In intercept mode one port
//! (443, say) may have as many as there are flows, each addressed to another foreign host:
//! the others are kept hashed, so that a flow that comes or goes costs the same however many
//! share its port. They were a list searched from the start, which made the table's upkeep
//! quadratic in the flows to one port.

use std::net::{IpAddr, SocketAddr};

use super::bind::{overlaps, PortSharing};
use super::table::{table, Table};
use crate::shrink::shrink_after_peak;
use crate::tcp::connection::PortClaim;

/// Users of one local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Users {
    ip: IpAddr,
    /// How many share the port each way, by [`PortSharing::index`]: the first, with
    /// neither option, share it with no one.
    by_sharing: [u32; 4],
    /// Of all, those on a port a bind gave ([`PortClaim::bound`]).
    bound: u32,
}

impl Users {
    fn new(ip: IpAddr) -> Users {
        Users {
            ip,
            by_sharing: [0; 4],
            bound: 0,
        }
    }

    fn any(&self) -> bool {
        self.by_sharing.iter().any(|&n| n > 0)
    }
}

/// The addresses in use on one port: never empty (a port with none leaves the table).
#[derive(Debug)]
struct PortUsers {
    first: Users,
    /// The others, by address (a table allocates nothing while empty).
    rest: Table<IpAddr, Users>,
}

impl PortUsers {
    fn iter(&self) -> impl Iterator<Item = &Users> + '_ {
        std::iter::once(&self.first).chain(self.rest.values())
    }

    fn get_mut(&mut self, ip: IpAddr) -> Option<&mut Users> {
        if self.first.ip == ip {
            return Some(&mut self.first);
        }
        self.rest.get_mut(&ip)
    }

    /// `ip`'s entry, made if there is none.
    fn entry(&mut self, ip: IpAddr) -> &mut Users {
        if self.first.ip == ip {
            return &mut self.first;
        }
        self.rest.entry(ip).or_insert_with(|| Users::new(ip))
    }

    /// Drops `ip`'s entry; `false` once none is left.
    fn remove(&mut self, ip: IpAddr) -> bool {
        if self.first.ip == ip {
            let Some(next) = self.rest.keys().next().copied() else {
                return false;
            };
            self.first = self.rest.remove(&next).expect("a key just seen");
        } else {
            self.rest.remove(&ip);
        }
        // A table emptied by a flood gives its memory back, and stays quick to walk.
        shrink_after_peak(&mut self.rest, 0);
        true
    }
}

/// Local addresses in use, by port (see the module documentation).
#[derive(Debug)]
pub(super) struct PortUse {
    /// Keyed by a port a peer may choose (an intercepted flow's destination): the
    /// endpoint's seeded hash, as its other tables.
    by_port: Table<u16, PortUsers>,
    /// The seed of each port's table of addresses.
    seed: u64,
}

impl PortUse {
    pub(super) fn new(seed: u64) -> PortUse {
        PortUse {
            by_port: table(seed),
            seed,
        }
    }

    /// One more user of `local`, with its claim.
    pub(super) fn add(&mut self, local: SocketAddr, claim: PortClaim) {
        let ip = local.ip();
        let seed = self.seed;
        let users = self
            .by_port
            .entry(local.port())
            .or_insert_with(|| PortUsers {
                first: Users::new(ip),
                rest: table(seed),
            });
        let user = users.entry(ip);
        user.by_sharing[claim.sharing().index()] += 1;
        user.bound += u32::from(claim.bound());
    }

    /// One user fewer of `local` (one that [`add`](Self::add) counted with `claim`).
    pub(super) fn remove(&mut self, local: SocketAddr, claim: PortClaim) {
        let Some(users) = self.by_port.get_mut(&local.port()) else {
            debug_assert!(false, "{local} was not in use");
            return;
        };
        let Some(user) = users.get_mut(local.ip()) else {
            debug_assert!(false, "{local} was not in use");
            return;
        };
        let count = &mut user.by_sharing[claim.sharing().index()];
        debug_assert!(*count > 0, "{local} ({claim:?}) was not in use");
        *count = count.saturating_sub(1);
        if claim.bound() {
            debug_assert!(user.bound > 0, "{local} ({claim:?}) was not in use");
            user.bound = user.bound.saturating_sub(1);
        }
        if !user.any() && !users.remove(local.ip()) {
            self.by_port.remove(&local.port());
            shrink_after_peak(&mut self.by_port, 0);
        }
    }

    /// Whether a socket binding `local` with `sharing` clashes with a user: one on an
    /// overlapping address (see `bind::overlaps`), unless the two share the port
    /// ([`PortSharing::shares_with`], Linux's `inet_bind_conflict`). With neither option,
    /// any user clashes.
    pub(super) fn clash(&self, local: SocketAddr, sharing: impl Into<PortSharing>) -> bool {
        let sharing = sharing.into();
        self.overlapping(local).any(|u| {
            (0..4).any(|k| u.by_sharing[k] > 0 && !sharing.shares_with(PortSharing::from_index(k)))
        })
    }

    /// Whether anything uses `port`, on any address (an ephemeral port is none of those).
    pub(super) fn port(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// Whether something on a port a bind gave uses `port`, on any address: no ephemeral
    /// connect takes it (Linux's `__inet_hash_connect` skips a bucket with `fastreuse >= 0`,
    /// a bucket being a port).
    pub(super) fn bound_port(&self, port: u16) -> bool {
        self.by_port
            .get(&port)
            .is_some_and(|users| users.iter().any(|u| u.bound > 0))
    }

    /// Every address in use, with whether all its users set SO_REUSEADDR.
    pub(super) fn addrs(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.by_port.iter().flat_map(|(&port, users)| {
            users.iter().map(move |u| {
                let without = (0..4).filter(|&k| !PortSharing::from_index(k).reuse_address);
                let all_reuse = without.map(|k| u.by_sharing[k]).sum::<u32>() == 0;
                (SocketAddr::new(u.ip, port), all_reuse)
            })
        })
    }

    fn overlapping(&self, local: SocketAddr) -> impl Iterator<Item = &Users> + '_ {
        self.by_port
            .get(&local.port())
            .into_iter()
            .flat_map(PortUsers::iter)
            .filter(move |u| overlaps(SocketAddr::new(u.ip, local.port()), local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const REUSE: PortClaim = PortClaim::new(true, false);
    const ALONE: PortClaim = PortClaim::new(false, false);

    #[test]
    fn counts_users_and_their_option_per_address() {
        let mut p = PortUse::new(7);
        p.add(a("198.18.0.2:80"), REUSE);
        p.add(a("198.18.0.2:80"), ALONE);
        p.add(a("198.18.0.3:80"), REUSE);
        assert!(p.clash(a("0.0.0.0:80"), false) && p.clash(a("198.18.0.3:80"), false));
        assert!(!p.clash(a("198.18.0.4:80"), false) && !p.clash(a("[::]:80"), false));
        assert!(p.port(80) && !p.port(81));
        assert!(p.clash(a("198.18.0.2:80"), true), "one without the option");
        assert!(!p.clash(a("198.18.0.3:80"), true));
        assert!(p.clash(a("198.18.0.3:80"), false));
        p.remove(a("198.18.0.2:80"), ALONE);
        assert!(!p.clash(a("0.0.0.0:80"), true));
        assert!(p.clash(a("0.0.0.0:80"), false));
        let mut addrs: Vec<_> = p.addrs().collect();
        addrs.sort();
        assert_eq!(
            addrs,
            [(a("198.18.0.2:80"), true), (a("198.18.0.3:80"), true)]
        );
        p.remove(a("198.18.0.2:80"), REUSE);
        // The port's first address (kept inline) went; the second takes its place.
        assert!(p.clash(a("198.18.0.3:80"), false) && !p.clash(a("198.18.0.2:80"), false));
        assert_eq!(p.addrs().collect::<Vec<_>>(), [(a("198.18.0.3:80"), true)]);
        p.remove(a("198.18.0.3:80"), REUSE);
        assert!(p.by_port.is_empty());
    }

    #[test]
    fn a_port_a_bind_gave_is_bound_while_any_of_its_users_lasts() {
        let mut p = PortUse::new(7);
        let bound = PortClaim::new(true, true);
        p.add(a("198.18.0.2:7000"), ALONE);
        assert!(p.port(7000) && !p.bound_port(7000));
        p.add(a("198.18.0.3:7000"), bound);
        p.add(a("198.18.0.3:7000"), bound);
        assert!(p.bound_port(7000) && !p.bound_port(7001));
        p.remove(a("198.18.0.3:7000"), bound);
        assert!(p.bound_port(7000), "one left");
        p.remove(a("198.18.0.3:7000"), bound);
        assert!(!p.bound_port(7000) && p.port(7000));
        p.remove(a("198.18.0.2:7000"), ALONE);
        assert!(p.by_port.is_empty());
    }

    /// A connection with SO_REUSEPORT (one a reuseport listener accepted) shares its port
    /// with a socket that sets SO_REUSEPORT, with or without SO_REUSEADDR.
    #[test]
    fn reuse_port_users_share_with_reuse_port_binds() {
        let mut p = PortUse::new(7);
        let port_only = ALONE.with_reuse_port(true);
        p.add(a("198.18.0.2:80"), port_only);
        let port = PortSharing {
            reuse_address: false,
            reuse_port: true,
        };
        assert!(!p.clash(a("0.0.0.0:80"), port));
        assert!(p.clash(a("0.0.0.0:80"), true));
        assert_eq!(p.addrs().collect::<Vec<_>>(), [(a("198.18.0.2:80"), false)]);
        p.remove(a("198.18.0.2:80"), port_only);
        assert!(p.by_port.is_empty());
    }

    /// Intercept mode's case: thousands of foreign addresses on one port, each looked up by
    /// its address, however many there are; taken away in another order than they came,
    /// the first (inline) entry among them, they leave nothing behind.
    #[test]
    fn many_addresses_on_one_port_come_and_go_in_any_order() {
        let mut p = PortUse::new(9);
        let addr = |i: u32| SocketAddr::new(IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), 443);
        for i in 0..5000 {
            p.add(addr(i), REUSE);
            p.add(addr(i), ALONE);
        }
        assert!(p.clash(addr(4321), true) && !p.clash(a("198.19.0.1:443"), true));
        assert_eq!(p.addrs().count(), 5000);
        for i in (0..5000).rev() {
            let claim = if i % 2 == 0 { REUSE } else { ALONE };
            p.remove(addr(i), claim);
        }
        for i in 0..5000 {
            let claim = if i % 2 == 0 { ALONE } else { REUSE };
            assert!(p.port(443), "{i}");
            p.remove(addr(i), claim);
        }
        assert!(!p.port(443));
        assert_eq!(p.addrs().count(), 0);
    }
}
