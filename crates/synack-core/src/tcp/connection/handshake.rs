//! Opening: active and passive opens, option negotiation and the SYN-SENT state
//! (RFC 9293 §3.5, §3.10.7.3; RFC 7323; RFC 2018).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::output::HOP_LIMIT;
use super::{
    default_mss, ChallengeAcks, ConnConfig, Connection, CwndUse, EcnState, Notify, PaceBucket,
    PathMtu, PortClaim, RcvSpace, Receiver, Recovery, Sender, Timers, Timestamps, MAX_WINDOW_SCALE,
    MIN_MSS,
};
use crate::config::Config;
use crate::error::Error;
use crate::options::{SocketOptions, MIN_BUFFER};
use crate::seq::SeqNumber;
use crate::tcp::chrono::Chrono;
use crate::tcp::delayed_ack::DelayedAck;
use crate::tcp::recv_buffer::RecvBuffer;
use crate::tcp::rtt::RttEstimator;
use crate::tcp::send_buffer::SendBuffer;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{Ecn, TcpFlags, TcpRepr};

/// The shift that lets a window of `buffer` bytes fit the 16-bit field (RFC 7323 §2.2), the
/// smallest that does, as Linux chooses it.
/// How soon a SYN is resent after an unacceptable SYN-ACK was answered with an RST (Linux's
/// `TCP_TIMEOUT_MIN`, two jiffies).
const SYN_RESEND_AFTER_STALE: std::time::Duration = std::time::Duration::from_millis(2);

pub(crate) fn window_shift_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < MAX_WINDOW_SCALE && (buffer >> shift) > u16::MAX as usize {
        shift += 1;
    }
    shift
}

/// What a socket offers in its SYN or SYN-ACK: the window field (never scaled, RFC 7323
/// §2.2), the window shift, and the MSS, as [`Connection::apply_options`] shapes a fresh
/// connection from its socket's options. A SYN cookie's SYN-ACK, which has no connection,
/// offers the same, and the connection its ACK rebuilds keeps to what was offered (Linux's
/// `cookie_v4_check` recomputes them from the listener as its SYN-ACK did): the peer scales
/// every window we send by the shift it was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SynOffer {
    pub window: u16,
    pub shift: u8,
    pub mss: u16,
}

impl SynOffer {
    /// The offer of a socket with `opts`, on an endpoint configured with `config` and `cfg`.
    pub(crate) fn for_socket(
        config: &Config,
        cfg: &ConnConfig,
        opts: &SocketOptions,
        ipv6: bool,
    ) -> SynOffer {
        let buffer = opts
            .recv_buffer
            .map_or(config.recv_buffer, |size| size.max(MIN_BUFFER));
        let shift = match opts.recv_buffer {
            Some(_) if cfg.window_scaling => window_shift_for(buffer),
            _ => cfg.rcv_wscale,
        };
        let link = config.link_mss(ipv6);
        let mss = opts
            .max_segment
            .map_or(link, |m| link.min(usize::from(m).max(MIN_MSS)));
        SynOffer {
            window: buffer.min(usize::from(u16::MAX)) as u16,
            shift,
            mss: u16::try_from(mss).unwrap_or(u16::MAX),
        }
    }
}

/// What the peer's SYN (or SYN-ACK) offered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub tsval: Option<u32>,
}

impl PeerOptions {
    pub fn of(seg: &TcpRepr<'_>) -> PeerOptions {
        PeerOptions {
            mss: Self::mss_of(seg),
            wscale: seg.window_scale,
            sack_permitted: seg.sack_permitted,
            tsval: seg.timestamp.map(|t| t.tsval),
        }
    }

    /// The segment's MSS option, if it says anything: an MSS of 0 is taken as no option, so
    /// the default of RFC 9293 §3.7.1 applies (536 for IPv4, 1220 for IPv6), as Linux's
    /// `tcp_parse_options` takes the option only `if (in_mss)`. A value of 1 to 47 is an
    /// option, raised to `MIN_MSS` by whoever sizes segments by it (`tcp_min_snd_mss`).
    pub fn mss_of(seg: &TcpRepr<'_>) -> Option<u16> {
        seg.max_seg_size.filter(|&mss| mss != 0)
    }
}

