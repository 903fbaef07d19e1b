//! TCP Fast Open (RFC 7413): the client's side (§4.2), data in the SYN with a cookie the
//! server gave before; and what a server's connection keeps of it (§4.2.2): the cookie its
//! SYN-ACK carries, and whether its SYN's data was taken at once (the endpoint decides that,
//! `endpoint/fast_open.rs`).
//!
//! A connection that wants Fast Open and has no cookie for the server sends an empty Fast
//! Open option in its SYN (a cookie request, §4.1.2); the cookie in the SYN-ACK goes to the
//! endpoint's cache. With a cookie, the first SYN carries it and up to one segment of data;
//! the server acknowledges that data in its SYN-ACK, or only the SYN, and then the data is
//! sent again as ordinary data (§4.2.2). A retransmitted SYN carries neither the option nor
//! the data, as Linux's (`tcp_connect` excludes Fast Open from SYN retries): a server or
//! middlebox that drops SYNs with data must not cost the connection.
//!
//! `TCP_FASTOPEN_CONNECT` (Linux) defers the SYN while a cookie is known: the connection
//! reports itself writable at once, and the first write sends the SYN with the data.

use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{Ecn, FastOpenCookie, TcpRepr};

use super::handshake::PeerOptions;
use super::Connection;

/// The option area a SYN's data leaves room for, whatever options the SYN carries: the most
/// a TCP header can hold (Linux's `MAX_TCP_OPTION_SPACE`, which `tcp_send_syn_data` keeps
/// free for middleboxes that add options of their own).
const SYN_OPTION_ROOM: usize = 40;

/// What a SYN-ACK answering our Fast Open SYN taught about the server, for the endpoint's
/// cache (Linux's `tcp_fastopen_cache_set`): a cookie, and the MSS it offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedFastOpen {
    /// The cookie it carried, if any (none keeps the cached one).
    pub cookie: Option<FastOpenCookie>,
    /// The MSS option it carried, if any.
    pub mss: Option<u16>,
    /// A cookie request that the SYN-ACK answered with no Fast Open option at all (our SYN
    /// sent once): 1 after a request in kind 34, so that the next one goes in the
    /// experimental option (kind 254, RFC 6994), which servers from before RFC 7413 read;
    /// 2 after a request in that form too, to go back to kind 34 for good; 0 otherwise.
    /// Linux's `try_exp` (`tcp_rcv_fastopen_synack`).
    pub try_exp: u8,
}

/// What the endpoint's cache knows of a server, for an active open with Fast Open (Linux's
/// `tcp_fastopen_cache_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastOpenServer {
    /// The cookie it gave; the first SYN carries it and data. `None` asks for one.
    pub cookie: Option<FastOpenCookie>,
    /// The MSS it offered in its last Fast Open SYN-ACK.
    pub mss: Option<u16>,
    /// The cookie request goes in the experimental option (see
    /// [`LearnedFastOpen::try_exp`]).
    pub request_exp: bool,
}

/// A connection's Fast Open state, boxed in the connection: few connections use it. An
/// active open's, or a passive open's that was asked for a cookie or took data from its SYN.
#[derive(Debug, Clone, Default)]
pub struct FastOpen {
    /// The cookie the first SYN carries; `None` asks for one.
    cookie: Option<FastOpenCookie>,
    /// Without a cookie, the request goes in the experimental option.
    request_exp: bool,
    /// The SYN waits for the first write (`TCP_FASTOPEN_CONNECT` with a cookie).
    deferred: bool,
    /// The first SYN has left (retransmissions carry no Fast Open option).
    sent: bool,
    /// Bytes of data the first SYN carried.
    syn_data: usize,
    /// The MSS the server offered in its last Fast Open SYN-ACK, from the endpoint's cache:
    /// with our own MSS it bounds the data of the first SYN.
    cached_mss: Option<u16>,
    /// What the SYN-ACK brought, for the endpoint's cache.
    learned: Option<LearnedFastOpen>,
    /// A passive open the listener took with Fast Open (RFC 7413 §4.2.2): in the accept
    /// queue from its SYN on, and sending data before the handshake's final ACK.
    child: bool,
    /// The cookie our first SYN-ACK carries (a cookie request's answer, or the valid cookie
    /// for a client that presented a wrong one); retransmissions carry none, as Linux's.
    synack_cookie: Option<FastOpenCookie>,
    /// The data of the SYN was acknowledged: by our SYN-ACK (passive) or the server's
    /// (active). Linux's `syn_data_acked`, `TCPI_OPT_SYN_DATA` in `TCP_INFO`.
    syn_data_acked: bool,
}

