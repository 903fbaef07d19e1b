//! synack: a user-space TCP/IP stack for tokio applications.
//!
//! This crate re-exports the sans-IO core ([`core`]) and the tokio runtime ([`tokio`]), and holds
//! the examples and benches.

pub use synack_core as core;
pub use synack_tokio as tokio;
