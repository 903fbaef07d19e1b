//! Two endpoints joined by a perfect wire: no latency, no loss, no reordering.

use core::ops::ControlFlow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{deliver, drain};
use crate::{Config, ConnectionHandle, Endpoint, Instant, ListenerHandle};

/// A client and a server endpoint joined in memory by a zero-latency, loss-free wire, on a
/// virtual clock: what each sends is handed to the other at once, in order, whole
/// (super-segments included, as Linux's veth and loopback hand GSO packets to a GRO
/// receiver).
///
/// It measures and tests the TCP machinery alone. For latency, loss and the like use
/// [`Net`](super::Net).
pub struct Pair {
    /// The client, at [`Pair::CLIENT`].
    pub client: Endpoint,
    /// The server, at [`Pair::SERVER`].
    pub server: Endpoint,
    /// The virtual clock.
    pub now: Instant,
    /// Packets moved so far, both directions.
    pub packets: u64,
    /// The largest packet moved so far, in bytes (a super-segment counts whole).
    pub largest: usize,
    buf: Vec<u8>,
}

impl Pair {
    /// The client's address.
    pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    /// The server's address.
    pub const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    /// Both ends with `config`, seeded apart (client `[1; 32]`, server `[2; 32]`) so that
    /// their ISNs differ and every run is the same.
    pub fn new(config: Config) -> Pair {
        let mut client = config.clone();
        client.seed(Some([1; 32]));
        let mut server = config;
        server.seed(Some([2; 32]));
        Pair::with_configs(client, server)
    }

    /// Each end with its own config, taken as it is.
    pub fn with_configs(client: Config, server: Config) -> Pair {
        Pair {
            client: Endpoint::new(client, &[Pair::CLIENT]),
            server: Endpoint::new(server, &[Pair::SERVER]),
            now: Instant::from_secs(1),
            packets: 0,
            largest: 0,
            // The largest IPv4 packet, and more than any `gso_max_size` a config may ask for.
            buf: vec![0u8; 65536],
        }
    }

    /// Moves every packet either side wants to send, until both are quiet. Returns whether
    /// anything moved.
    pub fn pump(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        let largest = &mut self.largest;
        loop {
            let to_server = drain(&mut self.client, now, &mut self.buf, |p, _| {
                *largest = (*largest).max(p.len());
                deliver(&mut self.server, now, p);
                ControlFlow::Continue(())
            });
            let to_client = drain(&mut self.server, now, &mut self.buf, |p, _| {
                *largest = (*largest).max(p.len());
                deliver(&mut self.client, now, p);
                ControlFlow::Continue(())
            });
            self.packets += (to_server + to_client) as u64;
            if to_server + to_client == 0 {
                return moved;
            }
            moved = true;
        }
    }

    /// Jumps the clock to the earlier end's next deadline (a delayed ACK, a retransmission,
    /// TIME-WAIT) and runs both ends' timers. Returns `false` if neither has one.
    pub fn advance(&mut self) -> bool {
        let next = match (self.client.poll_timeout(), self.server.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return false,
        };
        self.now = self.now.max(next);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        true
    }

    /// Moves packets and runs both ends' timers, in order, until neither has a deadline at
    /// or before `end` (or a million rounds have run): what an hour of quiet does, say.
    pub fn run_until(&mut self, end: Instant) {
        for _ in 0..1_000_000 {
            self.pump();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                _ => return,
            }
        }
    }

    /// Connects the client to `port` on the server, where `listener` listens, and returns
    /// (client handle, server handle) once the server accepted.
    ///
    /// # Panics
    /// If the handshake does not complete within a hundred deadlines.
    pub fn connect(
        &mut self,
        listener: ListenerHandle,
        port: u16,
    ) -> (ConnectionHandle, ConnectionHandle) {
        let c = self
            .client
            .connect(self.now, SocketAddr::new(Pair::SERVER, port))
            .expect("connect");
        for _ in 0..100 {
            self.pump();
            if let Ok(s) = self.server.accept(listener) {
                return (c, s);
            }
            assert!(self.advance(), "handshake stalled");
        }
        panic!("handshake did not complete");
    }

    /// Closes both ends (client first) and runs the timers until TIME-WAIT has run out, so
    /// that no connection state remains.
    ///
    /// # Panics
    /// If either end still holds a connection after a thousand deadlines.
    pub fn close(&mut self, c: ConnectionHandle, s: ConnectionHandle) {
        self.client.close(self.now, c).expect("close client");
        self.pump();
        self.server.close(self.now, s).expect("close server");
        for _ in 0..1000 {
            self.pump();
            if self.client.connection_count() == 0 && self.server.connection_count() == 0 {
                return;
            }
            if !self.advance() {
                break;
            }
        }
        assert_eq!(
            self.client.connection_count(),
            0,
            "client kept a connection"
        );
        assert_eq!(
            self.server.connection_count(),
            0,
            "server kept a connection"
        );
    }
}
