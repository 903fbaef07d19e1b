//! Closing: shutdown (half-close), close, abort and TIME-WAIT (RFC 9293 §3.6, §3.10.4,
//! §3.10.5).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Connection, PAWS_WRAP};
use crate::endpoint::PortSharing;
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr, TcpTimestamp};

/// How a connection, and then its TIME-WAIT entry, uses its local port, as Linux's bind
/// bucket records it: with SO_REUSEADDR or not (`sk_reuse`: a socket that sets it too may
/// bind the port meanwhile), and whether the port came from a bind (`bind(2)`, or the
/// listener whose bucket an accepted connection joins: `fastreuse >= 0`) or from an
/// ephemeral connect's search (`fastreuse` -1), whose ports other ephemeral connects may
/// share and whose bound ones they skip (`__inet_hash_connect`); and with SO_REUSEPORT or
/// not, which an accepted connection takes from its listener (`sk_reuseport`). One byte, so
/// that the TIME-WAIT entry stays small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PortClaim(u8);

impl PortClaim {
    const REUSE: u8 = 1;
    const BOUND: u8 = 2;
    const REUSE_PORT: u8 = 4;

    /// A claim with SO_REUSEADDR if `reuse`, on a port a bind gave if `bound`.
    pub(crate) const fn new(reuse: bool, bound: bool) -> PortClaim {
        PortClaim((reuse as u8 * Self::REUSE) | (bound as u8 * Self::BOUND))
    }

    /// The same claim, with SO_REUSEPORT if `on`.
    pub(crate) const fn with_reuse_port(self, on: bool) -> PortClaim {
        PortClaim((self.0 & !Self::REUSE_PORT) | (on as u8 * Self::REUSE_PORT))
    }

    /// With SO_REUSEADDR.
    pub(crate) const fn reuse(self) -> bool {
        self.0 & Self::REUSE != 0
    }

    /// How it lets other sockets share the port: SO_REUSEADDR, SO_REUSEPORT.
    pub(crate) const fn sharing(self) -> PortSharing {
        PortSharing {
            reuse_address: self.reuse(),
            reuse_port: self.0 & Self::REUSE_PORT != 0,
        }
    }

    /// On a port a bind gave, which no ephemeral connect takes.
    pub(crate) const fn bound(self) -> bool {
        self.0 & Self::BOUND != 0
    }
}

/// What a connection in TIME-WAIT still needs once the application released it, kept by the
/// endpoint's compact TIME-WAIT table in place of the whole connection (after Linux's
/// `inet_timewait_sock`): enough to answer a retransmitted FIN, to recognise old duplicates
/// and to judge a new SYN for the same 4-tuple (RFC 6191).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeWaitEntry {
    /// Our next sequence number (our FIN is acknowledged: SND.NXT = SND.UNA).
    pub snd_nxt: SeqNumber,
    /// The peer's next sequence number (past its FIN).
    pub rcv_nxt: SeqNumber,
    /// The timestamps in use, if any.
    pub ts: Option<TimeWaitTimestamps>,
    /// The window field of our last segment, repeated in our ACKs.
    pub window: u16,
    /// How many times the connection moved to a new IPv6 flow label
    /// ([`Connection::flow_rehash`]), so that its ACKs go on in the flow's last label, as
    /// Linux's TIME-WAIT sock keeps `tw_txhash`. It wraps at 256: a long-lived connection
    /// that moved more often over its life (on timeouts, and on duplicates the peer sent
    /// under a new label) leaves ACKs in another label, which at most sends them on another
    /// path.
    pub flow_rehash: u8,
    /// The connection's claim on its port ([`PortClaim`]), as Linux's TIME-WAIT sock keeps
    /// `tw_reuse` and stays in its bind bucket.
    pub port_claim: PortClaim,
    /// When the entry expires (2 MSL after it was entered or last restarted).
    pub expires: Instant,
    /// When it last answered a segment that occupies no sequence space, in milliseconds
    /// (`Instant::total_millis`, wrapping; 0 for never, a 0 of the clock kept as 1): the rate
    /// limit's memory (Linux `tw_last_oow_ack_time`). Not an `Option`, to keep the entry in
    /// 40 bytes.
    pub last_oow_ack: u32,
}

