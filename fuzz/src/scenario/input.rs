//! What one fuzz input is: the endpoint's configuration and the ops the harness runs,
//! decoded from the fuzzer's bytes by `arbitrary`.

use std::time::Duration;

use arbitrary::Arbitrary;
use synack_core::{Config, InterceptConfig, KeepaliveConfig, SynCookies};

use super::UdpOp;

/// One fuzz input: a configuration and the ops to run.
#[derive(Debug, Arbitrary)]
pub struct Scenario {
    /// The endpoint's configuration, within small bounds so that limits are reached.
    pub config: ConfigInput,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Configuration knobs, mapped into ranges by [`ConfigInput::build`].
#[derive(Debug, Clone, Arbitrary)]
pub struct ConfigInput {
    pub(super) max_connections: u8,
    pub(super) backlog: u8,
    pub(super) max_half_open: u8,
    pub(super) syncookies: u8,
    pub(super) buffer_shift: u8,
    pub(super) mtu: u16,
    pub(super) timestamps: bool,
    pub(super) sack: bool,
    pub(super) window_scaling: bool,
    pub(super) nodelay: bool,
    pub(super) keepalive: bool,
    pub(super) user_timeout: Option<u8>,
    pub(super) max_ooo_segments: u8,
    pub(super) syn_retries: u8,
    pub(super) data_retries: u8,
    pub(super) challenge_ack_limit: u8,
    /// Accept every connection as soon as `Incoming` says one is ready.
    pub(super) auto_accept: bool,
}

impl ConfigInput {
    /// The endpoint configuration. Limits are small (≤ 16 connections, backlog ≤ 8, buffers
    /// 1 KiB–128 KiB) so that a short input reaches them.
    pub fn build(&self) -> Config {
        let mut c = Config::default();
        c.seed(Some([0x5a; 32]))
            .max_connections(1 + usize::from(self.max_connections % 16))
            .max_backlog(1 + usize::from(self.backlog % 8))
            .max_half_open(1 + usize::from(self.max_half_open % 16))
            .syncookies(match self.syncookies % 3 {
                0 => SynCookies::Off,
                1 => SynCookies::OnOverflow,
                _ => SynCookies::Always,
            })
            .send_buffer(1024 << (self.buffer_shift % 8))
            .recv_buffer(1024 << ((self.buffer_shift / 8) % 8))
            // UDP receive queues of 1 to 8 KiB: full after a few datagrams.
            .udp_recv_buffer(1024 << ((self.buffer_shift / 64) % 8))
            // 296 is the smallest MTU here: 256 bytes of MSS after 40 of headers.
            .mtu(296 + usize::from(self.mtu % 8705))
            .timestamps(self.timestamps)
            .sack(self.sack)
            .window_scaling(self.window_scaling)
            .nodelay(self.nodelay)
            .keepalive(self.keepalive.then(|| KeepaliveConfig {
                idle: Duration::from_secs(10),
                interval: Duration::from_secs(2),
                probes: 3,
            }))
            .user_timeout(
                self.user_timeout
                    .map(|s| Duration::from_secs(1 + u64::from(s % 120))),
            )
            .max_ooo_segments(1 + usize::from(self.max_ooo_segments % 32))
            .syn_retries(u32::from(self.syn_retries % 7))
            .data_retries(u32::from(self.data_retries % 16))
            .challenge_ack_limit(u32::from(self.challenge_ack_limit))
            // From the bits `max_ooo_segments` leaves unused: D-SACK off (`tcp_dsack` 0),
            // RFC 1337's TIME-WAIT (`tcp_rfc1337` 1), and an orphan's FIN-WAIT-2 longer
            // than TIME-WAIT (whose excess a TIME-WAIT sock waits out again).
            .dsack(self.max_ooo_segments & 0x20 == 0)
            .rfc1337(self.max_ooo_segments & 0x40 != 0)
            .fin_timeout(Duration::from_secs(if self.max_ooo_segments & 0x80 != 0 {
                100
            } else {
                60
            }))
            // Linux's sender in half the runs (from a bit `data_retries` leaves unused): the
            // send buffer charged per skb, PSH per skb, recovery in packets, an RTT sample
            // from every ACK, ssthresh from cwnd and CUBIC's growth in segments, as
            // `Config::linux()` has them.
            .skb_accounting(self.linux_sender())
            .recovery_in_packets(self.linux_sender())
            .rtt_every_ack(self.linux_sender())
            .fast_recovery_from_cwnd(self.linux_sender())
            .linux_cwnd_growth(self.linux_sender())
            // Transparent mode in half the runs: SYNs to closed ports and to foreign
            // addresses are held for `Op::Decide`, within small bounds.
            .intercept(self.intercept().then_some(InterceptConfig {
                max_pending: 4,
                max_per_source: 3,
                decision_timeout: Duration::from_secs(2),
                udp_max_per_source: 3,
            }));
        c
    }

