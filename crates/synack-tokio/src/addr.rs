//! The addresses socket calls take ([`ToSocketAddrs`]), as tokio::net's, but no host names;
//! and IPv4-mapped addresses, as a dual-stack socket takes and shows them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The IPv4 address an IPv4-mapped IPv6 one (`::ffff:a.b.c.d`) stands for.
pub(crate) fn unmapped(addr: SocketAddr) -> Option<SocketAddr> {
    synack_core::endpoint::unmapped(addr)
}

/// `addr` as a socket shows it: IPv4-mapped if it is an IPv6 socket's IPv4 address.
pub(crate) fn shown(addr: SocketAddr, mapped: bool) -> SocketAddr {
    match mapped {
        true => synack_core::endpoint::ipv4_mapped(addr),
        false => addr,
    }
}

/// The addresses `bind`, `connect` and `send_to` take, in the order to try them: what
/// `tokio::net::ToSocketAddrs` takes (`"198.18.0.1:80"`, `"[2001:2::1]:443"`,
/// `("198.18.0.1", 80)`, `(ip, port)`, a `SocketAddr`, a slice of them), so that code ported
/// from tokio::net compiles unchanged, but **without name resolution**.
///
/// tokio resolves a host name with the host's resolver, over the host's network. For a stack
/// whose traffic goes through its own device that would send the query where the connection
/// does not go (a VPN's DNS leak), so a name is refused with `InvalidInput`: resolve it first,
/// for example with a DNS client over the stack's [`UdpSocket`](crate::UdpSocket), and pass
/// the addresses.
///
/// Sealed: it cannot be implemented outside this crate.
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use std::io;
    use std::net::SocketAddr;

    pub trait Sealed {
        /// The addresses, in the order to try them.
        fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>>;
    }
}

use sealed::Sealed;

/// The addresses of `addr`, in order (what every caller of the trait needs).
pub(crate) fn socket_addrs(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Vec<SocketAddr>> {
    addr.socket_addrs()
}

/// Tries `op` on each address of `addr` in turn: the first success, else the last error, or
/// `InvalidInput` when there is no address at all (tokio::net's "could not resolve to any
/// address").
pub(crate) async fn first_ok<T, F, Fut>(
    addr: &(impl ToSocketAddrs + ?Sized),
    mut op: F,
) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for a in socket_addrs(addr)? {
        match op(a).await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

fn no_names(s: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{s:?} is not an IP address and port: synack resolves no host names (resolve it \
             first, e.g. over the stack's own UdpSocket)"
        ),
    )
}

macro_rules! one {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Sealed for $t {
            fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
                Ok(vec![SocketAddr::from(*self)])
            }
        }
    )*};
}

one!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToSocketAddrs for str {}
impl Sealed for str {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.parse::<SocketAddr>()
            .map(|a| vec![a])
            .map_err(|_| no_names(self))
    }
}

impl ToSocketAddrs for String {}
impl Sealed for String {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().socket_addrs()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Sealed for (&str, u16) {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let ip: IpAddr = self.0.parse().map_err(|_| no_names(self.0))?;
        Ok(vec![SocketAddr::new(ip, self.1)])
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Sealed for (String, u16) {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (self.0.as_str(), self.1).socket_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Sealed for [SocketAddr] {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Sealed + ?Sized> Sealed for &T {
    fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).socket_addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(a: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
        socket_addrs(&a)
    }

    #[test]
    fn what_tokio_takes_without_names() {
        let v4: SocketAddr = "198.18.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[2001:2::1]:443".parse().unwrap();
        assert_eq!(addrs("198.18.0.1:80").unwrap(), [v4]);
        assert_eq!(addrs(String::from("[2001:2::1]:443")).unwrap(), [v6]);
        assert_eq!(addrs(("198.18.0.1", 80)).unwrap(), [v4]);
        assert_eq!(addrs(("2001:2::1".to_string(), 443)).unwrap(), [v6]);
        assert_eq!(addrs((v4.ip(), 80)).unwrap(), [v4]);
        assert_eq!(addrs((Ipv4Addr::new(198, 18, 0, 1), 80)).unwrap(), [v4]);
        assert_eq!(addrs(&[v4, v6][..]).unwrap(), [v4, v6]);
        let by_ref: &SocketAddr = &v6;
        assert_eq!(addrs(by_ref).unwrap(), [v6], "through a reference");
        for name in ["localhost:80", "example.com:443", "198.18.0.1", ""] {
            let e = addrs(name).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name}");
        }
        let e = addrs(("example.com", 80)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn first_success_else_last_error_else_no_address() {
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:2".parse().unwrap();
        let got = first_ok(&[a, b][..], |x| async move {
            if x == a {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                Ok(x)
            }
        })
        .await;
        assert_eq!(got.unwrap(), b);
        let got: io::Result<()> = first_ok(&[a, b][..], |x| async move {
            Err(io::Error::other(x.to_string()))
        })
        .await;
        assert_eq!(
            got.unwrap_err().to_string(),
            b.to_string(),
            "the last error"
        );
        let none: &[SocketAddr] = &[];
        let got: io::Result<()> = first_ok(&none, |_| async { Ok(()) }).await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
