//! Closing: shutdown (half-close), close, abort and TIME-WAIT (RFC 9293 §3.6, §3.10.4,
//! §3.10.5).

use super::Connection;
use crate::error::Error;
use crate::tcp::State;
use crate::time::Instant;

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
        match self.state {
            State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait => {
                self.rst_pending = true;
            }
            _ => {}
        }
        self.enter_closed(None);
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
}
