//! Explicit Congestion Notification (RFC 3168 §6.1), as Linux's TCP has it: the ECN-setup
//! handshake, ECT(0) on new data, the receiver's ECE echo until CWR, and the sender's CWR
//! state, a window reduction through PRR without a loss.

use super::Connection;
use crate::seq::SeqNumber;
use crate::time::Instant;
use crate::wire::{Ecn, TcpFlags, TcpRepr};

/// A connection's ECN state (Linux's `ecn_flags`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EcnState {
    /// ECN is in use: both SYNs agreed (`TCP_ECN_OK`). Before the handshake ends, that we
    /// asked for it (active open) or were asked and agreed (passive open).
    pub ok: bool,
    /// An ECT or CE mark arrived on a data segment (`TCP_ECN_SEEN`): a later unmarked one
    /// is likely a retransmission.
    pub seen: bool,
    /// A CE mark arrived: every ACK carries ECE until a segment with CWR does (RFC 3168
    /// §6.1.3, `TCP_ECN_DEMAND_CWR`).
    pub demand_cwr: bool,
    /// The window was reduced: the next new data segment carries CWR (RFC 3168 §6.1.2,
    /// `TCP_ECN_QUEUE_CWR`).
    pub queue_cwr: bool,
    /// The ECN field of the packet being processed.
    pub rx: Ecn,
}

impl Connection {
    /// `IP_TOS` / `IPV6_TCLASS`: the DSCP bits of the packets sent from now on.
    pub fn set_tos(&mut self, tos: u8) {
        self.tos = tos & !Ecn::MASK;
    }

    /// The DSCP bits set with `set_tos`.
    pub fn tos(&self) -> u8 {
        self.tos
    }

    /// Whether ECN is in use (agreed, or asked for while the handshake is under way).
    pub fn ecn_ok(&self) -> bool {
        self.ecn.ok
    }

    /// Whether our SYN asks for ECN: ECE and CWR (RFC 3168 §6.1.1). Only the first SYN
    /// asks; a retransmitted SYN goes without them, in case a middlebox drops ECN-setup
    /// SYNs (RFC 3168 §6.1.1.1, Linux's `tcp_ecn_fallback`).
    pub(super) fn ecn_syn_flags(&self, first: bool) -> TcpFlags {
        if self.ecn.ok && first {
            TcpFlags::ECE | TcpFlags::CWR
        } else {
            TcpFlags::empty()
        }
    }

    /// An active open: ask for ECN if the configuration says so.
    pub(super) fn ecn_open_active(&mut self) {
        self.ecn.ok = self.cfg.ecn.requests();
    }

    /// A SYN arrived at a listener (or crossed ours in a simultaneous open) in a packet with
    /// the ECN field `ecn`: ECN is agreed if it asks with ECE and CWR and we accept it, and
    /// only if the SYN itself is not ECN-marked (RFC 3168 §6.1.1: a SYN is sent not-ECT; a
    /// marked one comes from something we do not understand, and Linux then declines).
    pub(super) fn ecn_on_syn(&mut self, syn: &TcpRepr<'_>, ecn: Ecn) {
        let asks = syn.flags.contains(TcpFlags::ECE) && syn.flags.contains(TcpFlags::CWR);
        self.ecn.ok = asks && ecn == Ecn::NotEct && self.cfg.ecn.accepts();
    }

    /// The SYN-ACK answering our SYN: ECN is on only if it has ECE without CWR (RFC 3168
    /// §6.1.1: a SYN-ACK with both is a reflection of our own SYN's flags).
    pub(super) fn ecn_on_synack(&mut self, seg: &TcpRepr<'_>) {
        if !seg.flags.contains(TcpFlags::ECE) || seg.flags.contains(TcpFlags::CWR) {
            self.ecn.ok = false;
        }
    }

    /// A segment passed the acceptability checks: CWR from the peer says it reduced its
    /// window, so our ECE echo stops (RFC 3168 §6.1.3); one carrying data is acknowledged at
    /// once, since the sender's window may now be very small (Linux's `tcp_ecn_accept_cwr`).
    pub(super) fn ecn_accept_cwr(&mut self, seg: &TcpRepr<'_>) {
        if self.ecn.ok && seg.flags.contains(TcpFlags::CWR) {
            self.ecn.demand_cwr = false;
            if !seg.payload.is_empty() {
                self.rcv.ack_now = true;
            }
        }
    }

