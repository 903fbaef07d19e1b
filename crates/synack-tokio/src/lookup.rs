//! [`AddrLookup`]: a host name's lookup under way, as the stack's resolver starts it and a
//! connection to the name races it, and what both `lookup_host` and that race do with
//! several of them (a leaf, imported by `stack`, `stream` and `integration::hickory`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;

/// One lookup of a name's addresses for a port (one family's, or all of them), under way.
pub(crate) type AddrLookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Of two failed lookups' errors, the one that says more: a name with no address of one
/// family (`NotFound`) says less than a server that did not answer for the other.
pub(crate) fn telling(kept: Option<io::Error>, new: io::Error) -> io::Error {
    match kept {
        Some(kept) if kept.kind() != io::ErrorKind::NotFound => kept,
        Some(kept) if new.kind() == io::ErrorKind::NotFound => kept,
        _ => new,
    }
}

/// The next answer of those `lookups` still under way, with its index.
pub(crate) async fn next_answer(
    lookups: &mut [Option<AddrLookup>],
) -> (usize, io::Result<Vec<SocketAddr>>) {
    std::future::poll_fn(|cx| {
        for (i, slot) in lookups.iter_mut().enumerate() {
            if let Some(lookup) = slot {
                if let Poll::Ready(answer) = lookup.as_mut().poll(cx) {
                    *slot = None;
                    return Poll::Ready((i, answer));
                }
            }
        }
        Poll::Pending
    })
    .await
}
