//! Congestion control behind a trait, so that more algorithms can be added (after quinn-proto's
//! `congestion` module).
//!
//! The connection owns loss detection and recovery bookkeeping (which segments to resend); a
//! [`Controller`] owns only the congestion window and slow-start threshold and is told about
//! each event that RFC 5681 and RFC 6582 say changes them.

use std::fmt::Debug;
use std::time::Duration;

use crate::seq::SeqNumber;
use crate::time::Instant;

mod cubic;
mod new_reno;

pub use cubic::{Cubic, CubicFactory};
pub use new_reno::{NewReno, NewRenoFactory};

/// A congestion controller for one connection. All sizes are in bytes.
pub trait Controller: Send + Debug {
    /// The congestion window: how many bytes may be in flight.
    fn window(&self) -> usize;

    /// The slow-start threshold.
    fn ssthresh(&self) -> usize;

    /// `bytes_acked` new bytes were cumulatively acknowledged outside fast recovery
    /// (RFC 5681 §3.1: slow start or congestion avoidance). `rtt` is the latest sample, if any.
    fn on_ack(
        &mut self,
        now: Instant,
        bytes_acked: usize,
        bytes_in_flight: usize,
        rtt: Option<Duration>,
    );

    /// The third duplicate ACK, or a loss RACK found: enter fast recovery (RFC 5681 §3.2
    /// step 2), setting ssthresh from `bytes_in_flight`. Through the recovery the connection
    /// sizes what it sends with Proportional Rate Reduction (RFC 6937), with SACK or without
    /// as Linux does, and sets the window when it ends
    /// ([`on_prr_recovery_end`](Self::on_prr_recovery_end)). The window set here is not
    /// in force until then (PRR's is), so a controller may inflate it as RFC 5681 §3.2
    /// step 3 says, or leave it.
    fn on_fast_retransmit(&mut self, now: Instant, bytes_in_flight: usize);

    /// The peer echoed a congestion mark (ECN, RFC 3168 §6.1.2) while the window was
    /// `cwnd`: set ssthresh as a loss would, but leave the window itself, which the
    /// connection brings down to ssthresh through Proportional Rate Reduction and then sets
    /// with [`on_prr_recovery_end`](Self::on_prr_recovery_end) (Linux's `tcp_enter_cwr`,
    /// which asks the controller for ssthresh only). The default reacts as to a fast
    /// retransmit, whose window inflation the connection ignores while it reduces.
    fn on_congestion_signal(&mut self, now: Instant, cwnd: usize) {
        self.on_fast_retransmit(now, cwnd);
    }

    /// A full ACK ends fast recovery (RFC 6582 §3.2 step 3: cwnd = min(ssthresh,
    /// FlightSize + SMSS)).
    fn on_recovery_end(&mut self, bytes_in_flight: usize);

    /// Fast recovery governed by Proportional Rate Reduction ended: cwnd = ssthresh (PRR's
    /// exit rule, RFC 6937 §3, and Linux's `tcp_end_cwnd_reduction`). PRR kept the
    /// pipe close to ssthresh through recovery, so this releases no burst in the usual case.
    /// The default is RFC 6582's full-ACK rule with an unlimited FlightSize, which is the
    /// same: `min(ssthresh, ∞) = ssthresh`.
    fn on_prr_recovery_end(&mut self) {
        self.on_recovery_end(usize::MAX);
    }

    /// A fast recovery ended whose reduction had been undone while the recovery went on
    /// (without SACK, an ACK of exactly the recovery point holds the recovery, and its
    /// timestamps may undo it there): the window is `cwnd`, the one Proportional Rate
    /// Reduction set last, with ssthresh as the undo restored it, as Linux's
    /// `tcp_end_cwnd_reduction` resets cwnd to ssthresh only while the reduction may still
    /// be undone. The default sets it as congestion window validation does, ssthresh
    /// unchanged.
    fn on_undone_recovery_end(&mut self, now: Instant, cwnd: usize) {
        let ssthresh = self.ssthresh();
        self.on_window_validated(now, cwnd, ssthresh);
    }

    /// The last fast retransmit's reduction was for nothing: every segment it resent reached
    /// the peer twice (the duplicates reported by D-SACK, RFC 2883 §4; undone as RFC 3708
    /// §3 allows and Linux's `tcp_undo_cwnd_reduction` does). Restore cwnd and ssthresh to
    /// at least what they were before it (RFC 9438 §4.9 for CUBIC). The default keeps the
    /// reduction.
    fn on_spurious_fast_retransmit(&mut self) {}

    /// The last retransmission timeout was spurious: the ACK after it shows the originals
    /// arrived (RFC 3522's Eifel detection by timestamps, or every retransmission reported
    /// twice by D-SACK; Linux's `tcp_try_undo_loss`). Restore cwnd and ssthresh to at least
    /// what they were before the timeout reduced them, and leave the state a timeout enters.
    /// The default restores as after a spurious fast retransmit.
    fn on_spurious_rto(&mut self) {
        self.on_spurious_fast_retransmit();
    }

