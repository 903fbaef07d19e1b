//! Moving data: recv and send, blocking or not.

use synack_core::{ConnectionHandle, Error, SendFlags, State};

use super::errno::{errno, SysResult};
use super::fd::{Connecting, Kind};
use super::state::{Guard, Shared, Stack};

/// One `recv` result with what `recvmsg` reports beside the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes read.
    pub len: usize,
    /// TCP_INQ: bytes still queued after the read, when the socket asked for it.
    pub inq: Option<i32>,
}

/// What a read from a connection gives the caller (recv, read, splice): the bytes; EOF once
/// SHUT_RD left nothing; EAGAIN when it may not wait; `None` to block; an error once (Linux
/// reports a connection's error to one call, and EOF after it).
pub(super) fn read_outcome(
    st: &mut Stack,
    fd: i32,
    r: Result<usize, Error>,
    shut_rd: bool,
    nonblock: bool,
) -> Option<SysResult<usize>> {
    match r {
        Ok(n) => Some(Ok(n)),
        Err(Error::WouldBlock) if shut_rd => Some(Ok(0)),
        Err(Error::WouldBlock) if nonblock => Some(Err(libc::EAGAIN)),
        Err(Error::WouldBlock) => None,
        Err(e) => {
            let s = st.socket(fd).ok()?;
            if s.error_reported {
                Some(Ok(0))
            } else {
                s.error_reported = true;
                Some(Err(errno(e)))
            }
        }
    }
}

impl Shared {
    /// recv(2)/read(2) into `buf`; `peek` is MSG_PEEK, `dontwait` MSG_DONTWAIT, `waitall`
    /// MSG_WAITALL.
    ///
    /// A blocking read waits as Linux's `tcp_recvmsg` does, for a target of `SO_RCVLOWAT`
    /// bytes, or all of `buf` with MSG_WAITALL (`sock_rcvlowat`): it takes what is queued,
    /// and while that is short of the target sleeps until the connection is readable again
    /// (`tcp_data_ready` wakes it once `SO_RCVLOWAT` bytes are queued anew, not when the
    /// read's total would reach the target), then takes more; the end of the stream, an
    /// error or the urgent mark ends it early with what it has. A non-blocking read takes
    /// what there is.
    pub fn recv(
        &self,
        fd: i32,
        buf: &mut [u8],
        dontwait: bool,
        peek: bool,
        waitall: bool,
    ) -> SysResult<Received> {
        let g = self.lock();
        let mut copied = 0;
        let mut first = true;
        let (mut g, r) = self.block(g, None, |st| {
            let s = match st.socket(fd) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let nonblock = s.nonblock || dontwait;
            // After shutdown(SHUT_RD), Linux still hands out what is queued, then EOF.
            let shut_rd = s.shut_rd;
            let h = match s.kind {
                Kind::Conn(h) => h,
                _ if shut_rd => return Some(Ok(0)),
                _ => return Some(Err(s.pending_error.take().unwrap_or(libc::ENOTCONN))),
            };
            let now = st.now;
            let lowat = st.ep().rcvlowat(h).unwrap_or(1);
            let target = if waitall {
                buf.len()
            } else {
                lowat.min(buf.len())
            }
            .max(1);
            if peek {
                // MSG_PEEK waits for the target queued (or the end of the stream, an error,
                // the urgent mark), then copies without taking.
                let queued = st.ep().recv_queue_len(h).unwrap_or(0);
                let ended = shut_rd
                    || !matches!(
                        st.ep().state(h).unwrap_or(State::Closed),
                        State::Established | State::FinWait1 | State::FinWait2
                    )
                    || st.ep().take_error(h).ok().flatten().is_some()
                    || st.ep().urgent_mark(h).ok().flatten().is_some();
                if !nonblock && queued < target && !ended {
                    return None;
                }
                let r = st.ep().peek(h, buf);
                return read_outcome(st, fd, r, shut_rd, nonblock);
            }
            if !std::mem::take(&mut first) && !shut_rd && !st.ep().recv_ready(h).unwrap_or(true) {
                // Asleep in sk_wait_data until tcp_data_ready (or an error, or the end of
                // the stream) wakes the reader: what is queued, read or not, is short of
                // SO_RCVLOWAT.
                return None;
            }
            loop {
                let r = st.ep().recv(now, h, &mut buf[copied..]);
                match r {
                    Ok(n) if n > 0 => {
                        copied += n;
                        let at_mark = st.ep().urgent_mark(h).ok().flatten() == Some(0);
                        if copied >= target || nonblock || copied == buf.len() || at_mark {
                            return Some(Ok(copied));
                        }
                    }
                    Err(Error::WouldBlock) if copied > 0 && !nonblock && !shut_rd => {
                        return None;
                    }
                    // The end of the stream, an error or SHUT_RD after some bytes: those
                    // bytes now (an error is the next call's).
                    _ if copied > 0 => return Some(Ok(copied)),
                    r => return read_outcome(st, fd, r, shut_rd, nonblock),
                }
            }
        });
        let n = r.unwrap_or(Err(libc::EAGAIN))?;
        let inq = if g.socket(fd)?.opts.inq {
            // Linux counts a received FIN as one byte when nothing else is left.
            let mut q = g.inq(fd) as i32;
            if q == 0 {
                if let Ok(h) = g.conn(fd) {
                    let state = g.ep().state(h).unwrap_or(State::Closed);
                    if matches!(
                        state,
                        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                    ) {
                        q = 1;
                    }
                }
            }
            Some(q)
        } else {
            None
        };
        g.drain();
        self.kick(&mut g);
        Ok(Received { len: n, inq })
    }

