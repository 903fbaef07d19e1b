//! Glue for the HTTP crates tokio users reach for, each behind its own cargo feature.
//!
//! Rust's orphan rule lets only this crate (or axum and hyper themselves) implement their
//! traits for synack's types, so the glue lives here rather than in every application.
//! - `axum`: [`TcpListener`](crate::TcpListener) is an `axum::serve::Listener`.
//! - `hyper`: `hyper::HyperConnector` connects hyper-util's pooled client.
//! - `hickory`: `hickory::StackRuntime` runs hickory-resolver on the stack's sockets, so
//!   that names are resolved through the stack (`hickory::resolver`).

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hickory")]
pub mod hickory;
#[cfg(feature = "hyper")]
pub mod hyper;