impl Connection {
    /// An active open with Fast Open (after [`Connection::open_active`]): with `cookie`, the
    /// first SYN carries it and queued data; without, it asks for a cookie. `defer` holds the
    /// SYN until data is queued (only with a cookie: without one there is nothing to gain).
    pub fn open_active_fast_open(&mut self, server: FastOpenServer, defer: bool) {
        self.open_active();
        let FastOpenServer {
            cookie,
            mss: cached_mss,
            request_exp,
        } = server;
        let deferred = defer && cookie.is_some();
        if deferred {
            self.syn_pending = false;
            // Linux's tcp_poll reports a deferred connect writable, so that the application
            // writes the data the SYN is waiting for.
            self.notify.writable = true;
        }
        self.fast_open = Some(Box::new(FastOpen {
            cookie,
            request_exp,
            cached_mss,
            deferred,
            ..FastOpen::default()
        }));
    }

    /// A passive open with Fast Open (RFC 7413 §4.2.2): the SYN carried a valid cookie (or
    /// the listener needs none). As [`Connection::accept_syn`], and the SYN's data is taken
    /// at once: our SYN-ACK acknowledges it and the application can read it before the
    /// handshake ends. `reply` is a cookie for the SYN-ACK (the client's was valid only
    /// under the backup key).
    pub fn accept_syn_fast_open(
        &mut self,
        now: Instant,
        syn: &TcpRepr<'_>,
        ecn: Ecn,
        reply: Option<FastOpenCookie>,
    ) {
        self.accept_syn(now, syn, ecn);
        // The data goes in as Linux's tcp_fastopen_add_skb queues it, whatever the memory
        // budget (the listener refused the SYN if the endpoint was full): no more than the
        // window we offer, which the SYN could not know.
        let data = &syn.payload[..syn.payload.len().min(self.rcv.buffer.window())];
        let mut taken = 0;
        if !data.is_empty() {
            let before = self.rcv.buffer.allocated();
            taken = self.rcv.buffer.write(0, data).unwrap_or(0);
            let added = self.rcv.buffer.allocated().saturating_sub(before);
            self.mem.room = self.mem.room.saturating_sub(added);
        }
        if taken > 0 {
            self.rcv.nxt += taken;
            self.rcv.adv = self.rcv.nxt + self.initial_window();
            self.notify.readable = true;
        }
        self.fast_open = Some(Box::new(FastOpen {
            child: true,
            synack_cookie: reply,
            syn_data_acked: taken > 0,
            ..FastOpen::default()
        }));
    }

    /// A passive open's SYN-ACK is to carry `cookie` (RFC 7413 §4.1.2: the answer to a
    /// cookie request, or to a cookie that did not check).
    pub fn set_synack_cookie(&mut self, cookie: FastOpenCookie) {
        self.fast_open
            .get_or_insert_with(Default::default)
            .synack_cookie = Some(cookie);
    }

    /// A passive open taken with Fast Open, still waiting for the handshake's final ACK:
    /// it may send data, and an RST or a timeout is an error for its application.
    pub fn is_fast_open_child(&self) -> bool {
        self.state == State::SynReceived && self.fast_open.as_ref().is_some_and(|f| f.child)
    }

    /// Whether the data of the SYN was acknowledged in the SYN-ACK (`TCPI_OPT_SYN_DATA`).
    pub fn syn_data_acked(&self) -> bool {
        self.fast_open.as_ref().is_some_and(|f| f.syn_data_acked)
    }

    /// Dress a passive open's first SYN-ACK with its cookie, once.
    pub(super) fn fast_open_syn_ack(&mut self, seg: &mut TcpRepr<'_>) {
        if let Some(f) = self.fast_open.as_mut() {
            if let Some(cookie) = f.synack_cookie.take() {
                seg.fast_open = Some(cookie);
            }
        }
    }

    /// Data was queued: a deferred SYN goes out now, with it.
    pub(super) fn fast_open_release(&mut self) {
        if let Some(f) = self.fast_open.as_mut() {
            if f.deferred {
                f.deferred = false;
                self.syn_pending = true;
            }
        }
    }

    /// What the SYN-ACK to our Fast Open SYN brought, once (the endpoint caches it per
    /// server).
    pub fn take_fast_open_learned(&mut self) -> Option<LearnedFastOpen> {
        self.fast_open.as_mut().and_then(|f| f.learned.take())
    }

