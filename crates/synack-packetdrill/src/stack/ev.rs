//! poll/epoll bits (the same values in both on Linux).

/// Readable.
pub const IN: u32 = libc::POLLIN as u32;
/// Writable.
pub const OUT: u32 = libc::POLLOUT as u32;
/// Error.
pub const ERR: u32 = libc::POLLERR as u32;
/// Hang-up.
pub const HUP: u32 = libc::POLLHUP as u32;
/// Urgent data readable (the urgent byte waits for `MSG_OOB`).
pub const PRI: u32 = libc::POLLPRI as u32;
/// Normal data readable.
pub const RDNORM: u32 = libc::POLLRDNORM as u32;
/// Normal data writable.
pub const WRNORM: u32 = libc::POLLWRNORM as u32;
/// The peer shut down its sending side.
pub const RDHUP: u32 = libc::POLLRDHUP as u32;
/// epoll: edge-triggered.
pub const ET: u32 = libc::EPOLLET as u32;
/// epoll: one shot.
pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
