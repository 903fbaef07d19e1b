//! The tokio runtime for synack.
