//! What an ICMP error about this connection does to it: a lower path MTU (RFC 8201, RFC
//! 1191), or an unreachable destination (RFC 1122 §4.2.3.9). The endpoint finds the
//! connection from the quoted segment and checks it with `is_unacknowledged` first.

use super::Connection;
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::State;

impl Connection {
    /// RFC 5927 §4.1: whether `seq`, the sequence number an ICMP error quotes, is one we have
    /// sent and not yet seen acknowledged (a SYN in flight counts); errors quoting anything
    /// else are ignored, so that blind attackers must guess a window.
    pub(crate) fn is_unacknowledged(&self, seq: SeqNumber) -> bool {
        seq >= self.snd.una && seq < self.snd.max.max(self.snd.una + 1)
    }

    /// Our initial sequence number: what an ICMP error about our SYN or SYN-ACK quotes.
    pub(crate) fn iss(&self) -> SeqNumber {
        self.snd.iss
    }

    /// RFC 8201 / RFC 1191: lower the MSS to fit the reported path MTU, never below a floor,
    /// and resend what was in flight. The floor: IPv6's minimum MTU, 1280 (RFC 8200 §5), less
    /// 60; for IPv4 Linux's smallest path MTU (`ip_rt_min_pmtu`, 552) less 40, so that a path
    /// of 552 to 575 bytes is not black-holed by RFC 9293's default 536.
    pub(crate) fn handle_packet_too_big(&mut self, mtu: u32) {
        let ipv6 = self.local.is_ipv6();
        let headers = if ipv6 { 60 } else { 40 };
        let floor = if ipv6 { 1220 } else { 552 - 40 };
        let new_mss = (mtu as usize).saturating_sub(headers).max(floor);
        // Below 552 the path MTU stays at 552, and DF goes (see `pmtu_locked`). IPv6 has
        // no such fallback: its 1280 is every link's minimum (RFC 8200 §5).
        if !ipv6 && mtu < 552 {
            self.pmtu_locked = true;
        }
        // In SYN-SENT our own MSS stands for the path MTU assumed so far (the peer's is not
        // known yet). If the path's is lower:
        if self.state == State::SynSent && new_mss < self.rcv.mss {
            // the SYN sent again offers the path's MSS, as Linux's tcp_advertise_mss lowers
            // the advertised MSS to the route's, which now has this path MTU;
            self.rcv.mss = new_mss;
            // a SYN that carried data was the packet too big: a SYN without data goes at
            // once rather than at its timeout (Linux's tcp_simple_retransmit marks a Fast
            // Open SYN lost when the path MTU drops in SYN-SENT).
            if self.syn_data_in_flight() {
                self.syn_pending = true;
            }
        }
        if new_mss < self.snd.mss {
            self.snd.mss = new_mss;
            self.cc.set_mss(new_mss);
            if self.is_synchronized() {
                self.snd.nxt = self.snd.una;
            }
        }
    }

    /// A destination-unreachable or time-exceeded error. As Linux: during an active open it
    /// ends the connect; afterwards it is a soft error, reported only if the connection later
    /// times out.
    pub(crate) fn handle_icmp_error(&mut self, error: Error) {
        let active_open =
            self.state == State::SynSent || (self.state == State::SynReceived && !self.passive);
        if active_open {
            self.enter_closed(Some(error));
        } else {
            self.soft_error = Some(error);
        }
    }
}
