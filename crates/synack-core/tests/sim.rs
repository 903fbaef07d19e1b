//! Whole-stack scenarios on a simulated network: endpoints talk to each other (not to a
//! scripted peer) over links with latency, bandwidth limits and seeded faults, in virtual time.
//! Every run is reproducible from its seed; every transfer is checked byte for byte; every run
//! ends with the network's invariants (no invalid packet emitted, no damaged-packet drop
//! beyond the corruption injected, no connection left once TIME-WAIT expired).

#[path = "sim/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use synack_core::tcp::info::TcpInfo;
use synack_core::{Config, Error, Event, Instant, ListenerHandle, State};

use app::{run, Flow};
use synack_core::testing::{v4, v6, Faults, LinkConfig, Net};

const MB: u64 = 1024 * 1024;
const PORT: u16 = 80;

/// 5 ms each way: a 10 ms round trip.
fn rtt10() -> LinkConfig {
    LinkConfig::latency(Duration::from_millis(5))
}

fn listen(net: &mut Net, node: usize, ipv6: bool) -> (ListenerHandle, SocketAddr) {
    let ip = if ipv6 { v6(node) } else { v4(node) };
    let addr = SocketAddr::new(ip, PORT);
    let l = net.nodes[node].listen(addr, 1024).expect("listen");
    (l, addr)
}

/// Long enough for TIME-WAIT (60 s) and any orphan's timers to run out.
const SETTLE: Duration = Duration::from_secs(600);

/// One connection from node 0 to node 1: node 0 sends `up` bytes, node 1 sends `down`.
/// Checks every byte and the end-of-run invariants; returns the virtual time from connect to
/// the last close.
fn transfer(net: &mut Net, up: u64, down: u64, ipv6: bool, limit: Duration) -> Duration {
    let (l, addr) = listen(net, 1, ipv6);
    let start = net.now;
    let mut flows = vec![Flow::new(0, 1, up, down, 7)];
    flows[0].connect(net, addr);
    let end = run(net, &mut flows, &[(1, l)], limit);
    flows[0].assert_complete();
    finish(net);
    end - start
}

/// Let every timer run out, then check the invariants.
fn finish(net: &mut Net) {
    assert!(net.settle(SETTLE), "timers still pending after {SETTLE:?}");
    net.assert_clean_end();
}

// -------------------------------------------------------------------------------------------
// Clean links: bulk transfers
// -------------------------------------------------------------------------------------------

#[test]
fn bulk_client_to_server() {
    let mut net = Net::pair(1, &Config::default(), rtt10());
    let t = transfer(&mut net, 4 * MB, 0, false, Duration::from_secs(60));
    // 256 KiB windows over a 10 ms RTT allow ~25 MB/s; slow start costs a few RTTs more.
    assert!(t < Duration::from_secs(2), "4 MiB took {t:?}");
    assert_eq!(net.stats.lost + net.stats.queue_drops, 0);
}

#[test]
fn bulk_server_to_client() {
    let mut net = Net::pair(2, &Config::default(), rtt10());
    let t = transfer(&mut net, 0, 4 * MB, false, Duration::from_secs(60));
    assert!(t < Duration::from_secs(2), "4 MiB took {t:?}");
}

#[test]
fn bulk_both_directions_at_once() {
    let mut net = Net::pair(3, &Config::default(), rtt10());
    let t = transfer(&mut net, 3 * MB, 3 * MB, false, Duration::from_secs(60));
    assert!(t < Duration::from_secs(2), "3 MiB each way took {t:?}");
}

#[test]
fn bulk_over_ipv6() {
    let mut net = Net::pair(4, &Config::default(), rtt10());
    let t = transfer(&mut net, 2 * MB, 2 * MB, true, Duration::from_secs(60));
    assert!(
        t < Duration::from_secs(2),
        "2 MiB each way over IPv6 took {t:?}"
    );
}

/// A long fat path: 100 ms round trip, no bandwidth limit, and writers that offer whole
/// chunks as tokio's `write_all` does. Buffer auto-tuning must open both ends from their
/// initial 256 KiB, doubling a round trip as slow start does: the sender's buffer towards
/// its 4 MiB ceiling (Linux's `tcp_sndbuf_expand`), the receiver's window towards its 6 MiB
/// one (`tcp_rcv_space_adjust`). Held at 256 KiB, 32 MiB would take 128 round trips, 12.8 s;
/// here it takes about 20.
#[test]
fn bulk_over_a_long_fat_path_each_way() {
    let path = LinkConfig::latency(Duration::from_millis(50));
    for (seed, up, down) in [(6, 32 * MB, 0), (7, 0, 32 * MB)] {
        let mut net = Net::pair(seed, &Config::default(), path);
        let (l, addr) = listen(&mut net, 1, false);
        let start = net.now;
        let mut flows = vec![Flow::new(0, 1, up, down, 7)];
        flows[0].a.whole_writes = true;
        flows[0].b.whole_writes = true;
        flows[0].connect(&mut net, addr);
        let t = run(&mut net, &mut flows, &[(1, l)], Duration::from_secs(120)) - start;
        flows[0].assert_complete();
        finish(&mut net);
        assert!(t < Duration::from_millis(2500), "32 MiB took {t:?}");
    }
}

