//! Socket option arguments as Linux reads them, for every kind of socket (TCP sockets,
//! streams, listeners, UDP sockets): TTL, TOS/traffic class, linger.

use std::io;
use std::time::Duration;

/// A `set_ttl` argument as the core takes it, as Linux's IP_TTL reads the `int` tokio passes
/// the `u32` on as: 1 to 255; -1 (`u32::MAX`) puts back the default,
/// [`DEFAULT_HOP_LIMIT`](synack_core::DEFAULT_HOP_LIMIT) (`ip_default_ttl`); anything else,
/// 0 included, is `InvalidInput` (EINVAL).
pub(crate) fn hop_limit(ttl: u32) -> io::Result<u8> {
    if ttl == u32::MAX {
        return Ok(synack_core::DEFAULT_HOP_LIMIT);
    }
    u8::try_from(ttl)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| synack_core::Error::InvalidInput.into())
}

/// The DS byte a `set_tos`-like argument gives, as Linux reads the `int` of the option the
/// socket's family takes (tokio passes the `u32` on as one):
/// - IP_TOS (`v6` false) keeps the low eight bits, as `do_ip_setsockopt` stores the value in
///   a byte: 256 is 0, never an error;
/// - IPV6_TCLASS (`v6` true) takes 0 to 255, or -1 (`u32::MAX`) for the default, 0; anything
///   else is `InvalidInput` (EINVAL).
pub(crate) fn ds_byte(value: u32, v6: bool) -> io::Result<u8> {
    if !v6 {
        return Ok(value as u8);
    }
    match value {
        u32::MAX => Ok(0),
        v => u8::try_from(v).map_err(|_| synack_core::Error::InvalidInput.into()),
    }
}

/// The SO_LINGER time a `set_linger` argument gives, as Linux keeps it: `l_linger` is an
/// `int` of whole seconds (tokio passes `as_secs()`), so a fraction of a second is dropped
/// (1.5 s lingers 1 s, and 500 ms is 0: a reset on close, as on tokio over the kernel).
/// Times past `i32::MAX` seconds are kept at that, Linux's "forever" in effect.
pub(crate) fn linger_secs(linger: Option<Duration>) -> Option<Duration> {
    linger.map(|d| Duration::from_secs(d.as_secs().min(i32::MAX as u64)))
}
