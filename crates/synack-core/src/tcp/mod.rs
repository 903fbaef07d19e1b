//! TCP: one connection's buffers, timers, estimators and state machine.

pub(crate) mod chrono;
pub mod congestion;
pub(crate) mod delayed_ack;
pub mod info;
pub(crate) mod rack;
pub(crate) mod recv_buffer;
pub(crate) mod rtt;
pub(crate) mod scoreboard;
pub(crate) mod send_buffer;

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

impl State {
    /// Whether an abort in this state sends an RST (RFC 9293 §3.10.5 ABORT: the peer knows
    /// of the connection and may still send or wait on it; Linux's `tcp_need_reset`). The
    /// application that aborts learns that it reset the connection only in these states.
    pub fn resets_on_abort(self) -> bool {
        matches!(
            self,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        )
    }
}
pub(crate) mod connection;
