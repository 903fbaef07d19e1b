//! SO_REUSEPORT (`SocketOptions::reuse_port`): listeners that all set it share an address
//! and port, and each new connection goes to one of them by a keyed hash of its 4-tuple,
//! as Linux's `reuseport_select_sock` spreads them.

use std::collections::HashMap;
use std::net::SocketAddr;

use synack_core::testing::Pair;
use synack_core::{Config, Endpoint, Error, ListenerHandle, PortSharing, SocketOptions};

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(Pair::SERVER, port)
}

fn reuse_port() -> SocketOptions {
    SocketOptions {
        reuse_port: true,
        ..SocketOptions::default()
    }
}

fn none() -> &'static [&'static Endpoint] {
    &[]
}

/// `n` connections from the client's ephemeral ports to port 80, each accepted from
/// whichever of `listeners` has it: how many each accepted.
fn spread(p: &mut Pair, listeners: &[ListenerHandle], n: usize) -> HashMap<ListenerHandle, usize> {
    for _ in 0..n {
        p.client.connect(p.now, server(80)).unwrap();
    }
    p.pump();
    let mut accepted = HashMap::new();
    for &l in listeners {
        while p.server.accept(l).is_ok() {
            *accepted.entry(l).or_insert(0) += 1;
        }
    }
    assert_eq!(accepted.values().sum::<usize>(), n, "{accepted:?}");
    accepted
}

/// Two listeners with SO_REUSEPORT on one address both listen, and share the clients;
/// one without the option is refused beside them (Linux's EADDRINUSE), as is a first
/// listener without it followed by one with it.
#[test]
fn listeners_with_reuse_port_share_an_address_and_its_clients() {
    let mut p = Pair::new(Config::default());
    let a = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    let b = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    assert_eq!(p.server.listen(server(80), 128), Err(Error::AddrInUse));
    let any: SocketAddr = "0.0.0.0:80".parse().unwrap();
    assert_eq!(p.server.listen(any, 128), Err(Error::AddrInUse));
    let accepted = spread(&mut p, &[a, b], 64);
    // 64 connections over two listeners: each gets some (all to one has odds of 2^-63).
    assert_eq!(accepted.len(), 2, "{accepted:?}");

    let plain = p.server.listen(server(81), 128).unwrap();
    assert_eq!(
        p.server.listen_with(server(81), 128, &reuse_port()),
        Err(Error::AddrInUse)
    );
    p.server.close_listener(p.now, plain).unwrap();
}

/// A listener with SO_REUSEPORT on the unspecified address and one on the stack's own: the
/// more specific takes the clients, as for any two (Linux scores the exact match higher).
#[test]
fn the_more_specific_reuse_port_listener_wins() {
    let mut p = Pair::new(Config::default());
    let any: SocketAddr = "0.0.0.0:80".parse().unwrap();
    let wide = p.server.listen_with(any, 128, &reuse_port()).unwrap();
    let exact = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    let accepted = spread(&mut p, &[wide, exact], 8);
    assert_eq!(accepted.get(&exact), Some(&8));
}

/// A closed member leaves its group: the clients go to those left, whichever was the
/// first; once one is left, it takes them all; a new member joins again.
#[test]
fn a_closed_listener_leaves_its_group() {
    let mut p = Pair::new(Config::default());
    let first = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    let second = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    let third = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    p.server.close_listener(p.now, first).unwrap();
    let accepted = spread(&mut p, &[second, third], 64);
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    p.server.close_listener(p.now, third).unwrap();
    assert_eq!(spread(&mut p, &[second], 16).get(&second), Some(&16));
    let fourth = p
        .server
        .listen_with(server(80), 128, &reuse_port())
        .unwrap();
    let accepted = spread(&mut p, &[second, fourth], 64);
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    p.server.close_listener(p.now, second).unwrap();
    p.server.close_listener(p.now, fourth).unwrap();
    // The port is free again, for a listener without the option too.
    p.server.listen(server(80), 128).unwrap();
}

/// Bound sockets (`bind(2)` before `listen`) share a port when both set SO_REUSEPORT,
/// whatever SO_REUSEADDR says, and then listen side by side; a listener with it shares
/// with a bound socket with it.
#[test]
fn bound_sockets_with_reuse_port_share_the_port_and_listen() {
    let mut p = Pair::new(Config::default());
    let port_only = PortSharing {
        reuse_address: false,
        reuse_port: true,
    };
    let ep = &mut p.server;
    assert_eq!(
        ep.bind_socket(server(80), port_only, none()),
        Ok(server(80))
    );
    assert_eq!(
        ep.bind_socket(server(80), port_only, none()),
        Ok(server(80))
    );
    assert_eq!(
        ep.bind_socket(server(80), false, none()),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        ep.bind_socket(server(80), true, none()),
        Err(Error::AddrInUse)
    );
    let opts = SocketOptions {
        reuse_address: Some(false),
        reuse_port: true,
        ..SocketOptions::default()
    };
    let mut listeners = Vec::new();
    for _ in 0..2 {
        ep.release_binding(server(80), port_only).unwrap();
        listeners.push(ep.listen_with(server(80), 128, &opts).unwrap());
    }
    assert_eq!(ep.bindings(), 0);
    assert_eq!(
        ep.bind_socket(server(80), port_only, none()),
        Ok(server(80))
    );
    let accepted = spread(&mut p, &listeners, 64);
    assert_eq!(accepted.len(), 2, "{accepted:?}");
}

/// The connections a listener with SO_REUSEPORT accepted keep the option: a socket that
/// sets it binds their port, one with SO_REUSEADDR alone does not (the listener set
/// SO_REUSEADDR off).
#[test]
fn accepted_connections_keep_reuse_port() {
    let mut p = Pair::new(Config::default());
    let opts = SocketOptions {
        reuse_address: Some(false),
        reuse_port: true,
        ..SocketOptions::default()
    };
    let l = p.server.listen_with(server(80), 128, &opts).unwrap();
    assert_eq!(spread(&mut p, &[l], 1).get(&l), Some(&1));
    p.server.close_listener(p.now, l).unwrap();
    let port_only = PortSharing {
        reuse_address: false,
        reuse_port: true,
    };
    assert_eq!(
        p.server.bind_socket(server(80), true, none()),
        Err(Error::AddrInUse)
    );
    assert_eq!(
        p.server.bind_socket(server(80), port_only, none()),
        Ok(server(80))
    );
}
