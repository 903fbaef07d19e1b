//! One TCP connection's state machine (RFC 9293 §3.10), split by concern:
//!
//! - `handshake`: SYN and SYN-ACK, option negotiation, the SYN-SENT state;
//! - `input`: segment arrival in the synchronized states (sequence, RST, SYN, data, FIN);
//! - `ack`: an acceptable ACK, the losses it reveals and the recovery it drives;
//! - `output`: what to send next (data under the windows, Nagle, SWS, retransmissions, ACKs);
//! - `emit`: the packet for what `output` decided, its headers and the record it leaves;
//! - `fast_open`: TCP Fast Open (RFC 7413: a cookie, data in the SYN), the client's side and
//!   what a server's connection keeps;
//! - `close`: shutdown, close, abort and TIME-WAIT (and the snapshot the endpoint keeps of
//!   a connection in TIME-WAIT);
//! - `icmp`: what an ICMP error about the connection does to it (path MTU, unreachable);
//! - `timers`: the deadlines and what happens when each one fires;
//! - `app_send`, `app_recv`: the application's writes and reads, and the buffers' sizing;
//! - `memory`: what the connection holds against the endpoint's memory budget.
//!
//! A connection is itself sans-IO: the endpoint feeds it parsed segments and `now`, and asks it
//! for packets, its next deadline and its notifications.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::chrono::Chrono;
use crate::tcp::congestion::Controller;
use crate::tcp::delayed_ack::DelayedAck;
use crate::tcp::recv_buffer::RecvBuffer;
use crate::tcp::rtt::RttEstimator;
use crate::tcp::send_buffer::{SendBuffer, SkbQueue};
use crate::tcp::State;
use crate::time::Instant;

mod ack;
mod app_recv;
mod app_send;
mod close;
mod ecn;
mod emit;
mod fast_open;
pub(crate) mod handshake;
mod icmp;
mod info;
mod input;
mod memory;
pub(crate) mod output;
mod timers;
mod urgent;

pub(crate) use close::{time_wait_input, PortClaim, TimeWaitEntry, TimeWaitInput};
pub(crate) use ecn::EcnState;
pub use fast_open::{FastOpen, FastOpenServer, LearnedFastOpen};
pub(crate) use input::{InputVerdict, SegmentMeta};
pub(crate) use timers::Timers;
pub(crate) use urgent::Urgent;

/// The largest window scale shift (RFC 7323 §2.3: "the shift count MUST be limited to 14").
pub(crate) const MAX_WINDOW_SCALE: u8 = 14;

/// The smallest MSS we send with, whatever a peer's SYN or `TCP_MAXSEG` asks for: Linux's
/// `tcp_min_snd_mss` (48, before the options come off, as in `__tcp_mtu_to_mss`; RFC 9293
/// §3.7.1 defaults to 536 for IPv4 when the option is absent).
pub(crate) const MIN_MSS: usize = 48;

/// The most immediate duplicate ACKs owed at once: one batch of the runtime's driver.
pub(crate) const MAX_DUP_ACKS_OWED: u16 = 64;

/// Tail loss probes per episode (see `Recovery::tlp_probes`). RFC 8985 §7 sends one and
/// leaves the rest to the RTO; but the probe's ACK is as likely to be lost as the ACKs it
/// stands in for, and then the sender waits for the RTO, 200 ms or more, where the path's
/// round trip may be a few dozen microseconds. A second probe, after twice the timeout, costs
/// one segment and recovers from that double loss; the RTO still follows if it too goes
/// unanswered.
pub(crate) const MAX_TLP_PROBES: u8 = 2;

/// In-order ACKs owed within one batch of input below its end, each for the RCV.NXT at which
/// the every-second-segment rule (RFC 5681 §4.2, Linux `__tcp_ack_snd_check`) fired. A
/// runtime that reads a batch of packets before it transmits would otherwise answer the
/// whole batch with one ACK: the sender hears of its whole flight at once, with nothing left
/// in flight to clock out more, and when that one ACK is lost it hears nothing. Over the
/// harness's TUN at 5 % loss each way the kernel sender then stalled for its 200 ms probe
/// timer or RTO dozens of times per 16 MiB. Linux, taking segments one at a time, ACKs each
/// pair as it goes; here the first pair of a batch gets its own ACK, the rest the batch's
/// last: at most one ACK more per batch (4 instead of 1 measured the same under loss and
/// would cost more per packet in bulk).
pub(crate) const MAX_ACK_POINTS: usize = 1;

/// The MSS assumed when the peer sends none (RFC 9293 §3.7.1: 536 for IPv4, RFC 8200 §5:
/// 1220 for IPv6).
pub(crate) fn default_mss(ipv6: bool) -> usize {
    if ipv6 {
        1220
    } else {
        536
    }
}

/// The segment timed for an RTT sample when timestamps are off (RFC 6298 §3: one at a time,
/// and never a retransmitted one, by Karn's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedSegment {
    /// Its first sequence number: an ACK beyond it gives the sample.
    pub seq: SeqNumber,
    /// When it was sent.
    pub sent: Instant,
}

/// Challenge ACKs sent in one one-second slot, for RFC 5961 §7's per-second limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChallengeAcks {
    /// When the current slot began.
    pub slot_start: Instant,
    /// Challenge ACKs sent in it.
    pub sent: u32,
}

/// Pacing's token bucket: bytes that may leave now, topped up at the pacing rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PaceBucket {
    /// Bytes that may leave now.
    pub tokens: usize,
    /// When `tokens` was last topped up.
    pub refilled: Instant,
}

/// Receive-buffer auto-tuning's measure of the application (Linux `rcvq_space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RcvSpace {
    /// Bytes the application read since `since` (u32, saturating, so that the receiver's
    /// round-trip fields below fit in the room it gave up: an idle connection's size counts).
    pub read: u32,
    /// When the current measurement round began.
    pub since: Instant,
    /// The most it ever read in one round trip.
    pub best: u32,
    /// The receiver's own round-trip estimate, smoothed, in microseconds (0: none yet), from
    /// the timestamps our data segments' senders echo (Linux's `rcv_rtt_est`, fed by
    /// `tcp_rcv_rtt_measure_ts`): what the tuning measures its rounds by while the send
    /// side's estimator has no sample, as on a connection that only receives after a
    /// handshake that gave none (a resent SYN or SYN-ACK, a SYN cookie).
    pub rtt_us: u32,
    /// The TSecr of the last sample (0: none), so that one echo is one sample.
    pub last_tsecr: u32,
}

