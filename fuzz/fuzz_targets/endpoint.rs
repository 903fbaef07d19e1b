//! `endpoint`: an `Endpoint` with two listeners and an active connection, driven by an
//! arbitrary sequence of packets, clock advances and application calls; invariants checked
//! after every step (see `synack_fuzz::scenario`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_fuzz::scenario::{self, Scenario};

fuzz_target!(|input: Scenario| {
    let _ = scenario::run(&input);
});