/// The timestamp state a TIME-WAIT entry keeps (RFC 7323 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeWaitTimestamps {
    /// TS.Recent: the peer's last TSval, echoed and compared with a new SYN's.
    pub recent: u32,
    /// Our timestamp offset, so that our TSvals go on from the connection's.
    pub offset: u32,
    /// When TS.Recent was set, in whole seconds of the clock (`Instant::total_secs`,
    /// wrapping), as Linux's `tw_ts_recent_stamp`: PAWS lets an RST pass once it is 60 s
    /// old, and anything once it is [`PAWS_WRAP`] old (`TsRecent::age`).
    pub recent_stamp: u32,
}

impl TimeWaitTimestamps {
    /// TS.Recent and its age at `now`. A `now` before the stamp (a caller's clock that
    /// stepped back) gives an age of nothing, not of 136 years: PAWS stays on, as for a
    /// connection still held (`Instant`'s subtraction saturates too).
    pub fn recent_at(&self, now: Instant) -> TsRecent {
        let age = u32::try_from(now.total_secs())
            .unwrap_or(u32::MAX)
            .saturating_sub(self.recent_stamp);
        TsRecent {
            value: self.recent,
            age: Duration::from_secs(u64::from(age)),
        }
    }
}

/// TS.Recent as PAWS judges a segment by it (RFC 7323 §5.3, §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TsRecent {
    /// The peer's last TSval in sequence.
    pub value: u32,
    /// How long ago it was set.
    pub age: Duration,
}

/// Linux's `TCP_PAWS_MSL`: an RST is exempt from PAWS once TS.Recent is this old ("RST
/// segments are not recommended to carry timestamp, and, if they do, it is recommended to
/// ignore PAWS because it is sure that a packet is not a duplicate").
const PAWS_MSL: Duration = Duration::from_secs(60);

impl TimeWaitEntry {
    /// The ACK that restates where the old connection stood (RFC 9293 §3.10.7.4, TIME-WAIT:
    /// the answer to a retransmitted FIN, an old duplicate or data).
    pub fn ack(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> TcpRepr<'static> {
        let mut ack = TcpRepr::new(
            local.port(),
            remote.port(),
            TcpFlags::ACK,
            self.snd_nxt,
            self.rcv_nxt,
        );
        ack.window_len = self.window;
        if let Some(ts) = self.ts {
            ack.timestamp = Some(TcpTimestamp {
                tsval: (now.total_millis() as u32).wrapping_add(ts.offset),
                tsecr: ts.recent,
            });
        }
        ack
    }
}

/// What TIME-WAIT makes of a segment ([`time_wait_input`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeWaitInput {
    /// An RST at RCV.NXT: TIME-WAIT ends now (Linux's default, `tcp_rfc1337` = 0).
    Reset,
    /// The same with [`Config::rfc1337`](crate::Config::rfc1337) on: dropped without an
    /// answer and without a restart of the 2 MSL, its TSval taken as TS.Recent
    /// (`tcp_timewait_state_process`).
    IgnoredReset,
    /// Any other RST, or one failing PAWS: dropped without an answer. RFC 5961's challenge
    /// ACK answers an RST inside a window; TIME-WAIT has none left, and Linux sends nothing.
    StrayReset { paws: bool },
    /// A bare ACK at RCV.NXT (the other end's own TIME-WAIT answering a duplicate, say): no
    /// answer, which would start an endless exchange of ACKs between two TIME-WAITs. The
    /// 2 MSL restarts, and its TSval becomes TS.Recent.
    InSequence,
    /// A SYN that may start a new incarnation of the tuple (RFC 6191): its sequence number
    /// beyond RCV.NXT or its TSval beyond TS.Recent, and not failing PAWS. Where nothing
    /// takes it (no listener, no interception), it is answered as [`Answer`](Self::Answer)
    /// without a restart.
    NewIncarnation,
    /// Anything else: a retransmitted FIN, an old duplicate, data, an old SYN, a segment
    /// failing PAWS. Answered with an ACK restating where we stand ("The only thing that
    /// can arrive in this state is a retransmission of the remote FIN. Acknowledge it, and
    /// restart the 2 MSL timeout"); rate-limited unless it occupies sequence space other
    /// than a SYN (Linux's `tcp_timewait_check_oow_rate_limit`). TS.Recent stays.
    Answer {
        /// The 2 MSL restarts: the segment carries an ACK or fails PAWS. An ACK-less SYN
        /// may be a new connection's whose ISN lies below RCV.NXT, and does not prolong
        /// the old one.
        restart: bool,
        /// It failed PAWS (counted as such).
        paws: bool,
    },
}

