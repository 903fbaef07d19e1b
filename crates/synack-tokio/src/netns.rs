//! PLACEHOLDER on the `runtime` branch so that the crate compiles; the `devices` branch owns
//! this file and its version replaces this one at merge.
