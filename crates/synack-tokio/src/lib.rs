//! The tokio runtime for synack.
//!
//! MINIMAL VERSION on the `devices` branch; the runtime branch owns this file.

pub mod device;
pub mod netns;