/// Who a new connection is: its 4-tuple, our initial sequence number, our timestamp offset
/// and the IPv4 identification it starts from (drawn from the endpoint's secrets; the ISN
/// may come from a SYN cookie).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub iss: SeqNumber,
    pub ts_offset: u32,
    pub ip_id: u16,
}

impl Connection {
    /// A connection in the state before its first SYN is sent or received: CLOSED, to be
    /// opened in place by [`open_active`](Self::open_active),
    /// [`accept_syn`](Self::accept_syn) or [`open_from_cookie`](Self::open_from_cookie).
    ///
    /// One struct literal and nothing else, so that the endpoint can build it straight into
    /// the slot it will live in (a connection is over a kilobyte; returning it through
    /// constructors that modify it first cost a copy per layer).
    ///
    /// `cfg` is `ConnConfig::from_config(config)`, which the endpoint computes once.
    #[inline(always)]
    pub fn fresh(now: Instant, config: &Config, cfg: &Arc<ConnConfig>, id: Identity) -> Connection {
        let Identity {
            local,
            remote,
            iss,
            ts_offset,
            ip_id,
        } = id;
        let ipv6 = local.is_ipv6();
        let our_mss = config.link_mss(ipv6);
        let rcv_wscale = cfg.rcv_wscale;
        let send_mss = default_mss(ipv6);
        Connection {
            state: State::Closed,
            local,
            remote,
            snd: Sender {
                iss,
                una: iss,
                nxt: iss,
                max: iss,
                small_end: iss,
                wnd: 0,
                max_wnd: 0,
                wl1: SeqNumber(0),
                mss: send_mss,
                mss_clamp: u16::MAX,
                wscale: 0,
                // With skb accounting, `sndbuf` bounds writes and the byte buffer does not.
                buffer: SendBuffer::new(if config.skb_accounting {
                    usize::MAX
                } else {
                    config.send_buffer
                }),
                skbs: Default::default(),
                sndbuf: config.send_buffer,
                records: VecDeque::new(),
                push_at_end: true,
                up: None,
                fin_queued: false,
                fin_seq: None,
                fin_alone: false,
                syn_unacked: true,
                scoreboard: Default::default(),
                rack: Default::default(),
            },
            rcv: Receiver {
                irs: SeqNumber(0),
                nxt: SeqNumber(0),
                adv: SeqNumber(0),
                mss: our_mss,
                wscale: rcv_wscale,
                buffer: RecvBuffer::new(config.recv_buffer, config.max_ooo_segments),
                fin_seq: None,
                fin_received: false,
                unacked_segments: 0,
                ack_scheduled: false,
                delack: DelayedAck::new(cfg.delayed_ack, now),
                ack_now: false,
                dup_acks_owed: 0,
                ooo_acks_at_nxt: 0,
                sack_compressed: 0,
                sack_changed: false,
                ack_points: [(SeqNumber(0), 0); super::MAX_ACK_POINTS],
                ack_points_len: 0,
                dsack: None,
                urgent: None,
            },
            ts: Timestamps {
                enabled: config.timestamps,
                offset: ts_offset,
                recent: 0,
                recent_age: now,
                min_echo: None,
            },
            sack_ok: config.sack,
            wscale_ok: config.window_scaling,
            reset_reply: None,
            rtt: RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            cc: {
                let mut cc = config.congestion.build(now, send_mss);
                cc.set_linux_growth(config.linux_cwnd_growth);
                cc
            },
            cwnd_use: CwndUse {
                limited: false,
                max_out: 0,
                until: iss,
                used: 0,
                stamp: now,
                last_sent: None,
                judge_idle: false,
            },
            recovery: Recovery::default(),
            timers: Timers::default(),
            backoff: 0,
            timeouts: 0,
            retrans_stamp: None,
            rtt_seq: None,
            syn_pending: false,
            rst_pending: false,
            reset_after_flush: false,
            nodelay: config.nodelay,
            app_closed: false,
            read_shut: false,
            error: None,
            soft_error: None,
            notify: Notify::default(),
            challenge_acks: ChallengeAcks {
                slot_start: now,
                sent: 0,
            },
            last_invalid_ack: None,
            retransmits: 0,
            counters: Default::default(),
            segments: Default::default(),
            retransmitting_since: None,
            last_ack_recv: now,
            last_data_recv: now,
            write_pending: false,
            delivered: 0,
            probes_out: 0,
            lrcv_flow_label: 0,
            cfg: Arc::clone(cfg),
            rcv_space: RcvSpace {
                read: 0,
                since: now,
                best: 0,
                rtt_us: 0,
                last_tsecr: 0,
            },
            pace: PaceBucket {
                tokens: 0,
                refilled: now,
            },
            mem: Default::default(),
            verdict: Default::default(),
            gro_segment_size: None,
            una_wraps: 0,
            passive: false,
            probe_pending: false,
            persist_backoff: 0,
            sws_override: false,
            cork: false,
            defer_acked: false,
            more: false,
            push_now: false,
            fast_open: None,
            ecn: EcnState::default(),
            tos: 0,
            hop_limit: HOP_LIMIT,
            port_claim: PortClaim::default(),
            ip_id,
            control_socket: false,
            pmtu: PathMtu {
                link_mss: u16::try_from(our_mss).unwrap_or(u16::MAX),
                ..PathMtu::default()
            },
            nospace: false,
            chrono: Chrono::new(now),
            chrono_max: iss,
            oob_inline: false,
        }
    }

