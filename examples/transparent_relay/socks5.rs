//! A SOCKS5 client (RFC 1928): the no-authentication method, CONNECT and UDP ASSOCIATE
//! with IPv4 and IPv6 addresses, and the header of datagrams through the proxy's UDP relay.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use synack::tokio::Unreachable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::upstream::Fail;

/// RFC 1928 §4: the CONNECT command.
pub(crate) const CONNECT: u8 = 1;
/// RFC 1928 §4: the UDP ASSOCIATE command.
pub(crate) const UDP_ASSOCIATE: u8 = 3;

fn protocol(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("SOCKS5: {what}"))
}

/// RFC 1928 §3: offer only "no authentication required" (X'00') and insist on it.
pub(crate) async fn negotiate(s: &mut tokio::net::TcpStream) -> io::Result<()> {
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    match choice {
        [5, 0] => Ok(()),
        [5, 0xff] => Err(protocol(
            "the proxy accepts none of our methods (no authentication)",
        )),
        _ => Err(protocol("unexpected method selection")),
    }
}

/// RFC 1928 §5: ATYP, DST.ADDR and DST.PORT of `addr` appended to `out`.
pub(crate) fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// RFC 1928 §7: the header of a datagram to the proxy's relay, RSV X'0000', FRAG 0
/// (whole datagram), then the destination (10 bytes for IPv4, 22 for IPv6).
pub(crate) fn put_udp_header(out: &mut Vec<u8>, dst: SocketAddr) {
    out.extend_from_slice(&[0, 0, 0]);
    put_addr(out, dst);
}

/// RFC 1928 §7: the payload of a datagram from the proxy's relay, if it is whole (FRAG
/// 0: this client does no reassembly, and "an implementation that does not support
/// fragmentation MUST drop any datagram whose FRAG field is other than X'00'") and
/// comes from `dst`; `None` to drop it.
pub(crate) fn strip_udp_header(packet: &[u8], dst: SocketAddr) -> Option<Vec<u8>> {
    let (&[0, 0, frag, atyp], rest) = packet.split_first_chunk::<4>()? else {
        return None;
    };
    if frag != 0 {
        return None;
    }
    let (from, payload) = match atyp {
        1 => {
            let (a, rest) = rest.split_first_chunk::<6>()?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            (
                SocketAddr::from((ip, u16::from_be_bytes([a[4], a[5]]))),
                rest,
            )
        }
        4 => {
            let (a, rest) = rest.split_first_chunk::<18>()?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(ip);
            (
                SocketAddr::from((ip, u16::from_be_bytes([a[16], a[17]]))),
                rest,
            )
        }
        _ => return None,
    };
    // Compare as the destination's family (a proxy may write an IPv4 source mapped).
    let same = from == dst
        || matches!((from.ip(), dst.ip()), (IpAddr::V6(f), IpAddr::V4(d))
            if f.to_ipv4_mapped() == Some(d) && from.port() == dst.port());
    same.then(|| payload.to_vec())
}

/// RFC 1928 §4-6: sends a request and reads the reply; Ok with BND.ADDR:BND.PORT on
/// success (X'00'; `None` when it is a domain name, which this client cannot resolve),
/// else the reply code mapped onto what the client should see. An error on the control
/// connection itself (even EHOSTUNREACH or ECONNREFUSED) is the proxy's, not the
/// destination's: [`Fail::Other`], so the SYN is dropped rather than answered.
pub(crate) async fn request(
    s: &mut tokio::net::TcpStream,
    command: u8,
    addr: SocketAddr,
) -> Result<Option<SocketAddr>, Fail> {
    let mut req = vec![5, command, 0];
    put_addr(&mut req, addr);
    s.write_all(&req).await.map_err(Fail::Other)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(Fail::Other)?;
    if head[0] != 5 {
        return Err(Fail::Other(protocol("reply of another version")));
    }
    // RFC 1928 §6, REP.
    match head[1] {
        0 => {}
        5 => return Err(Fail::Refused),
        2 => return Err(Fail::Unreachable(Unreachable::Prohibited)),
        3 => return Err(Fail::Unreachable(Unreachable::Network)),
        4 => return Err(Fail::Unreachable(Unreachable::Host)),
        // 1 general failure, 6 TTL expired, 7/8 unsupported, others unassigned: the
        // client retries as after a lost SYN.
        code => return Err(Fail::Other(protocol(&format!("the proxy replied {code}")))),
    }
    let bound = match head[3] {
        1 => {
            let mut a = [0u8; 6];
            s.read_exact(&mut a).await.map_err(Fail::Other)?;
            Some(SocketAddr::from((
                [a[0], a[1], a[2], a[3]],
                u16::from_be_bytes([a[4], a[5]]),
            )))
        }
        4 => {
            let mut a = [0u8; 18];
            s.read_exact(&mut a).await.map_err(Fail::Other)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::from((ip, u16::from_be_bytes([a[16], a[17]]))))
        }
        3 => {
            // A name we cannot use (no DNS here); read past it.
            let len = s.read_u8().await.map_err(Fail::Other)?;
            let mut skip = vec![0u8; usize::from(len) + 2];
            s.read_exact(&mut skip).await.map_err(Fail::Other)?;
            None
        }
        _ => return Err(Fail::Other(protocol("unknown address type in the reply"))),
    };
    Ok(bound)
}
