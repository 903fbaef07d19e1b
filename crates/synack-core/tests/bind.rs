//! Binding a socket before it connects or listens (`bind(2)`): the port is the socket's from
//! then on, as Linux reserves it (`inet_csk_get_port`, `inet_csk_bind_conflict`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use synack_core::testing::Pair;
use synack_core::wire::{TcpFlags, TcpRepr};
use synack_core::{
    Config, ConnectionHandle as Handle, Endpoint, Error, Instant, ListenerHandle, SocketOptions,
    State,
};

/// No other endpoint shares the ports.
fn none() -> &'static [&'static Endpoint] {
    &[]
}

/// Options with SO_REUSEADDR as `reuse` says.
fn reuse(reuse: bool) -> SocketOptions {
    SocketOptions {
        reuse_address: Some(reuse),
        ..SocketOptions::default()
    }
}

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(Pair::SERVER, port)
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::new(Pair::CLIENT, port)
}

/// A pair with `config` whose client connected from bound port `port`, with SO_REUSEADDR,
/// to the server's listener on port 80: the pair, the listener, the client's connection
/// and the one the server accepted.
fn connected_from(config: Config, port: u16) -> (Pair, ListenerHandle, Handle, Handle) {
    let mut p = Pair::new(config);
    let l = p.server.listen(server(80), 4).unwrap();
    let (c, s) = connect_from(&mut p, l, port);
    (p, l, c, s)
}

/// On `p`, the client connects from bound port `port`, with SO_REUSEADDR, to the server's
/// listener `l` on port 80: the client's connection and the one the server accepted.
fn connect_from(p: &mut Pair, l: ListenerHandle, port: u16) -> (Handle, Handle) {
    let c = p
        .client
        .connect_with(p.now, server(80), Some(client(port)), &reuse(true))
        .unwrap();
    p.pump();
    (c, p.server.accept(l).unwrap())
}

/// `Config::default()` with timestamps as `on` says.
fn timestamps(on: bool) -> Config {
    let mut config = Config::default();
    config.timestamps(on);
    config
}

/// A second socket cannot bind a bound port, on its address or on all of them, unless both
/// set SO_REUSEADDR; the other family's port is another port. Given back, it binds again.
#[test]
fn a_bound_port_is_refused_to_another_socket_unless_both_reuse() {
    let mut p = Pair::new(Config::default());
    let ep = &mut p.server;
    assert_eq!(
        ep.bind_socket(server(7000), false, none()),
        Ok(server(7000))
    );
    assert_eq!(ep.bindings(), 1);
    for (addr, reuse) in [(server(7000), false), (server(7000), true)] {
        assert_eq!(ep.bind_socket(addr, reuse, none()), Err(Error::AddrInUse));
    }
    let any4: SocketAddr = "0.0.0.0:7000".parse().unwrap();
    assert_eq!(ep.bind_socket(any4, true, none()), Err(Error::AddrInUse));
    let any6: SocketAddr = "[::]:7000".parse().unwrap();
    assert_eq!(ep.bind_socket(any6, false, none()), Ok(any6));
    assert_eq!(ep.release_binding(server(7000), false), Ok(()));
    assert_eq!(
        ep.release_binding(server(7000), false),
        Err(Error::InvalidHandle)
    );

    // Both with SO_REUSEADDR: both bound; a third without it is refused.
    assert_eq!(ep.bind_socket(server(7000), true, none()), Ok(server(7000)));
    assert_eq!(ep.bind_socket(any4, true, none()), Ok(any4));
    assert_eq!(
        ep.bind_socket(server(7000), false, none()),
        Err(Error::AddrInUse)
    );
    ep.release_binding(server(7000), true).unwrap();
    ep.release_binding(any4, true).unwrap();
    ep.release_binding(any6, false).unwrap();
    assert_eq!(ep.bindings(), 0);
    assert_eq!(
        ep.bind_socket(server(7000), false, none()),
        Ok(server(7000))
    );
}

