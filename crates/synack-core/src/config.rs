//! Every tunable of the stack. The defaults are Linux's but for these, each chosen for a
//! user-space stack on a TUN ([`Config::linux`] sets Linux's own): the first SYN
//! retransmission after 2 s (Linux: 1 s, and linear timeouts at first), buffers that start at
//! 256 KiB each (Linux's `tcp_rmem[1]` and `tcp_wmem[1]`: 128 KiB and 16 KiB), pacing on
//! (Linux paces CUBIC only under the fq qdisc), and five accounting rules Linux applies left
//! off: the send buffer charged per skb ([`Config::skb_accounting`]), a fast retransmit's
//! ssthresh from cwnd ([`Config::fast_recovery_from_cwnd`]), loss recovery counted in packets
//! ([`Config::recovery_in_packets`]), an RTT sample from every ACK
//! ([`Config::rtt_every_ack`]) and CUBIC's growth in whole segments
//! ([`Config::linux_cwnd_growth`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::tcp::congestion::{ControllerFactory, CubicFactory};

/// Configuration for an [`Endpoint`](crate::Endpoint) and every connection it holds.
///
/// Setters chain on `&mut self`, after quinn:
/// `Config::default().syn_retries(2).nodelay(true)`.
#[derive(Clone)]
pub struct Config {
    /// `None` until set: the core then works with [`DEFAULT_MTU`], and a runtime takes its
    /// device's (see [`Config::mtu_choice`]).
    pub(crate) mtu: Option<usize>,
    pub(crate) syn_retries: u32,
    pub(crate) synack_retries: u32,
    pub(crate) data_retries: u32,
    pub(crate) orphan_retries: u32,
    pub(crate) initial_syn_rto: Duration,
    pub(crate) initial_rto: Duration,
    pub(crate) min_rto: Duration,
    pub(crate) max_rto: Duration,
    pub(crate) send_buffer: usize,
    pub(crate) recv_buffer: usize,
    pub(crate) send_buffer_max: usize,
    pub(crate) recv_buffer_max: usize,
    pub(crate) window_scaling: bool,
    pub(crate) sack: bool,
    pub(crate) dsack: bool,
    pub(crate) timestamps: bool,
    pub(crate) delayed_ack: Duration,
    pub(crate) nodelay: bool,
    pub(crate) pacing: bool,
    pub(crate) slow_start_after_idle: bool,
    pub(crate) min_tso_segs: usize,
    /// `None` until the user chooses (then a runtime fills it from its device); the core
    /// takes `None` as 0.
    pub(crate) gso_max_size: Option<usize>,
    pub(crate) tx_checksum_offload: bool,
    pub(crate) keepalive: Option<KeepaliveConfig>,
    pub(crate) time_wait: Duration,
    pub(crate) rfc1337: bool,
    pub(crate) fin_timeout: Duration,
    pub(crate) pmtu_expires: Duration,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) max_backlog: usize,
    pub(crate) max_half_open: usize,
    pub(crate) max_time_wait: usize,
    pub(crate) syncookies: SynCookies,
    pub(crate) max_connections: usize,
    pub(crate) max_memory: usize,
    pub(crate) max_ooo_segments: usize,
    pub(crate) challenge_ack_limit: u32,
    pub(crate) invalid_ratelimit: Duration,
    pub(crate) ephemeral_ports: (u16, u16),
    pub(crate) congestion: Arc<dyn ControllerFactory>,
    pub(crate) seed: Option<[u8; 32]>,
    pub(crate) syn_linear_timeouts: u32,
    pub(crate) intercept: Option<InterceptConfig>,
    pub(crate) udp_recv_buffer: usize,
    pub(crate) fragment_memory: usize,
    pub(crate) fragment_timeout: Duration,
    pub(crate) notsent_lowat: Option<usize>,
    pub(crate) skb_accounting: bool,
    pub(crate) fast_recovery_from_cwnd: bool,
    pub(crate) recovery_in_packets: bool,
    pub(crate) rtt_every_ack: bool,
    pub(crate) frto: bool,
    pub(crate) linux_cwnd_growth: bool,
    pub(crate) ecn: EcnMode,
    pub(crate) broadcast_addresses: Vec<Ipv4Addr>,
}

/// Explicit Congestion Notification (RFC 3168), as Linux's `tcp_ecn` sysctl sets it.
///
/// Once both ends agreed on it in the handshake, data segments carry ECT(0) in the IP
/// header; a router that would drop one marks it CE instead, the receiver echoes that with
/// ECE on its ACKs until the sender answers with CWR, and the sender reduces its window once
/// per round trip, as for a loss but without losing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcnMode {
    /// Never (`tcp_ecn = 0`): our SYNs do not ask for it and SYNs that do are answered
    /// without it.
    Off,
    /// Ask for it in our SYNs and accept it in SYNs (`tcp_ecn = 1`).
    On,
    /// Accept it when a SYN asks for it, never ask (`tcp_ecn = 2`, Linux's default): a
    /// peer that asks knows its path, and a middlebox that mangles ECN-setup SYNs cannot
    /// stall our own connects.
    AcceptOnly,
}

impl EcnMode {
    /// The mode for a value of Linux's `net.ipv4.tcp_ecn`: 0 off, 1 on, anything else (2,
    /// and 3 and up, which newer kernels give to Accurate ECN) accept-only.
    pub fn from_sysctl(value: u64) -> EcnMode {
        match value {
            0 => EcnMode::Off,
            1 => EcnMode::On,
            _ => EcnMode::AcceptOnly,
        }
    }

    /// Whether our SYNs ask for ECN.
    pub(crate) fn requests(self) -> bool {
        self == EcnMode::On
    }

    /// Whether a SYN that asks for ECN gets it.
    pub(crate) fn accepts(self) -> bool {
        self != EcnMode::Off
    }
}

/// When listeners answer SYNs with SYN cookies (Linux's tcp_syncookies sysctl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynCookies {
    /// Never: a SYN that finds the SYN queue full is dropped.
    Off,
    /// When a listener's SYN queue, or the endpoint's half-open bound, is full (Linux's
    /// default, tcp_syncookies = 1).
    OnOverflow,
    /// For every SYN (tcp_syncookies = 2): no state is kept for half-open connections.
    Always,
}