    /// Apply a socket's options (see [`SocketOptions`]) to a fresh connection, before its
    /// SYN or SYN-ACK is formed.
    pub fn apply_options(&mut self, opts: &SocketOptions) {
        if let Some(size) = opts.recv_buffer {
            self.set_recv_buffer(size.max(MIN_BUFFER));
            // Before the SYN, the window scale offered can still follow the buffer.
            if self.cfg.window_scaling {
                self.rcv.wscale = window_shift_for(self.rcv.buffer.capacity());
            }
        }
        if let Some(size) = opts.send_buffer {
            self.set_send_buffer(size.max(MIN_BUFFER));
        }
        if let Some(mss) = opts.max_segment {
            self.clamp_mss(usize::from(mss).max(MIN_MSS));
        }
        if opts.keepalive_off {
            Arc::make_mut(&mut self.cfg).keepalive = None;
        } else if let Some(keepalive) = opts.keepalive {
            Arc::make_mut(&mut self.cfg).keepalive = Some(keepalive);
        }
        if let Some(nodelay) = opts.nodelay {
            self.nodelay = nodelay;
        }
        if let Some(cork) = opts.cork {
            self.cork = cork;
        }
        if opts.linger2.is_some() {
            self.set_linger2(opts.linger2);
        }
        if let Some(period) = opts.defer_accept.filter(|p| !p.is_zero()) {
            Arc::make_mut(&mut self.cfg).defer_accept =
                crate::options::defer_accept_retransmits(period);
        }
        if let Some(tos) = opts.tos {
            self.set_tos(tos);
        }
        if let Some(hop_limit) = opts.hop_limit {
            self.hop_limit = hop_limit;
        }
    }

    /// Whether `seg` is the final ACK of this passive open's handshake, the one that would
    /// move it to the accept queue: an ACK of our SYN, without RST or SYN. Anything else
    /// (an RST, a wrong acknowledgement) is the connection's to answer even while the
    /// accept queue is full, as Linux's `tcp_check_req` answers it before it looks at the
    /// queue (`syn_recv_sock`).
    pub fn is_final_ack(&self, seg: &TcpRepr<'_>) -> bool {
        self.awaits_final_ack()
            && seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.intersects(TcpFlags::RST | TcpFlags::SYN)
            && seg.ack_number == self.snd.iss + 1
    }

    /// `seg`, a final ACK (see [`is_final_ack`](Self::is_final_ack)), is held back for
    /// `TCP_DEFER_ACCEPT` if it brings no data (nor a FIN) and the period's SYN-ACK timeouts
    /// have not all passed (Linux's `tcp_check_req`: `num_timeout < rskq_defer_accept` and
    /// `end_seq == rcv_isn + 1`): the connection stays half-open, notes it (`defer_acked`)
    /// and takes its TSval as TS.Recent, which a resent SYN-ACK echoes, as `tcp_check_req`
    /// takes it first. Returns whether it was held. One failing PAWS is not: the connection
    /// answers it as ever; nor is a Fast Open child's, which the application has already
    /// (`tcp_check_req` returns the child before it looks at the deferral).
    pub fn hold_for_defer_accept(&mut self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        if self.backoff >= u32::from(self.cfg.defer_accept)
            || self.is_fast_open_child()
            || seg.seq_len() != 0
            || super::close::paws_reject(self.ts_recent_at(now), seg)
        {
            return false;
        }
        self.defer_acked = true;
        if let (true, Some(ts)) = (self.ts.enabled, seg.timestamp) {
            if seg.seq_number <= self.rcv.nxt {
                self.ts.recent = ts.tsval;
                self.ts.recent_age = now;
            }
        }
        true
    }