/// Whether the sender has been limited by its congestion window, after Linux's
/// `tcp_cwnd_validate`: the window grows on an ACK only while it is what limits the flow
/// (RFC 7661 §4.1's concern, in Linux's form), so an application-limited flow, a request/
/// response exchange, does not build a window it never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CwndUse {
    /// The window limited the flow at some send since `until` was set.
    pub limited: bool,
    /// The most bytes in flight in the current round (Linux's `max_packets_out`).
    pub max_out: usize,
    /// The round ends once SND.UNA reaches this (Linux's `cwnd_usage_seq`).
    pub until: SeqNumber,
    /// The most bytes in flight since the window was last found full or last validated
    /// (Linux's `snd_cwnd_used`), for the application-limited rule.
    pub used: usize,
    /// When the window was last found full or last validated (Linux's `snd_cwnd_stamp`).
    pub stamp: Instant,
    /// When data (new or resent) last left (Linux's `lsndtime`): the idle time that
    /// slow start after idle measures.
    pub last_sent: Option<Instant>,
    /// Slow start after idle is to be judged before data next leaves: a write began new
    /// data, or the peer's window changed with data waiting. Linux judges it at exactly
    /// those two points (`tcp_slow_start_after_idle_check` from `tcp_skb_entail` and
    /// `tcp_ack_update_window`), not as data leaves: data written soon after the last send
    /// and held (by `TCP_CORK`, say) past the RTO leaves without a restart.
    pub judge_idle: bool,
}

/// What the endpoint's memory budget ([`Config::max_memory`]) allows a connection now, set by
/// the endpoint before each call that may make a buffer hold more, after Linux's `tcp_mem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemBudget {
    /// The endpoint is under memory pressure (Linux `tcp_under_memory_pressure`): buffers
    /// do not auto-tune upwards, and a window offers at most two segments, or what it
    /// already promised if that is more (Linux `tcp_clamp_window` clamps `rcv_ssthresh` to
    /// 2 × advmss; a window once offered is never taken back, RFC 9293 §3.8.6.2.2).
    pub pressure: bool,
    /// Bytes the endpoint may still queue before its cap. Data that would need more is
    /// dropped (Linux TCPRcvQDrop), writes are cut short, and no window opens past it.
    pub room: usize,
    /// The budget held this connection back (data dropped, a write refused or cut short, a
    /// window kept from opening): the endpoint wakes it (a window update, `Writable`) once
    /// memory drains, so that no peer waits behind a window that only pressure closed.
    pub starved: bool,
    /// The peer is one of the endpoint's own sockets (a connection looped back inside it):
    /// both ends draw on this budget, so the connection keeps a send floor (`send_floor`).
    pub own_peer: bool,
}

impl Default for MemBudget {
    fn default() -> Self {
        MemBudget {
            pressure: false,
            room: usize::MAX,
            starved: false,
            own_peer: false,
        }
    }
}

/// How long buffers that emptied keep their storage before it is given back (the reclaim
/// timer): long enough that a busy connection reuses the same cache-warm allocation from one
/// burst to the next, short enough that an idle one costs only its state (Linux frees an
/// skb as it is read and returns a socket's forward allocation to `tcp_mem` from its timers).
pub(crate) const RECLAIM_AFTER: Duration = Duration::from_secs(1);

/// Notifications a connection raises for the endpoint to turn into [`crate::Event`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Notify {
    pub connected: bool,
    pub readable: bool,
    pub writable: bool,
    pub closed: bool,
}

/// The send side: RFC 9293 §3.3.1's send sequence variables plus what we keep to fill them.
#[derive(Debug)]
pub(crate) struct Sender {
    /// Initial send sequence number.
    pub iss: SeqNumber,
    /// Oldest unacknowledged sequence number.
    pub una: SeqNumber,
    /// Next sequence number to send (moved back to `una` by a retransmission timeout).
    pub nxt: SeqNumber,
    /// The highest sequence number sent so far, plus one.
    pub max: SeqNumber,
    /// The end of the last segment sent shorter than a full one (Linux `snd_sml`): Nagle's
    /// algorithm in Minshall's form holds a short segment back only while this one is
    /// unacknowledged.
    pub small_end: SeqNumber,
    /// The peer's window, scaled, in bytes.
    pub wnd: usize,
    /// The largest window the peer ever offered (for SWS avoidance and RFC 5961 §5.2).
    pub max_wnd: usize,
    /// Segment sequence number used for the last window update.
    pub wl1: SeqNumber,
    /// The effective send MSS: `mss_clamp` bounded by the path's MTU (`sync_mss`).
    pub mss: usize,
    /// The shift applied to windows the peer advertises.
    pub wscale: u8,
    /// The largest MSS the peer takes, as its SYN's option said (RFC 9293 §3.7.1: the default
    /// without one), lowered by `TCP_MAXSEG` before the handshake: Linux's
    /// `rx_opt.mss_clamp`. Unbounded (`u16::MAX`) until the handshake sets it.
    pub mss_clamp: u16,
    /// Application bytes: `[una, max)` sent, the rest unsent.
    pub buffer: SendBuffer,
    /// The same bytes as Linux's skbs would hold them (`ConnConfig::skb_accounting` only).
    pub skbs: Option<Box<SkbQueue>>,
    /// The send buffer's size with skb accounting (Linux `sk_sndbuf`), against
    /// `skbs.charged()`; without it, `buffer.capacity()` is the size.
    pub sndbuf: usize,
    /// Ends of `MSG_EOR` writes above SND.UNA, in order: no segment crosses one
    /// (`SendFlags::eor`). At most [`MAX_RECORDS`] are held.
    pub records: VecDeque<SeqNumber>,
    /// The last byte queued carries a push mark: the last write was not `MSG_MORE`, so the
    /// segment that ends the queue carries PSH (RFC 9293 §3.9.1.2; Linux's `tcp_mark_push`
    /// at the end of every `sendmsg` without `MSG_MORE`).
    pub push_at_end: bool,
    /// SND.UP (RFC 9293 §3.8.5): one past the last byte written with `MSG_OOB`, while the
    /// peer has not acknowledged it (Linux's `snd_up` in urgent mode).
    pub up: Option<SeqNumber>,
    /// The application asked for a FIN (shutdown or close).
    pub fin_queued: bool,
    /// The sequence number our FIN occupies, once sent.
    pub fin_seq: Option<SeqNumber>,
    /// Our FIN first left in a segment of its own, after all the data (Linux's
    /// `tcp_send_fin` queues it as an skb of its own once the data is sent): the tail loss
    /// probe resends it alone.
    pub fin_alone: bool,
    /// Whether our SYN is still unacknowledged (it occupies `iss`).
    pub syn_unacked: bool,
    /// What the peer's SACK blocks say it holds above `una` (RFC 6675 §3).
    pub scoreboard: crate::tcp::scoreboard::Scoreboard,
    /// When each segment in flight was last sent (RFC 8985 RACK).
    pub rack: crate::tcp::rack::Rack,
}

