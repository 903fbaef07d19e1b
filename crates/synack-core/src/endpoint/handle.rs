//! The handles the application holds: plain numbers, so that the slab and every other table
//! can name connections and listeners without knowing the endpoint.

/// An opaque handle to one connection; it stays valid until [`Endpoint::close`](crate::Endpoint::close) or
/// [`Endpoint::abort`](crate::Endpoint::abort) releases it. Handles are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub usize);

/// An opaque handle to one UDP socket; it stays valid until
/// [`Endpoint::udp_close`](crate::Endpoint::udp_close). A slot's generation is in the handle,
/// so a stale handle never names a later socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpHandle(pub usize);

/// An opaque handle to one listener. Handles are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerHandle(pub usize);