    /// An active open (RFC 9293 §3.10.1 OPEN, active): SYN-SENT with the SYN queued.
    pub fn open_active(&mut self) {
        self.set_state(State::SynSent);
        self.snd.nxt = self.snd.iss;
        self.syn_pending = true;
        self.ecn_open_active();
    }

    /// The state both passive opens share: SYN-RECEIVED with the peer's ISN and options.
    fn open_passive(&mut self, now: Instant, irs: SeqNumber, peer: PeerOptions) {
        self.passive = true;
        self.set_state(State::SynReceived);
        self.rcv.irs = irs;
        self.rcv.nxt = irs + 1;
        self.rcv.delack.acked = self.rcv.nxt;
        self.negotiate(peer);
        if let (true, Some(tsval)) = (self.ts.enabled, peer.tsval) {
            self.ts.recent = tsval;
            self.ts.recent_age = now;
        }
    }

    /// A passive open: a SYN arrived at a listener (RFC 9293 §3.10.7.2, LISTEN state, third
    /// check). The SYN-ACK is queued and the connection is SYN-RECEIVED. `ecn` is the ECN
    /// field of the SYN's IP header.
    pub fn accept_syn(&mut self, now: Instant, syn: &TcpRepr<'_>, ecn: Ecn) {
        self.open_passive(now, syn.seq_number, PeerOptions::of(syn));
        // The SYN, as Linux's `tcp_create_openreq_child` counts it.
        self.segments.on_received(1, false);
        self.ecn_on_syn(syn, ecn);
        // RFC 9293 §3.10.7.2: "SND.WND ... set from the SYN" — unscaled in a SYN (RFC 7323
        // §2.2: "The window field in a segment where the SYN bit is set MUST NOT be scaled").
        self.snd.wnd = syn.window_len as usize;
        self.snd.max_wnd = self.snd.wnd;
        self.snd.wl1 = syn.seq_number;
        self.rcv.adv = self.rcv.nxt + self.initial_window();
        self.syn_pending = true;
    }

    /// A connection rebuilt from a valid SYN-cookie ACK (RFC 4987 §3.6): ESTABLISHED at once,
    /// with the MSS the cookie carried and the window scale, SACK and ECN our TSval carried.
    pub fn open_from_cookie(
        &mut self,
        now: Instant,
        peer: PeerOptions,
        ack: &TcpRepr<'_>,
        ecn: bool,
        offered: SynOffer,
    ) {
        let iss = self.snd.iss;
        // What the stateless SYN-ACK offered is what the peer holds us to: the shift it
        // scales our windows by above all. The socket's options shaped this connection the
        // same way (`SynOffer::for_socket`); the offer is taken all the same.
        debug_assert_eq!(
            (self.rcv.wscale, self.rcv.mss, self.initial_window()),
            (
                offered.shift,
                usize::from(offered.mss),
                usize::from(offered.window)
            ),
            "the connection a cookie rebuilds is shaped as its SYN-ACK offered",
        );
        self.rcv.wscale = offered.shift;
        self.rcv.mss = usize::from(offered.mss);
        self.open_passive(now, ack.seq_number - 1, peer);
        // Linux's child counts a SYN whatever made it (`tcp_create_openreq_child`); the ACK
        // is counted as it is taken.
        self.segments.on_received(1, false);
        self.ecn.ok = ecn && self.cfg.ecn.accepts();
        self.snd.una = iss + 1;
        self.snd.nxt = iss + 1;
        self.snd.max = iss + 1;
        self.snd.syn_unacked = false;
        self.snd.wnd = (ack.window_len as usize) << self.snd.wscale;
        self.snd.max_wnd = self.snd.wnd;
        self.snd.wl1 = ack.seq_number;
        // What the stateless SYN-ACK advertised.
        self.rcv.adv = self.rcv.nxt + self.initial_window().min(usize::from(offered.window));
        self.start_delayed_ack();
        self.set_state(State::Established);
        self.notify.connected = true;
    }

