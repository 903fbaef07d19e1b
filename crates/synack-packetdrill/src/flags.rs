//! `--so_flags`, and the configuration they and the namespace's sysctls give.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use synack_core::tcp::congestion::NewRenoFactory;
use synack_core::{Config, EcnMode, SynCookies};

/// Which defaults the endpoint starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Linux 6.x defaults (`Config::linux()`), what upstream scripts assume.
    Linux,
    /// synack's own defaults (2 s / 4 s / 8 s SYN backoff).
    Synack,
}

/// What `--so_flags` says: `local=IP,local6=IP,profile=linux|synack,verbose`.
#[derive(Debug, Clone)]
pub struct Flags {
    /// The stack's IPv4 address (packetdrill's `--local_ip`).
    pub local4: IpAddr,
    /// The stack's IPv6 address.
    pub local6: IpAddr,
    /// The defaults to start from.
    pub profile: Profile,
    /// Log each call on stderr.
    pub verbose: bool,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            local4: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            local6: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)),
            profile: Profile::Linux,
            verbose: false,
        }
    }
}

impl Flags {
    /// Parse the comma-separated `--so_flags` string; unknown words are an error.
    pub fn parse(s: &str) -> Result<Flags, String> {
        let mut f = Flags::default();
        for word in s.split([',', ' ']).filter(|w| !w.is_empty()) {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "local" | "local4" => {
                    f.local4 = value.parse().map_err(|_| format!("bad address {value}"))?;
                }
                "local6" => {
                    f.local6 = value.parse().map_err(|_| format!("bad address {value}"))?;
                }
                "profile" => {
                    f.profile = match value {
                        "linux" => Profile::Linux,
                        "synack" => Profile::Synack,
                        _ => return Err(format!("unknown profile {value}")),
                    }
                }
                "verbose" => f.verbose = true,
                _ => return Err(format!("unknown so_flag {word}")),
            }
        }
        Ok(f)
    }
}

/// Read one of the namespace's `net.ipv4` sysctls as numbers.
fn sysctl(name: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok()?;
    text.split_whitespace().map(|w| w.parse().ok()).collect()
}

fn sysctl_string(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok()?;
    Some(text.trim().to_string())
}

/// The namespace's keepalive timing now (`tcp_keepalive_time`, `_intvl`, `_probes`), for a
/// socket that sets SO_KEEPALIVE without its own TCP_KEEP* values; Linux's defaults if
/// unreadable.
pub fn keepalive_sysctls() -> (u32, u32, u32) {
    let get = |name: &str, default: u32| {
        sysctl(name)
            .and_then(|v| v.first().map(|&x| x.min(u64::from(u32::MAX)) as u32))
            .unwrap_or(default)
    };
    (
        get("tcp_keepalive_time", 7200),
        get("tcp_keepalive_intvl", 75),
        get("tcp_keepalive_probes", 9),
    )
}

/// `tcp_fastopen` as the namespace has it now.
pub fn fastopen_sysctl() -> Option<u32> {
    sysctl("tcp_fastopen").and_then(|v| v.first().map(|&f| f as u32))
}

/// `tcp_fastopen_key` as the namespace has it now: four 32-bit words in hex joined by `-`
/// (each becomes four bytes little-endian, as Linux's proc handler stores them), then
/// optionally `,` and the backup key.
pub fn fastopen_key_sysctl() -> Option<synack_core::FastOpenKey> {
    let text = sysctl_string("tcp_fastopen_key")?;
    let mut bytes = Vec::with_capacity(32);
    for key in text.split(',').take(2) {
        let words: Vec<&str> = key.trim().split('-').collect();
        if words.len() != 4 {
            return None;
        }
        for w in words {
            bytes.extend_from_slice(&u32::from_str_radix(w, 16).ok()?.to_le_bytes());
        }
    }
    synack_core::FastOpenKey::from_bytes(&bytes)
}

/// `tcp_ecn` as the namespace has it now.
pub fn ecn_sysctl() -> Option<EcnMode> {
    sysctl("tcp_ecn").and_then(|v| v.first().map(|&m| EcnMode::from_sysctl(m)))
}

/// The MTU of the namespace's `tun0` now, `None` without one. The runner gives the .so a
/// `tun0` that nothing reads, and a script may set its MTU (`ip link set dev tun0 mtu
/// 9000` in `tcp_syncookies_ip6_9k`): Linux derives the MSS of every SYN and SYN-ACK, and
/// of every segment an open connection sends, from the device's MTU as it is then. Read at
/// every call into the stack.
pub fn link_mtu() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/class/net/tun0/mtu").ok()?;
    text.trim().parse().ok()
}

/// `tcp_timestamps` as the namespace has it now.
pub fn timestamps_sysctl() -> Option<bool> {
    sysctl("tcp_timestamps").and_then(|v| v.first().map(|&t| t != 0))
}

/// Values from the sysctls a script may set, kept for the socket options that report them.
#[derive(Debug, Clone)]
pub struct Sysctls {
    /// `tcp_wmem[1]`: the default send buffer.
    pub wmem_default: usize,
    /// `tcp_rmem[1]`: the default receive buffer.
    pub rmem_default: usize,
    /// `tcp_rmem[2]`: the largest receive buffer auto-tuning reaches.
    pub rmem_max: usize,
    /// `tcp_congestion_control`.
    pub congestion: String,
    /// `tcp_fastopen`: bit 0 lets clients use TCP Fast Open (Linux's default, 1).
    pub fastopen: u32,
    /// `tcp_fin_timeout` in seconds, which `TCP_LINGER2` reads while unset.
    pub fin_timeout: u32,
}

