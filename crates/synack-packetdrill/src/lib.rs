//! packetdrill's shared-object interface over synack-core, in virtual time.
//!
//! packetdrill (`--so_filename=libsynack_packetdrill.so`) loads this library and calls
//! `packetdrill_interface_init`, which fills in a table of function pointers: the socket
//! calls a script makes, `netdev_send`/`netdev_receive` for the packets it injects and
//! sniffs, and `usleep`/`gettimeofday` for the clock. All of them land on one
//! [`Shared`](stack::Shared): a synack-core [`Endpoint`](synack_core::Endpoint) behind a
//! mutex, with a virtual clock that only moves when packetdrill sleeps or waits for a packet.
//!
//! packetdrill runs blocking calls (`accept`, a blocking `read`, ...) on a second thread, so
//! those really block, on a condition variable, until the main thread's packets or clock wake
//! them.
//!
//! All the unsafe code of the crate is in [`ffi`], where C pointers become Rust values, and
//! `sys`, which opens and closes the descriptors that stand for sockets.
#![deny(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
pub mod ffi;
pub mod flags;
pub mod stack;
mod sys;
