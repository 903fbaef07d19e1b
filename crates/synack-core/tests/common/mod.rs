//! The scripted peer of the state-by-state tests, from the test kit
//! ([`synack_core::testing::peer`]), and the Linux capture the wire and replay tests share.
#![allow(dead_code, unused_imports)]

pub mod capture;

pub use synack_core::testing::peer::*;
