//! Ports held by sockets that are bound but neither connected nor listening (`bind(2)`
//! before `connect(2)` or `listen(2)`), and the conflicts Linux's `inet_csk_bind_conflict`
//! finds between such a socket and everything else that uses a local port.
//!
//! Linux reserves a port at `bind(2)`: a second socket bound to it fails with EADDRINUSE
//! unless both set SO_REUSEADDR, and an ephemeral port (a connect's or a `bind` to port
//! 0's) skips it. A port that a connection or a TIME-WAIT entry uses is shared the same way:
//! only if both the connection's socket and the new one set the option
//! (`inet_bind_conflict`; a connection keeps its socket's option, and its TIME-WAIT entry
//! keeps it too, as Linux's `tw_reuse`). A listener binds as tokio's `TcpListener::bind`
//! does, with SO_REUSEADDR unless told otherwise, and the connections it accepts have it:
//! so a server restarted on its port takes it back from its own TIME-WAIT entries, but not
//! from an outgoing connection's (which has not set it).
//!
//! SO_REUSEPORT shares a port between sockets that all set it, listeners too (Linux's
//! `sk_reuseport` in `inet_bind_conflict`; Linux also asks for one owner's uid, and every
//! socket of an endpoint is the one application's): [`PortSharing`] carries both options.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::Endpoint;
use crate::error::Error;

/// Whether two local addresses share a port: the same port and family, and the same address
/// or either of them the unspecified one (Linux's `inet_rcv_saddr_equal`; the families are
/// kept apart, as for listeners: see `listener_clash`).
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// How a socket lets others share its local port: `SO_REUSEADDR` and `SO_REUSEPORT`. A
/// `bool` converts to it as SO_REUSEADDR alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSharing {
    /// `SO_REUSEADDR` (see [`SocketOptions::reuse_address`](crate::SocketOptions::reuse_address)).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` (see [`SocketOptions::reuse_port`](crate::SocketOptions::reuse_port)).
    pub reuse_port: bool,
}

impl From<bool> for PortSharing {
    fn from(reuse_address: bool) -> PortSharing {
        PortSharing {
            reuse_address,
            reuse_port: false,
        }
    }
}

impl PortSharing {
    /// Whether two sockets may use overlapping addresses on one port (Linux's
    /// `inet_bind_conflict` between two that are not both listening): both set
    /// SO_REUSEADDR, or both set SO_REUSEPORT.
    pub(super) fn shares_with(self, other: PortSharing) -> bool {
        (self.reuse_address && other.reuse_address) || (self.reuse_port && other.reuse_port)
    }

    /// The four kinds, as an index (see `port_use`).
    pub(super) fn index(self) -> usize {
        usize::from(self.reuse_address) | usize::from(self.reuse_port) << 1
    }

    /// The kind at `index`.
    pub(super) fn from_index(index: usize) -> PortSharing {
        PortSharing {
            reuse_address: index & 1 != 0,
            reuse_port: index & 2 != 0,
        }
    }
}

/// The bound sockets' addresses, by port.
#[derive(Debug, Default)]
pub(super) struct Bindings {
    by_port: HashMap<u16, Vec<Binding>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Binding {
    local: SocketAddr,
    sharing: PortSharing,
}

impl Bindings {
    fn insert(&mut self, local: SocketAddr, sharing: PortSharing) {
        self.by_port
            .entry(local.port())
            .or_default()
            .push(Binding { local, sharing });
    }

    /// Removes one binding of `local` with `sharing` (two sockets that share may hold the
    /// same address); whether there was one.
    fn remove(&mut self, local: SocketAddr, sharing: PortSharing) -> bool {
        let Some(held) = self.by_port.get_mut(&local.port()) else {
            return false;
        };
        let Some(i) = held.iter().position(|b| *b == Binding { local, sharing }) else {
            return false;
        };
        held.swap_remove(i);
        if held.is_empty() {
            self.by_port.remove(&local.port());
        }
        true
    }

    /// Whether a socket binding `local` with `sharing` clashes with a bound one: an
    /// overlapping address, unless the two share ([`PortSharing::shares_with`]).
    pub(super) fn clash(&self, local: SocketAddr, sharing: PortSharing) -> bool {
        self.by_port.get(&local.port()).is_some_and(|held| {
            held.iter()
                .any(|b| overlaps(b.local, local) && !sharing.shares_with(b.sharing))
        })
    }

    /// Whether any bound socket holds `local`'s port on an overlapping address: an
    /// ephemeral port is never one of those.
    pub(super) fn holds(&self, local: SocketAddr) -> bool {
        self.clash(local, PortSharing::default())
    }