/// Bounds and timing of interception (see [`Config::intercept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterceptConfig {
    /// The most SYNs held undecided at once (default 1024). At least 1 (`Config::check`).
    /// Beyond it a first SYN is dropped; the retransmission of one that went unanswered
    /// takes the place of the newest first SYN held or, with none, of the oldest SYN held,
    /// so that a flood, repeating its SYNs or not, cannot keep a client's retry out.
    pub max_pending: usize,
    /// The most of those from one source (default 64): an IPv4 address, or an IPv6 /64, the
    /// prefix a host may take any address from, so that one client cannot hold the table.
    /// A set-up whose flows all come from one source (tun2socks, a VPN client's own
    /// traffic) raises it to `max_pending`, as `transparent_relay` does with its
    /// `--max-pending-connects`: at 64, the 65th connect in flight from that one source is
    /// dropped until one is decided. At least 1.
    pub max_per_source: usize,
    /// How long a SYN waits for a decision before it is dropped (default 5 s, past the
    /// client's second SYN retransmission at Linux's 1 s initial RTO). Above zero.
    pub decision_timeout: Duration,
    /// The most datagrams from one source the UDP catch-all queue holds (default 1024, a
    /// quarter of the queue's [`CATCH_ALL_DATAGRAMS`](crate::endpoint::CATCH_ALL_DATAGRAMS)),
    /// so that a flood from one client cannot take the queue from the others; a set-up whose
    /// flows all come from one source (tun2socks) raises it to the queue's size. At least 1.
    pub udp_max_per_source: usize,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig {
            max_pending: 1024,
            max_per_source: 64,
            decision_timeout: Duration::from_secs(5),
            udp_max_per_source: crate::endpoint::CATCH_ALL_PER_SOURCE,
        }
    }
}

/// Keepalive timing (RFC 9293 §3.8.4; Linux's tcp_keepalive_* sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Idle time before the first probe (Linux: 7200 s).
    pub idle: Duration,
    /// Time between unanswered probes (Linux: 75 s).
    pub interval: Duration,
    /// Unanswered probes before the connection fails with `TimedOut` (Linux: 9).
    pub probes: u32,
}

/// Linux's `MAX_TCP_KEEPIDLE` and `MAX_TCP_KEEPINTVL`, in seconds.
const MAX_KEEPALIVE_SECS: u64 = 32_767;
/// Linux's `MAX_TCP_SYNCNT`: the most SYN retransmissions `tcp_syn_retries` and
/// `TCP_SYNCNT` take.
const MAX_SYN_RETRIES: u32 = 127;
/// The most SYN-ACK retransmissions a listener may be configured for: Linux's
/// `tcp_synack_retries` sysctl is a u8 (`proc_dou8vec_minmax`).
const MAX_SYNACK_RETRIES: u32 = 255;

/// Linux's `MAX_TCP_KEEPCNT`.
const MAX_KEEPALIVE_PROBES: u32 = 127;

impl KeepaliveConfig {
    /// Whether the timing is one Linux takes: an idle time and an interval of at least the
    /// clock's microsecond and at most 32767 s (`MAX_TCP_KEEPIDLE`, `MAX_TCP_KEEPINTVL`; Linux
    /// counts whole seconds, from 1), 1 to 127 probes (`MAX_TCP_KEEPCNT`). Otherwise
    /// `InvalidInput`, as Linux's `setsockopt` answers EINVAL: no probes at all would fail
    /// an idle connection the moment it is idle, and a time under a microsecond, which the
    /// core's clock counts as none, probed on every round trip or failed the connection
    /// at once (it passed as above zero before).
    pub fn check(&self) -> Result<(), Error> {
        let max = Duration::from_secs(MAX_KEEPALIVE_SECS);
        let time_ok = |d: Duration| d.as_micros() > 0 && d <= max;
        if time_ok(self.idle)
            && time_ok(self.interval)
            && (1..=MAX_KEEPALIVE_PROBES).contains(&self.probes)
        {
            Ok(())
        } else {
            Err(Error::InvalidInput)
        }
    }
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            probes: 9,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mtu: None,
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            orphan_retries: 0,
            initial_syn_rto: Duration::from_secs(2),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            send_buffer_max: 4 * 1024 * 1024,
            recv_buffer_max: 6 * 1024 * 1024,
            window_scaling: true,
            sack: true,
            dsack: true,
            timestamps: true,
            delayed_ack: Duration::from_millis(40),
            nodelay: false,
            pacing: true,
            slow_start_after_idle: true,
            min_tso_segs: 2,
            gso_max_size: None,
            tx_checksum_offload: false,
            keepalive: None,
            time_wait: Duration::from_secs(60),
            rfc1337: false,
            fin_timeout: Duration::from_secs(60),
            pmtu_expires: Duration::from_secs(600),
            user_timeout: None,
            max_backlog: 4096,
            max_half_open: 16384,
            max_time_wait: 65536,
            syncookies: SynCookies::OnOverflow,
            max_connections: 65536,
            max_memory: 1 << 30,
            max_ooo_segments: 256,
            challenge_ack_limit: 1000,
            invalid_ratelimit: Duration::from_millis(500),
            ephemeral_ports: (32768, 60999),
            congestion: Arc::new(CubicFactory),
            seed: None,
            syn_linear_timeouts: 0,
            intercept: None,
            udp_recv_buffer: 212_992,
            fragment_memory: 4 * 1024 * 1024,
            fragment_timeout: Duration::from_secs(30),
            // Linux's default: ECN for peers that ask. It costs nothing on a path that
            // never marks, and a peer asking for it is one that wants marks, not drops.
            ecn: EcnMode::AcceptOnly,
            broadcast_addresses: Vec::new(),
            notsent_lowat: None,
            skb_accounting: false,
            fast_recovery_from_cwnd: false,
            recovery_in_packets: false,
            rtt_every_ack: false,
            // Linux's default (`tcp_frto` 2).
            frto: true,
            linux_cwnd_growth: false,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&mut self, value: $ty) -> &mut Self {
            self.$name = value;
            self
        }
    };
}

/// A [`Config`] that no connection could work with, found by [`Config::check`]: which
/// setting, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Config::{setting}: {reason}")]
pub struct InvalidConfig {
    /// The setter's name.
    pub setting: &'static str,
    /// What is wrong with its value.
    pub reason: &'static str,
}

/// The link MTU the core assumes until one is set: Ethernet's (RFC 894).
pub const DEFAULT_MTU: usize = 1500;

