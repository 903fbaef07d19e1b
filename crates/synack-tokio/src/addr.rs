//! The addresses socket calls take ([`ToSocketAddrs`]), as tokio::net's, host names looked
//! up through the stack ([`lookup_host`]); and IPv4-mapped addresses, as a dual-stack socket
//! takes and shows them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::Stack;

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

/// `addr` with `scope_id` if it is link-local ([`synack_core::endpoint::needs_scope_id`]),
/// as Linux shows a socket's link-local addresses with its interface; others as they are.
pub(crate) fn scoped(addr: SocketAddr, scope_id: u32) -> SocketAddr {
    match addr {
        SocketAddr::V6(mut v6) if synack_core::endpoint::needs_scope_id(addr) => {
            v6.set_scope_id(scope_id);
            SocketAddr::V6(v6)
        }
        _ => addr,
    }
}

/// The scope id of `addr` if it is link-local, else 0: what a connection to it shows back.
pub(crate) fn link_scope(addr: SocketAddr) -> u32 {
    match addr {
        SocketAddr::V6(v6) if synack_core::endpoint::needs_scope_id(addr) => v6.scope_id(),
        _ => 0,
    }
}

/// The addresses `bind`, `connect`, `send_to` and [`lookup_host`] take, in the order to try
/// them: what `tokio::net::ToSocketAddrs` takes (`"198.18.0.1:80"`, `"[2001:2::1]:443"`,
/// `("198.18.0.1", 80)`, `(ip, port)`, a `SocketAddr`, a slice of them), so that code ported
/// from tokio::net compiles unchanged; and host names (`"files.synack.test:80"`,
/// `("files.synack.test", 80)`), looked up **through the stack**.
///
/// tokio looks a host name up with the host's resolver, over the host's network. For a stack
/// whose traffic goes through its own device that would send the query where the connection
/// does not go (a VPN's DNS leak), to a server its network may not have. So a name is looked
/// up only by the resolver the stack was given (`Stack::set_resolver`, the `hickory` feature:
/// hickory-resolver on the stack's own UDP and TCP), and its addresses are tried as a call
/// tries several (`TcpStream::connect` as Happy Eyeballs does); without one it is
/// `InvalidInput`.
///
/// Sealed: it cannot be implemented outside this crate.
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// What a [`ToSocketAddrs`](super::ToSocketAddrs) value gives.
    pub enum Addrs {
        /// Addresses, in the order to try them.
        Addrs(Vec<SocketAddr>),
        /// A host name and a port, for the stack's resolver.
        Name(String, u16),
    }

    pub trait Sealed {
        /// The addresses, or the name to look up.
        fn addrs(&self) -> io::Result<Addrs>;
    }
}

use sealed::{Addrs, Sealed};

/// The addresses of `addr`, in order, a name among them looked up through `stack`.
pub(crate) async fn socket_addrs(
    stack: &Stack,
    addr: &(impl ToSocketAddrs + ?Sized),
) -> io::Result<Vec<SocketAddr>> {
    match addr.addrs()? {
        Addrs::Addrs(addrs) => Ok(addrs),
        Addrs::Name(name, port) => stack.lookup(&name, port).await,
    }
}

/// The host name and port `addr` gives, if it gives a name rather than addresses.
pub(crate) fn name_of(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Option<(String, u16)>> {
    Ok(match addr.addrs()? {
        Addrs::Addrs(_) => None,
        Addrs::Name(name, port) => Some((name, port)),
    })
}

/// Tries `op` on each address of `addr` (a name looked up through `stack`) in turn: the
/// first success, else the last error, or `InvalidInput` when there is no address at all
/// (tokio::net's "could not resolve to any address").
pub(crate) async fn first_ok<T, F, Fut>(
    stack: &Stack,
    addr: &(impl ToSocketAddrs + ?Sized),
    mut op: F,
) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for a in socket_addrs(stack, addr).await? {
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

/// The addresses of `host`, as tokio::net's `lookup_host` gives them, but looked up through
/// `stack`: an address (or several) as it is, a host name by the stack's resolver
/// (`Stack::set_resolver`, the `hickory` feature), never the
/// host's. A name without a port (`"files.synack.test"`) is `InvalidInput`, as for tokio;
/// one the resolver finds nothing for is `NotFound`; without a resolver, `InvalidInput`.
pub async fn lookup_host(
    stack: &Stack,
    host: impl ToSocketAddrs,
) -> io::Result<impl Iterator<Item = SocketAddr>> {
    socket_addrs(stack, &host).await.map(Vec::into_iter)
}

fn invalid(s: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{s:?} is neither an IP address and port nor a host name and port"),
    )
}

/// `host:port` that is not a socket address: an IPv6 address without brackets and a port
/// (`2001:2::1:80`, which tokio takes too, splitting at the last colon as std does), or a
/// host name and port.
fn host_and_port(s: &str) -> io::Result<Addrs> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid(s))?;
    let port = port.parse().map_err(|_| invalid(s))?;
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return Ok(Addrs::Addrs(vec![SocketAddr::new(ip.into(), port)]));
    }
    if let Some(ip) = inet_aton(host) {
        return Ok(Addrs::Addrs(vec![SocketAddr::new(ip.into(), port)]));
    }
    Ok(Addrs::Name(name(host).ok_or_else(|| invalid(s))?, port))
}

