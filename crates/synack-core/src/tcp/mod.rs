//! TCP: one connection's buffers, timers, estimators and state machine.

pub(crate) mod chrono;
pub mod congestion;
pub(crate) mod delayed_ack;
pub mod info;
pub(crate) mod rack;
pub mod recv_buffer;
pub mod rtt;
pub(crate) mod scoreboard;
pub mod send_buffer;

/// The states of RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection.
    Closed,
    /// Waiting for a SYN (listeners only).
    Listen,
    /// Our SYN is sent; waiting for the SYN-ACK.
    SynSent,
    /// A SYN arrived and our SYN-ACK is sent.
    SynReceived,
    /// The connection is open both ways.
    Established,
    /// We sent FIN; the peer has not acknowledged it.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer sent FIN; we have not.
    CloseWait,
    /// Both sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// The peer closed first and we sent FIN; waiting for its ACK.
    LastAck,
    /// Both FINs acknowledged; waiting 2*MSL for stray segments.
    TimeWait,
}
pub(crate) mod connection;
