//! Shared checks for the synack-core fuzz targets.
//!
//! The targets in `fuzz_targets/` are thin: each turns the fuzzer's bytes into an input and
//! calls into this crate, so that the properties live in one place and read as plain Rust.
//! A property that fails panics with a message naming the invariant; libFuzzer records the
//! input as a crash.
//!
//! - [`wire`]: parse → emit → parse round trips of IP, TCP and ICMP.
//! - [`scenario`]: an [`Endpoint`](synack_core::Endpoint) driven by an arbitrary sequence of
//!   packets, clock advances and application calls, with its invariants checked after every
//!   step.

pub mod scenario;
pub mod wire;