    /// Whether the endpoint sends as `Config::linux()` does (a bit `data_retries` leaves
    /// unused).
    pub(super) fn linux_sender(&self) -> bool {
        self.data_retries & 0x10 != 0
    }

    /// Whether the endpoint intercepts (from bits `syncookies` leaves unused).
    pub(super) fn intercept(&self) -> bool {
        (self.syncookies / 3) % 2 == 1
    }
}

/// One step.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// Any bytes, as an IP packet (cut to 2048).
    Raw(Vec<u8>),
    /// A TCP segment from the peer, built from fields.
    Segment(SegmentInput),
    /// An ICMP message from the peer's side.
    Icmp(IcmpInput),
    /// Advance the clock by this many milliseconds, then run the timers.
    Advance(u16),
    /// Advance the clock by this many seconds, then run the timers.
    AdvanceSecs(u8),
    /// Jump to the next deadline, if any, and run the timers.
    NextTimeout,
    /// `connect` to the peer on this port.
    Connect {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// The remote port.
        port: u16,
        /// TCP Fast Open: 0 none, 1 `TCP_FASTOPEN_CONNECT`, 2 or more `connect_fast_open`
        /// with that many bytes (times 16) of data for the SYN.
        fast_open: u8,
    },
    /// `send` this many bytes.
    Send {
        /// Which handle (modulo how many there are; one past the end is an invalid handle).
        conn: u8,
        /// How many bytes.
        len: u16,
    },
    /// `recv` into a buffer of this size.
    Recv {
        /// Which handle.
        conn: u8,
        /// Buffer size.
        len: u16,
    },
    /// `shutdown` (FIN after the queued data).
    Shutdown(u8),
    /// `close` (release the handle).
    Close(u8),
    /// `abort` (RST, release the handle).
    Abort(u8),
    /// `set_nodelay`.
    Nodelay(u8, bool),
    /// `accept` on the IPv4 (false) or IPv6 (true) listener.
    Accept(bool),
    /// `close_listener`, then `listen` again on the same address.
    RestartListener(bool),
    /// Read every per-connection getter (state, addresses, capacities, error).
    Inspect(u8),
    /// Decide on a held SYN (intercept mode): `which` picks one of those seen (one past the
    /// end: a stale handle), `how` accepts, refuses, answers unreachable or drops it.
    Decide {
        /// Which held SYN.
        which: u8,
        /// `how % 4`: 0 accept, 1 refuse, 2 unreachable, 3 drop; for unreachable,
        /// `how / 4 % 4` picks the reason (network, host, port, prohibited).
        how: u8,
    },
    /// A UDP op (sockets, datagrams from the peer, the catch-all queue).
    Udp(UdpOp),
    /// `bind_socket` (`bind(2)`), then: `then` % 4 is 0 keep the port held (the oldest of
    /// eight is given back), 1 give it back, 2 connect from it to the peer, 3 listen on it;
    /// `then` & 4 sets SO_REUSEPORT, for the binding and what takes it.
    Bind {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// The port: 0 (an ephemeral one), the listeners' port, or one of 7000 to 7003;
        /// odd values bind the unspecified address.
        port: u8,
        /// SO_REUSEADDR, for the binding and the connection or listener that takes it.
        reuse: bool,
        /// What the socket does next.
        then: u8,
    },
    /// Urgent data (RFC 6093): `how` % 4 is 0 `recv_urgent`, 1 `peek_urgent`, 2
    /// `set_oob_inline` (on when `len` is odd), 3 `send_urgent` of `len` bytes (`MSG_OOB`).
    Urgent {
        /// Which handle.
        conn: u8,
        /// Which call.
        how: u8,
        /// Bytes to send, or the inline switch.
        len: u16,
    },
    /// The link's MTU changes (`Endpoint::set_mtu`, `ip link set dev tun0 mtu N`): to 296
    /// plus this modulo 8705, the range the configuration's MTU is drawn from.
    SetMtu(u16),
    /// A per-connection socket option, `which` % 13: TCP_CORK, TCP_QUICKACK,
    /// TCP_NOTSENT_LOWAT, SO_RCVLOWAT, SO_SNDBUF, SO_RCVBUF, TCP_USER_TIMEOUT, SO_KEEPALIVE
    /// (with its times), TCP_LINGER2, TCP_KEEPIDLE set again (`rearm_keepalive`),
    /// TCP_SYNCNT, IP_TOS, IP_TTL; `value` is what it is set to (an odd one turns a switch
    /// on, 0 turns a limit off).
    SetOption {
        /// Which handle.
        conn: u8,
        /// Which option.
        which: u8,
        /// Its value.
        value: u16,
    },
}