/// An IPv4 address in any form glibc's `inet_aton` reads, as tokio's lookups take them
/// (std hands what is no socket address to `getaddrinfo`, whose `gaih_inet` tries
/// `__inet_aton_exact` before any name service): one to four parts separated by dots, each
/// decimal, octal after a leading `0` or hexadecimal after `0x`; the last part fills the
/// bytes the others leave (`198.18.1` is 198.18.0.1, `3323068417` the same). Nothing may
/// follow the last part.
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for text in host.split('.') {
        let slot = parts.get_mut(count)?;
        count += 1;
        let (digits, radix) = match text.as_bytes() {
            [b'0', b'x' | b'X', ..] => (&text[2..], 16),
            [b'0', _, ..] => (&text[1..], 8),
            [b'0'..=b'9', ..] => (text, 10),
            _ => return None,
        };
        // `0x` alone is 0, as `inet_aton` reads it.
        *slot = match digits {
            "" => 0,
            _ if !digits.bytes().all(|b| b.is_ascii_hexdigit()) => return None,
            _ => u32::from_str_radix(digits, radix).ok()?,
        };
    }
    let (head, last) = (&parts[..count - 1], parts[count - 1]);
    let last_bits = 32 - 8 * head.len() as u32;
    if head.iter().any(|&p| p > 0xff) || u64::from(last) >= 1u64 << last_bits {
        return None;
    }
    let value = head
        .iter()
        .enumerate()
        .fold(last, |v, (i, &p)| v | p << (24 - 8 * i));
    Some(Ipv4Addr::from(value))
}

/// `host` as a name to look up: not empty, no character a DNS name never has in text (`:`,
/// brackets, whitespace), and a last label that is not all digits: no top-level domain is
/// (RFC 3696 §2), so `1.2.3.4.5` is no name to send to a server (a shorthand that
/// `inet_aton` reads, such as `127.1`, is an address before it is asked). What passes is the
/// resolver's to judge.
fn name(host: &str) -> Option<String> {
    let bad = |c: char| c == ':' || c == '[' || c == ']' || c.is_whitespace();
    let last = host
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let numeric = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    (!host.is_empty() && !host.contains(bad) && !numeric).then(|| host.to_owned())
}

