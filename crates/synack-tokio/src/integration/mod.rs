//! Glue for the HTTP crates tokio users reach for, each behind its own cargo feature.
//!
//! Rust's orphan rule lets only this crate (or axum and hyper themselves) implement their
//! traits for synack's types, so the glue lives here rather than in every application.
//! - `axum`: [`TcpListener`](crate::TcpListener) is an `axum::serve::Listener`.
//! - `hyper`: `hyper::HyperConnector` connects hyper-util's pooled client.

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod hyper;