    /// A data segment (new bytes, in order or not) arrived in a packet marked `self.ecn.rx`:
    /// CE starts the ECE echo and acknowledges the next two segments at once, so that a
    /// sender with a small window learns quickly; an unmarked segment after marked ones is
    /// probably a retransmission, and is answered quickly too (Linux's `__tcp_ecn_check_ce`).
    pub(super) fn ecn_check_ce(&mut self) {
        if !self.ecn.ok {
            return;
        }
        let rcv_wnd = self.rcv.adv - self.rcv.nxt;
        match self.ecn.rx {
            Ecn::NotEct => {
                if self.ecn.seen {
                    self.rcv.delack.enter_quick_mode_at_most(rcv_wnd, 2);
                }
            }
            Ecn::Ce => {
                self.verdict.ce = true;
                if !self.ecn.demand_cwr {
                    self.rcv.delack.enter_quick_mode_at_most(rcv_wnd, 2);
                    self.ecn.demand_cwr = true;
                }
                self.ecn.seen = true;
            }
            Ecn::Ect0 | Ecn::Ect1 => self.ecn.seen = true,
        }
    }

    /// Whether an acceptable ACK echoes a congestion mark (ECE outside the handshake, on an
    /// ECN connection; Linux's `tcp_ecn_rcv_ecn_echo`).
    pub(super) fn ecn_echoed(&mut self, seg: &TcpRepr<'_>) -> bool {
        let echoed =
            self.ecn.ok && seg.flags.contains(TcpFlags::ECE) && !seg.flags.contains(TcpFlags::SYN);
        if echoed {
            self.verdict.ece = true;
        }
        echoed
    }

    /// The window is being reduced (CWR, fast recovery, a timeout): the next new data
    /// segment says so with CWR (RFC 3168 §6.1.2, Linux's `tcp_ecn_queue_cwr`).
    pub(super) fn ecn_queue_cwr(&mut self) {
        if self.ecn.ok {
            self.ecn.queue_cwr = true;
        }
    }

    /// The peer echoed a congestion mark while the window was open (not already reducing,
    /// not recovering from a loss or a timeout): enter CWR, as Linux's `tcp_enter_cwr`.
    /// ssthresh falls as for a loss (the controller's reduction, taken from the window as
    /// Linux's `ssthresh` hook takes it), and PRR brings the window down to it over the next
    /// round trip, starting with this ACK (RFC 3168 §6.1.2: "the congestion window ... is
    /// halved", once per window of data; RFC 6937 §3 for the pace). Nothing is resent and the
    /// reduction is never undone.
    pub(super) fn enter_cwr(&mut self, now: Instant) {
        let cwnd = self.cc.window();
        self.recovery.cwr = Some(self.snd.max);
        self.recovery.recover_fs = if self.prr_packets() {
            (cwnd / self.snd.mss.max(1)).max(1)
        } else {
            cwnd
        };
        self.recovery.prr_delivered = 0;
        self.recovery.prr_out = 0;
        self.recovery.prr_cwnd = cwnd;
        self.recovery.undo_marker = None;
        self.cc.on_congestion_signal(now, cwnd);
        self.ecn_queue_cwr();
    }

    /// SND.UNA passed the point CWR runs to: the window is ssthresh now (Linux's
    /// `tcp_end_cwnd_reduction`), and another ECE may reduce it again. Linux waits for an
    /// ACK above that point, so that the segment carrying CWR has reached the peer.
    pub(super) fn maybe_end_cwr(&mut self, ack: SeqNumber) {
        if self.recovery.cwr.is_some_and(|high| ack > high) {
            self.recovery.cwr = None;
            self.cc.on_prr_recovery_end();
        }
    }

    /// The congestion window in force: PRR's during CWR and fast recovery (Linux's
    /// `snd_cwnd`, which `tcp_cwnd_reduction` sets on every ACK then), else the
    /// controller's.
    pub(crate) fn cwnd(&self) -> usize {
        if self.recovery.cwr.is_some() || self.recovery.recover.is_some() {
            self.recovery.prr_cwnd
        } else {
            self.cc.window()
        }
    }

    /// The DS byte for a segment: the application's DSCP (`IP_TOS`), and ECT(0) for new data
    /// on an ECN connection (RFC 3168 §6.1.2 and §6.1.5: pure ACKs, retransmissions and the
    /// SYNs are sent not-ECT, as Linux's `tcp_ecn_send` sends them). The ECN bits of the
    /// application's value are never used (Linux masks them for stream sockets).
    pub(super) fn ds_byte(&self, new_data: bool) -> u8 {
        let ecn = if self.ecn.ok && new_data {
            Ecn::Ect0
        } else {
            Ecn::NotEct
        };
        (self.tos & !Ecn::MASK) | ecn.bits()
    }
}
