//! The copy buffers of the TCP flows and the loop that copies through them: pools per
//! thread, a budget of large buffers across all flows, and a guard ([`CopyBuffer`]) that
//! gives a buffer back however its copy ends, finished, failed or dropped mid-write.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The largest read of one copy step: 256 KiB, so that a busy flow crosses into the kernel
/// in few large writes (in the harness, on this noisy 2-core machine: with 64 KiB, freshly
/// zeroed per burst, the relay ran at 0.41 and 0.61x the direct path; with 64 KiB from the
/// pool below at 0.73 and 0.77x; with 256 KiB from the pool at 0.98 and 1.08x, and 0.63 and
/// 0.89x in a run beside two compiling builds). A flow holds its buffer while its write
/// waits, so a peer that never reads pins one per direction: hence [`LARGE_MAX`].
const CHUNK: usize = 256 * 1024;
/// Large buffers held by flows at once, across all of them: 256, i.e. 64 MiB. Beyond it a
/// flow copies through a [`SMALL_CHUNK`] buffer, so that stalled peers cannot pin
/// --max-flows x 2 x 256 KiB (5 GiB at the default 10,000 flows). The copy buffers in use
/// are so at most 64 MiB plus 16 KiB per direction of the other flows (about 310 MiB more
/// at 10,000 flows, all stalled), and the pools below keep at most 4 MiB + 1 MiB idle.
pub(crate) const LARGE_MAX: usize = 256;
/// The copy buffer of a flow past [`LARGE_MAX`].
const SMALL_CHUNK: usize = 16 * 1024;
/// Idle large copy buffers kept for reuse, at most (4 MiB).
const POOL_MAX: usize = 16;
/// Idle small copy buffers kept for reuse, at most (1 MiB).
const SMALL_POOL_MAX: usize = 64;

/// Large buffers taken and not given back, across all threads (the pools are per thread,
/// the budget is not).
static LARGE_IN_USE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Copy buffers between uses, large and small. The relay runs on one thread; a buffer
    /// goes back here whenever its flow has nothing to read, and the next flow with bytes
    /// takes it as it is, with no allocation and no zeroing of a whole buffer per burst.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The same for [`SMALL_CHUNK`] buffers.
    static SMALL_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Large copy buffers held now, for the summary: 0 once every flow has ended, whatever
/// ended it.
pub(crate) fn large_in_use() -> usize {
    LARGE_IN_USE.load(Ordering::Relaxed)
}

/// A copy buffer on loan from the pools: a large one while fewer than [`LARGE_MAX`] are
/// held, else a small one. Dropping it gives it back, to its pool (or frees it, when the
/// pool is full) and a large one to the budget. The loan ends in `Drop`, not in a call at
/// the end of a copy, because a copy can be dropped mid-write: `splice` drops one direction
/// when the other fails, and a budget given back only on completion would leak a large
/// buffer per such flow, until after [`LARGE_MAX`] of them every flow copied through a
/// small one for good.
pub(crate) struct CopyBuffer {
    buf: Vec<u8>,
    large: bool,
}

impl CopyBuffer {
    pub(crate) fn take() -> CopyBuffer {
        if LARGE_IN_USE.fetch_add(1, Ordering::Relaxed) < LARGE_MAX {
            let buf = POOL
                .with(|p| p.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; CHUNK]);
            return CopyBuffer { buf, large: true };
        }
        LARGE_IN_USE.fetch_sub(1, Ordering::Relaxed);
        let buf = SMALL_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; SMALL_CHUNK]);
        CopyBuffer { buf, large: false }
    }
}

impl Deref for CopyBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for CopyBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for CopyBuffer {
    fn drop(&mut self) {
        if self.large {
            LARGE_IN_USE.fetch_sub(1, Ordering::Relaxed);
        }
        let (pool, max) = if self.large {
            (&POOL, POOL_MAX)
        } else {
            (&SMALL_POOL, SMALL_POOL_MAX)
        };
        let buf = std::mem::take(&mut self.buf);
        // A buffer dropped while its thread ends (its pool already gone) is simply freed.
        let _ = pool.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < max {
                p.push(buf);
            }
        });
    }
}

/// Copies `r` to `w` until `r` ends, then shuts `w`'s sending side down (FIN). The flow
/// holds a buffer only while bytes move: it goes back to the pool whenever `r` has nothing
/// to read, so an idle flow holds none. A write that waits on a peer that does not read
/// keeps it, which is why large ones are budgeted ([`LARGE_MAX`]); if this future is
/// dropped there, the buffer goes back with it. What it copies is added to `count` (the
/// flow's) and to `total` (the relay's, so that a summary counts flows still open too).
pub(crate) async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    count: &AtomicU64,
    total: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Option<CopyBuffer> = None;
    loop {
        let n = poll_fn(|cx| {
            let b = buf.get_or_insert_with(CopyBuffer::take);
            let mut read = ReadBuf::new(b);
            match Pin::new(&mut *r).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing to read: the buffer goes back until there is.
                    buf = None;
                    Poll::Pending
                }
            }
        })
        .await?;
        if n == 0 {
            return w.shutdown().await;
        }
        if let Some(b) = buf.as_deref() {
            w.write_all(&b[..n]).await?;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        total.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::task::Context;
    use std::time::Duration;

    use super::*;

    /// A peer that has stopped reading: every write waits, forever.
    struct Stalled;

    impl AsyncWrite for Stalled {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    // One test for both, since the budget is one counter for the whole process.
    #[tokio::test(flavor = "current_thread")]
    async fn buffers_come_back_however_their_copy_ends() {
        let before = large_in_use();

        // Past the budget, buffers are small; every one given back returns the budget.
        let held: Vec<CopyBuffer> = (0..LARGE_MAX + 1).map(|_| CopyBuffer::take()).collect();
        assert_eq!(held.iter().filter(|b| b.large).count(), LARGE_MAX - before);
        assert_eq!(held.last().map(|b| b.len()), Some(SMALL_CHUNK));
        drop(held);
        assert_eq!(large_in_use(), before);

        // A copy dropped while its write waits on a peer that does not read (as `splice`
        // drops one direction when the other fails) gives its buffer back too.
        let data = vec![7u8; 1 << 20];
        let (mut r, mut w, count) = (&data[..], Stalled, AtomicU64::new(0));
        let total = AtomicU64::new(0);
        let mut copy = Box::pin(pump(&mut r, &mut w, &count, &total));
        let waited = tokio::time::timeout(Duration::from_millis(20), copy.as_mut()).await;
        assert!(waited.is_err(), "the copy finished: {waited:?}");
        assert_eq!(large_in_use(), before + 1, "no buffer held mid-write");
        drop(copy);
        assert_eq!(large_in_use(), before, "the dropped copy kept its buffer");
    }
}
