//! Closing: shutdown (half-close), close, abort and TIME-WAIT (RFC 9293 §3.6, §3.10.4,
//! §3.10.5).

use std::net::SocketAddr;

use super::Connection;
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr, TcpTimestamp};

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
    /// ([`Connection::flow_rehash`], wrapping): its ACKs go on in the flow's last label, as
    /// Linux's TIME-WAIT sock keeps `tw_txhash`.
    pub flow_rehash: u16,
    /// When the entry expires (2 MSL after it was entered or last restarted).
    pub expires: Instant,
    /// When it last answered a segment that occupies no sequence space, in milliseconds
    /// (`Instant::total_millis`, wrapping): the rate limit's memory (Linux
    /// `tw_last_oow_ack_time`).
    pub last_oow_ack: Option<u32>,
}

/// The timestamp state a TIME-WAIT entry keeps (RFC 7323 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeWaitTimestamps {
    /// TS.Recent: the peer's last TSval, echoed and compared with a new SYN's.
    pub recent: u32,
    /// Our timestamp offset, so that our TSvals go on from the connection's.
    pub offset: u32,
}

impl TimeWaitEntry {
    /// RFC 6191: whether a SYN for this tuple starts a new incarnation.
    pub fn is_new_incarnation(&self, syn: &TcpRepr<'_>) -> bool {
        beyond_old_incarnation(self.ts.map(|ts| ts.recent), self.rcv_nxt, syn)
    }

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

/// RFC 9293 §3.6.1 / RFC 6191: a new SYN may reuse a 4-tuple in TIME-WAIT if its timestamp,
/// or failing that its sequence number, is beyond the old connection's. `ts_recent` is the
/// old connection's TS.Recent when it used timestamps.
fn beyond_old_incarnation(ts_recent: Option<u32>, rcv_nxt: SeqNumber, syn: &TcpRepr<'_>) -> bool {
    match (ts_recent, syn.timestamp) {
        (Some(recent), Some(ts)) => (ts.tsval.wrapping_sub(recent) as i32) > 0,
        _ => syn.seq_number > rcv_nxt,
    }
}

impl Connection {
    /// Queue our FIN (RFC 9293 §3.10.4 CLOSE, for the send direction only). Reading goes on.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::NotConnected),
            // "SYN-SENT STATE: Delete the TCB" would lose the connection; like Linux we keep it
            // and send the FIN once established.
            State::SynSent | State::SynReceived => {
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

    /// A FIN queued before the handshake finished takes effect now.
    pub(super) fn apply_queued_fin(&mut self) {
        if self.snd.fin_queued && self.state == State::Established {
            self.set_state(State::FinWait1);
        }
    }

    /// The application released the connection. If it left data unread, the connection is
    /// reset (RFC 2525 §2.17, as Linux does); otherwise it closes gracefully in the background.
    pub fn close(&mut self, now: Instant) {
        self.app_closed = true;
        match self.state {
            State::Closed | State::TimeWait | State::Listen => {}
            State::SynSent => self.enter_closed(None),
            _ if !self.rcv.buffer.is_empty() => self.abort(),
            _ => {
                let _ = self.shutdown();
                if self.state == State::FinWait2 {
                    self.timers.fin_wait2 = Some(now + self.cfg.fin_timeout);
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

    /// Reset the connection (RFC 9293 §3.10.5 ABORT): an RST goes out if the peer knows of us.
    pub fn abort(&mut self) {
        if self.state.resets_on_abort() {
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

    /// Both FINs are acknowledged: wait 2 MSL (RFC 9293 §3.6).
    pub(super) fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        let keep = self.timers.time_wait;
        self.timers.clear_all();
        self.timers.time_wait = keep.or(Some(now + self.cfg.time_wait));
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
            }),
            window: window.min(u16::MAX as usize) as u16,
            flow_rehash: self.flow_rehash() as u16,
            expires: self.timers.time_wait.unwrap_or(Instant::ZERO),
            last_oow_ack: None,
        }
    }

    /// RFC 6191: whether a SYN for this connection's tuple, which is in TIME-WAIT, starts a
    /// new incarnation.
    pub(crate) fn is_new_incarnation(&self, syn: &TcpRepr<'_>) -> bool {
        let recent = self.ts.enabled.then_some(self.ts.recent);
        beyond_old_incarnation(recent, self.rcv.nxt, syn)
    }
}
