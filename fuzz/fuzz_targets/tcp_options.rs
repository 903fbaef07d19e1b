//! `tcp_options`: a TCP header with fuzzed fields and option area on a fixed address pair
//! (checksum repaired), or a fuzzed `TcpRepr`; parse/emit must round-trip (see
//! `synack_fuzz::wire::tcp_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_fuzz::wire::TcpInput;

fuzz_target!(|input: TcpInput| {
    synack_fuzz::wire::tcp_input(&input);
});
