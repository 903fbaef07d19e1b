//! What an ICMP error about this connection does to it: a lower path MTU (RFC 8201, RFC
//! 1191), or an unreachable destination (RFC 1122 §4.2.3.9). The endpoint finds the
//! connection from the quoted segment and checks it with `is_unacknowledged` first.

use super::{Connection, PathMtu};
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;

/// `now` in whole seconds since the clock's origin, rounded down, as `PathMtu` keeps it (a
/// `u32` of seconds lasts 136 years).
fn secs(now: Instant) -> u32 {
    u32::try_from(now.total_secs()).unwrap_or(u32::MAX)
}

/// The same, rounded up: a deadline kept in whole seconds is never early.
fn secs_ceil(t: Instant) -> u32 {
    u32::try_from(t.total_micros().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

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
    ///
    /// The lower path MTU holds for `Config::pmtu_expires` (10 minutes) after the last report
    /// that was not above it (see [`expire_path_mtu`](Self::expire_path_mtu)).
    pub(crate) fn handle_packet_too_big(&mut self, now: Instant, mtu: u32) {
        let ipv6 = self.local.is_ipv6();
        let headers = if ipv6 { 60 } else { 40 };
        let floor = if ipv6 { 1220 } else { 552 - 40 };
        let new_mss = (mtu as usize).saturating_sub(headers).max(floor);
        // Below 552 the path MTU stays at 552, and DF goes (`PathMtu::locked`). IPv6 has
        // no such fallback: its 1280 is every link's minimum (RFC 8200 §5).
        let lock = !ipv6 && mtu < 552;
        // In SYN-SENT our own MSS stands for the path MTU assumed so far (the peer's is not
        // known yet); afterwards the MSS we send with. A report above it changes nothing,
        // as Linux's `__ip_rt_update_pmtu` ignores one above the route's MTU.
        let path_mss = if self.state == State::SynSent {
            self.rcv.mss.max(self.snd.mss)
        } else {
            self.snd.mss
        };
        if new_mss > path_mss {
            return;
        }
        let expires = self.cfg.pmtu_expires;
        let pmtu = &mut self.pmtu;
        if pmtu.expires_s == 0 {
            pmtu.restore_mss = u16::try_from(path_mss).unwrap_or(u16::MAX);
        } else if new_mss == path_mss && !lock && secs_ceil(now + expires / 2) < pmtu.expires_s {
            // The same MTU again within the first half of its life: not refreshed, as
            // Linux's `__ip_rt_update_pmtu`.
            return;
        }
        // Never 0, which means "none": a zero expiry still holds until the next second.
        pmtu.expires_s = secs_ceil(now + expires).max(1);
        pmtu.locked |= lock;
        // In SYN-SENT, if the path's MTU is lower than our own:
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
            // Linux's tcp_simple_retransmit resends the segments in flight that are longer
            // than the new MSS, and nothing if none is: data in flight that fits in one new
            // segment stays where it is.
            let in_flight = self.snd.max - self.snd.una;
            if self.is_synchronized() && in_flight > new_mss {
                self.snd.nxt = self.snd.una;
            }
        }
    }

    /// RFC 1191 §6.3 and RFC 8201 §4: a path MTU learnt from a report is not kept for
    /// ever, since the path may have changed; Linux forgets it after `ip_rt_mtu_expires`
    /// (`mtu_expires` for IPv6), 10 minutes, and its next `tcp_current_mss` finds the
    /// device's MTU again. Here the MSS grows back to what it was before the report (never
    /// above the peer's MSS or `TCP_MAXSEG`), and DF returns, at the first transmission
    /// after `Config::pmtu_expires`. Called before each transmission; cheap when no report
    /// is in force.
    pub(crate) fn expire_path_mtu(&mut self, now: Instant) {
        if self.pmtu.expires_s == 0 || secs(now) < self.pmtu.expires_s {
            return;
        }
        let restore = usize::from(self.pmtu.restore_mss);
        self.pmtu = PathMtu::default();
        if restore > self.snd.mss {
            self.snd.mss = restore;
            self.cc.set_mss(restore);
        }
    }

    /// A limit on the MSS that came after a path MTU report (the peer's MSS option, in
    /// SYN-SENT; `TCP_MAXSEG`) also limits what the MSS grows back to when it expires.
    pub(crate) fn limit_restored_mss(&mut self, mss: usize) {
        if self.pmtu.expires_s != 0 {
            let mss = u16::try_from(mss).unwrap_or(u16::MAX);
            self.pmtu.restore_mss = self.pmtu.restore_mss.min(mss);
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