#[test]
fn bandwidth_limited_link_with_a_small_queue() {
    // 10 MB/s behind a 32-packet queue: the window outgrows the queue, so tail drops happen
    // and congestion control must recover from them.
    let link = rtt10().with_bandwidth(10_000_000, 32);
    let mut net = Net::pair(5, &Config::default(), link);
    let t = transfer(&mut net, 4 * MB, 0, false, Duration::from_secs(120));
    // The link alone needs 0.42 s for 4 MiB of payload; allow ten times that.
    assert!(
        t >= Duration::from_millis(419),
        "faster than the link: {t:?}"
    );
    assert!(t < Duration::from_secs(5), "4 MiB over 10 MB/s took {t:?}");
}

// -------------------------------------------------------------------------------------------
// Segmentation offload: super-segments carried whole (GRO) or cut by the device (TSO)
// -------------------------------------------------------------------------------------------

/// Both ends hand their device super-segments of up to 64 KiB.
fn offloading() -> Config {
    let mut c = Config::default();
    c.gso_max_size(65535);
    c
}

/// Asserts that super-segments carried at least `share` of the `payload` bytes sent. (The
/// window grows only while it limits the flow, as Linux's does, so pacing at 1.2 - 2 times
/// cwnd/SRTT lets part of a 10 ms flow out one segment at a time: about 70 % of the bytes go
/// in super-segments here, where an ever-growing window let nearly all go.)
fn assert_offloaded(net: &Net, payload: u64, share: f64) {
    let s = &net.stats;
    eprintln!(
        "{} super-segments, {} bytes, {:.1} KiB each",
        s.super_segments,
        s.super_segment_bytes,
        s.super_segment_bytes as f64 / s.super_segments.max(1) as f64 / 1024.0
    );
    assert!(
        s.super_segment_bytes as f64 >= payload as f64 * share,
        "super-segments carried {} of {payload} bytes",
        s.super_segment_bytes
    );
}

#[test]
fn super_segments_taken_whole_deliver_every_byte() {
    let mut net = Net::pair(40, &offloading(), rtt10());
    let t = transfer(&mut net, 4 * MB, 4 * MB, false, Duration::from_secs(60));
    assert!(t < Duration::from_secs(2), "4 MiB each way took {t:?}");
    assert_offloaded(&net, 8 * MB, 0.6);
}

