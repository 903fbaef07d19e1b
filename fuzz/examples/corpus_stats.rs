//! How deep an `endpoint` corpus reaches: runs every input of a directory through the
//! scenario (no libFuzzer, no instrumentation) and counts the inputs whose run got each
//! counter of `Stats` above zero.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example corpus_stats -- fuzz/corpus/endpoint`

use arbitrary::{Arbitrary, Unstructured};
use synack_fuzz::scenario::{self, Scenario};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: corpus_stats DIR");
    let mut inputs = 0usize;
    let mut reached: Vec<(&'static str, usize)> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = std::fs::read(&path).expect("read input");
        // As libfuzzer-sys decodes a typed fuzz_target! input.
        let Ok(input) = Scenario::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        inputs += 1;
        let s = scenario::run(&input);
        let counters = [
            ("segments_in", s.segments_in),
            ("connections_established", s.connections_established),
            ("retransmits", s.retransmits),
            ("rsts_sent", s.rsts_sent),
            ("challenge_acks", s.challenge_acks),
            ("echo_replies", s.echo_replies),
            ("syncookies_sent", s.syncookies_sent),
            ("syncookies_validated", s.syncookies_validated),
            ("syncookies_failed", s.syncookies_failed),
            ("time_wait_recycled", s.time_wait_recycled),
            ("drop_out_of_window", s.drop_out_of_window),
            ("drop_paws", s.drop_paws),
            ("drop_listen_overflow", s.drop_listen_overflow),
            ("udp_datagrams_in", s.udp_datagrams_in),
            ("udp_port_unreachable_sent", s.udp_port_unreachable_sent),
            ("udp_intercepted", s.udp_intercepted),
        ];
        if reached.is_empty() {
            reached = counters.iter().map(|&(n, _)| (n, 0)).collect();
        }
        for (slot, (_, v)) in reached.iter_mut().zip(counters) {
            slot.1 += usize::from(v > 0);
        }
    }
    println!("{inputs} inputs");
    for (name, n) in reached {
        println!("{name:>24}: {n}");
    }
}
