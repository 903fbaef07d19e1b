//! packetdrill's network device: the packets a script injects into the stack, and those the
//! stack sends, each stamped with its virtual time.

use std::time::Duration;

use synack_core::RecvMeta;

use super::state::Shared;

impl Shared {
    /// A packet from the script to the stack.
    pub fn netdev_send(&self, packet: &[u8]) {
        let mut g = self.lock();
        let now = g.now;
        g.ep()
            .handle_packet(now, packet, RecvMeta::new(packet.len()));
        g.drain();
        self.kick(&mut g);
        drop(self.barrier(g));
    }

    /// The next packet the stack sends, with its virtual wall-clock time in microseconds:
    /// the clock runs on to the next timer until one comes. `None` when nothing will ever
    /// come (no timer is pending).
    pub fn netdev_receive(&self) -> Option<(Vec<u8>, u64)> {
        let mut g = self.lock();
        for _ in 0..100_000 {
            if let Some((p, t)) = g.out.pop_front() {
                return Some((p, g.wall_base_us + t.total_micros()));
            }
            g = self.barrier(g);
            if !g.out.is_empty() {
                continue;
            }
            match g.next_deadline() {
                Some(t) => g = self.advance_to(g, t),
                None => {
                    // A blocked call on the other thread may still send something.
                    let limit = std::time::Instant::now() + Duration::from_millis(200);
                    while g.out.is_empty() && std::time::Instant::now() < limit {
                        g = self
                            .cv
                            .wait_timeout(g, Duration::from_millis(10))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    if g.out.is_empty() {
                        return None;
                    }
                }
            }
        }
        None
    }
}
