//! PLACEHOLDER on the `runtime` branch so that `device/mod.rs` compiles; the `devices` branch
//! owns this file and its version replaces this one at merge.

/// Placeholder; see the `devices` branch.
#[derive(Debug)]
pub struct PcapDevice<D>(pub D);
