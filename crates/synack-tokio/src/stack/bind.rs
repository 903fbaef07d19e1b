//! [`PortHold`]: a port bound before a connect or a listen, held on every shard.

use std::io;
use std::net::SocketAddr;

use synack_core::PortSharing;

use super::Stack;

/// A port a bound [`TcpSocket`](crate::TcpSocket) holds on every shard (`Endpoint::bind_socket`), as Linux
/// reserves it at `bind(2)`: another socket's `bind` to it fails with `AddrInUse` (unless
/// both set SO_REUSEADDR, or both SO_REUSEPORT), no ephemeral port is it, and no listener
/// but this socket's takes it from a socket bound without them. Given back when the socket
/// goes, or, once it connects or listens, by the connection's or the listener's own use of
/// the port.
#[derive(Debug)]
pub(crate) struct PortHold {
    stack: Stack,
    local: SocketAddr,
    sharing: PortSharing,
    /// The shards that hold it.
    held: Vec<bool>,
}

impl PortHold {
    /// Binds `addr` on every shard (see [`bind_deciding`](Self::bind_deciding)).
    pub(crate) fn bind(
        stack: &Stack,
        addr: SocketAddr,
        sharing: PortSharing,
    ) -> io::Result<PortHold> {
        let _deciding = stack.lock_binding();
        Self::bind_deciding(stack, addr, sharing)
    }

    /// Binds `addr` on every shard: decided on shard 0 with every shard locked (each has
    /// every listener and every bound socket's port, but only its own connections), then
    /// held on the others before any lock is let go, so that no other shard's connect takes
    /// the port in between. The caller holds `Stack::lock_binding`.
    ///
    /// A listener on several shards takes its port 0 so too, with SO_REUSEADDR as tokio's
    /// `TcpListener::bind` sets it: held on each shard until the listener opens there, it
    /// gives it back shard by shard as it listens ([`release_on`](Self::release_on)), so
    /// that no connect takes it in between (Linux picks and reserves a port in one step; a
    /// port-0 listen never fails for a connect).
    pub(crate) fn bind_deciding(
        stack: &Stack,
        addr: SocketAddr,
        sharing: PortSharing,
    ) -> io::Result<PortHold> {
        let local = stack.decide_on_every_shard(
            |first, others| first.bind_socket(addr, sharing, others),
            |other, local| other.hold_binding(local, sharing),
        )?;
        Ok(PortHold {
            stack: stack.clone(),
            local,
            sharing,
            held: vec![true; stack.workers()],
        })
    }

    /// Gives the port back on every shard that holds it.
    fn release_all(&mut self) {
        for (shard, held) in self.held.iter_mut().enumerate() {
            if let (true, Some(mut inner)) = (*held, self.stack.lock_for_drop(shard)) {
                let _ = inner.endpoint.release_binding(self.local, self.sharing);
            }
            *held = false;
        }
    }

    /// The bound address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Gives the port back on `shard`, whose endpoint the caller has locked: the socket now
    /// listens there.
    pub(crate) fn release_on(&mut self, shard: usize, endpoint: &mut synack_core::Endpoint) {
        if std::mem::take(&mut self.held[shard]) {
            // Held since `bind`: it is there.
            let _ = endpoint.release_binding(self.local, self.sharing);
        }
    }

    /// SO_REUSEADDR or SO_REUSEPORT set after `bind`, as Linux allows: later binds see it.
    pub(crate) fn set_sharing(&mut self, sharing: PortSharing) {
        let _deciding = self.stack.lock_binding();
        for (shard, &held) in self.held.iter().enumerate() {
            if let (true, Some(mut inner)) = (held, self.stack.lock_for_drop(shard)) {
                let _ = inner.endpoint.release_binding(self.local, self.sharing);
                inner.endpoint.hold_binding(self.local, sharing);
            }
        }
        self.sharing = sharing;
    }
}

impl Drop for PortHold {
    fn drop(&mut self) {
        self.release_all();
    }
}
