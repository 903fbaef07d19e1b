//! The local addresses that connections and TIME-WAIT entries use, by port, with how many
//! of them set SO_REUSEADDR: what Linux keeps in its bind buckets, so that `bind(2)` and an
//! ephemeral port search look a port up instead of walking every connection.
//!
//! A port has few addresses (the stack's own, or in intercept mode the foreign ones its
//! flows were addressed to), so each port keeps a short list.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::bind::overlaps;

/// Users of one local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Users {
    ip: IpAddr,
    /// Without SO_REUSEADDR.
    exclusive: u32,
    /// With it.
    shared: u32,
}

/// Local addresses in use, by port (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct PortUse {
    by_port: HashMap<u16, Vec<Users>>,
}

impl PortUse {
    /// One more user of `local`, with SO_REUSEADDR if `reuse`.
    pub(super) fn add(&mut self, local: SocketAddr, reuse: bool) {
        let users = self.by_port.entry(local.port()).or_default();
        let i = match users.iter().position(|u| u.ip == local.ip()) {
            Some(i) => i,
            None => {
                users.push(Users {
                    ip: local.ip(),
                    exclusive: 0,
                    shared: 0,
                });
                users.len() - 1
            }
        };
        match reuse {
            true => users[i].shared += 1,
            false => users[i].exclusive += 1,
        }
    }

    /// One user fewer of `local` (one that [`add`](Self::add) counted with `reuse`).
    pub(super) fn remove(&mut self, local: SocketAddr, reuse: bool) {
        let Some(users) = self.by_port.get_mut(&local.port()) else {
            debug_assert!(false, "{local} was not in use");
            return;
        };
        let Some(i) = users.iter().position(|u| u.ip == local.ip()) else {
            debug_assert!(false, "{local} was not in use");
            return;
        };
        let count = match reuse {
            true => &mut users[i].shared,
            false => &mut users[i].exclusive,
        };
        debug_assert!(*count > 0, "{local} (reuse {reuse}) was not in use");
        *count = count.saturating_sub(1);
        if users[i].exclusive == 0 && users[i].shared == 0 {
            users.swap_remove(i);
            if users.is_empty() {
                self.by_port.remove(&local.port());
            }
        }
    }

    /// Whether a socket binding `local`, with SO_REUSEADDR if `reuse`, clashes with a user:
    /// one on an overlapping address (see `bind::overlaps`), unless both set the option
    /// (Linux's `inet_bind_conflict`). Without the option, any user clashes.
    pub(super) fn clash(&self, local: SocketAddr, reuse: bool) -> bool {
        self.overlapping(local)
            .any(|u| u.exclusive > 0 || (!reuse && u.shared > 0))
    }

    /// Whether anything uses `port`, on any address (an ephemeral port is none of those).
    pub(super) fn port(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// Every address in use, with whether all its users set SO_REUSEADDR.
    pub(super) fn addrs(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.by_port.iter().flat_map(|(&port, users)| {
            users
                .iter()
                .map(move |u| (SocketAddr::new(u.ip, port), u.exclusive == 0))
        })
    }

    fn overlapping(&self, local: SocketAddr) -> impl Iterator<Item = &Users> + '_ {
        self.by_port
            .get(&local.port())
            .into_iter()
            .flatten()
            .filter(move |u| overlaps(SocketAddr::new(u.ip, local.port()), local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_users_and_their_option_per_address() {
        let mut p = PortUse::default();
        p.add(a("198.18.0.2:80"), true);
        p.add(a("198.18.0.2:80"), false);
        p.add(a("198.18.0.3:80"), true);
        assert!(p.clash(a("0.0.0.0:80"), false) && p.clash(a("198.18.0.3:80"), false));
        assert!(!p.clash(a("198.18.0.4:80"), false) && !p.clash(a("[::]:80"), false));
        assert!(p.port(80) && !p.port(81));
        assert!(p.clash(a("198.18.0.2:80"), true), "one without the option");
        assert!(!p.clash(a("198.18.0.3:80"), true));
        assert!(p.clash(a("198.18.0.3:80"), false));
        p.remove(a("198.18.0.2:80"), false);
        assert!(!p.clash(a("0.0.0.0:80"), true));
        assert!(p.clash(a("0.0.0.0:80"), false));
        let mut addrs: Vec<_> = p.addrs().collect();
        addrs.sort();
        assert_eq!(
            addrs,
            [(a("198.18.0.2:80"), true), (a("198.18.0.3:80"), true)]
        );
        p.remove(a("198.18.0.2:80"), true);
        p.remove(a("198.18.0.3:80"), true);
        assert!(p.by_port.is_empty());
    }
}