    /// recv(2) with MSG_OOB (`peek`: with MSG_PEEK too): the urgent byte, once; `None` is
    /// end of stream. Never blocks (Linux `tcp_recv_urg`: EAGAIN whatever the socket's
    /// blocking mode while the byte has not come).
    pub fn recv_oob(&self, fd: i32, peek: bool) -> SysResult<Option<u8>> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        let shut_rd = s.shut_rd;
        let h = match s.kind {
            Kind::Conn(h) => h,
            Kind::Listener(_) => return Err(libc::ENOTCONN),
            // No urgent data on a socket that never connected.
            Kind::Fresh => return Err(libc::EINVAL),
        };
        let r = if peek {
            g.ep().peek_urgent(h)
        } else {
            g.ep().recv_urgent(h)
        };
        match r {
            Ok(b) => Ok(b),
            Err(Error::WouldBlock) if shut_rd => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// send(2)/write(2). A blocking socket takes all of `data`, waiting for room; `flags`
    /// are MSG_MORE and MSG_EOR (an EOR marks the record's end once all of `data` is in).
    pub fn send(&self, fd: i32, data: &[u8], dontwait: bool, flags: SendFlags) -> SysResult<usize> {
        self.send_parts(fd, data, &[], dontwait, flags, false)
    }

    /// send(2) with MSG_OOB: as [`Shared::send`], and the last byte written is urgent.
    pub fn send_oob(
        &self,
        fd: i32,
        data: &[u8],
        dontwait: bool,
        flags: SendFlags,
    ) -> SysResult<usize> {
        self.write(self.lock(), fd, data, &[], dontwait, flags, false, true)
    }

    /// As [`Shared::send`], with `data` cut into records at `breaks` (ascending offsets into
    /// it), each part queued as if with MSG_EOR, so that no segment spans two; `zerocopy`
    /// numbers the write for its completion report on the error queue.
    pub(super) fn send_parts(
        &self,
        fd: i32,
        data: &[u8],
        breaks: &[usize],
        dontwait: bool,
        flags: SendFlags,
        zerocopy: bool,
    ) -> SysResult<usize> {
        self.write(
            self.lock(),
            fd,
            data,
            breaks,
            dontwait,
            flags,
            zerocopy,
            false,
        )
    }

    /// The first write on a connection whose SYN `TCP_FASTOPEN_CONNECT` deferred, as
    /// Linux's `tcp_sendmsg_fastopen` takes it: the SYN carries what it may of the write, a
    /// non-blocking call returns that much, and a blocking one waits for the handshake (its
    /// error, ECONNREFUSED say, is the write's) and then writes the rest.
    #[allow(clippy::too_many_arguments)]
    fn write_fast_open(
        &self,
        mut g: Guard<'_>,
        fd: i32,
        h: ConnectionHandle,
        data: &[u8],
        dontwait: bool,
        flags: SendFlags,
        zerocopy: bool,
    ) -> SysResult<usize> {
        let nonblock = g.socket(fd)?.nonblock || dontwait;
        let room = g.ep().fast_open_syn_room(h).map_err(errno)?;
        let first = &data[..data.len().min(room)];
        let n = g.ep().send_with(h, first, flags).map_err(errno)?;
        g.socket(fd)?.connecting = Connecting::InProgress;
        self.finish_fast_open_write(g, fd, h, data, n, nonblock, dontwait, flags, zerocopy)
    }

    /// The write behind every send, under `g`: `oob` queues each part with MSG_OOB. A
    /// caller that waited under the lock (a Fast Open write's handshake) passes it on, so
    /// that no other thread acts in between.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write<'a>(
        &'a self,
        mut g: Guard<'a>,
        fd: i32,
        data: &[u8],
        breaks: &[usize],
        dontwait: bool,
        flags: SendFlags,
        zerocopy: bool,
        oob: bool,
    ) -> SysResult<usize> {
        if !oob && breaks.is_empty() {
            if let Some(h) = deferred_fast_open(&mut g, fd)? {
                return self.write_fast_open(g, fd, h, data, dontwait, flags, zerocopy);
            }
        }
        let mut done = 0;
        // A blocked writer sleeps until the socket is woken (`Writable`, or any other event
        // on it), as Linux's sk_stream_wait_memory does, not until a write would merely fit:
        // the wake-up waits for a third of the buffer to be free.
        let mut asleep: Option<u64> = None;
        loop {
            let end = breaks.iter().copied().find(|&b| b > done);
            let end = end.unwrap_or(data.len()).min(data.len());
            let part_flags = if end < data.len() {
                SendFlags { eor: true, ..flags }
            } else {
                flags
            };
            let (g2, r) = self.block(g, None, |st| {
                let s = match st.socket(fd) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                if asleep.is_some_and(|gen| gen == s.ev_gen) {
                    return None;
                }
                asleep = None;
                let gen = s.ev_gen;
                let nonblock = s.nonblock || dontwait;
                let h = match s.kind {
                    Kind::Conn(h) => h,
                    _ => return Some(Err(s.pending_error.take().unwrap_or(libc::EPIPE))),
                };
                let (shut_wr, reported) = (s.shut_wr, s.error_reported);
                if shut_wr {
                    // Linux's `sk_stream_error`: an error not yet reported comes before EPIPE
                    // (an RST that came after our shutdown).
                    let e = st.take_conn_error(fd).ok().flatten();
                    return Some(Err(e.unwrap_or(libc::EPIPE)));
                }
                if reported && st.ep().take_error(h).ok().flatten().is_some() {
                    return Some(Err(libc::EPIPE));
                }
                let state = st.ep().state(h).unwrap_or(State::Closed);
                // A deferred Fast Open connect sends its SYN with the first write (an urgent
                // or MSG_EOR one; others go through `write_fast_open`).
                let deferred = st
                    .socket(fd)
                    .map(|s| std::mem::take(&mut s.fastopen_deferred))
                    .unwrap_or(false);
                // A Fast Open child may write before the handshake ends (tcp_sendmsg skips
                // the wait for a passive Fast Open socket).
                let fast_open = st.ep().is_fast_open_pending(h).unwrap_or(false);
                if matches!(state, State::SynSent | State::SynReceived) && !deferred && !fast_open {
                    return if nonblock {
                        Some(Err(libc::EAGAIN))
                    } else {
                        None
                    };
                }
                let part = &data[done..end];
                let sent = if oob {
                    st.ep().send_urgent(h, part, part_flags)
                } else {
                    st.ep().send_with(h, part, part_flags)
                };
                match sent {
                    Ok(n) => Some(Ok(n)),
                    Err(Error::WouldBlock) if nonblock => Some(Err(libc::EAGAIN)),
                    Err(Error::WouldBlock) => {
                        asleep = Some(gen);
                        None
                    }
                    Err(e) => {
                        if let Ok(s) = st.socket(fd) {
                            s.error_reported = true;
                        }
                        Some(Err(errno(e)))
                    }
                }
            });
            g = g2;
            if g.flags.verbose {
                eprintln!(
                    "synack-packetdrill: t={} send({fd}) after {done}: {r:?}",
                    g.now
                );
            }
            match r.unwrap_or(Err(libc::EAGAIN)) {
                Ok(n) => {
                    done += n;
                    let nonblock = g.socket(fd)?.nonblock || dontwait;
                    let finished = done >= data.len() || n == 0 || (nonblock && done < end);
                    // Before the endpoint sends them: the error queue follows these bytes.
                    g.note_write(fd, n, zerocopy, finished);
                    g.drain();
                    self.kick(&mut g);
                    if finished {
                        return Ok(done);
                    }
                    if done < end {
                        // Cut short: sleep until woken (a part that went in whole goes on
                        // to the next at once).
                        asleep = Some(g.socket(fd)?.ev_gen);
                    }
                }
                Err(_) if done > 0 => {
                    g.note_write(fd, 0, zerocopy, true);
                    return Ok(done);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The connection of `fd` if its SYN waits for this first write (`TCP_FASTOPEN_CONNECT`),
/// taking the wait away: the write that finds it sends the SYN.
fn deferred_fast_open(g: &mut Guard<'_>, fd: i32) -> SysResult<Option<ConnectionHandle>> {
    let s = g.socket(fd)?;
    match s.kind {
        Kind::Conn(h) if s.fastopen_deferred => {
            s.fastopen_deferred = false;
            Ok(Some(h))
        }
        _ => Ok(None),
    }
}