/// PAWS (RFC 7323 §5) as Linux's `tcp_paws_reject` judges it for TIME-WAIT and for a passive
/// open's half-open connection (its request socket, `tcp_check_req`): a TSval behind
/// TS.Recent by any tick (no slack, `tcp_paws_check(rx_opt, 0)`, where an established
/// connection allows one), unless TS.Recent is 0, which some stacks put in their SYNs, or
/// [`PAWS_WRAP`] old. An RST fails it too, unless TS.Recent is 60 s old (`TCP_PAWS_MSL`).
/// `ts_recent` is TS.Recent when the connection uses timestamps; a segment without a
/// Timestamps option, or a connection without them, never fails it.
pub(super) fn paws_reject(ts_recent: Option<TsRecent>, seg: &TcpRepr<'_>) -> bool {
    let (Some(recent), Some(ts)) = (ts_recent, seg.timestamp) else {
        return false;
    };
    let rst = seg.flags.contains(TcpFlags::RST);
    let behind = recent.value.wrapping_sub(ts.tsval) as i32;
    behind > 0 && recent.value != 0 && recent.age < PAWS_WRAP && !(rst && recent.age >= PAWS_MSL)
}

/// TIME-WAIT's rules for a segment (RFC 9293 §3.10.7.4's TIME-WAIT rows, RFC 7323 §5's PAWS
/// and RFC 6191), as Linux's `tcp_timewait_state_process` applies them. One rule for both
/// forms TIME-WAIT takes here, the compact entry of a released connection and a connection
/// the application still holds, as Linux hands every socket reaching TIME-WAIT to one kind
/// of TIME-WAIT sock. `ts_recent` is TS.Recent when the connection used timestamps.
pub(crate) fn time_wait_input(
    rcv_nxt: SeqNumber,
    ts_recent: Option<TsRecent>,
    seg: &TcpRepr<'_>,
    rfc1337: bool,
) -> TimeWaitInput {
    let flags = seg.flags;
    let rst = flags.contains(TcpFlags::RST);
    // How far the TSval lies behind TS.Recent (negative: ahead), in RFC 7323's modular
    // order.
    let behind = match (ts_recent, seg.timestamp) {
        (Some(recent), Some(ts)) => Some(recent.value.wrapping_sub(ts.tsval) as i32),
        _ => None,
    };
    let paws = paws_reject(ts_recent, seg);
    if !paws && seg.seq_number == rcv_nxt && (seg.seq_len() == 0 || rst) {
        return if rst && rfc1337 {
            TimeWaitInput::IgnoredReset
        } else if rst {
            TimeWaitInput::Reset
        } else {
            TimeWaitInput::InSequence
        };
    }
    if flags.contains(TcpFlags::SYN)
        && !rst
        && !flags.contains(TcpFlags::ACK)
        && !paws
        && (seg.seq_number > rcv_nxt || behind.is_some_and(|b| b < 0))
    {
        return TimeWaitInput::NewIncarnation;
    }
    if rst {
        return TimeWaitInput::StrayReset { paws };
    }
    TimeWaitInput::Answer {
        restart: paws || flags.contains(TcpFlags::ACK),
        paws,
    }
}