impl Sender {
    /// Bytes sent and not yet acknowledged (FlightSize), counting SYN and FIN.
    pub fn in_flight(&self) -> usize {
        self.nxt - self.una
    }

    /// RFC 6675 §4 SetPipe: bytes believed to be in the network. SACKed bytes have left it;
    /// un-SACKed bytes below the IsLost boundary have left it too, unless they were
    /// retransmitted (below HighRxt).
    pub fn pipe(&self, high_rxt: SeqNumber, boundary: Option<SeqNumber>) -> usize {
        let outstanding = self.scoreboard.unsacked_between(self.una, self.max);
        let Some(boundary) = boundary else {
            return outstanding;
        };
        let lost_from = self.una.max(high_rxt);
        let lost = self
            .scoreboard
            .unsacked_between(lost_from, boundary.max(lost_from));
        outstanding.saturating_sub(lost)
    }

    /// [`Sender::pipe`] in segments, as Linux's `tcp_packets_in_flight` counts packets
    /// (with SACK only: from RACK's record of the segments sent): segments not SACKed,
    /// less those lost and not resent (starting at or above HighRxt, below the boundary).
    pub fn pipe_segments(&self, high_rxt: SeqNumber, boundary: Option<SeqNumber>) -> usize {
        let lost_from = self.una.max(high_rxt);
        self.rack.count_segments(self.una, |start, _, sacked| {
            !sacked && !boundary.is_some_and(|b| start >= lost_from && start < b)
        })
    }

    /// Segments sent and not SACKed (Linux's `packets_out - sacked_out`).
    pub fn unsacked_segments(&self) -> usize {
        self.rack.count_segments(self.una, |_, _, sacked| !sacked)
    }

    /// Segments SACKed (Linux's `sacked_out`).
    pub fn sacked_segments(&self) -> usize {
        self.rack.count_segments(self.una, |_, _, sacked| sacked)
    }

    /// Sequence number of the first application byte in the buffer.
    pub fn data_start(&self) -> SeqNumber {
        if self.syn_unacked {
            self.una + 1
        } else {
            self.una
        }
    }

    /// Whether our FIN has been acknowledged.
    pub fn fin_acked(&self) -> bool {
        match self.fin_seq {
            Some(fin) => self.una > fin,
            None => false,
        }
    }
}

/// The receive side: RFC 9293 §3.3.1's receive sequence variables and the buffer.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// Initial receive sequence number.
    pub irs: SeqNumber,
    /// Next sequence number expected.
    pub nxt: SeqNumber,
    /// The right edge of the window we last advertised; never moved left (RFC 9293
    /// §3.8.6.2.2: the window should not shrink).
    pub adv: SeqNumber,
    /// Our MSS (what we advertised).
    pub mss: usize,
    /// The shift applied to the windows we advertise.
    pub wscale: u8,
    /// In-order and out-of-order bytes.
    pub buffer: RecvBuffer,
    /// The peer's FIN sequence number, if it arrived ahead of data we still miss.
    pub fin_seq: Option<SeqNumber>,
    /// The peer's FIN was received in order: EOF after the buffer drains.
    pub fin_received: bool,
    /// Data segments (and a FIN) received since the last ACK we sent: an ACK is owed.
    pub unacked_segments: u32,
    /// A segment with data or a FIN reached the data step since the last ACK we sent,
    /// in order or not, new or a duplicate: Linux's `inet_csk_schedule_ack`, which its
    /// `tcp_data_queue` and `tcp_data_queue_ofo` call on every such path. The ACK that
    /// answers it counts one down of quick-ACK mode (`tcp_dec_quickack_mode`).
    pub ack_scheduled: bool,
    /// When an owed ACK goes out: at once, or after an adaptive delay (Linux's rules).
    pub delack: DelayedAck,
    /// An ACK must go out with the next transmission opportunity.
    pub ack_now: bool,
    /// Duplicate ACKs still owed, one per out-of-order or duplicate segment (RFC 5681 §4.2:
    /// "an immediate duplicate ACK when an out-of-order segment arrives"). Segments that
    /// arrive together in one batch would otherwise share a single ACK, and a sender that
    /// loses that one ACK learns nothing of the batch; one each also keeps a NewReno sender's
    /// count of segments that left the network right. Bounded by `MAX_DUP_ACKS_OWED`.
    pub dup_acks_owed: u16,
    /// Out-of-order segments answered at once since RCV.NXT last moved, up to the sender's
    /// duplicate threshold (Linux's `dup_ack_counter`): after those, SACK ACKs are compressed.
    pub ooo_acks_at_nxt: u8,
    /// SACK ACKs held back to go as one (Linux's `compressed_ack`): the delayed-ACK timer is
    /// set for them (see `Connection::ack_out_of_order`), and any ACK sent clears them.
    pub sack_compressed: u8,
    /// The last segment filled a hole or arrived out of order: SACK info changed.
    pub sack_changed: bool,
    /// ACKs owed for in-order data at points below RCV.NXT, oldest first (`ack_points_len`
    /// of them), each with the TSecr it echoes: see `MAX_ACK_POINTS`.
    pub ack_points: [(SeqNumber, u32); MAX_ACK_POINTS],
    pub ack_points_len: u8,
    /// A duplicate segment's range, reported once as the first SACK block of our next ACK
    /// (D-SACK, RFC 2883), so that the sender can tell a spurious retransmission.
    pub dsack: Option<(SeqNumber, SeqNumber)>,
    /// The one urgent mark tracked (RFC 9293 §3.8.5; see `urgent.rs`).
    pub urgent: Option<Urgent>,
}

/// How long TS.Recent stays valid for PAWS: Linux's `TCP_PAWS_WRAP` (since 6.7),
/// `INT_MAX / USEC_PER_SEC` seconds, about 36 minutes, short enough for a microsecond
/// timestamp clock; RFC 7323 §5.5 allows 24 days for a millisecond one. Past it a segment
/// passes PAWS whatever its TSval (`tcp_paws_check`).
pub(crate) const PAWS_WRAP: Duration = Duration::from_secs(2147);

