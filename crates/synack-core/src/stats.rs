//! Counters of what the endpoint saw, sent and dropped, and why.

/// Counters kept by an [`Endpoint`](crate::Endpoint). Every dropped packet is counted under
/// exactly one `drop_*` reason. A packet is counted as sent when `poll_transmit` hands it
/// out, not when it is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// IP packets handed to `handle_packet`.
    pub packets_in: u64,
    /// Of those, packets whose `RecvMeta::checksum_verified` was set: their TCP checksum was
    /// verified or computed by the device (receive checksum offload) and not checked again.
    pub checksum_offloaded: u64,
    /// IP packets produced by `poll_transmit`.
    pub packets_out: u64,
    /// Of those, packets to one of our own addresses, taken back in rather than handed to
    /// the link (each also counted in `packets_in`).
    pub looped_back: u64,
    /// TCP segments accepted for processing.
    pub segments_in: u64,
    /// TCP segments sent: the connections' (each segment of a super-segment counted) and the
    /// endpoint's own (RSTs, SYN-cookie SYN-ACKs, TIME-WAIT's ACKs).
    pub segments_out: u64,
    /// Segments sent again after a timeout or loss detection.
    pub retransmits: u64,
    /// Connections that completed the handshake, actively or passively.
    pub connections_established: u64,
    /// RSTs sent, for closed ports and for aborts.
    pub rsts_sent: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// Segments that called for a challenge ACK (an RST in the window but not at RCV.NXT,
    /// a SYN) and were dropped without one, because the connection had just sent one
    /// (`Config::invalid_ratelimit`, `challenge_ack_limit`; Linux TCPACKSkippedChallenge).
    pub challenge_acks_limited: u64,
    /// Data segments that arrived marked CE on ECN connections (RFC 3168: a router on the
    /// path signalled congestion; Linux TCPDeliveredCE counts the same marks in packets).
    pub ecn_ce_received: u64,
    /// ACKs that echoed a congestion mark with ECE on ECN connections.
    pub ecn_ece_received: u64,
    /// Segments sent with CWR: each answers a congestion mark, a fast retransmit or a
    /// timeout with a window reduction (RFC 3168 §6.1.2).
    pub ecn_cwr_sent: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// SYN-ACKs sent statelessly with a SYN cookie (a listener's SYN queue was full).
    pub syncookies_sent: u64,
    /// ACKs that carried a valid SYN cookie and rebuilt a connection.
    pub syncookies_validated: u64,
    /// ACKs to a listener whose cookie did not check out (answered with an RST).
    pub syncookies_failed: u64,
    /// SYNs whose data a listener took with TCP Fast Open (RFC 7413; Linux
    /// TCPFastOpenPassive).
    pub fast_open_passive: u64,
    /// SYNs that presented a Fast Open cookie that did not check: their data was dropped
    /// (Linux TCPFastOpenPassiveFail).
    pub fast_open_passive_fail: u64,
    /// SYNs that asked for a Fast Open cookie (Linux TCPFastOpenCookieReqd).
    pub fast_open_cookie_requests: u64,
    /// Fast Open SYNs handled as plain SYNs because the listener's queue of pending Fast
    /// Open connections was full (Linux TCPFastOpenListenOverflow).
    pub fast_open_listen_overflow: u64,
    /// TIME-WAIT connections recycled early because the connection table was full.
    pub time_wait_recycled: u64,
    /// Segments a TIME-WAIT entry left unanswered because it had answered one less than
    /// `Config::invalid_ratelimit` before (a bare ACK or a SYN out of sequence; Linux
    /// TCPACKSkippedTimeWait). Each is also counted under its `drop_*` reason.
    pub time_wait_acks_limited: u64,
    /// SYNs held for the application in intercept mode (`Config::intercept`).
    pub intercepted_syns: u64,
    /// Retransmitted SYNs of a SYN already held, absorbed.
    pub intercept_duplicates: u64,
    /// Held SYNs dropped because the application did not decide in time.
    pub intercept_expired: u64,
    /// ICMP destination-unreachable errors sent for refused intercepted SYNs.
    pub intercept_unreachable_sent: u64,
    /// Such errors not sent: the ICMP rate limit (or a full queue of our own packets)
    /// dropped them (`Endpoint::unreachable_intercepted` returned `Ok(false)`).
    pub intercept_unreachable_limited: u64,
    /// New connections refused because the memory cap was reached (`Config::max_memory`):
    /// SYNs and SYN-cookie ACKs to listeners and accepted intercepted SYNs, each also
    /// counted as dropped under `drop_memory`, and `connect` calls that returned
    /// `NoBufferSpace`.
    pub refused_memory: u64,
    /// Times a connection's out-of-order data was discarded to make room at the memory cap
    /// (Linux's `OfoPruned`); not a drop of a packet: the data was taken, then let go.
    pub ooo_pruned: u64,
    /// Dropped: SYNs to intercept when too many were held (in total or from their source),
    /// or an accepted one that found the connection table full.
    pub drop_intercept_overflow: u64,
    /// UDP datagrams that parsed and were demultiplexed (to a socket, the catch-all queue,
    /// or a port unreachable).
    pub udp_datagrams_in: u64,
    /// UDP datagrams sent.
    pub udp_datagrams_out: u64,
    /// Intercept mode: UDP datagrams no socket took, queued for the application.
    pub udp_intercepted: u64,
    /// ICMP port unreachable errors sent for datagrams to a port with no socket, and the
    /// destination unreachable errors an application sent for datagrams
    /// ([`Endpoint::udp_unreachable`](crate::Endpoint::udp_unreachable)).
    pub udp_port_unreachable_sent: u64,
    /// Errors of `udp_port_unreachable_sent`'s kinds not sent because of the ICMP rate
    /// limit (Linux's icmp_msgs_per_sec token bucket).
    pub udp_port_unreachable_limited: u64,
    /// Errors of `udp_port_unreachable_sent`'s kinds not sent because the endpoint's
    /// own-packet queue was full, and no rate-limit token was spent on them. Not a drop: a
    /// datagram to a port with no socket is already counted under `drop_udp_no_socket`,
    /// and one the application answered for was taken by it.
    pub udp_port_unreachable_queue_full: u64,
    /// Dropped: a UDP datagram to a port with no socket (answered with port unreachable,
    /// or not, see `udp_port_unreachable_*`).
    pub drop_udp_no_socket: u64,
    /// Dropped: a UDP datagram that found its socket's receive queue
    /// (`Config::udp_recv_buffer`) or the catch-all queue full, or the endpoint at
    /// `Config::max_memory`.
    pub drop_udp_queue_full: u64,
    /// Dropped: shorter than its headers claim, or a header field out of range.
    pub drop_malformed: u64,
    /// Dropped: the IP, TCP, UDP or ICMP checksum is wrong (or a UDP checksum of zero over
    /// IPv6, RFC 8200 §8.1).
    pub drop_checksum: u64,
    /// Dropped: a TCP option list that does not parse.
    pub drop_bad_option: u64,
    /// Dropped: a segment signed with TCP MD5 (RFC 2385) or TCP-AO (RFC 5925), for a
    /// connection, a listener or no socket at all. synack holds no keys, and a signed
    /// segment taken unchecked would defeat the signature: Linux drops those at a socket
    /// with no key (`TCPMD5Unexpected`, `TCPAOKeyNotFound`) and sends no reset for one
    /// that finds no socket. TIME-WAIT answers them as it answers any segment, as Linux's.
    pub drop_signed: u64,
    /// Dropped: an IP fragment not reassembled into a datagram: of TCP or of a protocol
    /// synack does not reassemble (it reassembles UDP and ICMP), a repeat of a piece held,
    /// overlapping one (RFC 5722: the whole datagram goes), or held until its datagram
    /// timed out (`fragments_expired`) or was given up for room (`fragments_evicted`).
    pub drop_fragment: u64,
    /// Datagrams reassembled from fragments (RFC 791 §3.2, RFC 8200 §4.5) and handed on.
    pub fragments_reassembled: u64,
    /// Datagrams given up `Config::fragment_timeout` after their first fragment, whole
    /// pieces still missing.
    pub fragments_expired: u64,
    /// Datagrams given up, oldest first, so that a fragment would fit under
    /// `Config::fragment_memory`.
    pub fragments_evicted: u64,
    /// ICMP time exceeded ("fragment reassembly time exceeded") sent for an expired
    /// datagram whose first fragment had come.
    pub fragments_time_exceeded_sent: u64,
    /// Fragments of our own datagrams sent, each but the last of a datagram (which counts
    /// in `udp_datagrams_out`): a UDP datagram larger than the MTU goes in fragments.
    pub fragments_sent: u64,
    /// Dropped: not addressed to one of the stack's addresses (in intercept mode: to no
    /// unicast address), or to or from an address no link carries (loopback, 0/8, IPv4-mapped
    /// IPv6) or from one of the stack's own: Linux's martians.
    pub drop_not_for_us: u64,
    /// Dropped: a protocol or IPv6 extension header synack does not handle.
    pub drop_unsupported: u64,
    /// Of those, answered as Linux answers them: ICMP protocol unreachable (IPv4) or ICMPv6
    /// parameter problem (IPv6, RFC 8200 §4), within the ICMP rate limit.
    pub unsupported_answered: u64,
    /// Dropped: a segment outside the receive window.
    pub drop_out_of_window: u64,
    /// Dropped: PAWS rejected an old timestamp (RFC 7323 §5).
    pub drop_paws: u64,
    /// Dropped: a listener's SYN or accept queue was full.
    pub drop_listen_overflow: u64,
    /// Held back: a handshake's final ACK without data, for its listener's
    /// `TCP_DEFER_ACCEPT` (`SocketOptions::defer_accept`; Linux's `TCPDeferAcceptDrop`).
    pub drop_defer_accept: u64,
    /// Dropped: the endpoint was at its memory cap (`Config::max_memory`, Linux's
    /// TCPRcvQDrop): a segment whose data needed memory beyond it (its ACK was still
    /// processed), or a new connection's SYN (see `refused_memory`).
    pub drop_memory: u64,
    /// Dropped: any other packet, in or out: a segment the state machine discards (e.g. no
    /// ACK bit), an answer of our own with no room in the queue of such answers or in the
    /// buffer `poll_transmit` was given.
    pub drop_other: u64,
    /// Events dropped because [`MAX_EVENTS`](crate::endpoint::MAX_EVENTS) were undrained
    /// (see [`Endpoint::take_event_overflow`](crate::Endpoint::take_event_overflow)).
    pub events_dropped: u64,
}

