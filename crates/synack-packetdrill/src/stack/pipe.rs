//! pipe(2) and splice(2), as packetdrill's shared-object interface routes them here.
//!
//! A pipe is a bounded in-memory byte queue with two descriptors, a read end and a write end;
//! it holds at most [`PIPE_CAPACITY`] bytes (Linux's default pipe of 16 pages). splice moves
//! bytes between a pipe and a socket: from a socket it reads as `tcp_splice_read` does (up to
//! the urgent mark and never across it, the pipe's room at most, what is there rather than
//! waiting for all of `len`), into a socket it writes as send(2) does. The errnos are Linux's
//! (fs/splice.c, net/ipv4/tcp.c).

use std::collections::VecDeque;

use synack_core::SendFlags;

use super::errno::{errno, SysResult};
use super::fd::{Fd, Kind};
use super::state::{Shared, Stack};

/// The bytes a pipe holds at most: Linux's default, 16 pages of 4 KiB.
pub(super) const PIPE_CAPACITY: usize = 16 * 4096;

/// One pipe: its bytes and which ends are still open.
#[derive(Debug, Default)]
pub(super) struct Pipe {
    pub(super) bytes: VecDeque<u8>,
    pub(super) reader_open: bool,
    pub(super) writer_open: bool,
}

impl Pipe {
    pub(super) fn room(&self) -> usize {
        PIPE_CAPACITY.saturating_sub(self.bytes.len())
    }

    /// What a read of an empty pipe returns, or `None` while it holds bytes: EAGAIN while a
    /// writer could still fill it (nothing can while this call waits), else end of file.
    fn empty_read(&self) -> Option<SysResult<usize>> {
        if !self.bytes.is_empty() {
            return None;
        }
        Some(if self.writer_open {
            Err(libc::EAGAIN)
        } else {
            Ok(0)
        })
    }
}

/// A descriptor for one end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PipeEnd {
    /// The pipe's key in `Stack::pipes`.
    pub(super) id: u64,
    /// The write end (else the read end).
    pub(super) write: bool,
}

/// What a splice descriptor is.
enum End {
    Pipe(PipeEnd),
    Socket,
}

impl Stack {
    fn end(&self, fd: i32) -> SysResult<End> {
        match self.fds.get(&fd) {
            Some(Fd::Pipe(p)) => Ok(End::Pipe(*p)),
            Some(Fd::Socket(_)) => Ok(End::Socket),
            // Neither a pipe nor something splice can read or write.
            Some(Fd::Epoll(_)) => Err(libc::EINVAL),
            None => Err(libc::EBADF),
        }
    }

    fn pipe(&mut self, id: u64) -> &mut Pipe {
        self.pipes.entry(id).or_default()
    }

    /// One end of a pipe closed: the pipe goes once both are.
    pub(super) fn close_pipe_end(&mut self, end: PipeEnd) {
        let p = self.pipe(end.id);
        if end.write {
            p.writer_open = false;
        } else {
            p.reader_open = false;
        }
        if !p.reader_open && !p.writer_open {
            self.pipes.remove(&end.id);
        }
    }

    /// poll readiness of a pipe end (Linux `pipe_poll`).
    pub(super) fn pipe_readiness(&mut self, end: PipeEnd) -> u32 {
        use super::ev;
        let p = self.pipe(end.id);
        if end.write {
            let mut m = if p.room() > 0 {
                ev::OUT | ev::WRNORM
            } else {
                0
            };
            if !p.reader_open {
                m |= ev::ERR;
            }
            m
        } else {
            let mut m = if p.bytes.is_empty() {
                0
            } else {
                ev::IN | ev::RDNORM
            };
            if !p.writer_open {
                m |= ev::HUP;
            }
            m
        }
    }
}

impl Shared {
    /// pipe(2): the read end's and the write end's descriptors.
    pub fn pipe(&self) -> SysResult<[i32; 2]> {
        let mut g = self.lock();
        let r = g.alloc_fd()?;
        let w = match g.alloc_fd() {
            Ok(w) => w,
            Err(e) => {
                crate::sys::release_fd(r);
                return Err(e);
            }
        };
        g.next_pipe += 1;
        let id = g.next_pipe;
        g.pipes.insert(
            id,
            Pipe {
                bytes: VecDeque::new(),
                reader_open: true,
                writer_open: true,
            },
        );
        g.fds.insert(r, Fd::Pipe(PipeEnd { id, write: false }));
        g.fds.insert(w, Fd::Pipe(PipeEnd { id, write: true }));
        Ok([r, w])
    }

    /// Whether `fd` is a pipe end (read(2) and write(2) on it go to the pipe).
    pub fn is_pipe(&self, fd: i32) -> bool {
        matches!(self.lock().fds.get(&fd), Some(Fd::Pipe(_)))
    }

    /// read(2) on a pipe's read end: what is there, 0 once the write end is closed, EAGAIN
    /// never (nothing else could fill it while this thread waits, so an empty pipe with a
    /// writer says EAGAIN rather than hanging the script).
    pub fn pipe_read(&self, fd: i32, buf: &mut [u8]) -> SysResult<usize> {
        let mut g = self.lock();
        let End::Pipe(end) = g.end(fd)? else {
            return Err(libc::EBADF);
        };
        if end.write {
            return Err(libc::EBADF);
        }
        let p = g.pipe(end.id);
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(r) = p.empty_read() {
            return r;
        }
        let n = buf.len().min(p.bytes.len());
        for (d, b) in buf.iter_mut().zip(p.bytes.drain(..n)) {
            *d = b;
        }
        Ok(n)
    }