/// A listener binds as with SO_REUSEADDR (tokio's `TcpListener::bind`): not on a port a
/// socket holds without the option, on one a socket holds with it. A socket cannot bind a
/// port a listener holds.
#[test]
fn a_listener_takes_no_port_bound_without_reuse() {
    let mut p = Pair::new(Config::default());
    let ep = &mut p.server;
    ep.bind_socket(server(7001), false, none()).unwrap();
    assert_eq!(ep.listen(server(7001), 4), Err(Error::AddrInUse));
    assert_eq!(
        ep.listen("0.0.0.0:7001".parse().unwrap(), 4),
        Err(Error::AddrInUse)
    );
    // The socket's own listen: its binding gives way to its listener.
    ep.release_binding(server(7001), false).unwrap();
    ep.listen(server(7001), 4).unwrap();
    assert_eq!(
        ep.bind_socket(server(7001), true, none()),
        Err(Error::AddrInUse)
    );

    ep.bind_socket(server(7002), true, none()).unwrap();
    ep.listen(server(7002), 4).unwrap();
}

/// No ephemeral port, a connect's or a bind to port 0's, is one a socket holds. With none
/// left a connect is `AddrNotAvailable` and a bind or listen to port 0 `AddrInUse`, as
/// Linux's connect and bind say (EADDRNOTAVAIL, EADDRINUSE).
#[test]
fn no_ephemeral_port_is_a_bound_one() {
    let mut config = Config::default();
    config.ephemeral_ports((40000, 40001));
    let mut p = Pair::new(config);
    let ep = &mut p.client;
    ep.bind_socket(client(40000), false, none()).unwrap();
    let c = ep.connect(p.now, server(80)).unwrap();
    assert_eq!(ep.local_addr(c), Ok(client(40001)));
    assert_eq!(ep.connect(p.now, server(80)), Err(Error::AddrNotAvailable));
    assert_eq!(
        ep.bind_socket("0.0.0.0:0".parse().unwrap(), false, none()),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        ep.listen("0.0.0.0:0".parse().unwrap(), 4),
        Err(Error::AddrInUse)
    );
    // The socket connects from its own port, and the connection holds it from then on.
    let own = ep
        .connect_with(
            p.now,
            server(80),
            Some(client(40000)),
            &SocketOptions::default(),
        )
        .unwrap();
    ep.release_binding(client(40000), false).unwrap();
    assert_eq!(ep.local_addr(own), Ok(client(40000)));
    assert_eq!(
        ep.bind_socket(client(40000), false, none()),
        Err(Error::AddrInUse)
    );
}

