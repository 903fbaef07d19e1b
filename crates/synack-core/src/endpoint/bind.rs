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

/// The bound sockets' addresses, by port.
#[derive(Debug, Default)]
pub(super) struct Bindings {
    by_port: HashMap<u16, Vec<Binding>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Binding {
    local: SocketAddr,
    /// SO_REUSEADDR.
    reuse: bool,
}

impl Bindings {
    fn insert(&mut self, local: SocketAddr, reuse: bool) {
        self.by_port
            .entry(local.port())
            .or_default()
            .push(Binding { local, reuse });
    }

    /// Removes one binding of `local` with `reuse` (two sockets with SO_REUSEADDR may hold
    /// the same address); whether there was one.
    fn remove(&mut self, local: SocketAddr, reuse: bool) -> bool {
        let Some(held) = self.by_port.get_mut(&local.port()) else {
            return false;
        };
        let Some(i) = held.iter().position(|b| *b == Binding { local, reuse }) else {
            return false;
        };
        held.swap_remove(i);
        if held.is_empty() {
            self.by_port.remove(&local.port());
        }
        true
    }

    /// Whether a socket binding `local` (with SO_REUSEADDR if `reuse`) clashes with a
    /// bound one: an overlapping address, unless both set the option.
    pub(super) fn clash(&self, local: SocketAddr, reuse: bool) -> bool {
        self.by_port.get(&local.port()).is_some_and(|held| {
            held.iter()
                .any(|b| overlaps(b.local, local) && !(reuse && b.reuse))
        })
    }

    /// Whether any bound socket holds `local`'s port on an overlapping address: an
    /// ephemeral port is never one of those.
    pub(super) fn holds(&self, local: SocketAddr) -> bool {
        self.clash(local, false)
    }

    pub(super) fn len(&self) -> usize {
        self.by_port.values().map(Vec::len).sum()
    }
}

impl Endpoint {
    /// Binds a socket to `local` (`bind(2)`), with SO_REUSEADDR if `reuse`, and holds the
    /// port for it until [`release_binding`](Self::release_binding): `local` itself, or for
    /// port 0 an ephemeral port that nothing uses (as [`check_bind`](Self::check_bind)
    /// picks one). `AddrNotAvailable` for an address that is not ours or when no ephemeral
    /// port is free; `AddrInUse` (Linux's EADDRINUSE) for a port that a listener holds, or
    /// that a bound socket holds or a connection or a TIME-WAIT entry uses, here or on one
    /// of `others` (endpoints that share the stack's ports: a runtime's shards, each with
    /// its own connections), unless both it and this socket set SO_REUSEADDR.
    ///
    /// A connect from the bound address is the socket's own use of it: release the binding
    /// once the connection is open, or once the socket listens (a listener then holds the
    /// port).
    pub fn bind_socket(
        &mut self,
        local: SocketAddr,
        reuse: bool,
        others: &[&Endpoint],
    ) -> Result<SocketAddr, Error> {
        let bound = self.check_bind_with(local, reuse, others)?;
        self.bindings.insert(bound, reuse);
        Ok(bound)
    }

    /// Holds `local` for a socket bound on another endpoint that shares the stack's ports
    /// (a runtime's shards), unchecked, so that ephemeral ports here skip it too.
    pub fn hold_binding(&mut self, local: SocketAddr, reuse: bool) {
        self.bindings.insert(local, reuse);
    }

    /// Gives back a port [`bind_socket`](Self::bind_socket) or
    /// [`hold_binding`](Self::hold_binding) held; `InvalidHandle` if none was held so.
    pub fn release_binding(&mut self, local: SocketAddr, reuse: bool) -> Result<(), Error> {
        match self.bindings.remove(local, reuse) {
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
        let mut b = Bindings::default();
        b.insert(a("198.18.0.2:80"), false);
        assert!(b.clash(a("198.18.0.2:80"), true));
        assert!(b.clash(a("0.0.0.0:80"), false));
        assert!(!b.clash(a("198.18.0.3:80"), false));
        let mut r = Bindings::default();
        r.insert(a("198.18.0.2:80"), true);
        assert!(!r.clash(a("198.18.0.2:80"), true));
        assert!(r.clash(a("198.18.0.2:80"), false));
        assert!(r.holds(a("198.18.0.2:80")));
        r.insert(a("198.18.0.2:80"), true);
        assert_eq!(r.len(), 2);
        assert!(r.remove(a("198.18.0.2:80"), true));
        assert!(!r.remove(a("198.18.0.2:80"), false));
        assert!(r.remove(a("198.18.0.2:80"), true));
        assert!(!r.remove(a("198.18.0.2:80"), true));
        assert!(r.by_port.is_empty());
    }
}