/// Where a segment goes.
#[derive(Debug, Arbitrary)]
pub enum Target {
    /// A 4-tuple the endpoint has used (modulo how many are remembered).
    Known(u8),
    /// A new remote port towards a listener.
    Listener {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// The peer's port (0 included: reserved, not malformed).
        port: u16,
    },
    /// An address that is not the endpoint's (intercept mode takes it).
    Foreign {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// The local port.
        port: u16,
    },
    /// A port nothing listens on.
    Closed {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// The local port.
        port: u16,
    },
}

/// A 32-bit field relative to what the endpoint last said on the 4-tuple.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Rel {
    /// Exactly the reference value.
    Exact,
    /// The reference plus this much.
    Plus(u16),
    /// The reference minus this much.
    Minus(u16),
    /// This value, whatever the reference.
    Raw(u32),
}

impl Rel {
    pub(super) fn apply(self, base: u32) -> u32 {
        match self {
            Rel::Exact => base,
            Rel::Plus(d) => base.wrapping_add(u32::from(d)),
            Rel::Minus(d) => base.wrapping_sub(u32::from(d)),
            Rel::Raw(v) => v,
        }
    }
}

/// The Timestamps option the peer sends.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum TsInput {
    /// No option.
    None,
    /// The peer's clock (milliseconds of virtual time, offset) and an echo of the endpoint's
    /// last TSval on the 4-tuple.
    Auto,
    /// These values.
    Raw(u32, u32),
}

/// A TCP segment from the peer.
#[derive(Debug, Arbitrary)]
pub struct SegmentInput {
    pub(super) target: Target,
    pub(super) flags: u8,
    /// Relative to the sequence number the endpoint expects next (its last ACK field).
    pub(super) seq: Rel,
    /// Relative to the endpoint's SND.NXT as last seen (its highest seq + length).
    pub(super) ack: Rel,
    pub(super) window: u16,
    pub(super) mss: Option<u16>,
    pub(super) window_scale: Option<u8>,
    pub(super) sack_permitted: bool,
    /// (distance back from the endpoint's SND.NXT, length) per block; up to 4 are sent.
    pub(super) sack: Vec<(u16, u16)>,
    pub(super) ts: TsInput,
    /// A Fast Open option: 0 a cookie request, n a cookie of n's bytes, 4 to 16 long by n
    /// (an odd length, which the wire layer refuses, sends no option).
    pub(super) fast_open: Option<u8>,
    /// The urgent pointer field, as sent (meaningful with URG in `flags`, RFC 9293 §3.1).
    pub(super) urgent: u16,
    pub(super) payload_len: u16,
}

/// An ICMP message naming a 4-tuple, or an echo request.
#[derive(Debug, Arbitrary)]
pub struct IcmpInput {
    /// Which remembered 4-tuple the quoted packet names.
    pub(super) target: u8,
    /// 0: destination unreachable, 1: packet too big, 2: time exceeded, 3: echo request,
    /// else another type.
    pub(super) kind: u8,
    pub(super) code: u8,
    pub(super) mtu: u16,
    /// The quoted sequence number, relative to the endpoint's SND.NXT.
    pub(super) seq: Rel,
    /// Bytes of quoted TCP header (8 is all RFC 792 promises; fewer is a cut quote).
    pub(super) quote_len: u8,
    /// Echo data length.
    pub(super) data_len: u8,
}