    /// The window we offer in our SYN or SYN-ACK, before scaling.
    pub(crate) fn initial_window(&self) -> usize {
        self.rcv.buffer.window().min(u16::MAX as usize)
    }

    /// Apply the peer's SYN options: each option is used only if both sides offered it.
    pub(super) fn negotiate(&mut self, peer: PeerOptions) {
        let ipv6 = self.local.is_ipv6();
        // RFC 9293 §3.7.1: with no MSS option, assume the default; never exceed our own MTU.
        let peer_mss = peer
            .mss
            .map(usize::from)
            .unwrap_or_else(|| default_mss(ipv6))
            .max(MIN_MSS);
        self.lower_mss_clamp(peer_mss);
        // Bounded by the link's MTU, and by a path MTU report in force: one that came in
        // SYN-SENT, or one this peer's earlier connections took (`inherit_path_mtu`).
        self.sync_mss();
        self.cc.set_mss(self.snd.mss);
        // RFC 7323 §2.2: scaling is in effect only if both sides sent the option; "the shift
        // count MUST be limited to 14" (§2.3), logged by Linux as a bogus value.
        match (self.cfg.window_scaling, peer.wscale) {
            (true, Some(shift)) => {
                self.snd.wscale = shift.min(MAX_WINDOW_SCALE);
                self.wscale_ok = true;
            }
            _ => {
                self.wscale_ok = false;
                self.snd.wscale = 0;
                self.rcv.wscale = 0;
            }
        }
        // RFC 2018 §2: SACK only if both sent SACK-permitted.
        self.sack_ok = self.cfg.sack && peer.sack_permitted;
        // RFC 7323 §3.2: timestamps only if both sent the option in the SYNs.
        self.ts.enabled = self.cfg.timestamps && peer.tsval.is_some();
    }