/// The MTU of the path as a connection sees it: the link's, and a lower one an ICMP
/// "fragmentation needed" or "packet too big" reported (RFC 1191, RFC 8201), held for
/// `Config::pmtu_expires` (10 minutes) after the last such report. Linux reads both through
/// the socket's route before each transmission (`tcp_current_mss`: `dst_mtu`, the route
/// exception's MTU while it holds, else the device's). Kept small: every connection carries
/// it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathMtu {
    /// When the report expires, in whole seconds of the endpoint's clock; 0 while none is in
    /// force.
    pub expires_s: u32,
    /// The MSS the link's MTU allows (its MTU less the IP and TCP headers), which the link
    /// may change (`Connection::set_link_mss`); what the MSS returns to, within the peer's
    /// (`Sender::mss_clamp`), when a report expires.
    pub link_mss: u16,
    /// The MSS the reported path MTU allows (what a later report is weighed against).
    pub path_mss: u16,
    /// The report was below 552, Linux's smallest path MTU (`ip_rt_min_pmtu`), for IPv4:
    /// the path is taken to be 552 and locked there, and the packets go without DF from
    /// then on, so that the router with the smaller MTU fragments them rather than dropping
    /// them (`ip_dont_fragment`; RFC 1191 §5). It outlives the report's expiry, as on the
    /// route a Linux connection holds (see `expire_path_mtu`).
    pub locked: bool,
}

impl PathMtu {
    /// Whether `path_mss` bounds the MSS: a report in force, or the lock one left.
    pub fn path_holds(&self) -> bool {
        self.expires_s != 0 || self.locked
    }

    /// The MSS the route allows: the link's, or the path's while that holds lower.
    pub fn route_mss(&self) -> u16 {
        if self.path_holds() {
            self.link_mss.min(self.path_mss)
        } else {
            self.link_mss
        }
    }
}

/// Timestamps state (RFC 7323 §3, §4.3 and §5).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timestamps {
    /// Both sides offered the option.
    pub enabled: bool,
    /// Added to our clock so TSval does not reveal uptime.
    pub offset: u32,
    /// TS.Recent: the TSval to echo.
    pub recent: u32,
    /// When TS.Recent was last updated (invalid after [`PAWS_WRAP`]).
    pub recent_age: Instant,
    /// Our TSval when the last retransmission timeout fired. An ACK echoing anything older
    /// was triggered by a segment sent before the timeout (typically a duplicate the peer
    /// already had), so its TSecr measures the stall, not the path: no RTT sample from it.
    /// In SYN-SENT, the TSval of our first SYN: a SYN-ACK echoing anything older, or
    /// anything newer than our clock, answers no SYN of ours (Linux's `retrans_stamp`).
    pub min_echo: Option<u32>,
}

/// Where F-RTO stands after a retransmission timeout (RFC 5682 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frto {
    /// Step 2: the timeout's retransmission is out; the first ACK that moves SND.UNA decides.
    Waiting,
    /// Step 2b: an ACK moved SND.UNA over resent data only, so new data goes out from
    /// `new_from` (SND.MAX then, Linux's `high_seq`) instead of the next retransmission,
    /// which waits at `resume` until the ACKs of the new data show whether the loss was
    /// real (step 3).
    NewData {
        resume: SeqNumber,
        new_from: SeqNumber,
    },
}