macro_rules! one {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Sealed for $t {
            fn addrs(&self) -> io::Result<Addrs> {
                Ok(Addrs::Addrs(vec![SocketAddr::from(*self)]))
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
    fn addrs(&self) -> io::Result<Addrs> {
        match self.parse::<SocketAddr>() {
            Ok(a) => Ok(Addrs::Addrs(vec![a])),
            Err(_) => host_and_port(self),
        }
    }
}

impl ToSocketAddrs for String {}
impl Sealed for String {
    fn addrs(&self) -> io::Result<Addrs> {
        self.as_str().addrs()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Sealed for (&str, u16) {
    fn addrs(&self) -> io::Result<Addrs> {
        match self
            .0
            .parse::<IpAddr>()
            .ok()
            .or_else(|| inet_aton(self.0).map(IpAddr::V4))
        {
            Some(ip) => Ok(Addrs::Addrs(vec![SocketAddr::new(ip, self.1)])),
            None => name(self.0)
                .map(|name| Addrs::Name(name, self.1))
                .ok_or_else(|| invalid(self.0)),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Sealed for (String, u16) {
    fn addrs(&self) -> io::Result<Addrs> {
        (self.0.as_str(), self.1).addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Sealed for [SocketAddr] {
    fn addrs(&self) -> io::Result<Addrs> {
        Ok(Addrs::Addrs(self.to_vec()))
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Sealed + ?Sized> Sealed for &T {
    fn addrs(&self) -> io::Result<Addrs> {
        (**self).addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    fn addrs(a: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
        match a.addrs()? {
            Addrs::Addrs(v) => Ok(v),
            Addrs::Name(name, port) => panic!("{name}:{port} is a name"),
        }
    }

    fn named(a: impl ToSocketAddrs) -> (String, u16) {
        match a.addrs().unwrap() {
            Addrs::Name(name, port) => (name, port),
            Addrs::Addrs(v) => panic!("{v:?} are addresses"),
        }
    }

    /// A stack on a memory link, with no resolver, and the link's other end.
    fn stack() -> (Stack, MemoryDevice) {
        Stack::on_memory_link("198.18.0.2")
    }

    #[test]
    fn what_tokio_takes() {
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
        assert_eq!(named("localhost:80"), ("localhost".into(), 80));
        assert_eq!(
            named("files.synack.test:8000"),
            ("files.synack.test".into(), 8000)
        );
        assert_eq!(named(("example.com", 443)), ("example.com".into(), 443));
        assert_eq!(
            named(("example.com".to_string(), 0)),
            ("example.com".into(), 0)
        );
        // What is neither: no port, a port out of range, an empty host, an IPv6 address
        // without brackets or with a bad one, spaces.
        // An IPv6 address, a port after its last colon, as tokio (std) splits it.
        assert_eq!(
            addrs("2001:2::1:80").unwrap(),
            ["[2001:2::1]:80".parse().unwrap()]
        );
        // IPv4 in every form glibc's `inet_aton` reads, as tokio's lookups take them.
        for short in [
            "198.18.1:80",
            "198.1179649:80",
            "3323068417:80",
            "0xc6.0x12.0.0x1:80",
            "0306.022.0.01:80",
            "0XC6.18.0.1:80",
        ] {
            assert_eq!(addrs(short).unwrap(), [v4], "{short:?}");
        }
        assert_eq!(addrs(("198.18.1", 80)).unwrap(), [v4]);
        assert_eq!(
            addrs("127.1:80").unwrap(),
            ["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(addrs("0x:80").unwrap(), ["0.0.0.0:80".parse().unwrap()]);
        // What is neither: no port, a port out of range, an empty host, a bad IPv6 address,
        // spaces, numbers `inet_aton` does not read (a part too large for its bytes, an
        // octal 8, five parts, an empty part); no top-level domain is all digits.
        for bad in [
            "198.18.0.1",
            "example.com",
            "",
            ":80",
            "example.com:65536",
            "example.com:http",
            "[2001:2::g]:80",
            "exa mple.com:80",
            "256.1:80",
            "1.2.65536:80",
            "4294967296:80",
            "08.1:80",
            "1.2.3.4.5:80",
            "1..2:80",
            "+1.2.3.4:80",
            "198.18.0.1.:80",
        ] {
            let e = bad.addrs().err().unwrap_or_else(|| panic!("{bad:?} taken"));
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        for bad in ["", "exa mple.com", "[2001:2::1]", "1.2.3.4.5"] {
            let e = (bad, 80)
                .addrs()
                .err()
                .unwrap_or_else(|| panic!("{bad:?} taken"));
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    /// Without a resolver a name is `InvalidInput`, saying how to give one; addresses need
    /// none.
    #[tokio::test]
    async fn a_name_needs_the_stacks_resolver() {
        let (stack, _link) = stack();
        let e = lookup_host(&stack, "files.synack.test:80")
            .await
            .err()
            .expect("a name without a resolver");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("Stack::set_resolver"), "{e}");
        let got: Vec<SocketAddr> = lookup_host(&stack, ("198.18.0.1", 80))
            .await
            .unwrap()
            .collect();
        assert_eq!(got, ["198.18.0.1:80".parse::<SocketAddr>().unwrap()]);
        let e = crate::TcpStream::connect(&stack, ("files.synack.test", 80))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn first_success_else_last_error_else_no_address() {
        let (stack, _link) = stack();
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:2".parse().unwrap();
        let got = first_ok(&stack, &[a, b][..], |x| async move {
            if x == a {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                Ok(x)
            }
        })
        .await;
        assert_eq!(got.unwrap(), b);
        let got: io::Result<()> = first_ok(&stack, &[a, b][..], |x| async move {
            Err(io::Error::other(x.to_string()))
        })
        .await;
        assert_eq!(
            got.unwrap_err().to_string(),
            b.to_string(),
            "the last error"
        );
        let none: &[SocketAddr] = &[];
        let got: io::Result<()> = first_ok(&stack, &none, |_| async { Ok(()) }).await;
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