/// The smallest link MTU a TCP connection with a Linux peer works over: 48 bytes of data
/// and the IPv4 and TCP headers. RFC 791's floor is 68, but Linux never sends a segment
/// with less than 48 bytes of data (`net.ipv4.tcp_min_snd_mss`, added against
/// CVE-2019-11479), whatever MSS it is offered; over a smaller MTU its segments leave as
/// IP fragments, and synack reassembles no TCP fragment (`endpoint/reassembly.rs` says
/// why), so no data would ever arrive.
pub const MIN_MTU: usize = 48 + 20 + 20;

/// RFC 8200 §5: every link that carries IPv6 carries 1280-byte packets (Linux takes IPv6
/// off a device with a smaller MTU).
pub const IPV6_MIN_MTU: usize = 1280;

/// The largest MTU: an IPv4 packet's total length is 16 bits (RFC 791 §3.1). A larger one
/// is refused when chosen; a device that reports one (Linux's `lo` says 65536) is taken
/// as this, as Linux caps an IPv4 route's MTU at `IP_MAX_MTU`, 65535.
pub const MAX_MTU: usize = u16::MAX as usize;

/// The smallest buffer a socket option sets: `SO_SNDBUF` and `SO_RCVBUF` below it are
/// raised to it, as Linux raises them to `SOCK_MIN_SNDBUF`/`SOCK_MIN_RCVBUF`.
pub const MIN_BUFFER: usize = 1024;

impl Config {
    /// Refuses settings that no connection could work with, before any is made: buffers
    /// below 1024 bytes (a segment's worth: a connection would stall with nothing sent or
    /// nothing offered; a socket's own `SO_SNDBUF`/`SO_RCVBUF` is raised to that floor
    /// instead, as Linux raises its), a retransmission timeout of zero or a minimum above
    /// the maximum, keepalive timing Linux refuses ([`KeepaliveConfig::check`]), no SYN
    /// retransmission or more than 127 (Linux's bounds on `tcp_syn_retries`; more than 127
    /// linear ones too: `MAX_TCP_SYNCNT`), more than 255 SYN-ACK retransmissions
    /// (`tcp_synack_retries` is a u8), and an MTU
    /// below [`MIN_MTU`] (88 bytes, where IPv4 allows 68: a Linux peer's TCP would arrive in
    /// fragments) or above [`MAX_MTU`]. A runtime checks its configuration with this when
    /// it starts, and again once it took its device's MTU; a sans-IO user should before
    /// [`Endpoint::new`](crate::Endpoint::new).
    pub fn check(&self) -> Result<(), InvalidConfig> {
        let invalid = |setting, reason| Err(InvalidConfig { setting, reason });
        if self.send_buffer < MIN_BUFFER {
            return invalid("send_buffer", "below 1024 bytes nothing can be sent");
        }
        if self.recv_buffer < MIN_BUFFER {
            return invalid("recv_buffer", "below 1024 bytes no window can be offered");
        }
        if self.initial_rto.is_zero() {
            return invalid("initial_rto", "a retransmission timeout of zero");
        }
        if self.initial_syn_rto.is_zero() {
            return invalid("initial_syn_rto", "a retransmission timeout of zero");
        }
        if self.min_rto.is_zero() {
            return invalid("min_rto", "a retransmission timeout of zero");
        }
        if self.min_rto > self.max_rto {
            return invalid("max_rto", "below min_rto");
        }
        if self.keepalive.is_some_and(|k| k.check().is_err()) {
            return invalid(
                "keepalive",
                "idle and interval must be above zero and at most 32767 s, probes 1 to 127 (Linux's bounds)",
            );
        }
        // Linux's bounds (`MAX_TCP_SYNCNT` on both): past 127 a connect to a dead peer would
        // not give up for centuries; and as `tcp_syn_retries` and `TCP_SYNCNT` (and
        // `Endpoint::set_syn_retries`) refuse 0, so does this.
        if self.syn_retries == 0 {
            return invalid(
                "syn_retries",
                "0: at least one SYN retransmission (Linux's tcp_syn_retries is 1 to 127)",
            );
        }
        if self.syn_retries > MAX_SYN_RETRIES {
            return invalid("syn_retries", "above 127 (Linux's MAX_TCP_SYNCNT)");
        }
        if self.synack_retries > MAX_SYNACK_RETRIES {
            return invalid(
                "synack_retries",
                "above 255 (Linux's tcp_synack_retries is a u8)",
            );
        }
        if self.syn_linear_timeouts > MAX_SYN_RETRIES {
            return invalid("syn_linear_timeouts", "above 127 (Linux's MAX_TCP_SYNCNT)");
        }
        if let Some(intercept) = self.intercept {
            if intercept.max_pending == 0 || intercept.max_per_source == 0 {
                return invalid(
                    "intercept",
                    "max_pending and max_per_source of 0 would drop every SYN no listener takes",
                );
            }
            if intercept.udp_max_per_source == 0 {
                return invalid(
                    "intercept",
                    "udp_max_per_source of 0 would drop every datagram no socket takes",
                );
            }
            if intercept.decision_timeout.is_zero() {
                return invalid(
                    "intercept",
                    "a decision_timeout of 0 would drop every SYN before it could be decided",
                );
            }
        }
        if self.mtu.is_some_and(|m| m > MAX_MTU) {
            return invalid(
                "mtu",
                "above 65535 bytes, the largest IPv4 packet (its total length is 16 bits)",
            );
        }
        if self.mtu.is_some_and(|m| m < MIN_MTU) {
            return invalid(
                "mtu",
                "below 88 bytes, where a Linux peer's TCP segments (48 bytes of data at the \
                 least, tcp_min_snd_mss) would arrive in IP fragments, which are not \
                 reassembled for TCP",
            );
        }
        Ok(())
    }

    /// The IP MTU of the link; the advertised MSS and the largest UDP datagram are derived
    /// from it. Never set, the core assumes [`DEFAULT_MTU`] and a runtime takes its device's
    /// (see [`mtu_choice`](Self::mtu_choice)).
    pub fn mtu(&mut self, value: usize) -> &mut Self {
        self.mtu = Some(value);
        self
    }

    /// What [`mtu`](Self::mtu) was set to, or `None` if it never was: a runtime fills an
    /// unset one from its device and must not override a user's choice.
    pub fn mtu_choice(&self) -> Option<usize> {
        self.mtu
    }