/// Fast retransmit and NewReno fast recovery bookkeeping (RFC 5681 §3.2, RFC 6582).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Recovery {
    /// Consecutive duplicate ACKs.
    pub dupacks: u32,
    /// Without SACK, the segments the duplicate ACKs say have left the network, as Linux
    /// counts them for Reno (`sacked_out`: one more per duplicate ACK, `tcp_add_reno_sack`,
    /// at most one below the segments out, `tcp_limit_reno_sacked`; an ACK of n segments
    /// takes off n - 1, `tcp_remove_reno_sacks`; none once recovery ends or a timeout
    /// fires). Fast recovery without SACK counts them out of its pipe, which PRR then
    /// sizes (`Connection::reno_pipe`).
    pub reno_sacked: usize,
    /// Without SACK, the duplicate ACKs that start a fast recovery once Linux has seen more
    /// of them than segments out (`tcp_check_reno_reordering`: the segments out then, plus
    /// those an ACK just took off, at most `tcp_max_reordering`); `None` until then, which
    /// is RFC 5681's DupThresh of three (Linux's `tcp_reordering`). It lasts the
    /// connection, as Linux's `tp->reordering`, but a timeout that finds at least three
    /// duplicate ACKs counted outside a recovery brings it back to three at most
    /// (`tcp_enter_loss`: the reordering was overestimated).
    pub reno_reordering: Option<std::num::NonZeroU16>,
    /// In fast recovery until this sequence number ("recover", RFC 6582 §3.2) is acknowledged.
    pub recover: Option<SeqNumber>,
    /// Without SACK, the recovery held at its recovery point was undone there (its ACK
    /// echoed the originals' timestamps): the window stays PRR's when it ends, where an
    /// ordinary recovery ends at ssthresh, as Linux's `tcp_end_cwnd_reduction` sets cwnd to
    /// ssthresh only while `undo_marker` is set.
    pub undone_while_held: bool,
    /// Resend the segment at SND.UNA on the next transmission opportunity.
    pub retransmit_head: bool,
    /// The highest sequence number sent when the last RTO fired (RFC 6582 §3.2 step 7 guard
    /// against repeated fast retransmits after a timeout), moved up to SND.MAX when F-RTO
    /// sends new data instead of resending (Linux's `high_seq`).
    pub rto_recover: Option<SeqNumber>,
    /// When the last retransmission timeout fired: Linux's `tcp_timeout_mark_lost` clears
    /// every retransmitted mark then, so TCP_INFO's `retrans` counts from it.
    pub rto_at: Option<Instant>,
    /// RFC 6675 HighRxt: the highest sequence number retransmitted during this recovery.
    pub high_rxt: SeqNumber,
    /// A tail loss probe is due (RFC 8985 §7.3).
    pub tlp_pending: bool,
    /// A probe is in flight: no other until an ACK advances SND.UNA (RFC 8985 §7.4).
    pub tlp_outstanding: bool,
    /// Probes sent in this episode (since SND.UNA last advanced or the RTO last fired): a
    /// probe left unanswered is followed by at most `MAX_TLP_PROBES - 1` more, each after
    /// twice the previous probe timeout, before the RTO.
    pub tlp_probes: u8,
    /// RFC 8985 §7.4's TLP episode, as Linux's `tlp_high_seq`: SND.NXT once the probe of an
    /// open connection went, until an ACK decides whether that probe repaired a loss
    /// (`process_tlp_ack`). Cleared by a timeout and by a recovery or CWR that starts
    /// (`tcp_enter_loss`, `tcp_init_cwnd_reduction`), which reduce the window themselves.
    pub tlp_high_seq: Option<SeqNumber>,
    /// That probe resent data (Linux's `tlp_retrans`); a probe of new data repairs nothing.
    pub tlp_retrans: bool,
    /// Everything un-SACKed below this is lost, whatever IsLost says: set when the ACK of a
    /// tail loss probe SACKs the probe, since all before it was sent at least a probe timeout
    /// earlier (RFC 8985 §7.4.2 with RACK's time-based reasoning, §6.2).
    pub lost_below: Option<SeqNumber>,
    /// Proportional Rate Reduction (RFC 6937 §3), for recovery with SACK: bytes the peer
    /// took delivery of (cumulatively or by SACK) since recovery began, `prr_delivered`.
    /// In segments with `Config::recovery_in_packets`, as this and the other PRR
    /// quantities (`prr_out`, `recover_fs`; `prr_cwnd` is then segments times the MSS).
    pub prr_delivered: usize,
    /// Undo of a spurious fast retransmit (RFC 3708 §3 with D-SACK, as Linux's
    /// `undo_marker`): SND.UNA when the last recovery began, while its reduction may still be
    /// undone. Cleared by an undo and by a retransmission timeout.
    pub undo_marker: Option<SeqNumber>,
    /// Segments retransmitted since `undo_marker` was set (Linux's `undo_retrans`).
    pub undo_retrans: usize,
    /// Of those, segments the peer reported received twice by D-SACK (RFC 2883 §4).
    pub undo_dsacked: usize,
    /// The TSval of the first retransmission still outstanding when the last recovery
    /// began, or since (Linux's `retrans_stamp`): an ACK that echoes an older one was sent
    /// for the originals, so the recovery's retransmissions were not needed (the Eifel
    /// detection of RFC 3522, Linux's `tcp_packet_delayed`).
    pub undo_tsval: Option<u32>,
    /// F-RTO (RFC 5682 §3, the SACK-enhanced version, as Linux's `tcp_process_loss` with
    /// `tcp_frto` on): after a retransmission timeout that may be undone, the ACKs that
    /// follow may still show it spurious without timestamps (`ack.rs`, `process_loss`).
    /// `None` when off, once decided, and outside a timeout's recovery.
    pub frto: Option<Frto>,
    /// RFC 6937 `prr_out`: bytes sent (new or resent) since recovery began.
    pub prr_out: usize,
    /// RFC 6937 `RecoverFS`. Linux takes the congestion window before the reduction
    /// (`prior_cwnd` in `tcp_init_cwnd_reduction`), where the RFC takes FlightSize; we follow
    /// Linux, whose sending pattern packetdrill's PRR scripts check.
    pub recover_fs: usize,
    /// The congestion window during recovery, as Linux's `tcp_cwnd_reduction` sets it on
    /// each ACK: the pipe after the ACK plus what PRR lets this ACK send (`sndcnt`).
    /// Also the window in force in CWR (`cwr`).
    pub prr_cwnd: usize,
    /// Linux's CWR state (RFC 3168 §6.1.2): the peer echoed a congestion mark, and the window
    /// is being brought down to ssthresh by PRR, as in recovery but with nothing to resend,
    /// until SND.UNA passes this sequence number (SND.MAX when the ECE arrived: one
    /// reduction per window of data).
    pub cwr: Option<SeqNumber>,
}