#[test]
fn super_segments_cut_by_the_device_recover_from_loss() {
    // Faults hit the segments the device cut, one at a time: recovery must resend the lost
    // segments, not the whole super-segments they came in.
    let link = rtt10().with_faults(Faults::loss(0.02));
    let mut net = Net::pair(41, &offloading(), link);
    net.cut_super_segments = true;
    let t = transfer(&mut net, 2 * MB, 2 * MB, false, Duration::from_secs(120));
    assert!(
        net.stats.lost > 20,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(
        t < Duration::from_secs(20),
        "2 MiB each way at 2 % loss took {t:?}"
    );
    // Over seeds 1-40 the share is 0.38-0.6, 0.47 on average (2 % of the device's segments
    // lost: recovery and the window's regrowth send much one segment at a time).
    assert_offloaded(&net, 4 * MB, 0.35);
    // Each loss costs about one retransmitted segment, not a super-segment's worth.
    let retransmits: u64 = net.nodes.iter().map(|e| e.stats().retransmits).sum();
    assert!(
        retransmits < net.stats.lost * 3,
        "{retransmits} retransmissions for {} losses",
        net.stats.lost
    );
}

#[test]
fn super_segments_handed_over_as_gro_deliver_every_byte() {
    // The receiver is told each super-segment's segment size (RecvMeta::segment_size), as a
    // device with GRO tells it.
    let mut net = Net::pair(43, &offloading(), rtt10());
    net.gro = true;
    let t = transfer(&mut net, 4 * MB, MB, false, Duration::from_secs(60));
    assert!(t < Duration::from_secs(2), "4 MiB and 1 MiB took {t:?}");
    assert_offloaded(&net, 5 * MB, 0.6);
}

#[test]
fn segments_cut_by_the_sender_and_glued_by_the_receiver() {
    // TSO at the sending device, GRO at the receiving one: both through wire::gso.
    for ipv6 in [false, true] {
        let mut net = Net::pair(44, &offloading(), rtt10());
        net.cut_super_segments = true;
        net.coalesce = true;
        transfer(&mut net, 4 * MB, MB, ipv6, Duration::from_secs(60));
        assert_offloaded(&net, 5 * MB, 0.6);
        assert!(
            net.stats.coalesced_segments > 1000,
            "little was coalesced: {:?}",
            net.stats
        );
    }
}

#[test]
fn coalescing_receivers_under_every_fault() {
    // Corrupted segments must not be glued (their checksum fails), duplicates and reordered
    // ones break batches; every byte still arrives and every damaged copy is dropped.
    let link = rtt10().with_faults(Faults::mixed());
    let mut net = Net::pair(45, &offloading(), link);
    net.cut_super_segments = true;
    net.coalesce = true;
    transfer(&mut net, MB, MB, false, Duration::from_secs(300));
    assert!(
        net.stats.coalesced > 0,
        "nothing coalesced: {:?}",
        net.stats
    );
}

#[test]
fn super_segments_over_ipv6() {
    let mut net = Net::pair(42, &offloading(), rtt10());
    net.cut_super_segments = true;
    transfer(&mut net, 2 * MB, MB, true, Duration::from_secs(60));
    assert_offloaded(&net, 3 * MB, 0.5);
}

// -------------------------------------------------------------------------------------------
// One fault at a time, then all of them
// -------------------------------------------------------------------------------------------

#[test]
fn five_percent_loss_does_not_stall() {
    let link = rtt10().with_faults(Faults::loss(0.05));
    let mut net = Net::pair(10, &Config::default(), link);
    net.trace = std::env::var_os("SIM_TRACE").is_some();
    let t = transfer(&mut net, MB, 0, false, Duration::from_secs(120));
    assert!(
        net.stats.lost > 20,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(t < Duration::from_secs(30), "1 MiB at 5 % loss took {t:?}");
}

#[test]
fn loss_of_acks_only() {
    // Data from 0 to 1 arrives; one ACK in ten from 1 to 0 is lost.
    let mut net = Net::pair(18, &Config::default(), rtt10());
    net.set_link(1, 0, rtt10().with_faults(Faults::loss(0.10)));
    let t = transfer(&mut net, MB, 0, false, Duration::from_secs(60));
    assert!(
        net.stats.lost > 20,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(
        t < Duration::from_secs(10),
        "1 MiB with lost ACKs took {t:?}"
    );
}

#[test]
fn ten_percent_loss_both_directions() {
    let link = rtt10().with_faults(Faults::loss(0.10));
    let mut net = Net::pair(11, &Config::default(), link);
    let t = transfer(
        &mut net,
        512 * 1024,
        512 * 1024,
        false,
        Duration::from_secs(300),
    );
    assert!(
        net.stats.lost > 50,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(t < Duration::from_secs(120), "took {t:?}");
}

#[test]
fn duplication() {
    let link = rtt10().with_faults(Faults::duplicate(0.10));
    let mut net = Net::pair(12, &Config::default(), link);
    let t = transfer(&mut net, MB, MB, false, Duration::from_secs(60));
    assert!(
        net.stats.duplicated > 50,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(t < Duration::from_secs(5), "took {t:?}");
}

#[test]
fn reordering() {
    let link = rtt10().with_faults(Faults::reorder(0.10, Duration::from_millis(20)));
    let mut net = Net::pair(13, &Config::default(), link);
    let t = transfer(&mut net, MB, MB, false, Duration::from_secs(60));
    assert!(
        net.stats.reordered > 50,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(t < Duration::from_secs(20), "took {t:?}");
}

/// A path that reorders but loses nothing (a quarter of the data segments held back by up to
/// 10 ms on a 20 ms round trip, the ACKs in order): every retransmission is spurious. Once
/// the sender has seen the reordering, RACK's time window alone calls losses and widens with
/// each D-SACK (RFC 8985 §6.2 step 4), and the timestamps tell a retransmission the original
/// overtook (Linux's `tcp_packet_delayed`): few retransmissions, and the window grows. The
/// DupThresh rule alone, which the sender applied before, resent about one segment in ten
/// here and kept halving its window.
#[test]
fn reordering_without_loss_costs_few_retransmissions() {
    let mut net = Net::pair(
        21,
        &Config::default(),
        LinkConfig::latency(Duration::from_millis(10)),
    );
    let reordering = LinkConfig::latency(Duration::from_millis(10))
        .with_faults(Faults::reorder(0.25, Duration::from_millis(10)));
    net.set_link(0, 1, reordering);
    let t = transfer(&mut net, 8 * MB, 0, false, Duration::from_secs(120));
    let sent = net.nodes[0].stats().segments_out;
    let resent = net.nodes[0].stats().retransmits;
    println!(
        "8 MiB in {t:?}: {resent} of {sent} segments resent; {:?}",
        net.stats
    );
    assert!(
        net.stats.reordered > 1000,
        "the fault did not fire: {:?}",
        net.stats
    );
    assert!(resent * 100 < sent, "{resent} of {sent} segments resent");
    assert!(t < Duration::from_secs(8), "took {t:?}");
}

/// One bulk flow from node 0 to node 1, driven by hand so that the sender's TCP_INFO can be
/// read: how long it took, and both ends' TCP_INFO at the last moment the sender's could be
/// read.
fn bulk_with_info(net: &mut Net, up: u64, limit: Duration) -> (Duration, TcpInfo, TcpInfo) {
    let (l, addr) = listen(net, 1, false);
    let start = net.now;
    let mut f = Flow::new(0, 1, up, 0, 7);
    f.connect(net, addr);
    let mut last = None;
    let mut peer = None;
    loop {
        if f.b.conn.is_none() {
            if let Ok(h) = net.nodes[1].accept(l) {
                f.b.conn = Some(h);
            }
        }
        let mut wake = None;
        for side in [&mut f.a, &mut f.b] {
            if let Some(t) = side.drive(net) {
                wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
            }
        }
        // Both ends at the same moment, while the sender's handle is open (its application
        // lets go of it once everything is queued), so that the two cover the same part of
        // the transfer.
        let sender = f.a.conn.and_then(|c| net.nodes[0].info(net.now, c).ok());
        let receiver = f.b.conn.and_then(|c| net.nodes[1].info(net.now, c).ok());
        if let (Some(s), Some(r)) = (sender, receiver) {
            last = Some(s);
            peer = Some(r);
        }
        if f.done() {
            break;
        }
        assert!(net.now - start < limit, "not done within {limit:?}");
        assert!(net.step(wake), "stalled");
    }
    f.assert_complete();
    (
        net.now - start,
        last.expect("the sender's TCP_INFO"),
        peer.expect("the receiver's TCP_INFO"),
    )
}

/// A path that only loses (2 % of the data segments; nothing reordered or duplicated): no
/// reduction is undone, and no segment reaches the receiver twice but by a tail loss probe
/// or a timeout (which resend what may have arrived). A recovery entered by the ACK that
/// ends the one before, or one whose HighRxt RACK moved back to a lost retransmission,
/// resent the segments whose retransmissions were still in flight (23 duplicates over these
/// seeds before; Linux resends no skb marked `TCPCB_SACKED_RETRANS` until RACK marks it
/// lost). Those still in flight also count as the new recovery's and keep the older stamp,
/// as Linux starts `undo_retrans` from `retrans_out` and keeps `retrans_stamp`: seeds 2 and
/// 3 undid real losses' reductions before (found by review).
#[test]
fn loss_alone_is_never_undone_nor_resent_twice() {
    for seed in 1..=30 {
        let latency = LinkConfig::latency(Duration::from_millis(5));
        let mut net = Net::pair(seed, &Config::default(), latency);
        net.set_link(0, 1, latency.with_faults(Faults::loss(0.02)));
        let (_, info, peer) = bulk_with_info(&mut net, 8 * MB, Duration::from_secs(300));
        assert!(info.recoveries > 50, "seed {seed}: {info:?}");
        assert_eq!(info.undos, 0, "seed {seed}: a real loss's reduction undone");
        assert!(
            peer.dsacks_sent <= info.tlp_count + info.rto_count,
            "seed {seed}: {} segments arrived twice; sender {info:?}",
            peer.dsacks_sent
        );
    }
}

#[test]
fn corruption_is_caught_by_checksums() {
    let link = rtt10().with_faults(Faults::corrupt(0.05));
    let mut net = Net::pair(14, &Config::default(), link);
    let t = transfer(&mut net, MB, MB, false, Duration::from_secs(120));
    // `finish` asserted that damaged-packet drops equal corrupted deliveries exactly: every
    // flipped byte was caught, none slipped through as data (the byte check would fail too).
    assert!(
        net.stats.corrupted > 50,
        "the fault did not fire: {:?}",
        net.stats
    );
    let checksum: u64 = net.nodes.iter().map(|e| e.stats().drop_checksum).sum();
    assert!(checksum > 0, "no checksum drop at all");
    assert!(t < Duration::from_secs(60), "took {t:?}");
}

#[test]
fn corruption_over_ipv6_is_caught() {
    let link = rtt10().with_faults(Faults::corrupt(0.05));
    let mut net = Net::pair(15, &Config::default(), link);
    transfer(
        &mut net,
        512 * 1024,
        512 * 1024,
        true,
        Duration::from_secs(120),
    );
    assert!(
        net.stats.corrupted > 20,
        "the fault did not fire: {:?}",
        net.stats
    );
}

#[test]
fn all_faults_mixed() {
    let link = rtt10().with_faults(Faults::mixed());
    let mut net = Net::pair(16, &Config::default(), link);
    net.trace = std::env::var_os("SIM_TRACE").is_some();
    let t = transfer(
        &mut net,
        512 * 1024,
        512 * 1024,
        false,
        Duration::from_secs(300),
    );
    let s = &net.stats;
    assert!(
        s.lost > 0 && s.duplicated > 0 && s.reordered > 0 && s.corrupted > 0,
        "{s:?}"
    );
    assert!(t < Duration::from_secs(200), "took {t:?}");
}

#[test]
fn runs_are_reproducible() {
    let once = || {
        let link = rtt10().with_faults(Faults::mixed());
        let mut net = Net::pair(17, &Config::default(), link);
        let t = transfer(
            &mut net,
            128 * 1024,
            64 * 1024,
            false,
            Duration::from_secs(300),
        );
        let stats: Vec<_> = net.nodes.iter().map(|e| e.stats().clone()).collect();
        (t, net.stats.clone(), stats)
    };
    assert_eq!(once(), once());
}

// -------------------------------------------------------------------------------------------
// Many connections
// -------------------------------------------------------------------------------------------

#[test]
fn many_concurrent_connections() {
    let link = rtt10().with_faults(Faults::loss(0.01));
    let mut net = Net::pair(20, &Config::default(), link);
    let (l, addr) = listen(&mut net, 1, false);
    let mut flows: Vec<Flow> = (0..32)
        .map(|i| Flow::new(0, 1, 128 * 1024, 64 * 1024, 100 + i))
        .collect();
    for f in &mut flows {
        f.connect(&mut net, addr);
    }
    run(&mut net, &mut flows, &[(1, l)], Duration::from_secs(120));
    for f in &flows {
        f.assert_complete();
    }
    assert_eq!(net.nodes[1].stats().connections_established, 32);
    finish(&mut net);
}

#[test]
fn listener_accepts_many_clients() {
    // Three client nodes open 60 connections each to one listener at the same instant.
    let configs = (0..4)
        .map(|i| {
            let mut c = Config::default();
            c.seed(Some(synack_core::testing::seed_bytes(21, i)));
            c
        })
        .collect();
    let mut net = Net::new(21, configs, rtt10());
    let (l, addr) = listen(&mut net, 3, false);
    let mut flows = Vec::new();
    for client in 0..3 {
        for i in 0..60 {
            let mut f = Flow::new(client, 3, 1000, 2000, (client * 1000 + i) as u64);
            f.connect(&mut net, addr);
            flows.push(f);
        }
    }
    run(&mut net, &mut flows, &[(3, l)], Duration::from_secs(60));
    for f in &flows {
        f.assert_complete();
    }
    let server = net.nodes[3].stats();
    assert_eq!(server.connections_established, 180);
    assert_eq!(server.drop_listen_overflow, 0);
    finish(&mut net);
}

// -------------------------------------------------------------------------------------------
// Half-close, flow control, simultaneous open
// -------------------------------------------------------------------------------------------

#[test]
fn half_close_then_the_peer_keeps_sending() {
    // The client sends nothing and shuts down at once; the server starts its 1 MiB only after
    // it has read the client's FIN, so every byte travels to a FIN-WAIT-2 client.
    let mut net = Net::pair(
        30,
        &Config::default(),
        rtt10().with_faults(Faults::loss(0.02)),
    );
    let (l, addr) = listen(&mut net, 1, false);
    let mut flows = vec![Flow::new(0, 1, 0, MB, 30)];
    flows[0].b.send_after_eof = true;
    flows[0].connect(&mut net, addr);
    // Run until the server read EOF, and check the client is half-closed then.
    let client = flows[0].a.conn.expect("connected");
    for _ in 0..100_000 {
        if let Ok(h) = net.nodes[1].accept(l) {
            flows[0].b.conn = Some(h);
        }
        if flows[0].b.conn.is_some() && net.nodes[1].recv_ready(flows[0].b.conn.unwrap()).unwrap() {
            break;
        }
        if net.nodes[0].state(client) == Ok(State::Established) && !flows[0].a.shut {
            net.nodes[0].shutdown(client).expect("shutdown");
            flows[0].a.shut = true;
        }
        assert!(net.step(None), "stalled before the FIN arrived");
    }
    assert!(flows[0].a.shut);
    // The server's ACK of that FIN is on its way; once it lands the client is half-closed.
    for _ in 0..1000 {
        if net.nodes[0].state(client) != Ok(State::FinWait1) {
            break;
        }
        assert!(net.step(None));
    }
    assert_eq!(net.nodes[0].state(client), Ok(State::FinWait2));
    run(&mut net, &mut flows, &[(1, l)], Duration::from_secs(60));
    flows[0].assert_complete();
    assert!(flows[0].a.eof_at > flows[0].b.eof_at);
    finish(&mut net);
}

#[test]
fn tiny_buffers_and_a_slow_reader_close_the_window() {
    let mut cfg = Config::default();
    cfg.send_buffer(4096).recv_buffer(4096);
    let mut net = Net::pair(31, &cfg, rtt10());
    net.trace = std::env::var_os("SIM_TRACE").is_some();
    let (l, addr) = listen(&mut net, 1, false);
    let mut flows = vec![Flow::new(0, 1, 32 * 1024, 0, 31)];
    // One buffer's worth every 500 ms: the buffer fills long before each read, so the
    // delayed ACK in between must advertise a zero window (RFC 9293 §3.8.6).
    flows[0].b.read_limit = Some((4096, Duration::from_millis(500)));
    flows[0].connect(&mut net, addr);
    let start = net.now;
    let end = run(&mut net, &mut flows, &[(1, l)], Duration::from_secs(120));
    flows[0].assert_complete();
    let t = end - start;
    // The reader paces it: 32 KiB in reads of at most 4 KiB needs 8 reads, 7 intervals.
    assert!(
        t >= Duration::from_millis(3500),
        "faster than the reader: {t:?}"
    );
    assert!(t < Duration::from_secs(30), "flow control stalled: {t:?}");
    assert!(net.stats.zero_windows > 0, "the window never closed");
    finish(&mut net);
}

#[test]
fn tiny_buffers_under_loss() {
    let mut cfg = Config::default();
    cfg.send_buffer(3000).recv_buffer(3000);
    let link = rtt10().with_faults(Faults::loss(0.05));
    let mut net = Net::pair(32, &cfg, link);
    let t = transfer(
        &mut net,
        128 * 1024,
        128 * 1024,
        false,
        Duration::from_secs(600),
    );
    assert!(t < Duration::from_secs(300), "took {t:?}");
}

#[test]
fn simultaneous_open() {
    // Each side's only ephemeral port is fixed, so both can name the other's port before
    // either SYN arrives: the SYNs cross on the link (RFC 9293 §3.5, Figure 8).
    let mut a = Config::default();
    a.seed(Some(synack_core::testing::seed_bytes(33, 1)))
        .ephemeral_ports((5000, 5000));
    let mut b = Config::default();
    b.seed(Some(synack_core::testing::seed_bytes(33, 2)))
        .ephemeral_ports((6000, 6000));
    let mut net = Net::new(33, vec![a, b], rtt10());
    net.trace = std::env::var_os("SIM_TRACE").is_some();
    let mut flows = vec![Flow::new(0, 1, 256 * 1024, 256 * 1024, 33)];
    let now = net.now;
    let ha = net.nodes[0]
        .connect(now, SocketAddr::new(v4(1), 6000))
        .expect("connect a");
    let hb = net.nodes[1]
        .connect(now, SocketAddr::new(v4(0), 5000))
        .expect("connect b");
    assert_eq!(net.nodes[0].local_addr(ha).unwrap().port(), 5000);
    assert_eq!(net.nodes[1].local_addr(hb).unwrap().port(), 6000);
    flows[0].a.conn = Some(ha);
    flows[0].b.conn = Some(hb);
    run(&mut net, &mut flows, &[], Duration::from_secs(60));
    flows[0].assert_complete();
    for ep in &net.nodes {
        assert_eq!(
            ep.stats().rsts_sent,
            0,
            "simultaneous open ended in a reset"
        );
    }
    finish(&mut net);
}

// -------------------------------------------------------------------------------------------
// Failure when the link dies
// -------------------------------------------------------------------------------------------

/// Run until node `node` reports `Closed` for its connection; returns when and why.
fn wait_closed(net: &mut Net, node: usize, limit: Duration) -> (Instant, Option<Error>) {
    let end = net.now + limit;
    for _ in 0..1_000_000 {
        while let Some(e) = net.nodes[node].poll_event() {
            if let Event::Closed(_, why) = e {
                return (net.now, why);
            }
        }
        assert!(net.now <= end, "no Closed event within {limit:?}");
        assert!(net.step(None), "stalled without closing");
    }
    panic!("iteration bound");
}

#[test]
fn connect_times_out_when_the_link_is_dead() {
    let mut net = Net::pair(40, &Config::default(), rtt10());
    net.set_up(0, 1, false);
    let start = net.now;
    let h = net.nodes[0]
        .connect(start, SocketAddr::new(v4(1), PORT))
        .expect("connect");
    let (at, why) = wait_closed(&mut net, 0, Duration::from_secs(1000));
    assert_eq!(why, Some(Error::TimedOut));
    // The SYN at 0 and six retries after 2, 4, 8, 16, 32 and 64 s; the last wait would be
    // 128 s but the RTO is capped at 120 s (Linux TCP_RTO_MAX): 246 s.
    assert_eq!(at - start, Duration::from_secs(246));
    assert_eq!(net.nodes[0].stats().retransmits, 6);
    assert_eq!(net.nodes[0].recv(at, h, &mut [0; 8]), Err(Error::TimedOut));
    net.nodes[0].close(at, h).expect("close");
    finish(&mut net);
}

#[test]
fn established_connection_times_out_when_the_link_dies() {
    let mut cfg = Config::default();
    cfg.data_retries(5);
    let mut net = Net::pair(41, &cfg, rtt10());
    let (l, addr) = listen(&mut net, 1, false);
    let now = net.now;
    let client = net.nodes[0].connect(now, addr).expect("connect");
    for _ in 0..1000 {
        if net.nodes[0].state(client) == Ok(State::Established) {
            break;
        }
        assert!(net.step(None));
    }
    while net.nodes[0].poll_event().is_some() {}
    // The client's final ACK is still on its way to the server.
    let mut server = None;
    for _ in 0..1000 {
        if let Ok(h) = net.nodes[1].accept(l) {
            server = Some(h);
            break;
        }
        assert!(net.step(None));
    }
    let server = server.expect("accepted");
    // Both directions die; the client keeps writing.
    net.set_up(0, 1, false);
    net.set_up(1, 0, false);
    let start = net.now;
    let resent_before = net.nodes[0].stats().retransmits;
    let n = net.nodes[0].send(client, &[7; 5000]).expect("send");
    assert_eq!(n, 5000);
    let (at, why) = wait_closed(&mut net, 0, Duration::from_secs(600));
    assert_eq!(why, Some(Error::TimedOut));
    // One retransmission per timeout, and the tail loss probes before the first: after a
    // timeout no probe goes until an ACK shows the path alive (Linux sends none in its
    // Loss state), or a dead path would get each timeout's retransmission three times.
    let resent = net.nodes[0].stats().retransmits - resent_before;
    assert!(resent <= 5 + 2, "{resent} retransmissions for 5 timeouts");
    // RTO is 210 ms after one 10 ms RTT sample (SRTT plus the 200 ms floor of the variance
    // term, as Linux), doubling: the connection gives up when the sixth timeout fires,
    // 0.21 * (1 + 2 + 4 + 8 + 16 + 32) = 13.23 s after the write (if the first RTO were the
    // 1 s initial one it would be 63 s).
    let t = at - start;
    assert!(
        t >= Duration::from_millis(13_230) && t < Duration::from_millis(13_700),
        "timed out after {t:?}"
    );
    assert_eq!(net.nodes[0].send(client, b"x"), Err(Error::TimedOut));
    net.nodes[0].close(at, client).expect("close");
    // The server never hears of it; abort it so the network can settle.
    net.nodes[1].abort(server).expect("abort");
    finish(&mut net);
}

// -------------------------------------------------------------------------------------------
// Random seeds and fault mixes
// -------------------------------------------------------------------------------------------

fn faults() -> impl Strategy<Value = Faults> {
    (
        0.0..0.10f64,
        0.0..0.10f64,
        0.0..0.20f64,
        1u64..30,
        0.0..0.05f64,
    )
        .prop_map(|(loss, duplicate, reorder, delay_ms, corrupt)| Faults {
            loss,
            duplicate,
            reorder,
            reorder_delay: Duration::from_millis(delay_ms),
            corrupt,
        })
}

proptest! {
    // A fixed seed keeps the suite deterministic; failures are not persisted to a file
    // (the shrunk case goes into a named regression test instead).
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_5eed),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_seed_and_fault_mix_delivers_every_byte(
        seed in any::<u64>(),
        faults in faults(),
        latency_ms in 1u64..50,
        up in 64u64 * 1024..256 * 1024,
        down in 0u64..128 * 1024,
        ipv6 in any::<bool>(),
    ) {
        let link = LinkConfig::latency(Duration::from_millis(latency_ms)).with_faults(faults);
        let mut net = Net::pair(seed, &Config::default(), link);
        transfer(&mut net, up, down, ipv6, Duration::from_secs(900));
    }
}

/// A case `any_seed_and_fault_mix_delivers_every_byte` found: over IPv6, a corrupted next
/// header made one end answer with an ICMPv6 parameter problem quoting a packet that is not
/// TCP, and the other end, once it took parameter problems, counted that answer as malformed:
/// a damaged-packet drop the network had not caused. Such a report is now `drop_other`.
#[test]
fn a_parameter_problem_about_another_protocol_is_not_a_damaged_packet() {
    let faults = Faults {
        loss: 0.0,
        duplicate: 0.08928005123319041,
        reorder: 0.15551545030098118,
        reorder_delay: Duration::from_millis(14),
        corrupt: 0.040061124470864205,
    };
    let link = LinkConfig::latency(Duration::from_millis(41)).with_faults(faults);
    let mut net = Net::pair(7451363472907911165, &Config::default(), link);
    transfer(&mut net, 133791, 36825, true, Duration::from_secs(900));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0ff1_0ad5),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn super_segments_under_any_fault_mix_deliver_every_byte(
        seed in any::<u64>(),
        faults in faults(),
        latency_ms in 1u64..50,
        up in 64u64 * 1024..512 * 1024,
        down in 0u64..256 * 1024,
        ipv6 in any::<bool>(),
        cut in any::<bool>(),
        gso_max_size in 3000usize..70_000,
    ) {
        let link = LinkConfig::latency(Duration::from_millis(latency_ms)).with_faults(faults);
        let mut config = Config::default();
        config.gso_max_size(gso_max_size);
        let mut net = Net::pair(seed, &config, link);
        net.cut_super_segments = cut;
        transfer(&mut net, up, down, ipv6, Duration::from_secs(900));
    }
}

/// A case the property test found (shrunk): both directions carry data under loss,
/// duplication and reordering.
#[test]
fn regression_bidirectional_under_loss_dup_reorder() {
    let faults = Faults {
        loss: 0.07402635175654514,
        duplicate: 0.057167928522203336,
        reorder: 0.10994165559743908,
        reorder_delay: Duration::from_millis(18),
        corrupt: 0.0,
    };
    let link = LinkConfig::latency(Duration::from_millis(15)).with_faults(faults);
    let mut net = Net::pair(7821539026929428614, &Config::default(), link);
    net.trace = std::env::var_os("SIM_TRACE").is_some();
    transfer(&mut net, 65536, 12853, false, Duration::from_secs(900));
}

/// Goodput over 5 % random loss each way (issue 13's harness condition), summed over several
/// seeds so that one lucky or unlucky loss pattern does not decide: 1 MiB from node 0 to
/// node 1 per seed over a 10 ms round trip, in virtual time.
fn goodput_at_five_percent_loss(seeds: std::ops::Range<u64>) -> f64 {
    let mut bytes = 0u64;
    let mut time = Duration::ZERO;
    for seed in seeds {
        let link = rtt10().with_faults(Faults::loss(0.05));
        let mut net = Net::pair(seed, &Config::default(), link);
        time += transfer(&mut net, MB, 0, false, Duration::from_secs(300));
        bytes += MB;
    }
    bytes as f64 * 8.0 / time.as_secs_f64() / 1e6
}

#[test]
fn five_percent_loss_goodput_does_not_fall() {
    // 256 seeds, 256 MiB in all. Before PRR (RFC 6937), when recovery sent nothing until the
    // pipe fell to ssthresh and then up to ssthresh minus the pipe at once, this gave
    // 4.231 Mbit/s; with PRR 4.383; with RACK's timing as Linux's 4.332; with a lost
    // retransmission resent when RACK finds it lost 4.346; with cwnd bounding the pipe
    // before recovery too (limited transmit) 5.079; with a reduction undone when D-SACK shows
    // it spurious 5.130. Virtual time: the figure is the same on every machine and every
    // run.
    let g = goodput_at_five_percent_loss(1000..1256);
    println!("goodput at 5 % loss: {g:.3} Mbit/s");
    assert!(g >= 4.231, "goodput at 5 % loss fell to {g:.3} Mbit/s");
}

/// Goodput over 5 % random loss each way on a path as short as the harness's TUN (50 µs
/// each way), 1 MiB from node 0 to node 1 per seed, in virtual time. There a round trip is
/// nothing and a retransmission timeout (200 ms at least) is everything: the figure counts
/// how often recovery stalls until one.
fn goodput_at_five_percent_loss_short_path(seeds: std::ops::Range<u64>) -> f64 {
    let mut bytes = 0u64;
    let mut time = Duration::ZERO;
    for seed in seeds {
        let link = LinkConfig::latency(Duration::from_micros(50)).with_faults(Faults::loss(0.05));
        let mut net = Net::pair(seed, &Config::default(), link);
        time += transfer(&mut net, MB, 0, false, Duration::from_secs(300));
        bytes += MB;
    }
    bytes as f64 * 8.0 / time.as_secs_f64() / 1e6
}

#[test]
fn five_percent_loss_on_a_short_path_is_not_bound_by_timeouts() {
    // 64 seeds, 64 MiB in all. 24.894 Mbit/s when recovery and the go-back after a timeout
    // had no probe (a lost retransmission with nothing sent after it waited for the RTO) and
    // the probe timeout's floor was 10 ms; 35.725 with both; 46.726 with a second probe
    // when the first goes unanswered.
    let g = goodput_at_five_percent_loss_short_path(2000..2064);
    println!("goodput at 5 % loss, 100 µs RTT: {g:.3} Mbit/s");
    assert!(
        g >= 33.0,
        "goodput at 5 % loss on a short path fell to {g:.3} Mbit/s"
    );
}