/// A port a connection uses, or its TIME-WAIT entry, is shared with a socket that binds it
/// only if both set SO_REUSEADDR (Linux's `inet_bind_conflict`): a connection keeps its
/// socket's option, and its TIME-WAIT entry keeps it too (`tw_reuse`). So with the option
/// on the new socket alone, an outgoing connection's port (which `connect` opened without
/// it) stays refused; another endpoint's connections (`elsewhere`) count with their own
/// option. Once TIME-WAIT has run out, the port is free.
#[test]
fn a_port_a_connection_or_time_wait_uses_is_shared_only_if_both_reuse() {
    let mut p = Pair::new(Config::default());
    let l = p.server.listen(server(80), 4).unwrap();
    let (c, s) = p.connect(l, 80);
    let mine = p.client.local_addr(c).unwrap();
    let any4 = SocketAddr::new("0.0.0.0".parse().unwrap(), mine.port());
    for (addr, reuse) in [(mine, false), (mine, true), (any4, false), (any4, true)] {
        assert_eq!(
            p.client.bind_socket(addr, reuse, none()),
            Err(Error::AddrInUse),
            "{addr} reuse {reuse}"
        );
    }
    // A connection whose socket set the option shares its port with one that sets it.
    let shared = p
        .client
        .connect_with(p.now, server(80), Some(client(7004)), &reuse(true))
        .unwrap();
    p.pump();
    let s2 = p.server.accept(l).unwrap();
    assert_eq!(
        p.client.bind_socket(client(7004), false, none()),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        p.client.bind_socket(client(7004), true, none()),
        Ok(client(7004))
    );
    p.client.release_binding(client(7004), true).unwrap();
    // Another endpoint's connections (a runtime's other shard, on the same address), with
    // their option; and its ephemeral ports.
    for (theirs, ours, ok) in [
        (false, false, false),
        (false, true, false),
        (true, false, false),
        (true, true, true),
    ] {
        let mut other = Pair::new(Config::default());
        other
            .client
            .connect_with(other.now, server(80), Some(client(7003)), &reuse(theirs))
            .unwrap();
        let r = p.client.bind_socket(client(7003), ours, &[&other.client]);
        assert_eq!(r.is_ok(), ok, "theirs {theirs} ours {ours}: {r:?}");
        if ok {
            p.client.release_binding(client(7003), ours).unwrap();
        }
    }
    let mut config = Config::default();
    config.ephemeral_ports((41_000, 41_001));
    let mut narrow = Pair::new(config.clone());
    let mut other = Pair::new(config);
    let taken = other.client.connect(other.now, server(80)).unwrap();
    let port = other.client.local_addr(taken).unwrap().port();
    let picked = narrow
        .client
        .bind_socket("0.0.0.0:0".parse().unwrap(), false, &[&other.client])
        .unwrap();
    let other_port = if port == 41_000 { 41_001 } else { 41_000 };
    assert_eq!(picked.port(), other_port, "the other port of two");

    // The client closes both first, and their ends wait in TIME-WAIT with their option.
    for (c, s) in [(c, s), (shared, s2)] {
        p.client.close(p.now, c).unwrap();
        p.pump();
        p.server.close(p.now, s).unwrap();
        p.pump();
    }
    assert_eq!(p.client.time_wait_count(), 2);
    for reuse in [false, true] {
        assert_eq!(
            p.client.bind_socket(mine, reuse, none()),
            Err(Error::AddrInUse)
        );
    }
    assert_eq!(
        p.client.used_local_addrs(),
        HashMap::from([(mine, false), (client(7004), true)])
    );
    assert_eq!(
        p.client.bind_socket(client(7004), true, none()),
        Ok(client(7004))
    );
    p.client.release_binding(client(7004), true).unwrap();
    for _ in 0..100 {
        if p.client.time_wait_count() == 0 {
            break;
        }
        assert!(p.advance());
    }
    assert_eq!(p.client.time_wait_count(), 0);
    assert_eq!(p.client.bind_socket(mine, false, none()), Ok(mine));
}

/// A listener (SO_REUSEADDR on unless told otherwise, as tokio's `TcpListener::bind`) gives
/// the option to the connections it accepts: restarted on its port, it takes the port back
/// from their TIME-WAIT entries, and so does a socket bound with the option, but not one
/// without it, nor a listener that turned the option off. A listener does not take the port
/// of an outgoing connection, which has not set it (Linux: EADDRINUSE).
#[test]
fn a_listener_shares_its_port_with_what_it_accepted_not_with_outgoing_connections() {
    let mut p = Pair::new(Config::default());
    let l = p.server.listen(server(80), 4).unwrap();
    assert_eq!(
        p.server.listener_options(l).unwrap().reuse_address,
        Some(true)
    );
    let (c, s) = p.connect(l, 80);
    // The server closes first: its end waits in TIME-WAIT.
    p.server.close(p.now, s).unwrap();
    p.pump();
    p.client.close(p.now, c).unwrap();
    p.pump();
    p.server.close_listener(p.now, l).unwrap();
    assert_eq!(p.server.time_wait_count(), 1);
    assert_eq!(
        p.server.listen_with(server(80), 4, &reuse(false)),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        p.server.bind_socket(server(80), false, none()),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        p.server.bind_socket(server(80), true, none()),
        Ok(server(80))
    );
    p.server.release_binding(server(80), true).unwrap();
    let l = p.server.listen(server(80), 4).unwrap();

    // The client's own port, which its connect opened without the option.
    let (c, _s) = p.connect(l, 80);
    let mine = p.client.local_addr(c).unwrap();
    assert_eq!(p.client.listen(mine, 4), Err(Error::AddrInUse));
    assert_eq!(
        p.client
            .listen(SocketAddr::new("0.0.0.0".parse().unwrap(), mine.port()), 4),
        Err(Error::AddrInUse)
    );
}

