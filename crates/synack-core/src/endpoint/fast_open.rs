//! TCP Fast Open (RFC 7413) at the endpoint: the client's cookies, one per server address
//! (§4.1.3: "The client MUST cache cookies from servers for later use"; Linux keeps them in
//! its TCP metrics, per destination), and the server's side: its cookies, and which SYNs a
//! Fast Open listener takes with their data (§4.2.2).
//!
//! A server cookie is a keyed MAC of the client's address (§4.1.2: "The server is in charge
//! of cookie generation and authentication"): SipHash-2-4 under a 128-bit secret of the
//! client's and then the server's address, 8 bytes. That is what Linux computes
//! (`__tcp_fastopen_cookie_gen_cipher`, keys in the byte order of `TCP_FASTOPEN_KEY`), so a
//! synack server and Linux servers given the same key accept each other's cookies (a
//! cluster behind one address shares a key for that reason).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{Endpoint, ListenerHandle};
use crate::isn::siphash24;
use crate::tcp::connection::{FastOpenServer, LearnedFastOpen};
use crate::time::Instant;
use crate::wire::{FastOpenCookie, TcpRepr};

/// How long an accepted Fast Open connection reset before its handshake ended still counts
/// against its listener's Fast Open queue (Linux's `reqsk_fastopen_remove`: 60 s). The
/// CoNEXT 2011 Fast Open paper's defence against spoofed SYNs with a stolen cookie: each one
/// the real client resets costs a slot for a while, and a flood of them turns Fast Open off
/// for the listener instead of filling the server with connections.
pub(super) const RESET_HOLD: Duration = Duration::from_secs(60);

/// A Fast Open server key (`TCP_FASTOPEN_KEY`): cookies are made under the primary key and
/// accepted under it or the backup, so that a key can be rotated without failing the
/// cookies clients hold (Linux takes 32 bytes for the pair).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FastOpenKey {
    primary: [u8; 16],
    backup: Option<[u8; 16]>,
}

impl std::fmt::Debug for FastOpenKey {
    /// Never prints the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastOpenKey { .. }")
    }
}

impl FastOpenKey {
    /// One key.
    pub fn new(primary: [u8; 16]) -> FastOpenKey {
        FastOpenKey {
            primary,
            backup: None,
        }
    }

    /// A primary key, and a backup whose cookies are still accepted.
    pub fn with_backup(primary: [u8; 16], backup: [u8; 16]) -> FastOpenKey {
        FastOpenKey {
            primary,
            backup: Some(backup),
        }
    }

    /// From what `setsockopt(TCP_FASTOPEN_KEY)` takes: 16 bytes, or 32 for a primary and a
    /// backup key. Anything else is `None` (Linux: `EINVAL`).
    pub fn from_bytes(bytes: &[u8]) -> Option<FastOpenKey> {
        let key = |b: &[u8]| -> [u8; 16] {
            let mut k = [0; 16];
            k.copy_from_slice(b);
            k
        };
        match bytes.len() {
            16 => Some(FastOpenKey::new(key(bytes))),
            32 => Some(FastOpenKey::with_backup(
                key(&bytes[..16]),
                key(&bytes[16..]),
            )),
            _ => None,
        }
    }

    /// The cookie for a client at `client` talking to our `server` address, under the
    /// primary key.
    pub fn cookie(&self, client: IpAddr, server: IpAddr) -> FastOpenCookie {
        cookie_under(&self.primary, client, server)
    }