impl Connection {
    /// Queue our FIN (RFC 9293 §3.10.4 CLOSE, for the send direction only). Reading goes on.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::NotConnected),
            // RFC 9293 §3.10.4, "SYN-SENT STATE: Delete the TCB". Linux's `inet_shutdown`
            // disconnects a connecting socket (`tcp_disconnect`): no RST, since the peer has
            // agreed to nothing, and the connect fails with ECONNRESET, the error a later
            // read, write or SO_ERROR reports once. A late SYN-ACK then finds no connection
            // and is answered with an RST.
            State::SynSent => {
                self.enter_closed(Some(Error::ConnectionReset));
                Ok(())
            }
            // The FIN is queued and goes once the handshake completes (RFC 9293 §3.10.4 lets
            // SYN-RECEIVED queue it "for processing after entering ESTABLISHED state").
            State::SynReceived => {
                self.snd.fin_queued = true;
                Ok(())
            }
            State::Established => {
                self.snd.fin_queued = true;
                self.set_state(State::FinWait1);
                Ok(())
            }
            State::CloseWait => {
                self.snd.fin_queued = true;
                self.set_state(State::LastAck);
                Ok(())
            }
            // Already closing: shutdown is idempotent.
            _ => Ok(()),
        }
    }

    /// Shut the reading side (`shutdown(SHUT_RD)`): what is queued can still be read, then
    /// reads end the stream; data still comes in and is acknowledged in ESTABLISHED (Linux
    /// queues it), but new data after our FIN is answered with a reset (see `input`). In
    /// SYN-SENT the connect is abandoned, as for a shutdown of the writing side.
    pub fn shutdown_read(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::NotConnected),
            // Linux's `inet_shutdown` disconnects a connecting socket whatever `how`.
            State::SynSent => self.shutdown(),
            _ => {
                self.read_shut = true;
                // Readers blocked for data now find the end of the stream.
                self.notify.readable = true;
                Ok(())
            }
        }
    }

    /// A FIN queued before the handshake finished takes effect now.
    pub(super) fn apply_queued_fin(&mut self) {
        if self.snd.fin_queued && self.state == State::Established {
            self.set_state(State::FinWait1);
        }
    }

    /// The application released the connection. If it left data unread, the connection is
    /// reset (RFC 2525 §2.17, as Linux's `tcp_close` does, the send queue discarded);
    /// otherwise it closes gracefully in the background.
    ///
    /// Before that RST, what the application wrote goes out as far as the peer's and the
    /// congestion windows let it go now, and the FIN a `shutdown` queued with it, as they
    /// would have from inside Linux's `write` and `shutdown` (`tcp_send_fin`), which send at
    /// once what the windows allow: here both only queue, for the driver to send, and a
    /// server that writes an early answer (a 413, a 405), shuts down (as hyper does at the
    /// end of every connection) and drops the connection with the request still unread
    /// would otherwise reset it with the answer unsent.
    pub fn close(&mut self, now: Instant) {
        self.app_closed = true;
        match self.state {
            State::Closed | State::TimeWait | State::Listen => {}
            State::SynSent => self.enter_closed(None),
            State::Established
            | State::CloseWait
            | State::FinWait1
            | State::Closing
            | State::LastAck
                if !self.rcv.buffer.is_empty() && (self.notsent() > 0 || self.fin_unsent()) =>
            {
                self.reset_after_flush = true;
            }
            _ if !self.rcv.buffer.is_empty() => self.reset_unread(),
            _ => {
                let _ = self.shutdown();
                if self.state == State::FinWait2 {
                    if self.cfg.linger2 == Some(crate::options::Linger2::Abort) {
                        // A negative TCP_LINGER2 (Linux's `__tcp_close`): reset at once.
                        self.rst_pending = true;
                        self.enter_closed(None);
                        return;
                    }
                    // Closed in FIN-WAIT-2 (a shutdown's FIN already acknowledged): Linux's
                    // `tcp_close` hands it at once to a TIME-WAIT sock in its FIN_WAIT2
                    // substate, as `process_ack` does for one reaching FIN-WAIT-2 after the
                    // close.
                    self.linger_in_fin_wait_2(now, true);
                }
            }
        }
    }

    /// Whether the connection still has something to deliver: it has not sent its FIN, or
    /// the peer has not acknowledged everything up to it (see
    /// `Endpoint::unfinished_count`).
    pub fn is_unfinished(&self) -> bool {
        !matches!(
            self.state,
            State::Closed | State::Listen | State::FinWait2 | State::TimeWait
        )
    }

    /// Whether the connection can end as Linux ends a process's socket at exit, with nothing
    /// lost: everything it sent acknowledged, nothing waiting to be sent but a FIN, nothing
    /// unread (see `Endpoint::end_unfinished`). Then its FIN is all the peer still needs, and
    /// it needs no retransmission of ours to get the rest.
    pub fn can_end_cleanly(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        ) && self.snd.buffer.is_empty()
            && self.rcv.buffer.is_empty()
    }

    /// Whether a `shutdown` queued a FIN that has not been sent yet.
    fn fin_unsent(&self) -> bool {
        self.snd.fin_queued && self.snd.fin_seq.is_none()
    }

    /// Reset the connection (RFC 9293 §3.10.5 ABORT): an RST goes out if the peer knows of us,
    /// as Linux's `tcp_disconnect` (SO_LINGER 0) decides: in the states of
    /// [`State::resets_on_abort`], and in CLOSING and LAST-ACK too while data or the FIN is
    /// still unsent, which the peer would otherwise wait on for ever.
    ///
    /// TIME-WAIT is left as it is: the connection is over, and what it holds is the 2MSL
    /// wait the peer's retransmitted FIN still needs an ACK from. Linux handed it to a
    /// TIME-WAIT sock on entering the state (`tcp_time_wait`), so an abort of the socket
    /// the application still holds (SO_LINGER 0, or a connect to `AF_UNSPEC`) finds that
    /// socket closed already and ends no TIME-WAIT; it only releases the handle.
    pub fn abort(&mut self) {
        if self.state == State::TimeWait {
            return;
        }
        self.reset_after_flush = false;
        let unsent = self.notsent() > 0 || self.fin_unsent();
        if self.state.resets_on_abort()
            || unsent && matches!(self.state, State::Closing | State::LastAck)
        {
            self.rst_pending = true;
        }
        self.enter_closed(None);
    }

    /// Reset the connection the application closed with data unread (RFC 2525 §2.17): unlike
    /// [`abort`](Self::abort), in every state the peer knows of, CLOSING and LAST-ACK
    /// included, as Linux's `__tcp_close` sends its RST whatever the state but CLOSE. A peer
    /// whose request was never read learns so, even after our FIN.
    pub(super) fn reset_unread(&mut self) {
        self.reset_after_flush = false;
        if !matches!(
            self.state,
            State::Closed | State::Listen | State::SynSent | State::TimeWait
        ) {
            self.rst_pending = true;
        }
        self.enter_closed(None);
    }

    /// Reset the connection as the endpoint gives up on it (a shutdown out of time): as
    /// [`abort`](Self::abort), and the application learns `error` unless the connection had
    /// already failed otherwise.
    pub fn abort_with(&mut self, error: Error) {
        self.abort();
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// How long an orphan waits in FIN-WAIT-2 (Linux's `tcp_fin_time`): `TCP_LINGER2`'s
    /// time, or `Config::fin_timeout`, and never less than 3.5 RTOs.
    pub(super) fn fin_time(&self) -> Duration {
        let base = match self.cfg.linger2 {
            Some(crate::options::Linger2::Timeout(t)) => t,
            _ => self.cfg.fin_timeout,
        };
        let rto = self.current_rto();
        base.max(rto * 4 - rto / 2)
    }

    /// An orphan in FIN-WAIT-2 waits for the peer's FIN, as Linux's does: for
    /// [`fin_time`](Self::fin_time) as a TIME-WAIT sock in its FIN_WAIT2 substate (a
    /// control socket, `handle_orphan_fin_wait_2`) if that is no longer than TIME-WAIT and
    /// `to_control_socket` (not when the segment that brought us here carries the peer's
    /// FIN: Linux keeps the socket to take it); past TIME-WAIT's length, the connection
    /// itself waits the excess, then such a sock the excess again (`tcp_keepalive_timer`
    /// hands over `tcp_fin_time() - TCP_TIMEWAIT_LEN`): twice the excess in all.
    pub(super) fn linger_in_fin_wait_2(&mut self, now: Instant, to_control_socket: bool) {
        let (tmo, tw) = (self.fin_time(), self.cfg.time_wait);
        if tmo > tw {
            self.timers.fin_wait2 = Some(now + (tmo - tw));
        } else {
            self.timers.fin_wait2 = Some(now + tmo);
            if to_control_socket {
                self.become_fin_wait_2_sock();
            }
        }
    }

    /// The connection's answers from here on are those of Linux's TIME-WAIT sock in its
    /// FIN_WAIT2 substate (`handle_orphan_fin_wait_2`), with no memory of answers sent
    /// (`tw_last_oow_ack_time`).
    pub(super) fn become_fin_wait_2_sock(&mut self) {
        self.control_socket = true;
        self.last_invalid_ack = None;
    }

    /// Both FINs are acknowledged: wait 2 MSL (RFC 9293 §3.6).
    pub(super) fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        let keep = self.timers.time_wait;
        self.timers.clear_all();
        self.timers.time_wait = keep.or(Some(now + self.cfg.time_wait));
        // Linux's TIME-WAIT sock starts with no memory of answers sent
        // (`tw_last_oow_ack_time`), as a compact entry does.
        self.last_invalid_ack = None;
        // With no ACK owed for the segment that brought us here (the ACK of our FIN in
        // CLOSING), everything from now on is TIME-WAIT's answer.
        if !self.rcv.ack_now {
            self.control_socket = true;
        }
        self.notify.closed = true;
        self.notify.readable = true;
        self.notify.writable = true;
    }

    /// What the compact TIME-WAIT table keeps of this connection, which is in TIME-WAIT.
    pub(crate) fn time_wait_snapshot(&self) -> TimeWaitEntry {
        let window = (self.rcv.adv - self.rcv.nxt) >> self.rcv.wscale;
        TimeWaitEntry {
            snd_nxt: self.snd.max,
            rcv_nxt: self.rcv.nxt,
            ts: self.ts.enabled.then_some(TimeWaitTimestamps {
                recent: self.ts.recent,
                offset: self.ts.offset,
                recent_stamp: self.ts.recent_age.total_secs() as u32,
            }),
            window: window.min(u16::MAX as usize) as u16,
            flow_rehash: self.flow_rehash() as u8,
            port_claim: self.port_claim,
            expires: self.timers.time_wait.unwrap_or(Instant::ZERO),
            last_oow_ack: 0,
        }
    }

    /// TS.Recent and its age at `now`, when the connection uses timestamps.
    pub(crate) fn ts_recent_at(&self, now: Instant) -> Option<TsRecent> {
        self.ts.enabled.then(|| TsRecent {
            value: self.ts.recent,
            age: now - self.ts.recent_age,
        })
    }

    /// RFC 6191: whether a SYN for this connection's tuple, which is in TIME-WAIT, starts a
    /// new incarnation.
    pub(crate) fn is_new_incarnation(&self, now: Instant, syn: &TcpRepr<'_>) -> bool {
        let recent = self.ts_recent_at(now);
        time_wait_input(self.rcv.nxt, recent, syn, self.cfg.rfc1337)
            == TimeWaitInput::NewIncarnation
    }
}