    /// An RTT sample taken from an ACK of new data, before that ACK's `on_ack`, with SND.UNA
    /// as the ACK leaves it and SND.NXT (Linux's `pkts_acked` hook): a delay-based slow-start
    /// exit such as CUBIC's HyStart watches the samples of each round trip. The default
    /// ignores it.
    fn on_rtt_sample(&mut self, _now: Instant, _rtt: Duration, _una: SeqNumber, _nxt: SeqNumber) {}

    /// New data leaves with nothing in flight, the last data having left at `last_sent`
    /// (Linux's `CA_EVENT_TX_START`, from `tcp_event_data_sent`): the flow was idle, or held
    /// back by the application, in between. A controller whose growth follows the time since
    /// its epoch began moves that start past the pause. The default ignores it.
    fn on_transmit_start(&mut self, _now: Instant, _last_sent: Instant) {}

    /// The retransmission timer expired: the loss window of one SMSS (RFC 5681 §3.1), and
    /// ssthresh reduced from `window`, the bytes the connection hands over for it: the
    /// congestion window, as Linux's `tcp_enter_loss` takes it (`ca_ops->ssthresh` from
    /// `snd_cwnd`). `None` when ssthresh was already reduced in this window of data (the
    /// timeout came during fast recovery or a CWR episode, or repeats the last with nothing
    /// new acknowledged between): as in `tcp_enter_loss` ("Reduce ssthresh if it has not yet
    /// been made inside this window"), it is kept, rather than halved again from a
    /// FlightSize that the recovery has already cut. Only the connection sees every ACK, so
    /// it, not the controller, tells a repeated timeout from a new one.
    fn on_rto(&mut self, now: Instant, window: Option<usize>);

    /// The sender's MSS changed (after the handshake, or on PMTU news).
    fn set_mss(&mut self, mss: usize);

    /// Grow the window in congestion avoidance as Linux does, in whole segments and at
    /// Linux's pace, rather than by the RFC's per-ACK rule
    /// ([`Config::linux_cwnd_growth`](crate::Config::linux_cwnd_growth), set once when
    /// the connection starts). CUBIC models Linux's `bictcp_update` and
    /// `tcp_cong_avoid_ai`; the default ignores it (NewReno's byte counting grows as Linux's
    /// `tcp_reno_cong_avoid` does for full-sized segments).
    fn set_linux_growth(&mut self, _on: bool) {}

    /// Congestion window validation: the connection did not use its window, and shrinks it
    /// to `cwnd` with ssthresh raised to `ssthresh`, both computed by the connection: RFC 5681 §4.1's restart after an idle period and
    /// RFC 2861's application-limited reduction, which Linux applies to `snd_cwnd` and
    /// `snd_ssthresh` behind the algorithm's back (`tcp_cwnd_restart`,
    /// `tcp_cwnd_application_limited`). Only called with
    /// [`Config::slow_start_after_idle`](crate::Config::slow_start_after_idle) on, and by
    /// the default [`on_undone_recovery_end`](Self::on_undone_recovery_end).
    fn on_window_validated(&mut self, now: Instant, cwnd: usize, ssthresh: usize);
}

/// Builds a [`Controller`] for each new connection.
pub trait ControllerFactory: Send + Sync + Debug {
    /// A controller for a connection whose sender MSS is `mss`.
    fn build(&self, now: Instant, mss: usize) -> Box<dyn Controller>;
}

// The window arithmetic that NewReno and CUBIC share: slow start's initial window and the
// fast-recovery rules the connection's recovery logic relies on (RFC 5681 §3, RFC 6582 §3.2).

/// RFC 6928 §2 raises the initial window to "min (10*MSS, max (2*MSS, 14600))"; like Linux
/// (`TCP_INIT_CWND`) we use a flat ten segments, which is the same for any MSS up to 1460.
pub(crate) const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// The initial congestion window for an MSS.
pub(crate) fn initial_window(mss: usize) -> usize {
    mss.saturating_mul(INITIAL_WINDOW_SEGMENTS)
}

/// RFC 5681 §3.2 step 3: "set cwnd to ssthresh plus 3*SMSS. This artificially 'inflates' the
/// congestion window by the number of segments (three) that have left the network and which
/// the receiver has buffered."
pub(crate) fn inflated_window(ssthresh: usize, mss: usize) -> usize {
    ssthresh.saturating_add(mss.saturating_mul(3))
}

/// RFC 6582 §3.2 step 3, a full ACK, option (1): "Set cwnd to min (ssthresh, max (FlightSize,
/// SMSS) + SMSS)". Unlike option (2), cwnd = ssthresh, this cannot release a burst when little
/// data is outstanding as recovery ends.
pub(crate) fn full_ack_window(ssthresh: usize, bytes_in_flight: usize, mss: usize) -> usize {
    ssthresh.min(bytes_in_flight.max(mss).saturating_add(mss))
}