    /// The link MTU in force: the one set, or [`DEFAULT_MTU`].
    pub fn get_mtu(&self) -> usize {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }
    setter!(
        /// SYN retransmissions before `connect` fails with `TimedOut` (Linux tcp_syn_retries, 6):
        /// 1 to 127, as [`Endpoint::set_syn_retries`](crate::Endpoint::set_syn_retries) takes
        /// for one connection; [`check`](Self::check) refuses others.
        syn_retries: u32
    );
    setter!(
        /// SYN-ACK retransmissions before a half-open connection is dropped (Linux
        /// tcp_synack_retries, 5); at most 255, as Linux's sysctl is a u8 ([`check`](Self::check)
        /// refuses more).
        synack_retries: u32
    );
    setter!(
        /// How long unacknowledged data is retransmitted before the connection fails with
        /// `TimedOut`, given as Linux's `tcp_retries2` (15) gives it: in retransmissions
        /// from a 200 ms timeout, each doubling up to `max_rto`, turned into a time
        /// (`tcp_model_timeout`: 924.6 s for 15), counted from when the data was sent. On a
        /// path whose RTO is above 200 ms the connection gives up after fewer
        /// retransmissions, as Linux's does (`retransmits_timed_out`); at least one is sent.
        data_retries: u32
    );
    setter!(
        /// The same limit for a connection the application has closed whose data or FIN is
        /// not acknowledged (Linux's `tcp_orphan_retries`, and its default: 0, which means 8,
        /// about 100 s, while the RTO is below `max_rto`, and gives up at once after a
        /// timeout once it has reached it). Zero-window probes of such a connection stop
        /// after this many unanswered.
        orphan_retries: u32
    );
    setter!(
        /// The first SYN retransmission timeout, doubled on each retry past the linear ones
        /// (2 s here; Linux uses 1 s). A listener's SYN-ACK starts from `initial_rto`
        /// instead, as Linux's does.
        initial_syn_rto: Duration
    );
    setter!(
        /// The RTO before any RTT sample (RFC 6298 §2.1: 1 s), and the first SYN-ACK
        /// retransmission timeout (Linux `TCP_TIMEOUT_INIT` for both).
        initial_rto: Duration
    );
    setter!(
        /// The lower bound of the RTO's variance term (Linux TCP_RTO_MIN: 200 ms): once RTTs
        /// are measured the RTO is at least SRTT plus this, as Linux's `rttvar_us` is never
        /// below `tcp_rto_min`; before, it bounds the initial RTO.
        min_rto: Duration
    );
    setter!(
        /// The upper bound of the RTO (Linux TCP_RTO_MAX: 120 s).
        max_rto: Duration
    );
    setter!(
        /// Bytes the send buffer holds at first, unsent plus unacknowledged (Linux
        /// `tcp_wmem[1]` is 16 KiB; we start larger).
        send_buffer: usize
    );
    setter!(
        /// Bytes the receive buffer holds at first; the advertised window never exceeds it.
        recv_buffer: usize
    );
    setter!(
        /// How far the send buffer may grow when the congestion window needs it (Linux
        /// `tcp_wmem[2]`, 4 MiB). Set it to `send_buffer` to turn growth off.
        send_buffer_max: usize
    );
    setter!(
        /// How far receive-window auto-tuning may grow the receive buffer (Linux `tcp_rmem[2]`,
        /// 6 MiB). Set it to `recv_buffer` to turn auto-tuning off. The window scale is
        /// chosen from this bound.
        recv_buffer_max: usize
    );
    setter!(
        /// The default `TCP_NOTSENT_LOWAT` (Linux's `tcp_notsent_lowat` sysctl): with
        /// `Some(n)` a connection takes no more writes while `n` bytes or more wait unsent,
        /// and says `Writable` only once fewer than `n / 2` do, so that an application keeps
        /// little queued behind the congestion window and decides late what to send.
        /// `None` (the default, Linux's `UINT_MAX`) bounds writes by the send buffer only, and
        /// so does `Some(0)`, which taken literally would allow no write at all.
        /// Per connection: `Endpoint::set_notsent_lowat`.
        notsent_lowat: Option<usize>
    );
    setter!(
        /// Size writes and the send buffer as Linux does (on in [`Config::linux`]): the
        /// buffer is charged per queued packet (`sk_wmem_queued`: each skb's payload plus
        /// 1280 bytes, `tcp/send_buffer.rs`'s `SKB_OVERHEAD`), a write goes on while
        /// less than the buffer is charged and fills each packet it starts to the size goal
        /// (up to 64 KiB, at most half the peer's largest window), and the buffer grows as
        /// Linux's `tcp_sndbuf_expand` grows it, to twice the congestion window in per-packet
        /// memory. Off, the buffer holds exactly its size in bytes and doubles when a write
        /// finds it full and the windows could carry half of it: more bytes per byte of
        /// buffer, and writes sized to the byte.
        skb_accounting: bool
    );
    setter!(
        /// Take a fast retransmit's new ssthresh from the congestion window, as Linux does
        /// (on in [`Config::linux`]; `tcp_init_cwnd_reduction` asks the algorithm's
        /// `ssthresh` hook, which reads `snd_cwnd`: 0.7 of it for CUBIC, half for Reno).
        /// RFC 9438 §4.6 allows it ("Some implementations of CUBIC currently use cwnd
        /// instead of flight_size") where, as here, cwnd grows only while it limits the
        /// flow. Off, the reduction starts from FlightSize, capped at cwnd (RFC 5681 §3.2
        /// step 2, RFC 9438 §4.6): a flow that was not filling its window lands lower.
        fast_recovery_from_cwnd: bool
    );
    setter!(
        /// Count loss recovery in segments as Linux counts it in packets (on in
        /// [`Config::linux`]; with SACK, whose record of the segments in flight it uses):
        /// Proportional Rate Reduction's delivered and sent data, the pipe, ssthresh and
        /// RecoverFS (RFC 6937 §3 in bytes; Linux's `tcp_cwnd_reduction` in packets, with
        /// `tcp_packets_in_flight`), and RACK's DupThresh SACKed segments (Linux's
        /// `sacked_out >= reordering` in `tcp_rack_reo_wnd`, where synack counts
        /// DupThresh segments' worth of bytes). The two agree for full-sized segments;
        /// with small ones (short `MSG_EOR` records, an interactive flow) a byte count lets
        /// a delivered segment release only its own bytes, where Linux sends one segment
        /// for one segment delivered. Off, bytes: the reduction tracks the data. Counting
        /// costs a pass over the segments in flight for each ACK that comes while SACKed
        /// data is held or the window is being reduced.
        recovery_in_packets: bool
    );
    setter!(
        /// Take an RTT sample from every ACK of new data, from the send time of the first
        /// segment it newly acknowledges, as Linux's `tcp_clean_rtx_queue` does for
        /// `tcp_ack_update_rtt` (in microseconds, timestamps or not; none when the ACK covers
        /// a retransmitted segment, Karn's rule). On in [`Config::linux`]; it needs SACK
        /// (the per-segment send log is RACK's). Off, one segment is timed per round trip
        /// (RFC 6298 §3), or every ACK's TSecr is used (RFC 7323 §4), in milliseconds: the
        /// smoothed RTT then lags when ACKs come late for data sent long before (a receiver
        /// holding them, stretch ACKs), where Linux's rises with them and sizes TSO packets
        /// (`tcp_tso_autosize`) and timers from the larger figure.
        rtt_every_ack: bool
    );
    setter!(
        /// F-RTO after a retransmission timeout (RFC 5682 §3 with SACK, Linux's `tcp_frto`;
        /// on by default, as Linux's): once the ACK after the timeout's retransmission has
        /// moved SND.UNA over resent data only, send new data rather than the next
        /// retransmission, and if the ACKs that follow acknowledge data sent before the
        /// timeout and never resent, the timeout was spurious (the originals were only
        /// late): it is undone, the window back to what it was and nothing more resent.
        /// Otherwise the loss was real and the go-back goes on. Timestamps detect a
        /// spurious timeout sooner, from the first ACK (RFC 3522, always on); F-RTO is what
        /// finds it with a peer that sends none. Off, every timeout goes back over
        /// everything in flight.
        frto: bool
    );
    setter!(
        /// Grow the congestion window in congestion avoidance as Linux's CUBIC does (on in
        /// [`Config::linux`]; [`Controller::set_linux_growth`](crate::tcp::congestion::Controller::set_linux_growth)):
        /// in whole segments, one more per `cnt` ACKed (`tcp_cong_avoid_ai`), with `cnt`
        /// recomputed from the cubic curve and the Reno estimate at most once a jiffy and,
        /// while cwnd is unchanged, only every `HZ / 32` (`bictcp_update`), and at most 20
        /// after a timeout, which clears W_max (`bictcp_reset`). Off, RFC 9438 §4.2 to §4.5
        /// per ACK in fractions of a segment: the same curve, but the Reno-friendly estimate
        /// (§4.3) lifts the window on the ACK it is reached, and after a timeout the window
        /// follows §4.8's curve from W_max = cwnd without a 5 % floor.
        linux_cwnd_growth: bool
    );
    setter!(
        /// Offer window scaling (RFC 7323 §2).
        window_scaling: bool
    );
    setter!(
        /// Offer SACK (RFC 2018).
        sack: bool
    );
    setter!(
        /// Report duplicate segments in D-SACK blocks (RFC 2883; on by default, as Linux's
        /// `tcp_dsack`), on connections that negotiated SACK. Off, a duplicate is answered
        /// with a plain duplicate ACK. D-SACK blocks the peer sends are used either way.
        dsack: bool
    );
    setter!(
        /// Offer timestamps (RFC 7323 §3).
        timestamps: bool
    );
    setter!(
        /// The shortest delayed-ACK timeout (Linux's `TCP_ATO_MIN`, 40 ms): where the delay
        /// starts and what it returns to. It adapts from there to the spacing of arriving
        /// data, up to 200 ms (Linux's `TCP_DELACK_MAX`), and no longer than the smoothed
        /// RTT (see the `delayed_ack` module of `tcp`).
        delayed_ack: Duration
    );
    setter!(
        /// Disable Nagle's algorithm on new connections.
        nodelay: bool
    );
    setter!(
        /// Pace data at about cwnd/SRTT (twice that in slow start, as Linux's
        /// tcp_pacing_ss_ratio), in bursts of at most ~1 ms of data, so that a large window
        /// does not arrive at the device as one burst that overflows its queue.
        pacing: bool
    );
    setter!(
        /// Congestion window validation (on by default, as Linux's
        /// `tcp_slow_start_after_idle`). After sending nothing for longer than the RTO, a
        /// connection starts again from the restart window, the lesser of the initial window
        /// and cwnd (RFC 5681 §4.1: "TCP SHOULD set cwnd to no more than RW before beginning
        /// transmission if the TCP has not sent data in an interval exceeding the
        /// retransmission timeout"), cwnd halved for every RTO of the idle time as Linux's
        /// `tcp_cwnd_restart` does; and a window the application left partly unused for an
        /// RTO shrinks half way to what was used (RFC 2861's application-limited rule, Linux's
        /// `tcp_cwnd_application_limited`). The ACK clock that paced the old window has
        /// stopped, and what the path carried then says little about now; off, a flow that
        /// pauses keeps its window and may burst it into the network at once.
        slow_start_after_idle: bool
    );
    setter!(
        /// The fewest segments a segmentation-offload packet is sized for (Linux's
        /// `tcp_min_tso_segs`, 2). New data goes out in packets of about a millisecond's
        /// worth at the pacing rate (Linux's `tcp_tso_autosize`), never fewer segments than
        /// this, nor more than half the congestion window (see
        /// [`gso_max_size`](Self::gso_max_size)).
        min_tso_segs: usize
    );
    /// Segmentation offload (Linux's `gso_max_size`): the largest IP packet `poll_transmit`
    /// may fill with several full-sized segments of new data under one header, for a device
    /// that cuts it into MSS-sized segments itself (TSO/GSO) or a peer that takes it whole
    /// (GRO, as between Linux's loopback or veth ends). The [`Transmit`](crate::Transmit)
    /// says where to cut. 0 sends one segment per packet; so does the core when it is never
    /// set, and a runtime then takes its device's (see
    /// [`gso_max_size_choice`](Self::gso_max_size_choice)). Capped at 65535 bytes, the
    /// largest IP packet.
    pub fn gso_max_size(&mut self, value: usize) -> &mut Self {
        self.gso_max_size = Some(value);
        self
    }