/// A connect from a bound port to the peer it is still in TIME-WAIT with takes the tuple
/// over if the old connection used timestamps, as Linux's `tcp_twsk_unique` does for a
/// bound port: the new SYN's ISN lies past everything the old connection sent (its
/// SND.NXT plus 65535 + 2), and the entry is gone. Without timestamps the tuple stays the
/// entry's (`AddrNotAvailable`, EADDRNOTAVAIL).
#[test]
fn a_bound_port_takes_over_its_own_time_wait_tuple_when_timestamps_were_used() {
    for timestamps in [true, false] {
        let (mut p, l, first, s) = connected_from(self::timestamps(timestamps), 7010);
        let opts = reuse(true);
        p.client.send(first, b"hello").unwrap();
        p.pump();
        let mut buf = [0u8; 16];
        assert_eq!(p.server.recv(p.now, s, &mut buf), Ok(5));
        // The client closes first: its end waits in TIME-WAIT.
        p.client.close(p.now, first).unwrap();
        p.pump();
        p.server.close(p.now, s).unwrap();
        p.pump();
        assert_eq!(p.client.time_wait_count(), 1);
        assert!(p.client.used_local_addrs().contains_key(&client(7010)));

        p.client.bind_socket(client(7010), true, none()).unwrap();
        let again = p
            .client
            .connect_with(p.now, server(80), Some(client(7010)), &opts);
        p.client.release_binding(client(7010), true).unwrap();
        if !timestamps {
            assert_eq!(again, Err(Error::AddrNotAvailable));
            assert_eq!(p.client.time_wait_count(), 1);
            continue;
        }
        let again = again.unwrap();
        assert_eq!(p.client.time_wait_count(), 0);
        // The new connection completes with the listener, and carries data.
        completes(&mut p, l, again);
        assert_eq!(p.client.local_addr(again), Ok(client(7010)));
    }
}

/// A client connected from bound port 7010 that closed first: its end waits in TIME-WAIT,
/// in the compact table, or (`held`) in the connection the application still holds after
/// `shutdown` and reading the server's FIN. Returns the pair, the listener and the client's
/// first connection.
fn client_in_time_wait(timestamps: bool, held: bool) -> (Pair, ListenerHandle, Handle) {
    let (mut p, l, first, s) = connected_from(self::timestamps(timestamps), 7010);
    match held {
        true => p.client.shutdown(first).unwrap(),
        false => p.client.close(p.now, first).unwrap(),
    }
    p.pump();
    p.server.close(p.now, s).unwrap();
    p.pump();
    if held {
        let mut buf = [0u8; 4];
        assert_eq!(p.client.recv(p.now, first, &mut buf), Ok(0), "EOF");
        assert_eq!(p.client.state(first), Ok(State::TimeWait));
        assert_eq!(p.client.time_wait_count(), 0);
    } else {
        assert_eq!(p.client.time_wait_count(), 1);
    }
    (p, l, first)
}

