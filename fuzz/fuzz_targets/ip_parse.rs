//! `ip_parse`: any bytes through `wire::ip::parse`, then TCP, UDP or ICMP on the payload; whatever
//! parses must round-trip through emit (see `synack_fuzz::wire::ip_packet`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    synack_fuzz::wire::ip_packet(data);
});