    /// Which key `cookie` checks under: `Some(false)` the primary, `Some(true)` the backup
    /// (the client should be given the primary's cookie), `None` neither.
    fn check(&self, cookie: &FastOpenCookie, client: IpAddr, server: IpAddr) -> Option<bool> {
        let matches = |key: &[u8; 16]| {
            let good = cookie_under(key, client, server);
            // Linux accepts only its own length (`tcp_fastopen_cookie_match`).
            cookie.as_bytes().len() == good.as_bytes().len()
                && cookie
                    .as_bytes()
                    .iter()
                    .zip(good.as_bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        };
        if matches(&self.primary) {
            Some(false)
        } else if self.backup.as_ref().is_some_and(matches) {
            Some(true)
        } else {
            None
        }
    }
}

/// SipHash-2-4 of the client's address then the server's, under `key`, its output's bytes
/// little-endian: 8 bytes, each address in network order (4 bytes for IPv4, 16 for IPv6).
fn cookie_under(key: &[u8; 16], client: IpAddr, server: IpAddr) -> FastOpenCookie {
    let mut input = [0u8; 32];
    let len = match (client, server) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            input[..4].copy_from_slice(&c.octets());
            input[4..8].copy_from_slice(&s.octets());
            8
        }
        (c, s) => {
            input[..16].copy_from_slice(&to_v6(c).octets());
            input[16..].copy_from_slice(&to_v6(s).octets());
            32
        }
    };
    let mac = siphash24(key, &input[..len]).to_le_bytes();
    // Eight bytes are a length RFC 7413 §4.1.1 allows.
    FastOpenCookie::new(&mac).unwrap_or(FastOpenCookie::REQUEST)
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A listener's Fast Open state.
#[derive(Debug, Default)]
pub(super) struct FastOpenQueue {
    /// Connections taken with Fast Open that have not completed their handshake.
    pub(super) pending: usize,
    /// When each accepted one that was reset before its handshake ended stops counting
    /// (`RESET_HOLD`), oldest first.
    pub(super) reset: VecDeque<Instant>,
    /// The listener's own key (`TCP_FASTOPEN_KEY` on it), else the endpoint's.
    pub(super) key: Option<FastOpenKey>,
}

/// What a listener does with a SYN, as far as Fast Open goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FastOpenVerdict {
    /// A plain SYN: no Fast Open option in the SYN-ACK, data dropped.
    Plain,
    /// A plain SYN whose SYN-ACK carries this cookie (a request, or a wrong cookie).
    Cookie(FastOpenCookie),
    /// Taken with Fast Open, its SYN-ACK carrying this cookie if any.
    Child(Option<FastOpenCookie>),
}

impl Endpoint {
    /// Set the Fast Open server key every listener without its own uses (Linux's
    /// `net.ipv4.tcp_fastopen_key`). The endpoint starts with a random one (derived from
    /// `Config::seed` when one is set, for reproducible runs); cookies given under the old
    /// key stop working unless it is kept as the backup.
    pub fn set_fast_open_key(&mut self, key: FastOpenKey) {
        self.fast_open_key = key;
    }

    /// Set listener `l`'s own Fast Open key (`TCP_FASTOPEN_KEY` on a listening socket).
    pub fn set_listener_fast_open_key(
        &mut self,
        l: ListenerHandle,
        key: FastOpenKey,
    ) -> Result<(), crate::Error> {
        let listener = self
            .listeners
            .get_mut(&l)
            .ok_or(crate::Error::InvalidHandle)?;
        listener.fast_open.key = Some(key);
        Ok(())
    }

    /// RFC 7413 §4.2.2, the server's processing of a SYN at listener `l` (after Linux's
    /// `tcp_try_fastopen`): whether it is taken with its data, and what cookie its SYN-ACK
    /// carries. Called only for SYNs answered with state: a SYN-cookie SYN-ACK never takes
    /// Fast Open, as Linux's.
    pub(super) fn fast_open_verdict(
        &mut self,
        now: Instant,
        l: ListenerHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) -> FastOpenVerdict {
        let syn_data = !seg.payload.is_empty();
        if seg.fast_open.is_some_and(|c| c.is_request()) {
            self.stats.fast_open_cookie_requests += 1;
        }
        if seg.fast_open.is_none() && !syn_data {
            return FastOpenVerdict::Plain;
        }
        let max_backlog = self.config.max_backlog.max(1);
        let key = self.fast_open_key;
        let Some(listener) = self.listeners.get_mut(&l) else {
            return FastOpenVerdict::Plain;
        };
        let max = (listener.options.fast_open.unwrap_or(0) as usize).min(max_backlog);
        if max == 0 {
            return FastOpenVerdict::Plain;
        }
        // §5.1: "servers MUST limit the number of pending TFO connections"; past the limit
        // a SYN is a plain SYN, cookie request or not (Linux's tcp_fastopen_queue_check).
        let queue = &mut listener.fast_open;
        while queue.reset.front().is_some_and(|&until| until <= now) {
            queue.reset.pop_front();
        }
        if queue.pending + queue.reset.len() >= max {
            self.stats.fast_open_listen_overflow += 1;
            return FastOpenVerdict::Plain;
        }
        if listener.options.fast_open_no_cookie == Some(true) {
            return FastOpenVerdict::Child(None);
        }
        let key = queue.key.unwrap_or(key);
        let Some(presented) = seg.fast_open else {
            // Data without the option: the client does not do Fast Open with us.
            return FastOpenVerdict::Plain;
        };
        // The answer comes in the form the client asked in (kind 34 or the experimental).
        let valid = key
            .cookie(remote.ip(), local.ip())
            .experimental(presented.is_experimental());
        if presented.is_request() {
            return FastOpenVerdict::Cookie(valid);
        }
        match key.check(&presented, remote.ip(), local.ip()) {
            Some(false) => FastOpenVerdict::Child(None),
            Some(true) => FastOpenVerdict::Child(Some(valid)),
            None => {
                self.stats.fast_open_passive_fail += 1;
                FastOpenVerdict::Cookie(valid)
            }
        }
    }
}

