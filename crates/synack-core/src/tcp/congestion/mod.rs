//! Congestion control behind a trait, so that more algorithms can be added (after quinn-proto's
//! `congestion` module).
//!
//! The connection owns loss detection and recovery bookkeeping (which segments to resend); a
//! [`Controller`] owns only the congestion window and slow-start threshold and is told about
//! each event that RFC 5681 and RFC 6582 say changes them.

use std::fmt::Debug;
use std::time::Duration;

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

    /// The third duplicate ACK: enter fast recovery (RFC 5681 §3.2 steps 2 and 3).
    fn on_fast_retransmit(&mut self, now: Instant, bytes_in_flight: usize);

    /// Another duplicate ACK during fast recovery (RFC 5681 §3.2 step 4: inflate by one SMSS).
    fn on_recovery_dup_ack(&mut self);

    /// A partial ACK during fast recovery (RFC 6582 §3.2 step 5: deflate by the amount acked,
    /// add back one SMSS if at least one SMSS was acked).
    fn on_partial_ack(&mut self, bytes_acked: usize);

    /// A full ACK ends fast recovery (RFC 6582 §3.2 step 3: cwnd = min(ssthresh,
    /// FlightSize + SMSS)).
    fn on_recovery_end(&mut self, bytes_in_flight: usize);

    /// The retransmission timer expired (RFC 5681 §3.1 eq. 4 and the loss window of one SMSS).
    fn on_rto(&mut self, now: Instant, bytes_in_flight: usize);

    /// The sender's MSS changed (after the handshake, or on PMTU news).
    fn set_mss(&mut self, mss: usize);
}

/// Builds a [`Controller`] for each new connection.
pub trait ControllerFactory: Send + Sync + Debug {
    /// A controller for a connection whose sender MSS is `mss`.
    fn build(&self, now: Instant, mss: usize) -> Box<dyn Controller>;
}