/// One TCP connection.
pub(crate) struct Connection {
    pub state: State,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub snd: Sender,
    pub rcv: Receiver,
    pub ts: Timestamps,
    /// Both sides offered SACK-permitted.
    pub sack_ok: bool,
    /// Both sides offered window scaling (possibly with a shift of zero).
    pub wscale_ok: bool,
    /// An RST to send in reply to an unacceptable segment, `<SEQ=SEG.ACK><CTL=RST>`: its
    /// sequence number (RFC 9293 §3.10.7.3 and the SYN-RECEIVED case of §3.10.7.4), and
    /// for a segment without ACK, the ACK of `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`
    /// (see [`Connection::reset_reply_to`]).
    pub reset_reply: Option<(SeqNumber, Option<SeqNumber>)>,
    pub rtt: RttEstimator,
    pub cc: Box<dyn Controller>,
    /// Whether the flow has been using its congestion window (see [`CwndUse`]).
    pub cwnd_use: CwndUse,
    pub recovery: Recovery,
    pub timers: Timers,
    /// The RTO's backoff exponent: doubled at each retransmission timeout, and kept, as
    /// Karn's algorithm asks (RFC 6298 §5.7, §3), until an ACK brings a valid RTT sample
    /// (Linux's `icsk_backoff`, reset in `tcp_ack_update_rtt`).
    pub backoff: u32,
    /// Retransmission timeouts since SND.UNA last moved (Linux's `icsk_retransmits`): what
    /// gives up on the data and what holds back loss probes after a timeout.
    pub timeouts: u32,
    /// When the data a run of timeouts resends was sent, as near as the timer knows (its
    /// start: Linux's `retrans_stamp`): how long the data has been out, which is what
    /// `data_retries` bounds.
    pub retrans_stamp: Option<Instant>,
    /// A sequence number being timed for an RTT sample, and when it was sent (Karn's rule:
    /// cleared by any retransmission).
    pub rtt_seq: Option<TimedSegment>,
    /// The SYN (or SYN-ACK) must be sent.
    pub syn_pending: bool,
    /// Segments the peer is known to have received (`TcpInfo::delivered`).
    pub delivered: u32,
    /// How many times SND.UNA has come round past ISS: with `snd.una - snd.iss`, the
    /// sequence space acknowledged as a 64-bit count (`acked_seq_space`), which Linux's
    /// `tcpi_bytes_acked` keeps past 4 GiB. SND.UNA moves past data only through `ack_to`.
    pub una_wraps: u32,
    /// The application has a write waiting for the handshake (Linux's `sk_write_pending`,
    /// a blocking Fast Open write): the SYN-ACK's ACK waits for that write to carry it.
    pub write_pending: bool,
    /// An RST must be sent, then the connection is closed.
    pub rst_pending: bool,
    /// Closed with data unread: what was written and the windows let go now is sent, then
    /// the RST (see [`Connection::close`]).
    pub reset_after_flush: bool,
    /// Disable Nagle's algorithm.
    pub nodelay: bool,
    /// The application released the handle (`close`): the connection is an orphan, which
    /// gives up sooner (`Config::orphan_retries`, for retransmissions and zero-window
    /// probes). Not set by a shutdown of either side, whose socket the application still
    /// holds.
    pub app_closed: bool,
    /// The application shut its reading side (`shutdown(SHUT_RD)`, Linux's `RCV_SHUTDOWN`
    /// from `inet_shutdown`): a read takes what is queued, then the end of the stream, and
    /// new data in FIN-WAIT-1 or -2 is answered with a reset, as after `close`.
    pub read_shut: bool,
    /// The error the connection failed with.
    pub error: Option<Error>,
    /// A soft error (ICMP) reported if the connection later times out.
    pub soft_error: Option<Error>,
    /// Notifications not yet collected by the endpoint.
    pub notify: Notify,
    /// Challenge ACKs sent in the current one-second slot (RFC 5961 §7).
    pub challenge_acks: ChallengeAcks,
    /// When we last answered an invalid segment (see `Config::invalid_ratelimit`).
    pub last_invalid_ack: Option<Instant>,
    /// Segments sent again since creation (Linux's `total_retrans`, a u32 as there).
    pub retransmits: u32,
    /// Loss-recovery events, for `TcpInfo`.
    pub counters: crate::tcp::info::LossCountersBox,
    /// Segments and data bytes sent and received, for `TcpInfo`.
    pub segments: crate::tcp::info::SegmentCounts,
    /// When the oldest unacknowledged data was first retransmitted after a timeout, the
    /// first zero-window probe went out, or an active open's first SYN did: the user timeout
    /// counts from there, as Linux's does from `retrans_stamp` (or `icsk_probes_tstamp`).
    /// Cleared when an ACK makes progress (our SYN's included), or opens the window with
    /// nothing in flight.
    pub retransmitting_since: Option<Instant>,
    /// Last time an ACK was taken, one from SND.UNA to SND.MAX (Linux's `rcv_tstamp`,
    /// TCP_INFO's `last_ack_recv`).
    pub last_ack_recv: Instant,
    /// Last time data arrived (Linux's `icsk_ack.lrcvtime`, TCP_INFO's `last_data_recv`).
    pub last_data_recv: Instant,
    /// Unanswered probes, keepalive or zero-window (Linux's `icsk_probes_out`): a segment
    /// whose ACK is acceptable (from SND.UNA to SND.MAX) resets it.
    pub probes_out: u32,
    /// The relevant part of the config, shared by every connection of the endpoint until a
    /// socket option changes this one's (copy on write: 200 bytes a connection saved).
    pub cfg: std::sync::Arc<ConnConfig>,
    /// What the endpoint's memory budget allows (see [`MemBudget`]).
    pub mem: MemBudget,
    /// Pacing's token bucket.
    pub pace: PaceBucket,
    /// Receive-buffer auto-tuning (Linux `rcvq_space`).
    pub rcv_space: RcvSpace,
    /// What the last input made of its segment, for the endpoint's counters.
    pub verdict: input::InputVerdict,
    /// The segment being processed is GRO-coalesced segments of this many payload bytes
    /// ([`RecvMeta::segment_size`](crate::RecvMeta::segment_size)): the peer's segment size,
    /// read where Linux reads `gso_size`. (A u32, not a usize: a segment size fits, and the
    /// eight bytes saved are what the IP identification fields took; non-zero, for the four
    /// that `una_wraps` takes.)
    pub gro_segment_size: Option<NonZeroU32>,
    /// Created by a listener (a passive open).
    pub passive: bool,
    /// A zero-window or keepalive probe must be sent.
    pub probe_pending: bool,
    /// Zero-window probes sent without the window opening (the persist backoff; a byte, as
    /// Linux's `icsk_backoff`: past 255 the interval is long at its ceiling).
    pub persist_backoff: u8,
    /// The persist timer fired with a small window: let one short segment out.
    pub sws_override: bool,
    /// `TCP_CORK`: short segments wait, whatever is in flight.
    pub cork: bool,
    /// A final ACK without data was held back for `ConnConfig::defer_accept` (Linux's
    /// `inet_rsk(req)->acked`): the SYN-ACK is resent only at the period's last timeout.
    pub defer_acked: bool,
    /// The last write was `MSG_MORE`: short segments wait as under `cork` until the next
    /// write without it, the next ACK, `set_nodelay(true)` or the cork's removal (Linux
    /// applies MSG_MORE only to that write's own push).
    pub more: bool,
    /// `set_nodelay(true)` pushes what is queued, past `cork` and `more`, until the next
    /// write (Linux's `TCP_NAGLE_PUSH`, which `skb_entail` clears).
    pub push_now: bool,
    /// TCP Fast Open, for an active open that asked for it or a passive open that was
    /// asked (see [`FastOpen`]).
    pub fast_open: Option<Box<FastOpen>>,
    /// Explicit Congestion Notification (RFC 3168): negotiated or not, and the echo state.
    pub ecn: EcnState,
    /// `IP_TOS` / `IPV6_TCLASS`: the DSCP bits of every packet the connection sends (the
    /// two ECN bits are the stack's, see `ecn`).
    pub tos: u8,
    /// `IP_TTL` / `IPV6_UNICAST_HOPS`: the TTL or hop limit of the packets it sends.
    pub hop_limit: u8,
    /// How it uses its local port ([`PortClaim`]): the `SO_REUSEADDR` of its socket
    /// ([`SocketOptions::reuse_address`]), whether a socket that sets it too may bind its
    /// port while it, or its TIME-WAIT entry, lasts; and whether a bind gave the port.
    pub port_claim: PortClaim,
    /// The IPv4 identification of its next packet, one more for each packet (each segment
    /// of a super-segment) it sends, as Linux's `inet_id`. What Linux sends from a request
    /// sock or a control socket instead carries 0 (see `ip_header` in `output.rs`). RFC 6864 §4.1
    /// lets an atomic datagram carry any ID; this one is Linux's, and it is what a datagram
    /// without DF needs ([`PathMtu::locked`]).
    pub ip_id: u16,
    /// What it sends now leaves as from Linux's control socket, with ID 0 and the default
    /// TTL: once Linux has handed the connection to a TIME-WAIT sock. That is TIME-WAIT
    /// after the ACK that began it (or at once, when none was owed: CLOSING), and an
    /// orphaned FIN-WAIT-2 reached by a bare ACK of our FIN (`tcp_time_wait(sk,
    /// TCP_FIN_WAIT2, tmo)`, `tcp_v4_timewait_ack`).
    pub control_socket: bool,
    /// The IPv6 flow label of the last segment that brought data (Linux's
    /// `lrcv_flowlabel`; see `note_flow_label` in `input.rs`).
    pub lrcv_flow_label: u32,
    /// A path MTU lowered by an ICMP report, until the report expires (see `icmp.rs`).
    pub pmtu: PathMtu,
    /// The application found the send buffer full (a write cut short or refused, or a
    /// readiness check that said no): it waits for `Writable`, which comes once the buffer
    /// is writeable again (Linux's `SOCK_NOSPACE` and `sk_stream_write_space`).
    pub nospace: bool,
    /// Where the sender's time goes (`TcpInfo::busy_time` and the limits).
    pub chrono: Chrono,
    /// SND.MAX when the chronograph last looked: whether anything new went out since.
    pub chrono_max: SeqNumber,
    /// `SO_OOBINLINE`: the urgent byte stays in the stream (see `urgent.rs`).
    pub oob_inline: bool,
}