/// Servers whose cookie is kept, at most: what a burst of SYN-ACKs from spoofed servers
/// can cost is bounded (each entry a few dozen bytes); past it an arbitrary entry makes
/// room, and that server is asked for a new cookie next time.
const MAX_SERVERS: usize = 1024;

/// The client's cookies by server address.
#[derive(Debug, Default)]
pub(super) struct FastOpenCookies {
    by_server: HashMap<IpAddr, FastOpenCached>,
}

/// What the client side keeps of a server for TCP Fast Open, as Linux's
/// `tcp_fastopen_cache_set`: its cookie, the MSS its last Fast Open SYN-ACK offered (which
/// sizes the data of the next SYN to it), and the form a cookie request takes. Opaque: see
/// [`Endpoint::fast_open_cached`](crate::Endpoint::fast_open_cached) for why it is handed
/// out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastOpenCached {
    cookie: Option<FastOpenCookie>,
    mss: Option<u16>,
    try_exp: u8,
}

impl FastOpenCookies {
    /// What an active open to `server` starts from (Linux's `tcp_fastopen_cache_get`).
    pub(super) fn server(&self, server: IpAddr) -> FastOpenServer {
        let Some(c) = self.by_server.get(&server) else {
            return FastOpenServer::default();
        };
        FastOpenServer {
            cookie: c.cookie,
            mss: c.mss,
            request_exp: c.cookie.is_none() && c.try_exp == 1,
        }
    }

    /// The entry kept for `server`, whole.
    pub(super) fn get(&self, server: IpAddr) -> Option<FastOpenCached> {
        self.by_server.get(&server).copied()
    }

    /// Replaces the entry for `server`, within the cache's bound.
    pub(super) fn put(&mut self, server: IpAddr, cached: FastOpenCached) {
        *self.entry(server) = cached;
    }

    /// Keep what a Fast Open SYN-ACK from `server` brought: a cookie replaces an older one,
    /// an MSS the older MSS; what it lacks stays as it was.
    pub(super) fn insert(&mut self, server: IpAddr, learned: LearnedFastOpen) {
        let cached = self.entry(server);
        cached.mss = learned.mss.or(cached.mss);
        if learned.cookie.is_some() {
            cached.cookie = learned.cookie;
        } else if learned.try_exp > cached.try_exp && cached.cookie.is_none() {
            // Only ever forward: 1, one request in the experimental form; 2, kind 34 again.
            cached.try_exp = learned.try_exp;
        }
    }