impl Stats {
    /// Adds `other`'s counters to these: the totals of a runtime that runs several endpoints
    /// (one per shard of a multi-queue device). Every counter is a sum.
    pub fn merge(&mut self, other: &Stats) {
        // Destructured without `..`, so that a counter added to `Stats` and not summed here
        // does not compile.
        let Stats {
            packets_in,
            checksum_offloaded,
            packets_out,
            looped_back,
            segments_in,
            segments_out,
            retransmits,
            connections_established,
            rsts_sent,
            challenge_acks,
            challenge_acks_limited,
            echo_replies,
            syncookies_sent,
            syncookies_validated,
            syncookies_failed,
            fast_open_passive,
            fast_open_passive_fail,
            fast_open_cookie_requests,
            fast_open_listen_overflow,
            time_wait_recycled,
            time_wait_acks_limited,
            intercepted_syns,
            intercept_duplicates,
            intercept_expired,
            intercept_unreachable_sent,
            intercept_unreachable_limited,
            refused_memory,
            ooo_pruned,
            drop_intercept_overflow,
            udp_datagrams_in,
            udp_datagrams_out,
            udp_intercepted,
            udp_port_unreachable_sent,
            udp_port_unreachable_limited,
            udp_port_unreachable_queue_full,
            drop_udp_no_socket,
            drop_udp_queue_full,
            drop_malformed,
            drop_checksum,
            drop_bad_option,
            drop_signed,
            drop_fragment,
            fragments_reassembled,
            fragments_expired,
            fragments_evicted,
            fragments_time_exceeded_sent,
            fragments_sent,
            drop_not_for_us,
            drop_unsupported,
            unsupported_answered,
            drop_out_of_window,
            drop_paws,
            drop_listen_overflow,
            drop_defer_accept,
            drop_memory,
            drop_other,
            events_dropped,
            ecn_ce_received,
            ecn_ece_received,
            ecn_cwr_sent,
        } = other;
        self.packets_in += packets_in;
        self.checksum_offloaded += checksum_offloaded;
        self.packets_out += packets_out;
        self.looped_back += looped_back;
        self.segments_in += segments_in;
        self.segments_out += segments_out;
        self.retransmits += retransmits;
        self.connections_established += connections_established;
        self.rsts_sent += rsts_sent;
        self.challenge_acks += challenge_acks;
        self.challenge_acks_limited += challenge_acks_limited;
        self.echo_replies += echo_replies;
        self.syncookies_sent += syncookies_sent;
        self.syncookies_validated += syncookies_validated;
        self.syncookies_failed += syncookies_failed;
        self.fast_open_passive += fast_open_passive;
        self.fast_open_passive_fail += fast_open_passive_fail;
        self.fast_open_cookie_requests += fast_open_cookie_requests;
        self.fast_open_listen_overflow += fast_open_listen_overflow;
        self.time_wait_recycled += time_wait_recycled;
        self.time_wait_acks_limited += time_wait_acks_limited;
        self.intercepted_syns += intercepted_syns;
        self.intercept_duplicates += intercept_duplicates;
        self.intercept_expired += intercept_expired;
        self.intercept_unreachable_sent += intercept_unreachable_sent;
        self.intercept_unreachable_limited += intercept_unreachable_limited;
        self.refused_memory += refused_memory;
        self.ooo_pruned += ooo_pruned;
        self.drop_intercept_overflow += drop_intercept_overflow;
        self.udp_datagrams_in += udp_datagrams_in;
        self.udp_datagrams_out += udp_datagrams_out;
        self.udp_intercepted += udp_intercepted;
        self.udp_port_unreachable_sent += udp_port_unreachable_sent;
        self.udp_port_unreachable_limited += udp_port_unreachable_limited;
        self.udp_port_unreachable_queue_full += udp_port_unreachable_queue_full;
        self.drop_udp_no_socket += drop_udp_no_socket;
        self.drop_udp_queue_full += drop_udp_queue_full;
        self.drop_malformed += drop_malformed;
        self.drop_checksum += drop_checksum;
        self.drop_bad_option += drop_bad_option;
        self.drop_signed += drop_signed;
        self.drop_fragment += drop_fragment;
        self.fragments_reassembled += fragments_reassembled;
        self.fragments_expired += fragments_expired;
        self.fragments_evicted += fragments_evicted;
        self.fragments_time_exceeded_sent += fragments_time_exceeded_sent;
        self.fragments_sent += fragments_sent;
        self.drop_not_for_us += drop_not_for_us;
        self.drop_unsupported += drop_unsupported;
        self.unsupported_answered += unsupported_answered;
        self.drop_out_of_window += drop_out_of_window;
        self.drop_paws += drop_paws;
        self.drop_listen_overflow += drop_listen_overflow;
        self.drop_defer_accept += drop_defer_accept;
        self.drop_memory += drop_memory;
        self.drop_other += drop_other;
        self.events_dropped += events_dropped;
        self.ecn_ce_received += ecn_ce_received;
        self.ecn_ece_received += ecn_ece_received;
        self.ecn_cwr_sent += ecn_cwr_sent;
    }
}