/// The most record ends (`MSG_EOR`) a connection tracks; a write that would add one more
/// finds the send buffer full until some are acknowledged (each stands for a Linux skb,
/// whose overhead counts against the send buffer there).
pub(crate) const MAX_RECORDS: usize = 1024;

/// The part of [`Config`] a connection needs, copied so the connection owns no references.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub syn_retries: u32,
    pub synack_retries: u32,
    pub data_retries: u32,
    pub orphan_retries: u32,
    pub initial_syn_rto: Duration,
    /// Where a passive open's SYN-ACK schedule starts (`Config::initial_rto`).
    pub initial_rto: Duration,
    pub syn_linear_timeouts: u32,
    pub max_rto: Duration,
    pub delayed_ack: Duration,
    pub time_wait: Duration,
    pub fin_timeout: Duration,
    /// `TCP_LINGER2` (`Endpoint::set_linger2`): in place of `fin_timeout`, or no wait at all.
    pub linger2: Option<crate::options::Linger2>,
    pub pmtu_expires: Duration,
    pub user_timeout: Option<Duration>,
    pub keepalive: Option<crate::config::KeepaliveConfig>,
    pub challenge_ack_limit: u32,
    pub invalid_ratelimit: Duration,
    pub window_scaling: bool,
    pub sack: bool,
    pub timestamps: bool,
    pub send_buffer_max: usize,
    pub recv_buffer_max: usize,
    /// The receive buffer the application fixed (`Endpoint::set_recv_buffer`, Linux's
    /// `SO_RCVBUF` with `SOCK_RCVBUF_LOCK`), if it did.
    pub recv_buffer_locked: Option<usize>,
    /// Charge and size the send buffer per skb, as Linux (`Config::skb_accounting`).
    pub skb_accounting: bool,
    /// A fast retransmit reduces from cwnd, not FlightSize (`Config::fast_recovery_from_cwnd`).
    pub fast_recovery_from_cwnd: bool,
    /// PRR and DupThresh count segments (`Config::recovery_in_packets`).
    pub recovery_in_packets: bool,
    /// An RTT sample from every ACK of new data (`Config::rtt_every_ack`).
    pub rtt_every_ack: bool,
    /// F-RTO after a retransmission timeout (`Config::frto`).
    pub frto: bool,
    /// `TCP_NOTSENT_LOWAT` (`Config::notsent_lowat`, `Endpoint::set_notsent_lowat`).
    pub notsent_lowat: Option<usize>,
    /// `SO_RCVLOWAT` (`Endpoint::set_rcvlowat`): the bytes queued that make the connection
    /// readable; at least 1, Linux's default.
    pub rcvlowat: usize,
    pub pacing: bool,
    pub slow_start_after_idle: bool,
    /// Duplicates are reported in D-SACK blocks (`Config::dsack`).
    pub dsack: bool,
    /// `TCP_DEFER_ACCEPT` of the listener that made this passive open, in SYN-ACK
    /// retransmissions (`SocketOptions::defer_accept`, Linux's `rskq_defer_accept`); 0: off.
    pub defer_accept: u8,
    /// An RST does not end TIME-WAIT (`Config::rfc1337`).
    pub rfc1337: bool,
    pub min_tso_segs: usize,
    pub gso_max_size: usize,
    /// Leave TCP checksums for the device to complete (`Config::tx_checksum_offload`).
    pub tx_checksum_offload: bool,
    /// The window scale we offer: the smallest that lets the largest receive buffer fit
    /// (0 without window scaling).
    pub rcv_wscale: u8,
    /// Whether to ask for ECN in our SYNs and accept it in the peer's (`Config::ecn`).
    pub ecn: crate::config::EcnMode,
}