    /// The interception settings, if the endpoint intercepts (see [`Config::intercept`]).
    pub fn intercept_config(&self) -> Option<InterceptConfig> {
        self.intercept
    }

    /// What [`gso_max_size`](Self::gso_max_size) was set to, or `None` if it never was: a
    /// runtime fills an unset one from its device and must not override a user's choice.
    pub fn gso_max_size_choice(&self) -> Option<usize> {
        self.gso_max_size
    }

    setter!(
        /// Transmit checksum offload (Linux's `CHECKSUM_PARTIAL`, off by default): the TCP
        /// segments of connections that carry data leave `poll_transmit` with only the
        /// pseudo-header sum in their checksum field (control segments are summed whole, so
        /// that captures on the device show them valid), flagged by
        /// [`Transmit::checksum_partial`](crate::Transmit::checksum_partial), and the device
        /// completes the sum. The core then never reads the payload to sum it, which for a
        /// 64 KiB super-segment the device rewrites anyway is most of the cost of sending it.
        /// Only for a device that completes them; a runtime turns it on from the device's
        /// capabilities.
        tx_checksum_offload: bool
    );

    /// Whether [`tx_checksum_offload`](Self::tx_checksum_offload) is on.
    pub fn get_tx_checksum_offload(&self) -> bool {
        self.tx_checksum_offload
    }