/// What the endpoint's memory goes to, for sizing a server (see
/// [`Endpoint::memory_usage`](crate::Endpoint::memory_usage)).
///
/// `buffered` is what `Config::max_memory` bounds; `allocated` is the heap those buffers
/// hold; `state` is the connections' own state, which `Config::max_connections` bounds. A
/// server's footprint is about `state + allocated`, plus the tables' spare capacity
/// (`tests/idle_footprint.rs` measures the whole: under 2 KiB per idle connection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Bytes held against the cap ([`Endpoint::memory`](crate::Endpoint::memory)): what
    /// the connections' buffers hold (data queued for sending, and the receive buffers'
    /// storage: data not yet read, and out-of-order data by the blocks it fills), and the UDP
    /// datagrams queued.
    pub buffered: usize,
    /// Heap bytes the connections' buffers hold allocated (UDP queues aside): their share
    /// of `buffered`, plus the send
    /// buffers' spare capacity and the SACK and RACK records (less what the application
    /// shares through `send_bytes`). A buffer that emptied keeps its storage for the next
    /// burst for a second (not at all under pressure).
    pub allocated: usize,
    /// Live connections, in every state but the compact TIME-WAIT.
    pub connections: usize,
    /// Released connections in the compact TIME-WAIT table.
    pub time_wait: usize,
    /// Bytes of connection state: each live connection's own structure, its congestion
    /// controller and its index entries, each TIME-WAIT entry, and each SYN held by
    /// interception with the packet it quotes (from the types' sizes, not counting the
    /// tables' spare capacity).
    pub state: usize,
    /// Whether the endpoint is under memory pressure (see `Config::max_memory`).
    pub pressure: bool,
    /// The cap, `Config::max_memory`.
    pub cap: usize,
    /// Bytes the fragments of datagrams being reassembled are charged, against their own
    /// cap, `Config::fragment_memory` (not `cap`).
    pub reassembly: usize,
}