/// A new connection from the bound port reaches the listener and carries data.
fn completes(p: &mut Pair, l: ListenerHandle, c: Handle) {
    for _ in 0..100 {
        p.pump();
        if let Ok(s) = p.server.accept(l) {
            p.client.send(c, b"again").unwrap();
            p.pump();
            let mut buf = [0u8; 16];
            assert_eq!(p.server.recv(p.now, s, &mut buf), Ok(5));
            assert_eq!(&buf[..5], b"again");
            return;
        }
        assert!(p.advance());
    }
    panic!("the new connection never completed");
}

/// The takeover of a TIME-WAIT tuple does not depend on who keeps it: a connection the
/// application still holds in TIME-WAIT gives its tuple to a connect from the bound port
/// as the compact entry does (Linux moved it to a TIME-WAIT sock: `tcp_time_wait`), if
/// timestamps were used; it is closed in the application's hands then. And a connection
/// the peer reset, which the application holds closed, holds its tuple no longer (Linux
/// unhashed it). Both were `AddrNotAvailable`.
#[test]
fn a_bound_port_takes_over_a_held_time_wait_connection_or_a_closed_one() {
    for timestamps in [true, false] {
        let (mut p, l, first) = client_in_time_wait(timestamps, true);
        p.client.bind_socket(client(7010), true, none()).unwrap();
        let again = p
            .client
            .connect_with(p.now, server(80), Some(client(7010)), &reuse(true));
        p.client.release_binding(client(7010), true).unwrap();
        if !timestamps {
            assert_eq!(again, Err(Error::AddrNotAvailable));
            assert_eq!(p.client.state(first), Ok(State::TimeWait));
            continue;
        }
        let again = again.unwrap();
        assert_eq!(p.client.state(first), Ok(State::Closed));
        completes(&mut p, l, again);
        p.client.close(p.now, first).unwrap();
        assert_eq!(p.client.state(again), Ok(State::Established));
    }

    let (mut p, l, first, s) = connected_from(Config::default(), 7011);
    p.server.abort(s).unwrap();
    p.pump();
    assert_eq!(p.client.state(first), Ok(State::Closed));
    let again = p
        .client
        .connect_with(p.now, server(80), Some(client(7011)), &reuse(true))
        .unwrap();
    completes(&mut p, l, again);
}

/// At the connection limit, a connect that takes a compact TIME-WAIT entry over ends that
/// entry for its room: no other entry is recycled early for it, and the new connection's
/// ISN still comes from the one taken over.
#[test]
fn a_takeover_at_the_connection_limit_recycles_no_other_time_wait_entry() {
    let mut config = Config::default();
    config.max_connections(2);
    let mut p = Pair::new(config);
    let l = p.server.listen(server(80), 4).unwrap();
    // Two entries: 7009's, the older, and 7010's.
    for port in [7009, 7010] {
        let (c, s) = connect_from(&mut p, l, port);
        p.client.close(p.now, c).unwrap();
        p.pump();
        p.server.close(p.now, s).unwrap();
        p.pump();
    }
    assert_eq!(p.client.time_wait_count(), 2);
    let again = p
        .client
        .connect_with(p.now, server(80), Some(client(7010)), &reuse(true))
        .unwrap();
    assert_eq!(p.client.stats().time_wait_recycled, 0);
    assert_eq!(p.client.time_wait_count(), 1, "7009's entry stays");
    completes(&mut p, l, again);
}

