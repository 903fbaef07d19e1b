//! The endpoint behind packetdrill's calls: sockets as file descriptors, virtual time, and
//! blocking calls that wait on a condition variable. Safe code only; errors are errnos.
//!
//! Its modules, each built on those before it:
//!
//! - `errno`: [`SysResult`] and the errno Linux returns for each core error.
//! - [`ev`]: the poll/epoll bits.
//! - `fd`: what a file descriptor holds, a socket (with its [`Opts`]), an epoll set or a pipe
//!   end.
//! - `state`: [`Stack`] and [`Shared`], the lookups by file descriptor, and the drain that
//!   sends what the endpoint has to send.
//! - `clock`: virtual time, and how blocking calls wait on it.
//! - `netdev`: the packets packetdrill injects and sniffs.
//! - `connect`, `io`, `close`, `control`, `poll`, `sockopt`: the socket calls (socket, bind,
//!   listen, accept, connect; recv and send; shutdown and close; fcntl and ioctl; poll and
//!   epoll; getsockopt and setsockopt).
//! - `pipe`: pipe and splice, with pipes as bounded in-memory byte queues.
//! - [`errqueue`]: the error queue (`MSG_ERRQUEUE`) with `MSG_ZEROCOPY` completions and
//!   SO_TIMESTAMPING transmit timestamps.

mod clock;
mod close;
mod connect;
mod control;
mod errno;
pub mod errqueue;
pub mod ev;
mod fd;
mod io;
mod netdev;
mod pipe;
mod poll;
mod sockopt;
mod state;

pub use errno::{errno, SysResult};
pub use fd::Opts;
pub use io::Received;
pub use state::{Shared, Stack};
