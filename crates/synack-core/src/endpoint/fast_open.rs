//! The client's TCP Fast Open cookies, one per server address (RFC 7413 §4.1.3: "The
//! client MUST cache cookies from servers for later use"; Linux keeps them in its TCP
//! metrics, per destination).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::wire::FastOpenCookie;

/// Servers whose cookie is kept, at most: what a burst of SYN-ACKs from spoofed servers
/// can cost is bounded (each entry a few dozen bytes); past it an arbitrary entry makes
/// room, and that server is asked for a new cookie next time.
const MAX_SERVERS: usize = 1024;

/// Cookies by server address.
#[derive(Debug, Default)]
pub(super) struct FastOpenCookies {
    by_server: HashMap<IpAddr, FastOpenCookie>,
}

impl FastOpenCookies {
    /// The cookie `server` gave, if any.
    pub(super) fn get(&self, server: IpAddr) -> Option<FastOpenCookie> {
        self.by_server.get(&server).copied()
    }

    /// Keep `cookie` for `server`, replacing an older one.
    pub(super) fn insert(&mut self, server: IpAddr, cookie: FastOpenCookie) {
        if self.by_server.len() >= MAX_SERVERS && !self.by_server.contains_key(&server) {
            if let Some(&old) = self.by_server.keys().next() {
                self.by_server.remove(&old);
            }
        }
        self.by_server.insert(server, cookie);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_the_newest_cookie_per_server() {
        let mut c = FastOpenCookies::default();
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        c.insert(a, FastOpenCookie::new(&[1; 8]).unwrap());
        c.insert(a, FastOpenCookie::new(&[2; 8]).unwrap());
        assert_eq!(c.get(a), FastOpenCookie::new(&[2; 8]));
        for i in 0..3000u32 {
            let ip = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            c.insert(ip, FastOpenCookie::new(&[3; 4]).unwrap());
        }
        assert_eq!(c.by_server.len(), MAX_SERVERS);
    }
}