/// A port a bind gave stays out of every ephemeral connect's reach for as long as anything
/// uses it: the bound socket's connection, its TIME-WAIT entry, and the connections a
/// listener on it accepted after the listener has closed, as Linux's
/// `__inet_hash_connect` skips a bucket that `bind(2)` made (checked on the kernel with one
/// ephemeral port: EADDRNOTAVAIL, and the bound socket's owner then binds its port again).
/// A port an ephemeral connect took is shared by another towards another server. Before,
/// the ephemeral connect took the bound port, and the owner's bind was then `AddrInUse`.
#[test]
fn no_ephemeral_connect_takes_a_port_a_bind_gave_while_it_is_used() {
    let mut p = Pair::new(config_with_ports(7010));
    let l80 = p.server.listen(server(80), 4).unwrap();
    let _l81 = p.server.listen(server(81), 4).unwrap();
    p.client.bind_socket(client(7010), true, none()).unwrap();
    let first = p
        .client
        .connect_with(p.now, server(80), Some(client(7010)), &reuse(true))
        .unwrap();
    p.client.release_binding(client(7010), true).unwrap();
    p.pump();
    let s = p.server.accept(l80).unwrap();
    assert_eq!(
        p.client.connect(p.now, server(81)),
        Err(Error::AddrNotAvailable)
    );
    // In TIME-WAIT (the client closed first) the port is still the bind's.
    p.client.close(p.now, first).unwrap();
    p.pump();
    p.server.close(p.now, s).unwrap();
    p.pump();
    assert_eq!(p.client.time_wait_count(), 1);
    assert!(p.client.port_bound_by_bind(7010));
    assert_eq!(
        p.client.connect(p.now, server(81)),
        Err(Error::AddrNotAvailable)
    );
    assert_eq!(
        p.client.bind_socket(client(7010), true, none()),
        Ok(client(7010))
    );
    p.client.release_binding(client(7010), true).unwrap();

    // A listener's port, after it closed, while a connection it accepted lasts.
    let mut p = Pair::new(config_with_ports(7010));
    let l = p.server.listen(server(7010), 4).unwrap();
    let _back = p.client.listen(client(81), 4).unwrap();
    p.client.connect(p.now, server(7010)).unwrap();
    p.pump();
    let accepted = p.server.accept(l).unwrap();
    p.server.close_listener(p.now, l).unwrap();
    assert_eq!(
        p.server.connect(p.now, client(81)),
        Err(Error::AddrNotAvailable)
    );
    p.server.abort(accepted).unwrap();
    p.pump();
    let c = p.server.connect(p.now, client(81)).unwrap();
    assert_eq!(p.server.local_addr(c), Ok(server(7010)));

    // An ephemeral connect's port is shared by another ephemeral connect elsewhere.
    let mut p = Pair::new(config_with_ports(7010));
    p.server.listen(server(80), 4).unwrap();
    p.server.listen(server(81), 4).unwrap();
    let a = p.client.connect(p.now, server(80)).unwrap();
    let b = p.client.connect(p.now, server(81)).unwrap();
    assert_eq!(p.client.local_addr(a), Ok(client(7010)));
    assert_eq!(p.client.local_addr(b), Ok(client(7010)));
    assert!(!p.client.port_bound_by_bind(7010));
}

/// A configuration whose only ephemeral port is `port`.
fn config_with_ports(port: u16) -> Config {
    let mut config = Config::default();
    config.ephemeral_ports((port, port));
    config
}

/// Moves what `from` sends now to `to`, and returns each packet's TCP flags and source port.
fn hand_over(from: &mut Endpoint, to: &mut Endpoint, now: Instant) -> Vec<(u16, TcpFlags)> {
    let mut buf = vec![0u8; 65_536];
    let mut packets = Vec::new();
    synack_core::testing::drain(from, now, &mut buf, |packet, _| {
        packets.push(packet.to_vec());
        ControlFlow::Continue(())
    });
    let mut seen = Vec::new();
    for packet in &packets {
        let (ip, payload) = synack_core::wire::ip::parse(packet).unwrap();
        let seg = TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).unwrap();
        seen.push((seg.src_port, seg.flags));
        synack_core::testing::deliver(to, now, packet);
    }
    seen
}

