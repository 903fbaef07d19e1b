//! [`AddrLookup`]: a host name's lookup under way, as the stack's resolver starts it and a
//! connection to the name races it (a leaf, imported by `stack`, `stream` and
//! `integration::hickory`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// One lookup of a name's addresses for a port (one family's, or all of them), under way.
pub(crate) type AddrLookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;