    /// write(2) on a pipe's write end: as much as fits, EAGAIN when full, EPIPE once the
    /// read end is closed.
    pub fn pipe_write(&self, fd: i32, data: &[u8]) -> SysResult<usize> {
        let mut g = self.lock();
        let End::Pipe(end) = g.end(fd)? else {
            return Err(libc::EBADF);
        };
        if !end.write {
            return Err(libc::EBADF);
        }
        let p = g.pipe(end.id);
        if !p.reader_open {
            return Err(libc::EPIPE);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = data.len().min(p.room());
        if n == 0 {
            return Err(libc::EAGAIN);
        }
        p.bytes.extend(&data[..n]);
        Ok(n)
    }

    /// splice(2) between a pipe and a socket (or two pipes). Offsets: packetdrill passes a
    /// pointer even for the script's NULL, so an offset of 0 stands for none; any other is
    /// ESPIPE, since neither pipes nor sockets seek.
    pub fn splice(
        &self,
        fd_in: i32,
        off_in: i64,
        fd_out: i32,
        off_out: i64,
        len: usize,
        flags: u32,
    ) -> SysResult<usize> {
        let (from, to) = {
            let g = self.lock();
            (g.end(fd_in)?, g.end(fd_out)?)
        };
        // do_splice: a descriptor opened the wrong way is EBADF.
        if matches!(from, End::Pipe(p) if p.write) || matches!(to, End::Pipe(p) if !p.write) {
            return Err(libc::EBADF);
        }
        if off_in != 0 || off_out != 0 {
            return Err(libc::ESPIPE);
        }
        let nonblock = flags & libc::SPLICE_F_NONBLOCK != 0;
        match (from, to) {
            (End::Socket, End::Socket) => Err(libc::EINVAL),
            (End::Socket, End::Pipe(out)) => self.splice_from_socket(fd_in, out, len, nonblock),
            (End::Pipe(inp), End::Socket) => {
                let more = flags & libc::SPLICE_F_MORE != 0;
                self.splice_to_socket(inp, fd_out, len, nonblock, more)
            }
            (End::Pipe(inp), End::Pipe(out)) => {
                if inp.id == out.id {
                    return Err(libc::EINVAL);
                }
                let mut g = self.lock();
                if let Some(r) = g.pipe(inp.id).empty_read() {
                    return r;
                }
                let room = g.pipe(out.id).room();
                let p = g.pipe(inp.id);
                let n = len.min(p.bytes.len()).min(room);
                let moved: Vec<u8> = p.bytes.drain(..n).collect();
                g.pipe(out.id).bytes.extend(moved);
                Ok(n)
            }
        }
    }

    /// Socket to pipe, after Linux `tcp_splice_read` and `tcp_read_sock`: the bytes up to
    /// the urgent mark (at the mark, 0 while bytes are queued: the read never takes the
    /// urgent byte, however `SO_OOBINLINE` is set), at most the pipe's room.
    fn splice_from_socket(
        &self,
        fd: i32,
        out: PipeEnd,
        len: usize,
        flags_nonblock: bool,
    ) -> SysResult<usize> {
        if len == 0 {
            return Ok(0);
        }
        let g = self.lock();
        let (mut g, r) = self.block(g, None, |st| {
            let s = match st.socket(fd) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let nonblock = s.nonblock || flags_nonblock;
            let shut_rd = s.shut_rd;
            let h = match s.kind {
                Kind::Conn(h) => h,
                _ => return Some(Err(libc::ENOTCONN)),
            };
            let room = st.pipe(out.id).room();
            if !st.pipe(out.id).reader_open {
                return Some(Err(libc::EPIPE));
            }
            if room == 0 {
                return if nonblock {
                    Some(Err(libc::EAGAIN))
                } else {
                    None
                };
            }
            let now = st.now;
            let queued = st.ep().recv_queue_len(h).unwrap_or(0);
            let mark = st.ep().urgent_mark(h).ok().flatten();
            let limit = mark.map_or(len, |m| len.min(m)).min(room).min(queued);
            if limit > 0 {
                let mut tmp = vec![0; limit];
                return Some(match st.ep().recv(now, h, &mut tmp) {
                    Ok(n) => {
                        st.pipe(out.id).bytes.extend(&tmp[..n]);
                        Ok(n)
                    }
                    Err(e) => Err(errno(e)),
                });
            }
            if queued > 0 {
                // At the urgent mark: tcp_splice_read does not wait for data it could never
                // take ("This might happen with URG data").
                return Some(if nonblock { Err(libc::EAGAIN) } else { Ok(0) });
            }
            let r = st.ep().recv(now, h, &mut []);
            super::io::read_outcome(st, fd, r, shut_rd, nonblock)
        });
        g.drain();
        self.kick(&mut g);
        r.unwrap_or(Err(libc::EAGAIN))
    }

    /// Pipe to socket: the pipe's bytes (at most `len`) written as send(2) writes them; what
    /// the socket did not take stays in the pipe.
    fn splice_to_socket(
        &self,
        inp: PipeEnd,
        fd: i32,
        len: usize,
        nonblock: bool,
        more: bool,
    ) -> SysResult<usize> {
        if len == 0 {
            return Ok(0);
        }
        let data: Vec<u8> = {
            let mut g = self.lock();
            let p = g.pipe(inp.id);
            if let Some(r) = p.empty_read() {
                return r;
            }
            let n = len.min(p.bytes.len());
            p.bytes.iter().take(n).copied().collect()
        };
        let flags = SendFlags {
            more,
            ..SendFlags::default()
        };
        let n = self.send(fd, &data, nonblock, flags)?;
        let mut g = self.lock();
        let p = g.pipe(inp.id);
        let n = n.min(p.bytes.len());
        p.bytes.drain(..n);
        Ok(n)
    }
}
