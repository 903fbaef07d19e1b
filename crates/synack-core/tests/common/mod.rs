//! The scripted peer of the state-by-state tests, from the test kit
//! ([`synack_core::testing::peer`]), and the Linux capture the wire and replay tests share.
#![allow(dead_code, unused_imports)]

pub mod capture;

pub use synack_core::testing::peer::*;

/// An ICMPv4 message from `PEER` to `US`, in its IP packet: an error quoting a packet we
/// sent, or an echo request.
pub fn icmp_packet(icmp: synack_core::wire::IcmpRepr<'_>) -> Vec<u8> {
    use synack_core::wire::{IpProtocol, IpRepr};
    let ip = IpRepr::new(PEER, US, IpProtocol::Icmp, icmp.buffer_len(), 64).unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..20]);
    icmp.emit_v4(&mut p[20..]);
    p
}
