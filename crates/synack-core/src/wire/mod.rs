//! Wire formats: zero-copy packet views and validated `Repr` structs.
//!
//! The layering follows smoltcp's wire module. A `Packet<T: AsRef<[u8]>>` is a view over a
//! buffer with field getters (and setters when `T: AsMut<[u8]>`); it checks nothing but length.
//! A `Repr` is the validated, owned-or-borrowed meaning of a packet: `parse` turns bytes into a
//! `Repr` or a [`WireError`], `emit` writes a `Repr` into a buffer of `buffer_len()` bytes.
//!
//! Everything here is hostile-input safe: any byte string handed to a `parse` function returns
//! a value or a typed error, never panics and never allocates. `emit` functions are only ever
//! given buffers sized by the caller from `buffer_len()`; a buffer that is too short is a
//! programming error and panics, as slicing does.

pub mod checksum;
pub mod fragment;
pub mod gso;
pub mod icmp;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
mod protocol;
pub mod tcp;
pub mod udp;

pub use icmp::IcmpRepr;
pub use ip::{Ecn, IpProtocol, IpRepr};
pub use ipv4::Ipv4Repr;
pub use ipv6::Ipv6Repr;
pub use tcp::{FastOpenCookie, TcpFlags, TcpRepr, TcpTimestamp};
pub use udp::{UdpPacket, UdpRepr};

/// Why a packet was refused by the wire layer.
///
/// The endpoint counts `Truncated` and `Malformed` together as malformed input; the other
/// variants have their own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a header, or before the length a header claims.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the protocol forbids (IHL < 5, TCP data offset < 5, ...).
    #[error("malformed packet")]
    Malformed,
    /// An IPv4 header, TCP, UDP or ICMP checksum did not verify (or a UDP checksum of zero
    /// over IPv6).
    #[error("bad checksum")]
    Checksum,
    /// The TCP option list is malformed (bad length, or a known option of the wrong length).
    #[error("bad TCP option")]
    BadOption,
    /// The packet is an IP fragment: not a whole datagram to parse (see [`fragment`]).
    #[error("IP fragment")]
    Fragment,
    /// Well-formed, but something this stack does not handle (unknown IP version, an IPv6
    /// extension header it does not walk, a routing header with segments left, ...).
    #[error("unsupported packet")]
    Unsupported,
}