    /// `server`'s entry, made if need be: past the bound an arbitrary other one goes.
    fn entry(&mut self, server: IpAddr) -> &mut FastOpenCached {
        if self.by_server.len() >= MAX_SERVERS && !self.by_server.contains_key(&server) {
            if let Some(&old) = self.by_server.keys().next() {
                self.by_server.remove(&old);
            }
        }
        self.by_server.entry(server).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_the_newest_cookie_per_server() {
        let mut c = FastOpenCookies::default();
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let learned = |cookie: &[u8], mss| LearnedFastOpen {
            cookie: FastOpenCookie::new(cookie),
            mss,
            try_exp: 0,
        };
        c.insert(a, learned(&[1; 8], Some(1460)));
        c.insert(a, learned(&[2; 8], None));
        assert_eq!(c.server(a).cookie, FastOpenCookie::new(&[2; 8]));
        assert_eq!(c.server(a).mss, Some(1460));
        // A SYN-ACK without a cookie keeps the old one and brings its MSS.
        c.insert(a, learned(&[], Some(940)));
        assert_eq!(c.server(a).cookie, FastOpenCookie::new(&[2; 8]));
        assert_eq!(c.server(a).mss, Some(940));
        for i in 0..3000u32 {
            let ip = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            c.insert(ip, learned(&[3; 4], None));
        }
        assert_eq!(c.by_server.len(), MAX_SERVERS);
    }

    /// Linux 6.18 gave these cookies to 198.19.0.1 as 198.18.0.2 (packetdrill over a TUN),
    /// with `net.ipv4.tcp_fastopen_key` set to each key.
    /// Linux's `try_exp`: a request unanswered in kind 34 is made once in the experimental
    /// option; unanswered there too, kind 34 for good. A cookie ends it.
    #[test]
    fn an_unanswered_request_is_made_once_in_the_experimental_option() {
        let mut c = FastOpenCookies::default();
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let unanswered = |try_exp| LearnedFastOpen {
            cookie: None,
            mss: None,
            try_exp,
        };
        assert!(!c.server(a).request_exp);
        c.insert(a, unanswered(1));
        assert!(c.server(a).request_exp);
        c.insert(a, unanswered(2));
        assert!(!c.server(a).request_exp);
        // Never back: a kind-34 request unanswered again changes nothing.
        c.insert(a, unanswered(1));
        assert!(!c.server(a).request_exp);
        // A cookie (in either form) is what the next SYN carries; no request is made.
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        c.insert(b, unanswered(1));
        let cookie = FastOpenCookie::new(&[7; 4]).map(|k| k.experimental(true));
        c.insert(
            b,
            LearnedFastOpen {
                cookie,
                mss: None,
                try_exp: 0,
            },
        );
        assert_eq!(c.server(b).cookie, cookie);
        assert!(!c.server(b).request_exp);
    }

    #[test]
    fn server_cookies_are_the_ones_linux_computes() {
        let client: IpAddr = "198.19.0.1".parse().unwrap();
        let server: IpAddr = "198.18.0.2".parse().unwrap();
        // a0bf63f7-ed803d81-cd641d30-cebc4a90, each word little-endian as TCP_FASTOPEN_KEY
        // takes it.
        let key = FastOpenKey::from_bytes(&[
            0xf7, 0x63, 0xbf, 0xa0, 0x81, 0x3d, 0x80, 0xed, 0x30, 0x1d, 0x64, 0xcd, 0x90, 0x4a,
            0xbc, 0xce,
        ])
        .unwrap();
        assert_eq!(
            key.cookie(client, server).as_bytes(),
            [0x99, 0xaa, 0x79, 0x09, 0xd3, 0xd5, 0x6f, 0x20]
        );
        // a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4 (packetdrill's defaults.sh).
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = [0xa1, 0xb2, 0xc3, 0xd4][i / 4];
        }
        let key = FastOpenKey::from_bytes(&bytes).unwrap();
        assert_eq!(
            key.cookie(client, server).as_bytes(),
            [0x70, 0x19, 0xb1, 0x9d, 0xab, 0xe7, 0x82, 0x81]
        );
    }

    #[test]
    fn a_cookie_checks_under_the_primary_or_the_backup_key_only() {
        let (a, b): (IpAddr, IpAddr) =
            ("198.19.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let old = FastOpenKey::new([1; 16]);
        let new = FastOpenKey::with_backup([2; 16], [1; 16]);
        let old_cookie = old.cookie(a, b);
        assert_eq!(old.check(&old_cookie, a, b), Some(false));
        assert_eq!(new.check(&old_cookie, a, b), Some(true));
        assert_eq!(new.check(&new.cookie(a, b), a, b), Some(false));
        // Another client, or the server's other address, gets another cookie.
        let other: IpAddr = "198.19.0.9".parse().unwrap();
        assert_eq!(new.check(&old_cookie, other, b), None);
        assert_eq!(new.check(&old_cookie, b, a), None);
        // A truncated or altered cookie does not check.
        let short = FastOpenCookie::new(&old_cookie.as_bytes()[..4]).unwrap();
        assert_eq!(old.check(&short, a, b), None);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(old_cookie.as_bytes());
        bytes[7] ^= 1;
        assert_eq!(old.check(&FastOpenCookie::new(&bytes).unwrap(), a, b), None);
        assert!(FastOpenKey::from_bytes(&[0; 3]).is_none());
        assert!(FastOpenKey::from_bytes(&[0; 32]).is_some());
        assert_eq!(format!("{old:?}"), "FastOpenKey { .. }");
    }
}