    /// The memory cap (`max_memory`), for a runtime that divides it among several endpoints.
    pub fn get_max_memory(&self) -> usize {
        self.max_memory
    }

    /// The largest backlog a listener may ask for (`max_backlog`), for a runtime that bounds
    /// one socket's accept queue over several endpoints (`SharedBacklog`).
    pub fn get_max_backlog(&self) -> usize {
        self.max_backlog
    }

    /// The inclusive ephemeral port range (`ephemeral_ports`), for a runtime that picks a
    /// connection's port itself (see `Endpoint::connect_with`).
    pub fn get_ephemeral_ports(&self) -> (u16, u16) {
        self.ephemeral_ports
    }

    setter!(
        /// Send keepalive probes on idle connections (off by default).
        keepalive: Option<KeepaliveConfig>
    );
    setter!(
        /// How long TIME-WAIT lasts (2*MSL; Linux: 60 s).
        time_wait: Duration
    );
    setter!(
        /// Ignore an RST at RCV.NXT in TIME-WAIT, which otherwise ends it at once (off by
        /// default, as Linux's `tcp_rfc1337`). RFC 1337 calls that ending "TIME-WAIT
        /// assassination" (§2: an old duplicate RST can free the tuple for a new connection
        /// that then takes the old one's late segments) and ignoring the RST its fix (§3).
        /// On, TIME-WAIT lasts its 2*MSL (the RST takes no answer and does not restart it;
        /// its timestamp is recorded).
        rfc1337: bool
    );
    setter!(
        /// How long FIN-WAIT-2 waits for the peer's FIN once the application closed (Linux
        /// tcp_fin_timeout, 60 s).
        fin_timeout: Duration
    );
    setter!(
        /// How long a path MTU learnt from an ICMP "fragmentation needed" or "packet too
        /// big" holds after the last such report, before the MSS grows back (RFC 1191 §6.3,
        /// RFC 8201 §4; Linux `net.ipv4.route.mtu_expires`, 600 s). Counted in whole
        /// seconds, rounded up.
        pmtu_expires: Duration
    );
    setter!(
        /// Fail a connection whose sent data stays unacknowledged this long (RFC 9293 §3.8.3,
        /// Linux TCP_USER_TIMEOUT). `None`, or zero as Linux's 0, leaves it to
        /// `data_retries`.
        user_timeout: Option<Duration>
    );
    setter!(
        /// The largest backlog a listener may ask for (Linux somaxconn, 4096).
        max_backlog: usize
    );
    setter!(
        /// The most half-open (SYN-RECEIVED) connections across all listeners; past it SYNs
        /// get cookies or are dropped.
        max_half_open: usize
    );
    setter!(
        /// The most TIME-WAIT entries held (Linux tcp_max_tw_buckets); past it the oldest is
        /// recycled early.
        max_time_wait: usize
    );
    setter!(
        /// When to answer SYNs with SYN cookies (default: when a SYN queue overflows).
        syncookies: SynCookies
    );
    setter!(
        /// The most connections, in every state, the endpoint holds, TIME-WAIT entries
        /// included. When it is reached, the oldest TIME-WAIT entry is recycled early to make
        /// room for a new connection; only live connections refuse one.
        max_connections: usize
    );
    setter!(
        /// Bytes all connections' buffers may hold in total (default 1 GiB): data waiting to
        /// be sent or acknowledged, and the receive buffers' storage, which holds data
        /// waiting to be read and, in blocks of a kilobyte, out-of-order data
        /// (`Endpoint::memory`; an idle connection holds none), and the UDP datagrams
        /// queued (see `udp_recv_buffer`). A hard bound, with three
        /// levels after Linux's `tcp_mem`
        /// (net/ipv4/tcp_input.c, `tcp_clamp_window`, `tcp_prune_queue`):
        ///
        /// - **pressure**, from three quarters of it until memory falls below half of it
        ///   (Linux's `tcp_mem[1]` and `tcp_mem[0]`, in the same 2:3:4 ratio as its
        ///   defaults' low, pressure and high): buffers stop auto-tuning upwards, emptied
        ///   buffers give their storage back at once, and a receive window offers at most
        ///   two segments (or what it already offered: a window's right edge never moves
        ///   left, RFC 9293 §3.8.6.2.2, RFC 7323 §2.4). Memory converges as peers fill
        ///   what was offered and the application reads.
        /// - **the cap** itself (`tcp_mem[2]`): no window opens past the room left, data
        ///   that would need more memory is dropped (`Stats::drop_memory`) after a
        ///   connection's own out-of-order data was discarded to make room for in-order
        ///   data, and writes are cut short or refused (`WouldBlock`; `send_capacity` is 0).
        ///   Memory exceeds the cap only by what a connection keeps whatever it says, after
        ///   Linux's `tcp_rmem[0]` and `tcp_wmem[0]`: two segments of in-order data while
        ///   less is unread, and, on a connection between two of the endpoint's own
        ///   sockets, 4 KiB queued to send while less is queued. So such a pair always
        ///   moves, even when one's writes fill the cap (a loopback echo would otherwise
        ///   deadlock: both ends draw on this one budget).
        /// - **new connections** are refused once no more than a sixteenth of the cap, or
        ///   64 KiB if less, is left (`Stats::refused_memory`): `NoBufferSpace` for
        ///   `connect`, a dropped SYN for a listener or an accepted intercepted SYN.
        ///
        /// When memory falls back below the pressure level, or the cap leaves room for two
        /// full segments again (say datagrams were read), connections the cap held back
        /// are woken: window updates go to their peers and `Writable` to the application.
        /// Each buffer is also bounded on its own: by `send_buffer_max` and
        /// `recv_buffer_max` as it auto-tunes, or by the size a socket set (`SO_SNDBUF`,
        /// `SO_RCVBUF`, which this cap alone bounds: unlike Linux's `rmem_max` and
        /// `wmem_max`, nothing caps what they ask). Connection state itself (about 2 KiB
        /// per connection, see `Endpoint::memory_usage`) is bounded by `max_connections`,
        /// not by this.
        max_memory: usize
    );
    setter!(
        /// The most out-of-order segments held per connection.
        max_ooo_segments: usize
    );
    setter!(
        /// Challenge ACKs per second per connection (RFC 5961 §7), on top of
        /// `invalid_ratelimit`.
        challenge_ack_limit: u32
    );
    setter!(
        /// The least time between two ACKs a connection sends in reply to invalid segments:
        /// challenge ACKs (RFC 5961), and duplicate ACKs answering out-of-window or PAWS-failed
        /// segments that carry no data (Linux `tcp_invalid_ratelimit`: 500 ms). It keeps two
        /// confused endpoints from trading ACKs as fast as they can, and bounds what a spoofed
        /// flood draws from us.
        invalid_ratelimit: Duration
    );
    setter!(
        /// The inclusive ephemeral port range (Linux ip_local_port_range: 32768–60999).
        ephemeral_ports: (u16, u16)
    );
    setter!(
        /// The congestion controller for new connections (default: CUBIC, RFC 9438).
        congestion: Arc<dyn ControllerFactory>
    );
    setter!(
        /// SYN retransmissions of an active open that wait the initial SYN RTO again before
        /// the backoff turns exponential (Linux 6.17+ tcp_syn_linear_timeouts, 4 there; 0
        /// here: exponential from the start). When set, an active open fails as Linux's
        /// does, by time: once its SYN has been out as long as `syn_retries` doubling
        /// retries would take. SYN-ACKs always back off exponentially.
        syn_linear_timeouts: u32
    );
    setter!(
        /// Transparent mode: own every address routed into the device, and hold each SYN
        /// that no listener takes for the application to accept, refuse or answer with ICMP
        /// unreachable (`Event::Intercepted`; see the endpoint's interception), and queue each
        /// UDP datagram that no socket takes for the application to read with its original
        /// addresses and answer from any address (`Event::UdpIntercepted`). Off (`None`) by
        /// default.
        intercept: Option<InterceptConfig>
    );
    setter!(
        /// Bytes a UDP socket's receive queue holds at most, each datagram counted as its
        /// payload plus `DATAGRAM_OVERHEAD` (Linux net.core.rmem_default: 212,992). Past it,
        /// datagrams are dropped and counted (`drop_udp_queue_full`).
        udp_recv_buffer: usize
    );
    setter!(
        /// Bytes the fragments of datagrams being reassembled may hold at most, each piece
        /// charged for its data and its bookkeeping (Linux's `ipfrag_high_thresh`, 4 MiB).
        /// Past it the oldest datagrams are given up to make room. Only UDP and ICMP
        /// datagrams are reassembled (see `Stats::fragments_reassembled`).
        fragment_memory: usize
    );
    setter!(
        /// How long a datagram's fragments are held, from the first, before the datagram is
        /// given up (Linux's `ipfrag_time`, 30 s); its sender gets an ICMP time exceeded if
        /// its first fragment was in.
        fragment_timeout: Duration
    );
    setter!(
        /// Explicit Congestion Notification (RFC 3168; Linux's `tcp_ecn`). The default is
        /// Linux's: accept it when a peer's SYN asks for it, never ask.
        ecn: EcnMode
    );
    /// The link's directed broadcast addresses (RFC 919, RFC 922): `198.18.0.255` on a
    /// `198.18.0.0/24` link. No packet from one is answered (Linux's `ip_route_input_slow`
    /// drops it as a martian source), none to one is taken, even in transparent mode (a
    /// broadcast route is no flow's destination), and a connection or datagram to one is
    /// refused as to `255.255.255.255`. The core knows its own addresses, not the link's
    /// prefix, so a runtime fills an empty list from its device (synack-tokio asks
    /// `Device::broadcast_addresses`). Empty by default.
    pub fn broadcast_addresses(&mut self, value: impl IntoIterator<Item = Ipv4Addr>) -> &mut Self {
        self.broadcast_addresses = value.into_iter().collect();
        self
    }