    /// How many bytes of data the first SYN may carry (RFC 7413 §4.2.1: no more than the
    /// MSS allows), as Linux's `tcp_send_syn_data` sizes it: the smaller of our MSS and the
    /// one the server offered last time (its cached MSS), less the largest option area. 0
    /// without a cookie to send it with, or once the SYN has left.
    pub fn fast_open_syn_room(&self) -> usize {
        match self.fast_open.as_deref() {
            Some(f) if f.cookie.is_some() && !f.sent => {
                let mss = f
                    .cached_mss
                    .map_or(self.rcv.mss, |m| self.rcv.mss.min(usize::from(m)));
                mss.saturating_sub(SYN_OPTION_ROOM)
            }
            _ => 0,
        }
    }

    /// Whether our first SYN tried Fast Open (a cookie, or a request for one): Linux's
    /// `syn_fastopen`, with which a SYN-ACK's data and FIN are taken (RFC 7413 §4.2.2:
    /// the server's SYN-ACK MAY carry them).
    pub(super) fn fast_open_tried(&self) -> bool {
        self.fast_open.as_ref().is_some_and(|f| f.sent && !f.child)
    }

    /// Whether the SYN in flight carried data (SYN-SENT, Fast Open with a cookie).
    pub(super) fn syn_data_in_flight(&self) -> bool {
        self.state == State::SynSent && self.fast_open.as_ref().is_some_and(|f| f.syn_data > 0)
    }

    /// Dress the first SYN (`seg`, SYN-SENT) with the Fast Open option; returns how many
    /// bytes of queued data it is to carry (from the start of the send buffer).
    pub(super) fn fast_open_syn(&mut self, seg: &mut TcpRepr<'_>) -> usize {
        if self.state != State::SynSent {
            return 0;
        }
        let queued = self.snd.buffer.len();
        let Some(f) = self.fast_open.as_mut() else {
            return 0;
        };
        if f.sent {
            return 0;
        }
        let request = FastOpenCookie::REQUEST.experimental(f.request_exp);
        seg.fast_open = Some(f.cookie.unwrap_or(request));
        if f.cookie.is_none() {
            f.sent = true;
            return 0;
        }
        let room = self.fast_open_syn_room();
        let Some(f) = self.fast_open.as_mut() else {
            return 0;
        };
        f.sent = true;
        f.syn_data = queued.min(room);
        f.syn_data
    }

    /// The SYN-ACK answering our SYN has been taken (SND.UNA is past the SYN): keep the
    /// cookie it carries, and settle the data our SYN carried (RFC 7413 §4.2.2): what the
    /// server acknowledged leaves the send buffer, the rest is sent again from SND.UNA.
    pub(super) fn fast_open_on_syn_ack(&mut self, seg: &TcpRepr<'_>) {
        let Some(f) = self.fast_open.as_mut() else {
            return;
        };
        if f.sent {
            // Linux's tcp_rcv_fastopen_synack: "We requested a cookie but didn't get it. If
            // we did not use the (old) exp opt format then try so next time (try_exp=1).
            // Otherwise go back to use the old format (try_exp=2)." Not after a SYN sent
            // again: the server may have seen only the retransmission, which has no option.
            let unanswered = seg.fast_open.is_none() && f.syn_data == 0;
            let try_exp = match (unanswered && self.retransmits == 0, f.request_exp) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            };
            f.learned = Some(LearnedFastOpen {
                cookie: seg.fast_open.filter(|c| !c.is_request()),
                mss: PeerOptions::mss_of(seg),
                try_exp,
            });
        }
        let syn_data = std::mem::take(&mut f.syn_data);
        if syn_data == 0 {
            return;
        }
        let first = self.snd.iss + 1;
        let acked = if seg.ack_number > first {
            (seg.ack_number - first).min(syn_data)
        } else {
            0
        };
        self.consume_acked(acked);
        self.ack_to(first + acked);
        if let Some(f) = self.fast_open.as_mut() {
            // Only all of it counts (Linux's tcp_rcv_fastopen_synack sets syn_data_acked only
            // when nothing of the SYN's data is left to resend).
            f.syn_data_acked = acked == syn_data;
        }
        // What the server did not take goes again as ordinary data, at once (Linux's
        // tcp_rcv_fastopen_synack marks it lost and retransmits it).
        self.snd.nxt = self.snd.una;
    }
}