    /// The SYN or SYN-ACK segment, with our options in Linux's order (the wire layer lays
    /// them out).
    pub(super) fn syn_segment(&self, now: Instant) -> TcpRepr<'static> {
        let active = self.state == State::SynSent;
        let mut flags = TcpFlags::SYN;
        if active {
            // RFC 3168 §6.1.1: an ECN-setup SYN, the first one only.
            flags |= self.ecn_syn_flags(self.snd.max == self.snd.iss);
        } else {
            flags |= TcpFlags::ACK;
            // An ECN-setup SYN-ACK: ECE alone, if we agreed.
            if self.ecn.ok {
                flags |= TcpFlags::ECE;
            }
        }
        let mut seg = TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            flags,
            self.snd.iss,
            if active { SeqNumber(0) } else { self.rcv.nxt },
        );
        seg.window_len = self.initial_window() as u16;
        seg.max_seg_size = Some(self.rcv.mss.min(u16::MAX as usize) as u16);
        // In a SYN we offer what the config allows; in a SYN-ACK only what was negotiated.
        let (wscale, sack, ts) = if active {
            (self.cfg.window_scaling, self.cfg.sack, self.cfg.timestamps)
        } else {
            (self.wscale_ok, self.sack_ok, self.ts.enabled)
        };
        if wscale {
            seg.window_scale = Some(self.rcv.wscale);
        }
        seg.sack_permitted = sack;
        if ts {
            seg.timestamp = Some(crate::wire::TcpTimestamp {
                tsval: self.ts_now(now),
                tsecr: if active { 0 } else { self.ts.recent },
            });
        }
        seg
    }

    /// Whether `seg`'s TSecr, if it has a non-zero one and we offered timestamps, lies between
    /// the TSval of our first SYN and our clock now (Linux's `between(rcv_tsecr,
    /// retrans_stamp, tcp_time_stamp)`).
    fn echoes_our_syn(&self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        let (Some(ts), Some(first)) = (seg.timestamp, self.ts.min_echo) else {
            return true;
        };
        if !self.cfg.timestamps || ts.tsecr == 0 {
            return true;
        }
        let latest = self.ts_now(now);
        ts.tsecr.wrapping_sub(first) <= latest.wrapping_sub(first)
    }

    /// RFC 9293 §3.10.7.3: a segment arrives in SYN-SENT.
    pub(super) fn handle_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let ack = seg.flags.contains(TcpFlags::ACK);
        // "If the ACK bit is set: if SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless
        // the RST bit is set, if so drop the segment and return)".
        if ack && (seg.ack_number <= self.snd.iss || seg.ack_number > self.snd.max) {
            if !seg.flags.contains(TcpFlags::RST) {
                self.reset_reply = Some((seg.ack_number, None));
                // The peer holds a stale connection (our RST clears it): send the SYN again
                // almost at once rather than a whole SYN RTO later, if it has not been resent
                // yet (Linux tcp_rcv_synsent_state_process, TCP_TIMEOUT_MIN).
                if self.backoff == 0 {
                    self.timers.retransmit = Some(now + SYN_RESEND_AFTER_STALE);
                }
            }
            return;
        }
        if ack && !self.echoes_our_syn(now, seg) {
            // Linux's tcp_rcv_synsent_state_process (PAWSActiveRejected): an ACK whose TSecr
            // echoes no TSval we sent since our first SYN (older, or from the future) is
            // refused with an RST, without timestamps as tcp_v4_send_reset sends it (none
            // to an RST), and the connection waits in SYN-SENT for a valid SYN-ACK.
            if !seg.flags.contains(TcpFlags::RST) {
                self.reset_reply = Some((seg.ack_number, None));
            }
            return;
        }
        if seg.flags.contains(TcpFlags::RST) {
            // "If the ACK was acceptable, then signal to the user 'error: connection reset',
            // drop the segment, enter CLOSED state" — the kernel reports ECONNREFUSED. RFC
            // 5961 §3.2 keeps this check: an RST in SYN-SENT needs an acceptable ACK.
            if ack {
                self.enter_closed(Some(Error::ConnectionRefused));
                return;
            }
            self.verdict.ignored = true;
            return;
        }
        if !seg.flags.contains(TcpFlags::SYN) {
            // "If neither of the SYN or RST bits is set, then drop the segment and return."
            self.verdict.ignored = true;
            return;
        }
        self.rcv.irs = seg.seq_number;
        self.rcv.nxt = seg.seq_number + 1;
        // RCV.WUP: the sequence check's lower bound (Linux's tcp_rcv_synsent_state_process).
        self.rcv.delack.acked = self.rcv.nxt;
        // RCV.NXT is known only now, and the window our SYN offered (unscaled, RFC 7323
        // §2.2) is what we have promised past it. The right edge must be set from it before
        // anything computes a window: against the unset edge the "promise" came out as any
        // distance up to 2^31, and the first ACK offered 8 MB into a 256 KiB buffer.
        self.rcv.adv = self.rcv.nxt + self.initial_window();
        let peer = PeerOptions::of(seg);
        self.negotiate(peer);
        if self.ts.enabled {
            if let Some(ts) = seg.timestamp {
                self.ts.recent = ts.tsval;
                self.ts.recent_age = now;
            }
        }
        self.snd.wl1 = seg.seq_number;
        self.last_ack_recv = now;
        self.last_data_recv = now;
        if ack {
            // Our SYN is acknowledged: ESTABLISHED. RFC 7323 §2.2: the SYN-ACK's window is not
            // scaled.
            self.snd.wnd = seg.window_len as usize;
            self.snd.max_wnd = self.snd.wnd;
            self.ecn_on_synack(seg);
            self.ack_syn(now, seg);
            self.fast_open_on_syn_ack(seg);
            self.set_state(State::Established);
            self.apply_queued_fin();
            self.notify.connected = true;
            self.notify.writable = true;
            if self.write_pending {
                // Linux's tcp_rcv_synsent_state_process with a writer waiting: "save one
                // ACK" for its data to carry. Quick-ACK mode starts with its delay set, so
                // that the data leaving at once makes the exchange request/response; the
                // delayed-ACK timer (TCP_DELACK_MAX) sends the ACK if no data comes.
                let rcv_wnd = self.rcv.adv - self.rcv.nxt;
                self.rcv.delack.on_reply_awaited(now, rcv_wnd);
                self.rcv.unacked_segments = self.rcv.unacked_segments.saturating_add(1);
                self.timers.delayed_ack = Some(now + crate::tcp::delayed_ack::DELACK_MAX);
            } else {
                self.rcv.ack_now = true;
            }
            // Data or a FIN on the SYN-ACK is taken only after a Fast Open SYN (RFC 7413
            // §4.2.2; Linux's `tcp_rcv_fastopen_synack` queues them). Otherwise Linux takes
            // neither: its `tcp_rcv_state_process` completes the handshake and then does
            // only "step6 onward by hand", `tcp_urg`, before it frees the segment. The ACK
            // covers the SYN alone and the peer sends the rest again (RFC 9293 §3.10.7.3
            // would go on to the sixth step and queue them). An urgent pointer on it is
            // still noted, and its byte taken from the text, as `tcp_urg` takes it.
            let rest = super::input::after_syn(seg);
            if self.fast_open_tried() {
                if !seg.payload.is_empty() || seg.flags.contains(TcpFlags::FIN) {
                    self.handle_synchronized(now, &rest, None);
                }
            } else if !seg.payload.is_empty() || seg.flags.contains(TcpFlags::URG) {
                self.check_urgent(&rest);
            }
        } else {
            // Simultaneous open: "enter SYN-RECEIVED, form a SYN,ACK segment" with the same
            // ISS (RFC 9293 §3.5, figure 8). ECN stays on only if the peer asked too.
            if self.ecn.ok {
                self.ecn_on_syn(seg, self.ecn.rx);
            }
            self.snd.wnd = seg.window_len as usize;
            self.snd.max_wnd = self.snd.wnd;
            self.snd.nxt = self.snd.iss;
            self.set_state(State::SynReceived);
            self.syn_pending = true;
            self.backoff = 0;
            self.timers.retransmit = None;
        }
    }

    /// Our SYN was acknowledged (in SYN-SENT or SYN-RECEIVED): take the first RTT sample,
    /// and restore the RTO; after a SYN or SYN-ACK timeout, with no sample, the data RTO
    /// starts at 3 s (RFC 6298 §5.7).
    pub(super) fn ack_syn(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        // The handshake's timeouts, if any, end their episode here.
        self.counters.end_rto_episode(now);
        // The SYN is one segment delivered, with any data it carried (Linux counts a Fast
        // Open SYN and its data as one).
        self.delivered = self.delivered.saturating_add(1);
        self.snd.una = self.snd.iss + 1;
        self.snd.nxt = self.snd.nxt.max(self.snd.una);
        self.snd.syn_unacked = false;
        self.syn_pending = false;
        // Karn's rule holds for the timed SYN, which a retransmission stops timing
        // (`rtt_seq`). An echoed TSval names the transmission it answers, the first SYN or
        // a resend (RFC 7323 §4.3), so it gives a sample after a timeout too, as Linux's
        // `tcp_ack_update_rtt` takes one from the echo (`tcp_rtt_tsopt_us`): the data's
        // RTO then follows the path, not the 3 s fallback.
        match self.rtt_sample_for(now, seg, self.snd.una) {
            Some(sample) => self.rtt.sample(sample),
            None if self.backoff != 0 => self.rtt.fall_back(crate::tcp::rtt::FALLBACK_RTO),
            None => {}
        }
        self.rtt_seq = None;
        self.backoff = 0;
        self.timers.retransmit = None;
        // An active open's user timeout counted from its first SYN; the data's counts afresh.
        self.retransmitting_since = None;
        // The rate limit of answers to invalid segments starts afresh with the connection,
        // as a Linux child socket's `last_oow_ack_time` does: a SYN-ACK resent to a resent
        // SYN must not silence the first duplicate or challenge ACK after the handshake.
        self.last_invalid_ack = None;
        self.start_delayed_ack();
    }

    /// The handshake is done: our window is the whole of what the buffer offers, and the
    /// delayed-ACK engine learns the peer's MSS and that window.
    ///
    /// The SYN or SYN-ACK could show at most 64 KiB (its window is never scaled, RFC 7323
    /// §2.2); Linux's `rcv_wnd` is the whole initial window all the same, and the first ACK
    /// offers it. Taken as offered here too, so that a read before that ACK does not count
    /// as opening the window and send an update of its own (Linux's `tcp_cleanup_rbuf`
    /// compares against `rcv_wnd`). The right edge only moves right.
    fn start_delayed_ack(&mut self) {
        let max = self.max_window_field();
        let promised = self.rcv.adv - self.rcv.nxt;
        let full = self.window_room(promised).min(max);
        if full > promised {
            self.rcv.adv = self.rcv.nxt + full;
        }
        let rcv_wnd = self.rcv.adv - self.rcv.nxt;
        self.rcv
            .delack
            .on_established(self.rcv.nxt, self.snd.mss, rcv_wnd);
    }
}