    /// The list [`broadcast_addresses`](Self::broadcast_addresses) set.
    pub fn get_broadcast_addresses(&self) -> &[Ipv4Addr] {
        &self.broadcast_addresses
    }

    /// Whether `addr` is one of [`broadcast_addresses`](Self::broadcast_addresses).
    pub fn is_link_broadcast(&self, addr: IpAddr) -> bool {
        matches!(addr, IpAddr::V4(a) if self.broadcast_addresses.contains(&a))
    }

    setter!(
        /// Seed the endpoint's ChaCha generator (ISN secret, ports, timestamp offsets) for
        /// reproducible tests. `None` seeds it from OS entropy.
        seed: Option<[u8; 32]>
    );

    /// Where memory pressure begins (see `max_memory`): three quarters of the cap.
    pub(crate) fn memory_pressure_level(&self) -> usize {
        self.max_memory - self.max_memory / 4
    }

    /// Where memory pressure ends (see `max_memory`): half the cap.
    pub(crate) fn memory_low_level(&self) -> usize {
        self.max_memory / 2
    }

    /// The room under the cap below which new connections are refused: a sixteenth of the
    /// cap, at most 64 KiB (one unscaled window).
    pub(crate) fn memory_reserve(&self) -> usize {
        (self.max_memory / 16).min(64 * 1024)
    }

    /// The largest receive buffer a connection may reach.
    pub(crate) fn recv_ceiling(&self) -> usize {
        self.recv_buffer_max.max(self.recv_buffer)
    }

    /// The MSS we advertise: the MTU less the IPv4 and TCP headers (RFC 9293 §3.7.1). IPv6
    /// connections subtract 20 more. It is also the most a segment of ours carries, so it
    /// is never more than the MTU allows: 48 at the smallest MTU ([`MIN_MTU`]), Linux's
    /// `tcp_min_snd_mss`.
    pub fn mss_v4(&self) -> u16 {
        self.get_mtu().clamp(MIN_MTU, MAX_MTU) as u16 - 40
    }