    pub(super) fn len(&self) -> usize {
        self.by_port.values().map(Vec::len).sum()
    }
}

impl Endpoint {
    /// Binds a socket to `local` (`bind(2)`), sharing its port as `sharing` says
    /// (SO_REUSEADDR and SO_REUSEPORT; a `bool` is SO_REUSEADDR alone), and holds the
    /// port for it until [`release_binding`](Self::release_binding): `local` itself, or for
    /// port 0 an ephemeral port that nothing uses (as [`check_bind`](Self::check_bind)
    /// picks one). `AddrNotAvailable` for an address that is not ours; `AddrInUse` (Linux's
    /// EADDRINUSE) when no ephemeral port is free, or for a port that a listener holds, or
    /// that a bound socket holds or a connection or a TIME-WAIT entry uses, here or on one
    /// of `others` (endpoints that share the stack's ports: a runtime's shards, each with
    /// its own connections), unless both it and this socket set SO_REUSEADDR (not with a
    /// listener), or both set SO_REUSEPORT.
    ///
    /// A connect from the bound address is the socket's own use of it: release the binding
    /// once the connection is open, or once the socket listens (a listener then holds the
    /// port).
    pub fn bind_socket(
        &mut self,
        local: SocketAddr,
        sharing: impl Into<PortSharing>,
        others: &[&Endpoint],
    ) -> Result<SocketAddr, Error> {
        let sharing = sharing.into();
        let bound = self.check_bind_with(local, sharing, others)?;
        self.bindings.insert(bound, sharing);
        Ok(bound)
    }

    /// Holds `local` for a socket bound on another endpoint that shares the stack's ports
    /// (a runtime's shards), unchecked, so that ephemeral ports here skip it too.
    pub fn hold_binding(&mut self, local: SocketAddr, sharing: impl Into<PortSharing>) {
        self.bindings.insert(local, sharing.into());
    }

    /// Gives back a port [`bind_socket`](Self::bind_socket) or
    /// [`hold_binding`](Self::hold_binding) held with `sharing`; `InvalidHandle` if none
    /// was held so.
    pub fn release_binding(
        &mut self,
        local: SocketAddr,
        sharing: impl Into<PortSharing>,
    ) -> Result<(), Error> {
        match self.bindings.remove(local, sharing.into()) {
            true => Ok(()),
            false => Err(Error::InvalidHandle),
        }
    }

    /// Whether a bound socket holds `local`'s port on an overlapping address, so that it is
    /// no ephemeral port (for a runtime that picks one itself for an
    /// [`Endpoint::connect_with`]).
    pub fn is_bound(&self, local: SocketAddr) -> bool {
        self.bindings.holds(local)
    }

    /// How many bound sockets hold a port here.
    pub fn bindings(&self) -> usize {
        self.bindings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlapping_addresses_share_a_port_within_a_family() {
        assert!(overlaps(a("198.18.0.2:80"), a("198.18.0.2:80")));
        assert!(overlaps(a("0.0.0.0:80"), a("198.18.0.2:80")));
        assert!(overlaps(a("198.18.0.2:80"), a("0.0.0.0:80")));
        assert!(!overlaps(a("198.18.0.2:80"), a("198.18.0.3:80")));
        assert!(!overlaps(a("198.18.0.2:80"), a("198.18.0.2:81")));
        assert!(!overlaps(a("[::]:80"), a("198.18.0.2:80")));
    }

    #[test]
    fn two_bindings_clash_unless_both_reuse() {
        let (yes, no) = (PortSharing::from(true), PortSharing::from(false));
        let mut b = Bindings::default();
        b.insert(a("198.18.0.2:80"), no);
        assert!(b.clash(a("198.18.0.2:80"), yes));
        assert!(b.clash(a("0.0.0.0:80"), no));
        assert!(!b.clash(a("198.18.0.3:80"), no));
        let mut r = Bindings::default();
        r.insert(a("198.18.0.2:80"), yes);
        assert!(!r.clash(a("198.18.0.2:80"), yes));
        assert!(r.clash(a("198.18.0.2:80"), no));
        assert!(r.holds(a("198.18.0.2:80")));
        r.insert(a("198.18.0.2:80"), yes);
        assert_eq!(r.len(), 2);
        assert!(r.remove(a("198.18.0.2:80"), yes));
        assert!(!r.remove(a("198.18.0.2:80"), no));
        assert!(r.remove(a("198.18.0.2:80"), yes));
        assert!(!r.remove(a("198.18.0.2:80"), yes));
        assert!(r.by_port.is_empty());
    }

    /// SO_REUSEPORT shares with SO_REUSEPORT only, whatever SO_REUSEADDR says; either
    /// option shared is enough.
    #[test]
    fn reuse_port_shares_with_reuse_port() {
        let port = PortSharing {
            reuse_address: false,
            reuse_port: true,
        };
        let both = PortSharing {
            reuse_address: true,
            reuse_port: true,
        };
        let addr = PortSharing::from(true);
        let mut b = Bindings::default();
        b.insert(a("0.0.0.0:80"), port);
        assert!(!b.clash(a("198.18.0.2:80"), port));
        assert!(!b.clash(a("198.18.0.2:80"), both));
        assert!(b.clash(a("198.18.0.2:80"), addr));
        assert!(b.clash(a("198.18.0.2:80"), PortSharing::default()));
        assert!(both.shares_with(addr) && addr.shares_with(both));
        for i in 0..4 {
            assert_eq!(PortSharing::from_index(i).index(), i);
        }
    }
}