/// A connect from a bound port made right after an abort on the same tuple, before the
/// endpoint has sent anything: the aborted connection's RST still leaves, before the new
/// SYN, and the new connection then opens at once (its ISN past the old one's). The
/// takeover freed the old connection with its RST unsent, and the server's end of it,
/// left ESTABLISHED, answered the new SYN with a challenge ACK: the new connection timed
/// out (a reviewer's test).
#[test]
fn a_takeover_of_an_aborted_connection_sends_its_rst_first() {
    let (mut p, _, first, s) = connected_from(Config::default(), 7010);
    p.client.abort(first).unwrap();
    let again = p
        .client
        .connect_with(p.now, server(80), Some(client(7010)), &reuse(true))
        .unwrap();
    let sent = hand_over(&mut p.client, &mut p.server, p.now);
    let flags: Vec<TcpFlags> = sent.iter().map(|&(_, f)| f).collect();
    assert!(flags[0].contains(TcpFlags::RST), "{flags:?}");
    assert_eq!(flags[1], TcpFlags::SYN, "{flags:?}");
    assert_eq!(p.server.state(s), Ok(State::Closed), "the RST ended it");
    p.pump();
    assert_eq!(p.client.state(again), Ok(State::Established));
}

/// A connection the application holds in TIME-WAIT gives its tuple to a connect from the
/// bound port only once its ACK of the peer's FIN has left: before, the connect is
/// `AddrNotAvailable` (the takeover closed it with the ACK unsent, and the peer was left in
/// LAST-ACK; a reviewer's test), after, it succeeds.
#[test]
fn a_held_time_wait_connection_gives_its_tuple_only_after_its_last_ack() {
    let (mut p, l, first, s) = connected_from(timestamps(true), 7010);
    p.client.shutdown(first).unwrap();
    p.pump();
    p.server.close(p.now, s).unwrap();
    // The server's FIN reaches the client, which has sent nothing since.
    hand_over(&mut p.server, &mut p.client, p.now);
    assert_eq!(p.client.state(first), Ok(State::TimeWait));
    let early = p
        .client
        .connect_with(p.now, server(80), Some(client(7010)), &reuse(true));
    assert_eq!(early, Err(Error::AddrNotAvailable));
    assert_eq!(p.server.connection_count(), 1, "the server in LAST-ACK");
    let sent = hand_over(&mut p.client, &mut p.server, p.now);
    assert_eq!(sent, [(7010, TcpFlags::ACK)]);
    assert_eq!(p.server.connection_count(), 0, "the last ACK ended it");
    let again = p
        .client
        .connect_with(p.now, server(80), Some(client(7010)), &reuse(true))
        .unwrap();
    completes(&mut p, l, again);
}

/// Linux's `__inet6_bind` refuses, before it asks whether the address is ours, a link-local
/// address without its interface (RFC 4007 §6) and, for a stream socket, any IPv6 multicast
/// address: EINVAL, where an address that is merely not ours is EADDRNOTAVAIL.
#[test]
fn unscoped_link_local_and_ipv6_multicast_binds_are_invalid() {
    let mut ep = Endpoint::new(Config::default(), &[Pair::SERVER]);
    let at = |a: &str| -> SocketAddr { a.parse().unwrap() };
    for a in ["[fe80::1]:7100", "[ff02::1]:7100", "[ff0e::1:7]:7100"] {
        assert_eq!(
            ep.bind_socket(at(a), false, none()),
            Err(Error::InvalidInput),
            "TCP {a}"
        );
        assert_eq!(ep.listen(at(a), 8), Err(Error::InvalidInput), "listen {a}");
    }
    for a in ["[fe80::1]:7100", "[ff02::1]:7100"] {
        assert_eq!(ep.udp_bind(at(a)), Err(Error::InvalidInput), "UDP {a}");
    }
    assert_eq!(
        ep.bind_socket(at("[2001:2::99]:7100"), false, none()),
        Err(Error::AddrNotAvailable)
    );
    assert_eq!(
        ep.udp_bind(at("[fe80::1%1]:7100")),
        Err(Error::AddrNotAvailable),
        "scoped, but not ours"
    );
}