/// The endpoint's configuration: the profile, then what the namespace's sysctls say (the
/// script's init command has run by the time the first socket is made).
pub fn config(flags: &Flags) -> (Config, Sysctls) {
    let mut c = match flags.profile {
        Profile::Linux => Config::linux(),
        Profile::Synack => Config::default(),
    };
    // A TSO device, as packetdrill's tun is: whole super-segments are what scripts expect.
    c.gso_max_size(65535);
    let mut sys = Sysctls {
        wmem_default: 16384,
        rmem_default: 131072,
        rmem_max: 6 << 20,
        congestion: "cubic".to_string(),
        fastopen: 1,
        fin_timeout: 60,
    };
    if let Some(v) = sysctl("tcp_rmem").filter(|v| v.len() == 3) {
        c.recv_buffer(v[1] as usize).recv_buffer_max(v[2] as usize);
        sys.rmem_default = v[1] as usize;
        sys.rmem_max = v[2] as usize;
    }
    if let Some(v) = sysctl("tcp_wmem").filter(|v| v.len() == 3) {
        c.send_buffer(v[1] as usize).send_buffer_max(v[2] as usize);
        sys.wmem_default = v[1] as usize;
    }
    if flags.profile == Profile::Linux {
        if let Some(v) = sysctl("tcp_syn_retries").and_then(|v| v.first().copied()) {
            c.syn_retries(v as u32);
        }
        if let Some(v) = sysctl("tcp_synack_retries").and_then(|v| v.first().copied()) {
            c.synack_retries(v as u32);
        }
        if let Some(v) = sysctl("tcp_syn_linear_timeouts").and_then(|v| v.first().copied()) {
            c.syn_linear_timeouts(v as u32);
        }
        if let Some(v) = sysctl("tcp_retries2").and_then(|v| v.first().copied()) {
            c.data_retries(v.min(u64::from(u32::MAX)) as u32);
        }
        if let Some(v) = sysctl("tcp_orphan_retries").and_then(|v| v.first().copied()) {
            c.orphan_retries(v.min(u64::from(u32::MAX)) as u32);
        }
    }
    if let Some(v) = sysctl("tcp_timestamps").and_then(|v| v.first().copied()) {
        c.timestamps(v != 0);
    }
    if let Some(v) = sysctl("tcp_sack").and_then(|v| v.first().copied()) {
        c.sack(v != 0);
    }
    if let Some(v) = sysctl("tcp_dsack").and_then(|v| v.first().copied()) {
        c.dsack(v != 0);
    }
    if let Some(v) = sysctl("tcp_rfc1337").and_then(|v| v.first().copied()) {
        c.rfc1337(v != 0);
    }
    if let Some(v) = sysctl("tcp_window_scaling").and_then(|v| v.first().copied()) {
        c.window_scaling(v != 0);
    }
    if let Some(v) = sysctl("tcp_frto").and_then(|v| v.first().copied()) {
        // 1 and 2 (a namespace's default, and upstream's defaults.sh) are both F-RTO, with
        // SACK where the peer has it.
        c.frto(v != 0);
    }
    if let Some(v) = sysctl("tcp_ecn").and_then(|v| v.first().copied()) {
        c.ecn(EcnMode::from_sysctl(v));
    }
    if let Some(v) = sysctl("tcp_syncookies").and_then(|v| v.first().copied()) {
        c.syncookies(match v {
            0 => SynCookies::Off,
            1 => SynCookies::OnOverflow,
            _ => SynCookies::Always,
        });
    }
    if let Some(v) = sysctl("tcp_rto_min_us").and_then(|v| v.first().copied()) {
        c.min_rto(Duration::from_micros(v));
    }
    if let Some(v) = sysctl("tcp_rto_max_ms").and_then(|v| v.first().copied()) {
        // Linux 6.15+: the ceiling of every retransmission timeout (120 s by default).
        c.max_rto(Duration::from_millis(v.max(1)));
    }
    if let Some(v) = sysctl("tcp_fin_timeout").and_then(|v| v.first().copied()) {
        c.fin_timeout(Duration::from_secs(v));
        sys.fin_timeout = v.min(u64::from(u32::MAX)) as u32;
    }
    // net.ipv4.route.mtu_expires, in seconds (the IPv6 one, net.ipv6.route.mtu_expires, has
    // the same default; scripts set the IPv4 one).
    if let Some(v) = sysctl("route/mtu_expires").and_then(|v| v.first().copied()) {
        c.pmtu_expires(Duration::from_secs(v));
    }
    if let Some(v) = sysctl("tcp_slow_start_after_idle").and_then(|v| v.first().copied()) {
        c.slow_start_after_idle(v != 0);
    }
    if let Some(v) = sysctl("tcp_min_tso_segs").and_then(|v| v.first().copied()) {
        c.min_tso_segs(v.max(1) as usize);
    }
    if let Some(v) = sysctl("tcp_notsent_lowat").and_then(|v| v.first().copied()) {
        // UINT_MAX, the default, is no bound.
        if v < u64::from(u32::MAX) {
            c.notsent_lowat(Some(v as usize));
        }
    }
    if let Some(v) = sysctl("tcp_fastopen").and_then(|v| v.first().copied()) {
        sys.fastopen = v as u32;
    }
    if let Some(cc) = sysctl_string("tcp_congestion_control") {
        // The core has CUBIC and NewReno; anything else (bbr, ...) runs as CUBIC.
        if cc == "reno" {
            c.congestion(std::sync::Arc::new(NewRenoFactory));
            sys.congestion = cc;
        }
    }
    (c, sys)
}