impl ConnConfig {
    pub fn from_config(c: &Config) -> ConnConfig {
        ConnConfig {
            syn_retries: c.syn_retries,
            synack_retries: c.synack_retries,
            data_retries: c.data_retries,
            orphan_retries: c.orphan_retries,
            initial_syn_rto: c.initial_syn_rto,
            initial_rto: c.initial_rto,
            syn_linear_timeouts: c.syn_linear_timeouts,
            max_rto: c.max_rto,
            delayed_ack: c.delayed_ack,
            time_wait: c.time_wait,
            fin_timeout: c.fin_timeout,
            linger2: None,
            pmtu_expires: c.pmtu_expires,
            // 0 is no user timeout, as Linux's TCP_USER_TIMEOUT 0.
            user_timeout: c.user_timeout.filter(|t| !t.is_zero()),
            keepalive: c.keepalive,
            challenge_ack_limit: c.challenge_ack_limit,
            invalid_ratelimit: c.invalid_ratelimit,
            window_scaling: c.window_scaling,
            sack: c.sack,
            timestamps: c.timestamps,
            send_buffer_max: c.send_buffer_max.max(c.send_buffer),
            recv_buffer_max: c.recv_ceiling(),
            recv_buffer_locked: None,
            skb_accounting: c.skb_accounting,
            fast_recovery_from_cwnd: c.fast_recovery_from_cwnd,
            recovery_in_packets: c.recovery_in_packets,
            rtt_every_ack: c.rtt_every_ack,
            frto: c.frto,
            notsent_lowat: c.notsent_lowat.filter(|&n| n > 0),
            rcvlowat: 1,
            pacing: c.pacing,
            slow_start_after_idle: c.slow_start_after_idle,
            dsack: c.dsack,
            defer_accept: 0,
            rfc1337: c.rfc1337,
            min_tso_segs: c.min_tso_segs.max(1),
            gso_max_size: c.gso_max_size.unwrap_or(0).min(usize::from(u16::MAX)),
            tx_checksum_offload: c.tx_checksum_offload,
            rcv_wscale: if c.window_scaling {
                handshake::window_shift_for(c.recv_ceiling())
            } else {
                0
            },
            ecn: c.ecn,
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd.una)
            .field("snd_nxt", &self.snd.nxt)
            .field("rcv_nxt", &self.rcv.nxt)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Whether the connection is in a synchronized state (RFC 9293 §3.5: past the handshake).
    pub fn is_synchronized(&self) -> bool {
        !matches!(
            self.state,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// The TSval to send now: a 1 ms clock plus the per-connection offset (RFC 7323 §5.4).
    pub fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts.offset)
    }

    /// Move to `state`, logging the transition.
    pub fn set_state(&mut self, state: State) {
        if self.state != state {
            tracing::debug!(local = %self.local, remote = %self.remote, from = ?self.state, to = ?state, "tcp state");
            self.state = state;
            if state == State::Established && self.cfg.skb_accounting {
                // Linux's tcp_init_buffer_space: the buffer fits the initial window.
                self.expand_sndbuf();
            }
        }
    }

    /// Fail the connection with `error` (or close it cleanly with `None`) and move to CLOSED.
    pub fn enter_closed(&mut self, error: Option<Error>) {
        if self.error.is_none() {
            self.error = error;
        }
        self.set_state(State::Closed);
        self.timers.clear_all();
        self.syn_pending = false;
        self.recovery = Recovery::default();
        // What was queued to send can no longer go: it leaves the memory budget now, not
        // when the application lets go of the connection, as Linux's `tcp_reset` purges the
        // write queue (`tcp_write_queue_purge`). A peer could otherwise make us queue a
        // large response, reset, and keep that memory charged for as long as the
        // application holds the socket without touching it.
        self.consume_acked(self.snd.buffer.len());
        self.snd.scoreboard.clear();
        // The record of what was sent goes with it (Linux's `tcp_rtx_queue_purge`): a
        // peer of MSS 48 that resets after a large response leaves thousands of entries,
        // which nothing would otherwise give back while the application holds the socket.
        self.snd.rack.forget_sent();
        self.reclaim();
        self.notify.closed = true;
        self.notify.readable = true;
        self.notify.writable = true;
    }

    /// The current retransmission timeout, backed off.
    pub fn current_rto(&self) -> Duration {
        self.rtt.backed_off(self.backoff)
    }

    /// Whether loss recovery counts segments (`Config::recovery_in_packets`, with SACK).
    pub fn prr_packets(&self) -> bool {
        self.cfg.recovery_in_packets && self.sack_ok
    }

    /// One segment in PRR's unit: 1 when it counts segments, else the MSS in bytes.
    pub fn prr_unit(&self) -> usize {
        if self.prr_packets() {
            1
        } else {
            self.snd.mss
        }
    }

    /// The sequence number below which un-SACKed data counts as lost: RFC 6675's IsLost, or
    /// what a tail loss probe revealed.
    pub fn lost_boundary(&self) -> Option<SeqNumber> {
        // RFC 6675's IsLost (DupThresh SACKed segments above a hole) holds only until the
        // path has been seen to reorder; from then on RACK's reordering window alone calls
        // losses (RFC 8985 §6.2 step 4, as Linux's `tcp_rack_reo_wnd`), or every
        // reordering by more than three segments would be a spurious fast retransmit.
        let by_sack = if self.snd.rack.reordering_seen() {
            None
        } else {
            self.snd.scoreboard.lost_boundary(self.snd.mss)
        };
        match (by_sack, self.recovery.lost_below) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a CLOSED connection still has a segment (an RST) to send.
    pub fn has_pending_output(&self) -> bool {
        self.rst_pending || self.reset_reply.is_some()
    }

    /// Whether it still owes the peer a segment that carries no data: an RST, or an ACK (in
    /// TIME-WAIT, the one for the peer's FIN). Its tuple may not go to a new connection
    /// before that has left.
    pub(crate) fn owes_control(&self) -> bool {
        self.has_pending_output() || self.rcv.ack_now || self.rcv.unacked_segments > 0
    }

    /// Take the pending notifications.
    pub fn take_notify(&mut self) -> Notify {
        std::mem::take(&mut self.notify)
    }

    /// The RFC 9293 state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our address and port.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address and port.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The error the connection failed with, if it did.
    pub fn error(&self) -> Option<Error> {
        self.error
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// Turn Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
        // Linux's TCP_NODELAY pushes what waits at once, past a cork (TCP_NAGLE_PUSH).
        if nodelay {
            self.push_now = true;
        }
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub fn send_queue_len(&self) -> usize {
        self.snd.buffer.len()
    }

    /// What Linux's `SIOCOUTQ` and `SIOCOUTQNSD` report (`tcp_ioctl`): sequence space
    /// written and not yet acknowledged (`write_seq - snd_una`), and written and never sent
    /// (`write_seq - snd_nxt`, with SND.NXT the highest sent, which a retransmission timeout
    /// does not move back in Linux). A queued FIN counts as the byte of sequence space it
    /// takes, as `tcp_send_fin` adds it to `write_seq`, until it is acknowledged (or, for the
    /// second, sent). Both are 0 while the handshake is under way, whatever a Fast Open
    /// connect queued.
    pub fn outq(&self) -> (usize, usize) {
        if matches!(self.state, State::SynSent | State::SynReceived) {
            return (0, 0);
        }
        let fin_unacked = self.snd.fin_queued && !self.snd.fin_acked();
        let fin_unsent = self.snd.fin_queued && self.snd.fin_seq.is_none();
        (
            self.snd.buffer.len() + usize::from(fin_unacked),
            self.notsent() + usize::from(fin_unsent),
        )
    }

    /// Bytes received in order and not yet read.
    pub fn recv_queue_len(&self) -> usize {
        self.rcv.buffer.len()
    }

    /// A passive open still waiting for the final ACK of its handshake.
    pub fn awaits_final_ack(&self) -> bool {
        self.state == State::SynReceived && self.passive
    }

    /// CLOSED with nothing left to send (its RST, if any, is out): the endpoint may free it
    /// once no one holds it.
    pub fn is_closed_and_quiet(&self) -> bool {
        self.state == State::Closed && !self.has_pending_output()
    }
}

#[cfg(test)]
mod tests;