    /// The MSS the link allows a connection of the family `ipv6` says: [`mss_v4`](Self::mss_v4),
    /// less IPv6's 20 more header bytes.
    pub(crate) fn link_mss(&self, ipv6: bool) -> usize {
        usize::from(self.mss_v4()).saturating_sub(if ipv6 { 20 } else { 0 })
    }

    /// The initial SYN RTO.
    pub fn get_initial_syn_rto(&self) -> Duration {
        self.initial_syn_rto
    }

    /// The configured SYN retries.
    pub fn get_syn_retries(&self) -> u32 {
        self.syn_retries
    }

    /// The receive buffer a connection starts with (`recv_buffer`).
    pub fn get_recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// The send buffer a connection starts with (`send_buffer`).
    pub fn get_send_buffer(&self) -> usize {
        self.send_buffer
    }

    /// Whether connections start with Nagle's algorithm off (`nodelay`).
    pub fn get_nodelay(&self) -> bool {
        self.nodelay
    }

    /// The keepalive every connection starts with (`keepalive`), if any.
    pub fn get_keepalive(&self) -> Option<KeepaliveConfig> {
        self.keepalive
    }

    /// The ECN mode (`ecn`).
    pub fn get_ecn(&self) -> EcnMode {
        self.ecn
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mtu", &self.get_mtu())
            .field("syn_retries", &self.syn_retries)
            .field("synack_retries", &self.synack_retries)
            .field("initial_syn_rto", &self.initial_syn_rto)
            .field("send_buffer", &self.send_buffer)
            .field("recv_buffer", &self.recv_buffer)
            .field("window_scaling", &self.window_scaling)
            .field("sack", &self.sack)
            .field("timestamps", &self.timestamps)
            .field("nodelay", &self.nodelay)
            .field("ecn", &self.ecn)
            .field("congestion", &self.congestion)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_and_linux_profile_pass_the_check() {
        assert_eq!(Config::default().check(), Ok(()));
        assert_eq!(Config::linux().check(), Ok(()));
        let mut c = Config::default();
        c.keepalive(Some(KeepaliveConfig::default()));
        c.send_buffer(MIN_BUFFER)
            .recv_buffer(MIN_BUFFER)
            .mtu(MIN_MTU);
        assert_eq!(c.check(), Ok(()));
        c.mtu(MAX_MTU).syn_retries(127).syn_linear_timeouts(127);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn settings_no_connection_could_use_are_named() {
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            change(&mut c);
            c.check().unwrap_err().setting
        };
        assert_eq!(
            refused(&|c| _ = c.send_buffer(MIN_BUFFER - 1)),
            "send_buffer"
        );
        assert_eq!(refused(&|c| _ = c.recv_buffer(0)), "recv_buffer");
        assert_eq!(refused(&|c| _ = c.syn_retries(128)), "syn_retries");
        // As Endpoint::set_syn_retries refuses 0 for one connection.
        assert_eq!(refused(&|c| _ = c.syn_retries(0)), "syn_retries");
        assert_eq!(refused(&|c| _ = c.synack_retries(256)), "synack_retries");
        let mut most = Config::default();
        most.synack_retries(255);
        assert_eq!(most.check(), Ok(()));
        assert_eq!(refused(&|c| _ = c.mtu(MAX_MTU + 1)), "mtu");
        assert_eq!(
            refused(&|c| _ = c.initial_rto(Duration::ZERO)),
            "initial_rto"
        );
        assert_eq!(
            refused(&|c| _ = c.initial_syn_rto(Duration::ZERO)),
            "initial_syn_rto"
        );
        assert_eq!(refused(&|c| _ = c.min_rto(Duration::ZERO)), "min_rto");
        assert_eq!(
            refused(&|c| _ = c
                .min_rto(Duration::from_secs(5))
                .max_rto(Duration::from_secs(1))),
            "max_rto"
        );
        assert_eq!(refused(&|c| _ = c.mtu(MIN_MTU - 1)), "mtu");
        assert_eq!(refused(&|c| _ = c.mtu(68)), "mtu");
        let keepalive = |k: KeepaliveConfig| refused(&move |c| _ = c.keepalive(Some(k)));
        let d = KeepaliveConfig::default();
        assert_eq!(keepalive(KeepaliveConfig { probes: 0, ..d }), "keepalive");
        assert_eq!(keepalive(KeepaliveConfig { probes: 128, ..d }), "keepalive");
        let zero = Duration::ZERO;
        assert_eq!(keepalive(KeepaliveConfig { idle: zero, ..d }), "keepalive");
        assert_eq!(
            keepalive(KeepaliveConfig {
                interval: zero,
                ..d
            }),
            "keepalive"
        );
        let too_long = Duration::from_secs(32_768);
        assert_eq!(
            keepalive(KeepaliveConfig {
                idle: too_long,
                ..d
            }),
            "keepalive"
        );
        let intercept = |i: InterceptConfig| refused(&move |c| _ = c.intercept(Some(i)));
        let d = InterceptConfig::default();
        assert_eq!(
            intercept(InterceptConfig {
                max_pending: 0,
                ..d
            }),
            "intercept"
        );
        assert_eq!(
            intercept(InterceptConfig {
                max_per_source: 0,
                ..d
            }),
            "intercept"
        );
        assert_eq!(
            intercept(InterceptConfig {
                decision_timeout: zero,
                ..d
            }),
            "intercept"
        );
        assert_eq!(
            intercept(InterceptConfig {
                udp_max_per_source: 0,
                ..d
            }),
            "intercept"
        );
        let mut c = Config::default();
        c.intercept(Some(InterceptConfig {
            max_pending: 1,
            max_per_source: 1,
            decision_timeout: Duration::from_millis(1),
            udp_max_per_source: 1,
        }));
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn keepalive_bounds_are_linuxs() {
        let d = KeepaliveConfig::default();
        assert_eq!(d.check(), Ok(()));
        let edge = KeepaliveConfig {
            idle: Duration::from_secs(32_767),
            interval: Duration::from_millis(1),
            probes: 127,
        };
        assert_eq!(edge.check(), Ok(()));
        assert_eq!(
            KeepaliveConfig { probes: 0, ..d }.check(),
            Err(Error::InvalidInput)
        );
    }
}