/// Linux's `tcp_current_ssthresh` outside a window reduction: ssthresh, or three quarters
/// of cwnd if that is more, so that a window given up for lack of use is regained in slow
/// start, up to about where it was (RFC 5681 §4.1 keeps ssthresh; RFC 2861 §3 and Linux
/// raise it).
fn current_ssthresh(cwnd: usize, ssthresh: usize) -> usize {
    ssthresh.max((cwnd >> 1) + (cwnd >> 2))
}

/// Slow start after idle (RFC 5681 §4.1, as Linux's `tcp_cwnd_restart`): after `idle`
/// without sending, longer than one `rto`, cwnd is halved once for every full RTO of the
/// idle time but never below the restart window RW = min(initial window, cwnd), which is
/// where it lands after a long pause. Returns the new cwnd and ssthresh.
pub(crate) fn restart_window(
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    idle: Duration,
    rto: Duration,
) -> (usize, usize) {
    let restart = initial_window(mss).min(cwnd);
    let rto = rto.max(Duration::from_micros(1));
    let mut left = idle.saturating_sub(rto);
    let mut new = cwnd;
    while !left.is_zero() && new > restart {
        new >>= 1;
        left = left.saturating_sub(rto);
    }
    (new.max(restart), current_ssthresh(cwnd, ssthresh))
}

/// RFC 2861 §3's application-limited reduction, as Linux's `tcp_cwnd_application_limited`:
/// a window the sender did not fill for a whole RTO, the most in flight having been `used`
/// bytes, moves half way down to what was used (never below the initial window), and
/// ssthresh keeps three quarters of the old window. `None` when there is nothing to take
/// back.
pub(crate) fn application_limited_window(
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    used: usize,
) -> Option<(usize, usize)> {
    let used = used.max(initial_window(mss));
    if used >= cwnd {
        return None;
    }
    Some(((cwnd + used) / 2, current_ssthresh(cwnd, ssthresh)))
}

/// One ACK's worth of slow start, stopping at ssthresh: cwnd grows by every byte the ACK
/// newly delivered, as Linux's `tcp_slow_start` grows it by every segment (cwnd is the lesser
/// of cwnd plus what was acked, and ssthresh). That is RFC 3465's byte counting without its
/// cap of L = 2*SMSS per ACK, which Linux does not apply: with delayed ACKs the two agree,
/// and a stretch ACK (GRO, a lost ACK) does not slow the doubling down. Growth happens only
/// while the window limits the flow (the connection checks, as `tcp_is_cwnd_limited`).
/// Returns the new cwnd and the bytes left over past ssthresh, which count towards
/// congestion avoidance, so that crossing ssthresh mid-ACK is neither too fast nor too slow.
pub(crate) fn slow_start(cwnd: usize, ssthresh: usize, bytes_acked: usize) -> (usize, usize) {
    let limit = bytes_acked;
    let room = ssthresh.saturating_sub(cwnd);
    if limit < room {
        (cwnd + limit, 0)
    } else {
        (ssthresh.max(cwnd), bytes_acked - room.min(bytes_acked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const RTO: Duration = Duration::from_millis(300);

    #[test]
    fn restart_window_halves_per_rto_down_to_the_initial_window() {
        let ms = Duration::from_millis;
        // One RTO and a bit: one halving (Linux's loop subtracts the RTO before it halves).
        assert_eq!(
            restart_window(40 * MSS, usize::MAX, MSS, ms(301), RTO).0,
            20 * MSS
        );
        // Long idle: the restart window, min(IW, cwnd).
        assert_eq!(
            restart_window(40 * MSS, usize::MAX, MSS, ms(5000), RTO).0,
            10 * MSS
        );
        assert_eq!(
            restart_window(36 * MSS, usize::MAX, MSS, ms(2000), RTO).0,
            10 * MSS
        );
        // A window already below the initial window stays where it is.
        assert_eq!(
            restart_window(4 * MSS, usize::MAX, MSS, ms(5000), RTO).0,
            4 * MSS
        );
        // ssthresh rises to three quarters of the old window, never falls.
        assert_eq!(
            restart_window(40 * MSS, 20 * MSS, MSS, ms(5000), RTO).1,
            30 * MSS
        );
        assert_eq!(
            restart_window(40 * MSS, 50 * MSS, MSS, ms(5000), RTO).1,
            50 * MSS
        );
    }

    #[test]
    fn application_limited_window_moves_half_way_to_what_was_used() {
        assert_eq!(
            application_limited_window(40 * MSS, usize::MAX, MSS, 20 * MSS),
            Some((30 * MSS, usize::MAX))
        );
        // What was used counts as at least the initial window.
        assert_eq!(
            application_limited_window(40 * MSS, 16 * MSS, MSS, 3 * MSS),
            Some((25 * MSS, 30 * MSS))
        );
        // Nothing to take back from a window that was used, or is the initial one.
        assert_eq!(application_limited_window(10 * MSS, 16 * MSS, MSS, 0), None);
        assert_eq!(
            application_limited_window(30 * MSS, 16 * MSS, MSS, 30 * MSS),
            None
        );
    }
}
