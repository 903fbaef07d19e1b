//! getsockopt and setsockopt, and the byte layouts of the options Linux fills in.

use std::time::Duration;

use synack_core::tcp::info::TcpInfo;
use synack_core::{ConnectionHandle, KeepaliveConfig, State};

use super::errno::{errno, SysResult};
use super::errqueue;
use super::fd::{IpOpts, Kind};
use super::state::{Shared, Stack};

impl Shared {
    /// getsockopt(2) for an integer (or small struct) option: the bytes to copy out.
    pub fn getsockopt(&self, fd: i32, level: i32, name: i32) -> SysResult<Vec<u8>> {
        let mut g = self.lock();
        let int = |v: i32| Ok(v.to_ne_bytes().to_vec());
        let kind = g.socket(fd)?.kind;
        let conn = match kind {
            Kind::Conn(h) => Some(h),
            _ => None,
        };
        let now = g.now;
        let info = conn.and_then(|h| g.ep().info(now, h).ok());
        let o = g.socket(fd)?.opts.clone();
        let v6 = g.socket(fd)?.v6;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => {
                // Linux's sock_error, then sk_err_soft, each cleared once read.
                let e = match conn {
                    Some(h) => match g.take_conn_error(fd)? {
                        Some(e) => e,
                        None => g.ep().take_soft_error(h).ok().flatten().map_or(0, errno),
                    },
                    None => g.socket(fd)?.pending_error.take().unwrap_or(0),
                };
                int(e)
            }
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => int(o.reuseaddr as i32),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => int(o.reuseport as i32),
            (libc::SOL_SOCKET, libc::SO_TYPE) => int(libc::SOCK_STREAM),
            (libc::SOL_SOCKET, libc::SO_OOBINLINE) => int(o.oobinline as i32),
            (libc::SOL_SOCKET, errqueue::SO_ZEROCOPY) => int(o.zerocopy as i32),
            (libc::SOL_SOCKET, errqueue::SO_TIMESTAMPING) => {
                Ok(errqueue::timestamping_bytes(o.timestamping))
            }
            (libc::SOL_SOCKET, errqueue::SO_MARK) => int(o.mark as i32),
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let mut v = (o.linger.is_some() as i32).to_ne_bytes().to_vec();
                v.extend_from_slice(&o.linger.unwrap_or(0).to_ne_bytes());
                Ok(v)
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                let d = g.sys().wmem_default as i32;
                int(o.sndbuf.unwrap_or(d))
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                let d = g.sys().rmem_default as i32;
                int(o.rcvbuf.unwrap_or(d))
            }
            (libc::SOL_SOCKET, libc::SO_RCVLOWAT) => {
                let v = match conn {
                    Some(h) => g.ep().rcvlowat(h).map_err(errno)?,
                    None => o.rcvlowat.unwrap_or(1) as usize,
                };
                int(v.min(i32::MAX as usize) as i32)
            }
            (libc::SOL_SOCKET, libc::SO_MEMINFO) => {
                // rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem,
                // backlog, drops
                let i = info.unwrap_or_default();
                let rq = g.inq(fd) as u32;
                let words = [
                    rq,
                    i.recv_buffer,
                    0,
                    i.send_buffer,
                    0,
                    i.send_queued,
                    0,
                    0,
                    0,
                ];
                Ok(words.iter().flat_map(|w| w.to_ne_bytes()).collect())
            }
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => int(o.keepalive as i32),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => {
                int(o.keepidle.unwrap_or(crate::flags::keepalive_sysctls().0) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => {
                int(o.keepintvl.unwrap_or(crate::flags::keepalive_sysctls().1) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                int(o.keepcnt.unwrap_or(crate::flags::keepalive_sysctls().2) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => int(o.nodelay as i32),
            (libc::IPPROTO_TCP, libc::TCP_CORK) => int(o.cork as i32),
            (libc::IPPROTO_TCP, libc::TCP_QUICKACK) => {
                // Linux: !inet_csk_in_pingpong_mode(sk); a socket without a connection has
                // never entered the mode.
                let on = match conn {
                    Some(h) => g.ep().quickack(h).map_err(errno)?,
                    None => true,
                };
                int(on as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT) => int(o.fastopen_connect as i32),
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN) => int(o.fastopen.unwrap_or(0) as i32),
            (libc::IPPROTO_TCP, libc::TCP_LINGER2) => {
                // Unset, the sysctl's time; no wait, -1.
                let v = match o.linger2 {
                    0 => g.sys().fin_timeout.min(i32::MAX as u32) as i32,
                    v => v,
                };
                int(v)
            }
            (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) => {
                // Kept as SYN-ACK retransmissions, read back as the seconds they cover
                // (Linux's `retrans_to_secs`: 2 reads as 3).
                let set = Duration::from_secs(u64::from(o.defer_accept));
                let period = synack_core::options::defer_accept_period(set);
                int(period.as_secs().min(i32::MAX as u64) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                let mss = match info {
                    // Linux reports mss_cache, as TCP_INFO's snd_mss: the MSS less the
                    // options every segment carries (12 bytes of timestamps).
                    Some(i) if i.snd_mss > 0 => i.snd_mss,
                    _ => o.maxseg.unwrap_or(536),
                };
                int(mss as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => int(o.user_timeout.unwrap_or(0) as i32),
            (libc::IPPROTO_TCP, libc::TCP_SYNCNT) => {
                let d = g.ep().config().get_syn_retries();
                int(o.syncnt.unwrap_or(d) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT) => {
                // 0 when unset: the sysctl applies.
                int(o.notsent_lowat.unwrap_or(0) as i32)
            }
            (libc::IPPROTO_TCP, libc::TCP_INQ) => int(o.inq as i32),
            (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => {
                let mut v = g.sys().congestion.clone().into_bytes();
                v.resize(16, 0);
                Ok(v)
            }
            (libc::IPPROTO_TCP, libc::TCP_INFO) => {
                let state = match kind {
                    Kind::Listener(_) => Some(State::Listen),
                    _ => None,
                };
                let i = info.unwrap_or(TcpInfo {
                    state,
                    ..TcpInfo::default()
                });
                Ok(tcp_info_bytes(&i))
            }
            // CUBIC and NewReno have nothing to report (Linux: a length of 0).
            (libc::IPPROTO_TCP, libc::TCP_CC_INFO) => Ok(Vec::new()),
            (libc::IPPROTO_IP | libc::IPPROTO_IPV6, _) => ip_getsockopt(&o.ip, v6, level, name),
            _ => Err(libc::ENOPROTOOPT),
        }
    }

    /// setsockopt(2); `value` is the option's bytes.
    pub fn setsockopt(&self, fd: i32, level: i32, name: i32, value: &[u8]) -> SysResult<()> {
        let mut g = self.lock();
        let int = || -> SysResult<i32> {
            let b: [u8; 4] = value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(libc::EINVAL)?;
            Ok(i32::from_ne_bytes(b))
        };
        let conn = match g.socket(fd)?.kind {
            Kind::Conn(h) => Some(h),
            _ => None,
        };
        match (level, name) {
            (libc::SOL_SOCKET, name @ (libc::SO_REUSEADDR | libc::SO_REUSEPORT)) => {
                let on = int()? != 0;
                let s = g.socket(fd)?;
                match name {
                    libc::SO_REUSEADDR => s.opts.reuseaddr = on,
                    _ => s.opts.reuseport = on,
                }
                // A bound socket holds its port with the options as they are now: later
                // binds see them.
                let sharing = s.opts.sharing();
                if let Some((a, was)) = s.binding {
                    s.binding = Some((a, sharing));
                    let _ = g.ep().release_binding(a, was);
                    g.ep().hold_binding(a, sharing);
                }
            }
            (libc::SOL_SOCKET, libc::SO_OOBINLINE) => {
                let on = int()? != 0;
                g.socket(fd)?.opts.oobinline = on;
                if let Some(h) = conn {
                    g.ep().set_oob_inline(h, on).map_err(errno)?;
                }
            }
            (libc::SOL_SOCKET, errqueue::SO_ZEROCOPY) => g.set_zerocopy(fd, int()?)?,
            (libc::SOL_SOCKET, errqueue::SO_TIMESTAMPING) => g.set_timestamping(fd, value)?,
            (libc::SOL_SOCKET, errqueue::SO_MARK) => g.socket(fd)?.opts.mark = int()? as u32,
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                if value.len() < 8 {
                    return Err(libc::EINVAL);
                }
                let on = int()? != 0;
                let secs = i32::from_ne_bytes(value[4..8].try_into().expect("4 bytes"));
                g.socket(fd)?.opts.linger = on.then_some(secs);
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                // Linux: min(value, wmem_max), doubled for overhead, at least SOCK_MIN_SNDBUF.
                let v = (int()?.max(0) as u32).min(core_sysctl("wmem_max").unwrap_or(212_992));
                let bytes = (v.saturating_mul(2)).max(4608) as i32;
                g.socket(fd)?.opts.sndbuf = Some(bytes);
                if let Some(h) = conn {
                    g.ep().set_send_buffer(h, bytes as usize).map_err(errno)?;
                }
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                // Linux: min(value, rmem_max), doubled for overhead, at least SOCK_MIN_RCVBUF.
                let v = (int()?.max(0) as u32).min(core_sysctl("rmem_max").unwrap_or(212_992));
                let bytes = (v.saturating_mul(2)).max(2304) as i32;
                g.socket(fd)?.opts.rcvbuf = Some(bytes);
                if let Some(h) = conn {
                    g.ep().set_recv_buffer(h, bytes as usize).map_err(errno)?;
                }
            }
            (libc::SOL_SOCKET, libc::SO_RCVLOWAT) => {
                // sock_setsockopt: a negative value is INT_MAX; tcp_set_rcvlowat caps it at
                // half of SO_RCVBUF if that is set, else of tcp_rmem[2], and takes 0 as 1.
                let v = int()?;
                let v = if v < 0 { i32::MAX as usize } else { v as usize };
                let set = match conn {
                    Some(h) => g.ep().set_rcvlowat(h, v).map_err(errno)?,
                    None => {
                        let cap = match g.socket(fd)?.opts.rcvbuf {
                            Some(b) => b.max(0) as usize / 2,
                            None => g.sys().rmem_max / 2,
                        };
                        v.min(cap).max(1)
                    }
                };
                g.socket(fd)?.opts.rcvlowat = Some(set.min(u32::MAX as usize) as u32);
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
                let on = int()? != 0;
                g.socket(fd)?.opts.nodelay = on;
                if let Some(h) = conn {
                    g.ep().set_nodelay(h, on).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_QUICKACK) => {
                // Linux's __tcp_sock_set_quickack; on a socket without a connection there
                // is no delayed-ACK state to change.
                let on = int()? != 0;
                if let Some(h) = conn {
                    g.ep().set_quickack(h, on).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT) => {
                // Linux: 0 or 1, before connect(), and only while the tcp_fastopen sysctl
                // lets clients use Fast Open (EOPNOTSUPP otherwise).
                let on = match int()? {
                    0 => false,
                    1 => true,
                    _ => return Err(libc::EINVAL),
                };
                if crate::flags::fastopen_sysctl().unwrap_or(g.sys().fastopen) & 1 == 0 {
                    return Err(libc::EOPNOTSUPP);
                }
                let s = g.socket(fd)?;
                if s.kind != Kind::Fresh {
                    return Err(libc::EINVAL);
                }
                s.opts.fastopen_connect = on;
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN) => {
                // Linux: a queue length of at least 0, on a socket not yet connected or
                // listening (fastopen_queue_tune).
                let v = int()?;
                let s = g.socket(fd)?;
                if v < 0 || matches!(s.kind, Kind::Conn(_)) {
                    return Err(libc::EINVAL);
                }
                s.opts.fastopen = Some(v as u32);
                if let Kind::Listener(l) = s.kind {
                    let opts = super::connect::listener_options(s);
                    g.ep().set_listener_options(l, &opts).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_LINGER2) => {
                // Linux: negative is no wait (-1), past TCP_FIN_TIMEOUT_MAX (120 s) is 120.
                let v = match int()? {
                    v if v < 0 => -1,
                    v => v.min(120),
                };
                let s = g.socket(fd)?;
                s.opts.linger2 = v;
                match (conn, s.kind) {
                    (Some(h), _) => g.ep().set_linger2(h, linger2_of(v)).map_err(errno)?,
                    // A listener's children inherit it, as Linux's copy the listener's.
                    (None, Kind::Listener(l)) => {
                        let opts = super::connect::listener_options(g.socket(fd)?);
                        g.ep().set_listener_options(l, &opts).map_err(errno)?;
                    }
                    _ => {}
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) => {
                // Any socket takes it; a listener's children wait for data by it.
                let v = int()?.max(0) as u32;
                let s = g.socket(fd)?;
                s.opts.defer_accept = v;
                if let Kind::Listener(l) = s.kind {
                    let opts = super::connect::listener_options(s);
                    g.ep().set_listener_options(l, &opts).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_KEY) => {
                // 16 bytes, or 32 for a primary and a backup key.
                let key = synack_core::FastOpenKey::from_bytes(value).ok_or(libc::EINVAL)?;
                let s = g.socket(fd)?;
                s.opts.fastopen_key = Some(key);
                if let Kind::Listener(l) = s.kind {
                    g.ep().set_listener_fast_open_key(l, key).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_CORK) => {
                let on = int()? != 0;
                g.socket(fd)?.opts.cork = on;
                if let Some(h) = conn {
                    g.ep().set_cork(h, on).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                let v = int()?;
                // Linux: 0 resets; otherwise between TCP_MIN_MSS (88) and the window limit.
                let usable = synack_core::USER_MSS_MIN..=synack_core::USER_MSS_MAX;
                if v != 0 && !usize::try_from(v).is_ok_and(|v| usable.contains(&v)) {
                    return Err(libc::EINVAL);
                }
                g.socket(fd)?.opts.maxseg = (v != 0).then_some(v as u32);
                if let Kind::Listener(l) = g.socket(fd)?.kind {
                    let opts = super::connect::listener_options(g.socket(fd)?);
                    g.ep().set_listener_options(l, &opts).map_err(errno)?;
                }
                if let (Some(h), true) = (conn, v != 0) {
                    g.ep().clamp_mss(h, v as usize).map_err(errno)?;
                }
            }
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
                let s = g.socket(fd)?;
                s.opts.keepalive = int()? != 0;
                let k = s.opts.keepalive_config();
                g.keepalive_changed(fd, conn, k)?;
            }
            // Linux: 1..=32767 seconds (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL), 1..=127 probes
            // (MAX_TCP_KEEPCNT); taking effect at once on a connection with SO_KEEPALIVE on.
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT) => {
                let v = int()?;
                let max = if name == libc::TCP_KEEPCNT {
                    127
                } else {
                    32767
                };
                if !(1..=max).contains(&v) {
                    return Err(libc::EINVAL);
                }
                let s = g.socket(fd)?;
                let slot = match name {
                    libc::TCP_KEEPIDLE => &mut s.opts.keepidle,
                    libc::TCP_KEEPINTVL => &mut s.opts.keepintvl,
                    _ => &mut s.opts.keepcnt,
                };
                *slot = Some(v as u32);
                if let Some(k) = s.opts.keepalive_config() {
                    g.keepalive_changed(fd, conn, Some(k))?;
                    // Linux re-arms the timer for TCP_KEEPIDLE even when its value is the same.
                    if let (libc::TCP_KEEPIDLE, Some(h)) = (name, conn) {
                        let now = g.now;
                        g.ep().rearm_keepalive(now, h).map_err(errno)?;
                    }
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
                let v = int()?;
                if v < 0 {
                    return Err(libc::EINVAL);
                }
                g.socket(fd)?.opts.user_timeout = Some(v as u32);
                if let Some(h) = conn {
                    let t = (v > 0).then(|| Duration::from_millis(v as u64));
                    g.ep().set_user_timeout(h, t).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_SYNCNT) => {
                let v = int()?;
                if !(1..=synack_core::MAX_SYN_RETRIES as i32).contains(&v) {
                    return Err(libc::EINVAL);
                }
                g.socket(fd)?.opts.syncnt = Some(v as u32);
                if let Some(h) = conn {
                    g.ep().set_syn_retries(h, v as u32).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT) => {
                // Send-buffer sizing: the connection's low-water mark; 0 returns to the
                // sysctl's (tcp_notsent_lowat).
                let v = int()? as u32;
                g.socket(fd)?.opts.notsent_lowat = Some(v);
                if let Some(h) = conn {
                    let lowat = (v > 0).then_some(v as usize);
                    g.ep().set_notsent_lowat(h, lowat).map_err(errno)?;
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_INQ) => {
                g.socket(fd)?.opts.inq = int()? != 0;
            }
            (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => {
                let name = value.split(|&b| b == 0).next().unwrap_or(&[]);
                let current = g.sys().congestion.clone();
                if name != current.as_bytes() {
                    // The core picks the controller per endpoint, not per socket.
                    return Err(libc::ENOPROTOOPT);
                }
            }
            (libc::IPPROTO_IP | libc::IPPROTO_IPV6, _) => {
                let s = g.socket(fd)?;
                let mut ip = s.opts.ip.clone();
                let change = ip_setsockopt(&mut ip, s.v6, level, name, value)?;
                s.opts.ip = ip.clone();
                if let Some(h) = conn.filter(|_| change != IpChange::None) {
                    // What the connection sends with: the option of its wire's family.
                    let wire_v6 = g.ep().peer_addr(h).map_err(errno)?.is_ipv6();
                    match change {
                        IpChange::Ds => {
                            if let Some(ds) = ip.ds_byte(wire_v6) {
                                g.ep().set_tos(h, ds).map_err(errno)?;
                            }
                        }
                        IpChange::HopLimit => {
                            let hl = ip.hop_limit(wire_v6);
                            let hl = hl.unwrap_or(synack_core::DEFAULT_HOP_LIMIT);
                            g.ep().set_hop_limit(h, hl).map_err(errno)?;
                        }
                        IpChange::None => {}
                    }
                }
                if let (true, Kind::Listener(l)) = (change != IpChange::None, g.socket(fd)?.kind) {
                    let opts = super::connect::listener_options(g.socket(fd)?);
                    g.ep().set_listener_options(l, &opts).map_err(errno)?;
                }
            }
            _ => return Err(libc::ENOPROTOOPT),
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }
}

impl Stack {
    /// SO_KEEPALIVE or its timing changed on `fd`: its connection probes by it from now
    /// (`Endpoint::set_keepalive` times the first probe as Linux arms its timer), and a
    /// listener's later children take it when they are made (`tcp_create_openreq_child`
    /// arms their timer then, not at `accept`).
    fn keepalive_changed(
        &mut self,
        fd: i32,
        conn: Option<ConnectionHandle>,
        keepalive: Option<KeepaliveConfig>,
    ) -> SysResult<()> {
        let now = self.now;
        if let Some(h) = conn {
            self.ep().set_keepalive(now, h, keepalive).map_err(errno)?;
        }
        if let Kind::Listener(l) = self.socket(fd)?.kind {
            let opts = super::connect::listener_options(self.socket(fd)?);
            self.ep().set_listener_options(l, &opts).map_err(errno)?;
        }
        Ok(())
    }
}

// ---- IP-level options: IP_TOS, IPV6_TCLASS, IP_TTL, IPV6_UNICAST_HOPS, IP_MTU_DISCOVER,
// IP_FREEBIND ---------------------------------------------------------------------------------

/// What an IP-level setsockopt changed in the packets the connection sends (if the option
/// is of the family on its wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpChange {
    /// Nothing they carry.
    None,
    /// The DS byte.
    Ds,
    /// The TTL or hop limit.
    HopLimit,
}

/// The ECN bits of a DS byte: the stack's, never the application's (Linux masks them from
/// IP_TOS and IPV6_TCLASS on stream sockets).
const ECN_MASK: u8 = 0b11;

/// An IP-level option's integer as Linux's `do_ip_setsockopt` reads it: an int, or a single
/// byte when the caller passes fewer than four.
fn ip_int(value: &[u8]) -> SysResult<i32> {
    match value.len() {
        0 => Err(libc::EINVAL),
        1..=3 => Ok(i32::from(value[0])),
        _ => Ok(i32::from_ne_bytes(value[..4].try_into().expect("4 bytes"))),
    }
}

/// setsockopt at `SOL_IP` / `SOL_IPV6` on a socket of the family `v6` says: records the
/// option and returns what it changed in the packets a connection sends. An IPv6 socket
/// takes both levels (Linux's `ipv6_setsockopt` hands `SOL_IP` to `ip_setsockopt`); an
/// IPv4 socket's `ip_setsockopt` refuses `SOL_IPV6` (ENOPROTOOPT).
fn ip_setsockopt(
    ip: &mut IpOpts,
    v6: bool,
    level: i32,
    name: i32,
    value: &[u8],
) -> SysResult<IpChange> {
    if level == libc::IPPROTO_IPV6 && !v6 {
        return Err(libc::ENOPROTOOPT);
    }
    match (level, name) {
        (libc::IPPROTO_IP, libc::IP_TOS) => {
            ip.tos = Some((ip_int(value)? as u8) & !ECN_MASK);
            Ok(IpChange::Ds)
        }
        (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) => {
            // Linux: -1 for the default; IP_TTL takes 1 to 255 (an int, or a byte),
            // IPV6_UNICAST_HOPS 0 to 255 (an int only).
            let hops = level == libc::IPPROTO_IPV6;
            if hops && value.len() < 4 {
                return Err(libc::EINVAL);
            }
            let v = ip_int(value)?;
            let least = if hops { 0 } else { 1 };
            let set = match v {
                -1 => None,
                v if (least..=255).contains(&v) => Some(v as u8),
                _ => return Err(libc::EINVAL),
            };
            if hops {
                ip.unicast_hops = set;
            } else {
                ip.ttl = set;
            }
            Ok(IpChange::HopLimit)
        }
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
            // Linux: an int, -1 for the default (0), at most 0xff.
            if value.len() < 4 {
                return Err(libc::EINVAL);
            }
            let v = ip_int(value)?;
            if !(-1..=0xff).contains(&v) {
                return Err(libc::EINVAL);
            }
            ip.tclass = Some((v.max(0) as u8) & !ECN_MASK);
            Ok(IpChange::Ds)
        }
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) => {
            // Recorded for getsockopt. The core always sets DF and follows path MTU news
            // (RFC 1191), which is what IP_PMTUDISC_DO asks; scripts set DONT to keep the
            // kernel from fragmenting, which the core never does either.
            let v = ip_int(value)?;
            if !(libc::IP_PMTUDISC_DONT..=libc::IP_PMTUDISC_OMIT).contains(&v) {
                return Err(libc::EINVAL);
            }
            ip.mtu_discover = Some(v);
            Ok(IpChange::None)
        }
        (libc::IPPROTO_IP, libc::IP_FREEBIND) => {
            ip.freebind = ip_int(value)? != 0;
            Ok(IpChange::None)
        }
        _ => Err(libc::ENOPROTOOPT),
    }
}

/// getsockopt at `SOL_IP` / `SOL_IPV6` on a socket of the family `v6` says (an IPv4
/// socket's `ip_getsockopt` answers `SOL_IPV6` with EOPNOTSUPP).
fn ip_getsockopt(ip: &IpOpts, v6: bool, level: i32, name: i32) -> SysResult<Vec<u8>> {
    if level == libc::IPPROTO_IPV6 && !v6 {
        return Err(libc::EOPNOTSUPP);
    }
    let int = |v: i32| Ok(v.to_ne_bytes().to_vec());
    match (level, name) {
        (libc::IPPROTO_IP, libc::IP_TOS) => int(i32::from(ip.tos.unwrap_or(0))),
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => int(i32::from(ip.tclass.unwrap_or(0))),
        // What the socket sends with: the default when unset, as Linux reads it back.
        (libc::IPPROTO_IP, libc::IP_TTL) => {
            int(i32::from(ip.ttl.unwrap_or(synack_core::DEFAULT_HOP_LIMIT)))
        }
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) => int(i32::from(
            ip.unicast_hops.unwrap_or(synack_core::DEFAULT_HOP_LIMIT),
        )),
        // Linux's default with ip_no_pmtu_disc = 0.
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) => {
            int(ip.mtu_discover.unwrap_or(libc::IP_PMTUDISC_WANT))
        }
        (libc::IPPROTO_IP, libc::IP_FREEBIND) => int(i32::from(ip.freebind)),
        _ => Err(libc::ENOPROTOOPT),
    }
}

/// One of the namespace's `net.core` sysctls.
fn core_sysctl(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Linux's `TCP_*` state numbers (include/net/tcp_states.h).
fn linux_state(s: Option<State>) -> u8 {
    match s {
        Some(State::Established) => 1,
        Some(State::SynSent) => 2,
        Some(State::SynReceived) => 3,
        Some(State::FinWait1) => 4,
        Some(State::FinWait2) => 5,
        Some(State::TimeWait) => 6,
        Some(State::Closed) | None => 7,
        Some(State::CloseWait) => 8,
        Some(State::LastAck) => 9,
        Some(State::Listen) => 10,
        Some(State::Closing) => 11,
    }
}

/// TCP_LINGER2 as the shim keeps it (seconds, 0 for unset, -1 for no wait) in the core's terms.
pub(super) fn linger2_of(v: i32) -> Option<synack_core::Linger2> {
    match v {
        0 => None,
        v if v < 0 => Some(synack_core::Linger2::Abort),
        v => Some(synack_core::Linger2::Timeout(Duration::from_secs(v as u64))),
    }
}

/// `struct tcp_info` as Linux 6.x lays it out (include/uapi/linux/tcp.h), in native byte
/// order.
fn tcp_info_bytes(i: &TcpInfo) -> Vec<u8> {
    struct W(Vec<u8>);
    impl W {
        fn u8(&mut self, v: u8) {
            self.0.push(v);
        }
        fn u16(&mut self, v: u16) {
            self.0.extend_from_slice(&v.to_ne_bytes());
        }
        fn u32(&mut self, v: u32) {
            self.0.extend_from_slice(&v.to_ne_bytes());
        }
        fn u64(&mut self, v: u64) {
            while !self.0.len().is_multiple_of(8) {
                self.0.push(0);
            }
            self.0.extend_from_slice(&v.to_ne_bytes());
        }
    }
    let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
    let mut w = W(Vec::with_capacity(320));
    w.u8(linux_state(i.state));
    w.u8(i.ca_state);
    w.u8(i.retransmits);
    w.u8(i.probes);
    w.u8(i.backoff);
    w.u8(i.options);
    w.u8((i.snd_wscale & 0xf) | (i.rcv_wscale << 4));
    w.u8(0); // delivery_rate_app_limited, fastopen_client_fail
    w.u32(us(i.rto));
    w.u32(us(i.ato));
    w.u32(i.snd_mss);
    w.u32(i.rcv_mss);
    w.u32(i.unacked);
    w.u32(i.sacked);
    w.u32(i.lost);
    w.u32(i.retrans);
    w.u32(0); // fackets
    w.u32(0); // last_data_sent
    w.u32(0); // last_ack_sent
    w.u32(i.last_data_recv.as_millis().min(u32::MAX as u128) as u32);
    w.u32(i.last_ack_recv.as_millis().min(u32::MAX as u128) as u32);
    w.u32(i.pmtu);
    w.u32(0); // rcv_ssthresh
    w.u32(us(i.rtt));
    w.u32(us(i.rttvar));
    w.u32(i.snd_ssthresh);
    w.u32(i.snd_cwnd);
    w.u32(i.advmss);
    w.u32(i.reordering); // reordering
    w.u32(0); // rcv_rtt
    w.u32(0); // rcv_space
    w.u32(i.total_retrans);
    w.u64(0); // pacing_rate
    w.u64(u64::MAX); // max_pacing_rate
    w.u64(i.bytes_acked);
    w.u64(i.bytes_received);
    w.u32(i.segs_out);
    w.u32(i.segs_in);
    w.u32(i.notsent_bytes);
    w.u32(us(i.min_rtt));
    w.u32(i.data_segs_in);
    w.u32(i.data_segs_out);
    w.u64(0); // delivery_rate
    let us64 = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
    w.u64(us64(i.busy_time));
    w.u64(us64(i.rwnd_limited));
    w.u64(us64(i.sndbuf_limited));
    w.u32(i.delivered);
    w.u32(0); // delivered_ce
    w.u64(i.bytes_sent);
    w.u64(i.bytes_retrans);
    w.u32(i.dsack_dups);
    w.u32(0); // reord_seen
    w.u32(i.ooo_received); // rcv_ooopack
    w.u32(i.snd_wnd);
    w.u32(i.rcv_wnd);
    // Linux's `timeout_rehash` (no PLB here): a new flow hash at each timeout.
    w.u32(i.rto_count); // rehash
    w.u16(i.rto_count.min(u32::from(u16::MAX)) as u16); // total_rto
    w.u16(i.rto_recoveries.min(u32::from(u16::MAX)) as u16); // total_rto_recoveries
    w.u32(i.rto_time.as_millis().min(u128::from(u32::MAX)) as u32); // total_rto_time
    for _ in 0..7 {
        w.u32(0); // received_ce, accurate ECN byte counters
    }
    w.u32(0); // ecn_mode, accecn_opt_seen, accecn_fail_mode, options2
    while !w.0.len().is_multiple_of(8) {
        w.0.push(0);
    }
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn ip_tos_takes_a_byte_or_an_int_and_masks_ecn() {
        let mut ip = IpOpts::default();
        let set = |ip: &mut IpOpts, level, name, v: &[u8]| ip_setsockopt(ip, true, level, name, v);
        assert_eq!(
            set(&mut ip, libc::IPPROTO_IP, libc::IP_TOS, &[4]),
            Ok(IpChange::Ds)
        );
        assert_eq!((ip.ds_byte(false), ip.ds_byte(true)), (Some(4), None));
        let v = 0xbbi32.to_ne_bytes();
        assert_eq!(
            set(&mut ip, libc::IPPROTO_IP, libc::IP_TOS, &v),
            Ok(IpChange::Ds)
        );
        assert_eq!(ip.ds_byte(false), Some(0xb8));
        let got = ip_getsockopt(&ip, true, libc::IPPROTO_IP, libc::IP_TOS).unwrap();
        assert_eq!(got, 0xb8i32.to_ne_bytes());
        assert_eq!(
            set(&mut ip, libc::IPPROTO_IP, libc::IP_TOS, &[]),
            Err(libc::EINVAL)
        );
        // IPV6_TCLASS: an int from -1 (the default) to 255, for the IPv6 wire only.
        let v = (-1i32).to_ne_bytes();
        assert_eq!(
            set(&mut ip, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &v),
            Ok(IpChange::Ds)
        );
        assert_eq!((ip.ds_byte(false), ip.ds_byte(true)), (Some(0xb8), Some(0)));
        let v = 256i32.to_ne_bytes();
        let r = set(&mut ip, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &v);
        assert_eq!(r, Err(libc::EINVAL));
        // IP_MTU_DISCOVER is recorded, and reads back as Linux's default before.
        let got = ip_getsockopt(&ip, true, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap();
        assert_eq!(got, libc::IP_PMTUDISC_WANT.to_ne_bytes());
        let dont = [libc::IP_PMTUDISC_DONT as u8];
        assert_eq!(
            set(&mut ip, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &dont),
            Ok(IpChange::None)
        );
        let got = ip_getsockopt(&ip, true, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap();
        assert_eq!(got, libc::IP_PMTUDISC_DONT.to_ne_bytes());
    }

    #[test]
    fn an_ipv4_socket_refuses_ipv6_options() {
        let mut ip = IpOpts::default();
        let four = 4i32.to_ne_bytes();
        for name in [libc::IPV6_TCLASS, libc::IPV6_UNICAST_HOPS] {
            let r = ip_setsockopt(&mut ip, false, libc::IPPROTO_IPV6, name, &four);
            assert_eq!(r, Err(libc::ENOPROTOOPT));
            let r = ip_getsockopt(&ip, false, libc::IPPROTO_IPV6, name);
            assert_eq!(r, Err(libc::EOPNOTSUPP));
        }
        assert_eq!((ip.tclass, ip.unicast_hops), (None, None));
    }

    #[test]
    fn ip_ttl_and_unicast_hops_take_linuxs_ranges() {
        let mut ip = IpOpts::default();
        let set = |ip: &mut IpOpts, level, name, v: i32| {
            ip_setsockopt(ip, true, level, name, &v.to_ne_bytes())
        };
        let get = |ip: &IpOpts, level, name| ip_getsockopt(ip, true, level, name).unwrap();
        let (ip4, ttl) = (libc::IPPROTO_IP, libc::IP_TTL);
        let (ip6, hops) = (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS);
        assert_eq!(get(&ip, ip4, ttl), 64i32.to_ne_bytes());
        assert_eq!(get(&ip, ip6, hops), 64i32.to_ne_bytes());
        assert_eq!(set(&mut ip, ip4, ttl, 5), Ok(IpChange::HopLimit));
        // IP_TTL is for the IPv4 wire only.
        assert_eq!((ip.hop_limit(false), ip.hop_limit(true)), (Some(5), None));
        assert_eq!(get(&ip, ip4, ttl), 5i32.to_ne_bytes());
        assert_eq!(get(&ip, ip6, hops), 64i32.to_ne_bytes());
        assert_eq!(set(&mut ip, ip4, ttl, 0), Err(libc::EINVAL));
        assert_eq!(set(&mut ip, ip4, ttl, 256), Err(libc::EINVAL));
        assert_eq!(set(&mut ip, ip4, ttl, -2), Err(libc::EINVAL));
        assert_eq!(
            ip_setsockopt(&mut ip, true, ip4, ttl, &[9]),
            Ok(IpChange::HopLimit)
        );
        assert_eq!(ip.hop_limit(false), Some(9));
        assert_eq!(set(&mut ip, ip4, ttl, -1), Ok(IpChange::HopLimit));
        assert_eq!(ip.hop_limit(false), None);
        // IPV6_UNICAST_HOPS takes 0, and only an int, for the IPv6 wire only.
        assert_eq!(set(&mut ip, ip6, hops, 0), Ok(IpChange::HopLimit));
        assert_eq!((ip.hop_limit(false), ip.hop_limit(true)), (None, Some(0)));
        assert_eq!(get(&ip, ip6, hops), 0i32.to_ne_bytes());
        let r = ip_setsockopt(&mut ip, true, ip6, hops, &[3]);
        assert_eq!(r, Err(libc::EINVAL));
        assert_eq!(set(&mut ip, ip6, hops, 256), Err(libc::EINVAL));
        assert_eq!(get(&ip, ip4, ttl), 64i32.to_ne_bytes());
    }

    #[test]
    fn tcp_info_has_linux_6_layout() {
        let info = TcpInfo {
            state: Some(State::Established),
            snd_cwnd: 10,
            snd_wnd: 65535,
            snd_mss: 1000,
            ooo_received: 7,
            rto_count: 3,
            rto_recoveries: 2,
            rto_time: Duration::from_millis(1234),
            ..TcpInfo::default()
        };
        let b = tcp_info_bytes(&info);
        // sizeof(struct tcp_info) and field offsets in Linux 6.18's uapi header.
        assert_eq!(b.len(), 280);
        assert_eq!(b[0], 1, "TCP_ESTABLISHED");
        assert_eq!(u32_at(&b, 16), 1000, "tcpi_snd_mss");
        assert_eq!(u32_at(&b, 80), 10, "tcpi_snd_cwnd");
        assert_eq!(u32_at(&b, 224), 7, "tcpi_rcv_ooopack");
        assert_eq!(u32_at(&b, 228), 65535, "tcpi_snd_wnd");
        assert_eq!(u32_at(&b, 236), 3, "tcpi_rehash");
        assert_eq!(u16::from_ne_bytes([b[240], b[241]]), 3, "tcpi_total_rto");
        let recoveries = u16::from_ne_bytes([b[242], b[243]]);
        assert_eq!(recoveries, 2, "tcpi_total_rto_recoveries");
        assert_eq!(u32_at(&b, 244), 1234, "tcpi_total_rto_time");
    }
}