impl MemoryUsage {
    /// Adds `other`'s figures to these, for a runtime that runs several endpoints: bytes,
    /// connections and caps are sums (each endpoint has its share of the cap), and the
    /// whole is under pressure if any part is.
    pub fn merge(&mut self, other: &MemoryUsage) {
        // Destructured without `..`: a field added and not merged here does not compile.
        let MemoryUsage {
            buffered,
            allocated,
            connections,
            time_wait,
            state,
            pressure,
            cap,
            reassembly,
        } = other;
        self.buffered += buffered;
        self.allocated += allocated;
        self.connections += connections;
        self.time_wait += time_wait;
        self.state += state;
        self.pressure |= pressure;
        self.cap += cap;
        self.reassembly += reassembly;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_sums_every_counter() {
        let mut a = Stats {
            packets_in: 3,
            drop_other: 1,
            ..Stats::default()
        };
        let b = Stats {
            packets_in: 4,
            retransmits: 2,
            drop_other: 5,
            ..Stats::default()
        };
        a.merge(&b);
        assert_eq!(a.packets_in, 7);
        assert_eq!(a.retransmits, 2);
        assert_eq!(a.drop_other, 6);
        let mut zero = Stats::default();
        zero.merge(&a);
        assert_eq!(zero, a);
    }

    #[test]
    fn memory_usage_merge_sums_and_ors_pressure() {
        let mut a = MemoryUsage {
            buffered: 10,
            allocated: 20,
            connections: 1,
            time_wait: 2,
            state: 30,
            pressure: false,
            cap: 100,
            reassembly: 7,
        };
        let b = MemoryUsage {
            buffered: 1,
            allocated: 2,
            connections: 3,
            time_wait: 4,
            state: 5,
            pressure: true,
            cap: 100,
            reassembly: 1,
        };
        a.merge(&b);
        assert_eq!(
            a,
            MemoryUsage {
                buffered: 11,
                allocated: 22,
                connections: 4,
                time_wait: 6,
                state: 35,
                pressure: true,
                cap: 200,
                reassembly: 8,
            }
        );
    }
}
