//! Which destinations are never relayed, for TCP and UDP alike. Anything can be written
//! into a TUN, whatever the kernel's routes say, so the relay cannot count on the stack or
//! the routes to keep such packets from it: it checks every flow itself, before any limit is
//! taken or any socket made.

use std::net::IpAddr;

use crate::common::NetArgs;

/// Why a destination is not relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotRelayed {
    /// A loopback, unspecified, 0.0.0.0/8, broadcast, multicast or link-local address (see
    /// [`martian`]).
    Martian,
    /// On the TUN's own link (see [`NetArgs::on_tun_link`]): an upstream socket there is
    /// routed straight back into the TUN, which hands it to the relay again, forever.
    OwnLink,
}

impl NotRelayed {
    /// For -v: why the flow was refused.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NotRelayed::Martian => {
                "a loopback, unspecified, link-local, broadcast or multicast destination"
            }
            NotRelayed::OwnLink => "the TUN's own link",
        }
    }
}

/// Whether (and why) a flow to `ip` must not be relayed, given the TUN's own link.
pub(crate) fn not_relayed(link: &NetArgs, ip: IpAddr) -> Option<NotRelayed> {
    if martian(ip) {
        Some(NotRelayed::Martian)
    } else if link.on_tun_link(ip) {
        Some(NotRelayed::OwnLink)
    } else {
        None
    }
}

/// Whether `ip` is no destination to open an upstream socket to: a loopback address (the
/// relay host's own services, which a client on the TUN must not reach through it), the
/// unspecified address or the rest of 0.0.0.0/8 (Linux connects those to the local host
/// too), the limited broadcast address, a multicast group, or a link-local address (the relay
/// host's own link: 169.254/16 holds a cloud's metadata service). The relay host's other
/// addresses are reachable through a direct relay as from the host itself: only
/// `--egress-netns` (or a SOCKS5 proxy elsewhere) keeps clients off the host's services
/// altogether. An IPv4-mapped IPv6 address
/// is judged as the IPv4 address it carries, since a dual-stack socket sends to
/// `::ffff:127.0.0.1` as to `127.0.0.1` (`Ipv6Addr::is_loopback` alone says no to it).
pub(crate) fn martian(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    match ip {
        IpAddr::V4(v4) => {
            // RFC 1122 §3.2.1.3: 0.0.0.0/8 is "this host on this network", never a
            // destination on the wire.
            v4.octets()[0] == 0
                || v4.is_loopback()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_and_non_unicast_are_martian_mapped_or_not() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "::1",
            "::",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:127.9.9.9",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
            "::ffff:224.0.0.251",
            // Link-local: the relay host's own link (a cloud's metadata service at
            // 169.254.169.254), never a client's destination through a tunnel.
            "169.254.169.254",
            "::ffff:169.254.1.1",
            "fe80::1",
        ] {
            assert!(martian(ip(a)), "{a}");
        }
    }

    #[test]
    fn unicast_destinations_are_relayed() {
        for a in [
            "198.19.1.1",
            "198.18.0.2",
            "2001:2:0:1::1",
            "::ffff:198.19.1.1",
            "1.0.0.0",
            "126.255.255.255",
            "128.0.0.1",
        ] {
            assert!(!martian(ip(a)), "{a}");
        }
    }
}
