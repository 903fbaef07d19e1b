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

/// The MTU Linux takes for a locked path through a router once its report expired
/// (`ip_dst_mtu_maybe_forward`: 576, the datagram size every IPv4 host accepts, RFC 791).
const LOCKED_MTU: usize = 576;

/// The same, rounded up: a deadline kept in whole seconds is never early.
fn secs_ceil(t: Instant) -> u32 {
    u32::try_from(t.total_micros().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

impl Connection {
    /// RFC 5927 §4.1: whether `seq`, the sequence number an ICMP error quotes, is one we have
    /// sent and not yet seen acknowledged (a SYN in flight counts); errors quoting anything
    /// else are ignored, so that blind attackers must guess a window.
    ///
    /// Both ends are in, as Linux's `tcp_v4_err` and `tcp_v6_err` check
    /// `between(seq, snd_una, snd_nxt)`: RFC 5927 stops short of SND.NXT, but a segment quoted
    /// there is one of our bare ACKs (or the next data), which a router may as well report.
    pub(crate) fn is_unacknowledged(&self, seq: SeqNumber) -> bool {
        seq >= self.snd.una && seq <= self.snd.max
    }

    /// Our initial sequence number: what an ICMP error about our SYN or SYN-ACK quotes.
    pub(crate) fn iss(&self) -> SeqNumber {
        self.snd.iss
    }

    /// RFC 8201 / RFC 1191: lower the MSS to fit the reported path MTU, and resend what was
    /// in flight that no longer fits, as Linux's `tcp_v4_mtu_reduced` and
    /// `tcp_v6_mtu_reduced` do with the route that `__ip_rt_update_pmtu` and
    /// `__ip6_rt_update_pmtu` leave.
    ///
    /// IPv4: a report is taken unless the path is locked or the report is above the path's
    /// MTU; below Linux's smallest path MTU (`ip_rt_min_pmtu`, 552) the path is taken to be
    /// 552 and locked there (`PathMtu::locked`: DF goes), so that the MSS stops at 512 rather
    /// than RFC 9293's 536, which a path of 552 to 575 bytes would not carry. IPv6: a report
    /// below 1280, every link's minimum (RFC 8200 §5), is ignored, as one that would not
    /// lower the MSS in use is (`tcp_v6_err`, `tcp_v6_mtu_reduced`).
    ///
    /// The lower path MTU holds for `Config::pmtu_expires` (10 minutes) after the last report
    /// that lowered or restated it (see [`expire_path_mtu`](Self::expire_path_mtu)).
    pub(crate) fn handle_packet_too_big(&mut self, now: Instant, mtu: u32) {
        // A report that expired is forgotten before the new one is weighed.
        self.expire_path_mtu(now);
        let ipv6 = self.local.is_ipv6();
        // The MSS in use: in SYN-SENT our own (the peer's is not known yet).
        let in_use = if self.state == State::SynSent {
            self.rcv.mss.max(self.snd.mss)
        } else {
            self.snd.mss
        };
        // The MSS the path allows so far: the reported one while a report holds, else the
        // link's.
        let route_mss = usize::from(self.pmtu.route_mss());
        let (new_mss, lock) = if ipv6 {
            let mtu = mtu as usize;
            if mtu < crate::config::IPV6_MIN_MTU || mtu - 60 >= in_use {
                return;
            }
            (mtu - 60, false)
        } else {
            // `ip_mtu_locked`: a locked path takes no more reports.
            if self.pmtu.locked {
                return;
            }
            let new_mss = (mtu as usize).saturating_sub(40).max(552 - 40);
            let lock = mtu < 552;
            // `__ip_rt_update_pmtu` weighs a report against the route's MTU, which is at
            // least 552: one below 552 always counts, whatever the MSS (a peer's, or
            // `TCP_MAXSEG`'s) keeps ours under 512.
            if new_mss > route_mss && !lock {
                return;
            }
            (new_mss, lock)
        };
        let expires = self.cfg.pmtu_expires;
        let pmtu = &mut self.pmtu;
        if pmtu.expires_s != 0
            && usize::from(pmtu.path_mss) == new_mss
            && !lock
            && secs_ceil(now + expires / 2) < pmtu.expires_s
        {
            // The same MTU again within the first half of its life: not refreshed, as
            // Linux's `__ip_rt_update_pmtu`.
            return;
        }
        // Never 0, which means "none": a zero expiry still holds until the next second.
        pmtu.expires_s = secs_ceil(now + expires).max(1);
        pmtu.path_mss = u16::try_from(new_mss).unwrap_or(u16::MAX);
        pmtu.locked = lock;
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
            if self.is_synchronized() {
                // Never forward: after a timeout SND.NXT may already be below it, with the
                // data between to be sent again.
                if let Some(from) = self.first_segment_longer_than(self.payload_room()) {
                    self.snd.nxt = self.snd.nxt.min(from);
                }
            }
        }
    }

    /// Where the first segment in flight carrying more than `room` bytes of data starts, if
    /// one does: Linux's `tcp_simple_retransmit` marks lost, and resends, only the segments
    /// longer than the new MSS less the options (`tcp_current_mss`), a FIN not counted
    /// (`tcp_skb_seglen`), so that data in flight that fits stays where it is. With SACK
    /// each segment sent is on RACK's record; without it, the data in flight is taken as
    /// one segment, and all of it goes again if it does not fit.
    fn first_segment_longer_than(&self, room: usize) -> Option<SeqNumber> {
        let fin = self
            .snd
            .fin_seq
            .filter(|&f| f >= self.snd.una && f < self.snd.max);
        if self.sack_ok {
            if let Some(first) = self.snd.rack.first_longer_than(self.snd.una, room, fin) {
                return Some(first.max(self.snd.una));
            }
            if !self.snd.rack.is_empty() {
                return None;
            }
        }
        let data = (self.snd.max - self.snd.una).saturating_sub(usize::from(fin.is_some()));
        (data > room).then_some(self.snd.una)
    }

    /// RFC 1191 §6.3 and RFC 8201 §4: a path MTU learnt from a report is not kept for
    /// ever, since the path may have changed; Linux forgets it after `ip_rt_mtu_expires`
    /// (`mtu_expires` for IPv6), 10 minutes, and its next `tcp_current_mss` finds the
    /// device's MTU again. Here the MSS grows back to what the link allows (never above the
    /// peer's MSS or `TCP_MAXSEG`) at the first transmission after `Config::pmtu_expires`.
    /// Called before each transmission; cheap when no report is in force.
    ///
    /// A locked path stays locked, as the route a Linux connection holds keeps
    /// `rt_mtu_locked` after its exception expires: DF stays off, and the MTU of a path
    /// through a router (a TUN's always is: the host routes what we send) is 576
    /// (`ip_dst_mtu_maybe_forward`), so that the MSS grows to 536 and no further
    /// (`pmtu-locked-expires.pkt` shows the kernel doing so).
    pub(crate) fn expire_path_mtu(&mut self, now: Instant) {
        if self.pmtu.expires_s == 0 || secs(now) < self.pmtu.expires_s {
            return;
        }
        self.pmtu.expires_s = 0;
        if self.pmtu.locked {
            self.pmtu.path_mss = (LOCKED_MTU - 40) as u16;
        }
        // In SYN-SENT the peer's MSS is not known yet: the handshake sizes it.
        if self.mss_negotiated() {
            self.sync_mss();
        }
    }

    /// Lowers `Sender::mss_clamp` to `mss`: the peer's MSS option, or `TCP_MAXSEG`.
    pub(crate) fn lower_mss_clamp(&mut self, mss: usize) {
        let mss = u16::try_from(mss).unwrap_or(u16::MAX);
        self.snd.mss_clamp = self.snd.mss_clamp.min(mss);
    }

    /// Whether the peer's MSS is known (`negotiate` ran): from SYN-RECEIVED on, as long as
    /// the connection lives.
    fn mss_negotiated(&self) -> bool {
        !matches!(self.state, State::Closed | State::SynSent)
    }

    /// The MSS to send with, from what bounds it: the peer's (`Sender::mss_clamp`), the
    /// link's MTU, and a path MTU report in force (or the lock one left), as Linux's
    /// `tcp_sync_mss` computes it from `dst_mtu` whenever `tcp_current_mss` finds the
    /// route's MTU changed.
    pub(crate) fn sync_mss(&mut self) {
        let mss = usize::from(self.snd.mss_clamp.min(self.pmtu.route_mss()));
        if mss != self.snd.mss {
            self.snd.mss = mss;
            self.cc.set_mss(mss);
        }
    }

    /// The link's MTU changed to allow an MSS of `mss` (`Endpoint::set_mtu`). Linux's
    /// connections follow their device's MTU: `tcp_current_mss` compares the route's MTU
    /// with the one it last sized the MSS for (`icsk_pmtu_cookie`) before each
    /// transmission, and `tcp_sync_mss` takes the new one, down or back up to the peer's MSS
    /// (`tcp-link-mtu.pkt` shows the kernel doing both). A report in force still bounds it.
    /// Segments already sent are not sent again: they went out when the link took them.
    /// In SYN-SENT the SYN sent again offers the lower MSS, as `tcp_advertise_mss` lowers
    /// the advertised MSS to the route's (and never raises it).
    ///
    /// A report at or above the new link's MTU says nothing more and is dropped, lock and
    /// all, so that the MSS follows the link back up: Linux lowers the route exception to
    /// the device's new MTU, unlocking it, and raises it with the device from there
    /// (`fib_nhc_update_mtu`).
    pub(crate) fn set_link_mss(&mut self, mss: usize) {
        let link_mss = u16::try_from(mss).unwrap_or(u16::MAX);
        if self.pmtu.path_holds() && self.pmtu.path_mss >= link_mss {
            self.pmtu.expires_s = 0;
            self.pmtu.locked = false;
        }
        self.pmtu.link_mss = link_mss;
        if self.mss_negotiated() {
            self.sync_mss();
        } else {
            self.rcv.mss = self.rcv.mss.min(mss);
        }
    }

    /// A new connection to a peer whose path MTU a report lowered to `mtu` (`locked`:
    /// IPv4, below Linux's smallest, DF off), until `expires`, starts from it, as a Linux
    /// socket from its route's exception (`endpoint/path_mtu.rs`): the handshake bounds the
    /// MSS it sends with by the path's (`negotiate`), what it advertises stays the
    /// device's (the kernel selftest `tcp_advmss_pmtu_ipv4`: a SYN-ACK offers 1460 after a
    /// report of 1200), and the MSS grows back when the report expires, to its own at most,
    /// as after a report in SYN-SENT.
    pub(crate) fn inherit_path_mtu(&mut self, mtu: u16, locked: bool, expires: Instant) {
        let headers = if self.local.is_ipv6() { 60 } else { 40 };
        self.pmtu = PathMtu {
            expires_s: secs_ceil(expires).max(1),
            path_mss: mtu.saturating_sub(headers),
            locked,
            ..self.pmtu
        };
    }

    /// RFC 6069 (TCP-LD), as Linux's `tcp_ld_RTO_revert`: an ICMP net or host unreachable
    /// about SND.UNA while timeouts are backing the RTO off says the path is down, not
    /// congested, so the last doubling is undone and the timer re-armed from the head's last
    /// transmission (the last timeout: nothing was acknowledged since) with the RTO that
    /// leaves, firing at once if that has passed. Over an outage that a router reports, the
    /// retransmissions keep the un-backed-off pace, and the connection resumes within one
    /// RTO of the path's return rather than after a backoff grown to minutes. Linux does
    /// this for IPv4 only (`tcp_v4_err`); the caller decides which errors qualify.
    pub(crate) fn revert_rto_backoff(&mut self, now: Instant, seq: SeqNumber) {
        // Timeouts in a row (none in TIME-WAIT, nothing being out) and a backoff to undo.
        if !self.is_synchronized() || seq != self.snd.una || self.timeouts == 0 || self.backoff == 0
        {
            return;
        }
        let Some(sent) = self.recovery.rto_at else {
            return;
        };
        self.backoff -= 1;
        let deadline = (sent + self.current_rto()).max(now);
        self.timers.retransmit = Some(self.clamp_to_user_timeout(deadline));
    }

    /// A destination-unreachable, time-exceeded or parameter-problem error. As Linux: during
    /// an active open it ends the connect; afterwards it is a soft error, which `SO_ERROR`
    /// reads once (`Endpoint::take_soft_error`), or else the connection fails with if it
    /// later times out.
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
