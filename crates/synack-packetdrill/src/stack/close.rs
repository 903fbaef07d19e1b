//! Ending connections: shutdown, and close (with SO_LINGER), also of every descriptor left
//! when packetdrill is done with the library.

use std::collections::VecDeque;
use std::time::Duration;

use synack_core::{ConnectionHandle, Error, ListenerHandle, State};

use super::errno::{errno, SysResult};
use super::fd::{Fd, Kind, Wake};
use super::state::{Guard, Shared, Stack};

impl Stack {
    /// What a socket's end (close) and a disconnect share: the connections `poll` took from
    /// its listener's queue and nobody accepted are reset, and the listener, if it is one,
    /// closes (resetting what its queue still holds).
    pub(super) fn end_listening(
        &mut self,
        accepted: VecDeque<ConnectionHandle>,
        listener: Option<ListenerHandle>,
    ) -> SysResult<()> {
        for h in accepted {
            self.conn_fd.remove(&h);
            let _ = self.ep().abort(h);
        }
        if let Some(l) = listener {
            self.listener_fd.remove(&l);
            let now = self.now;
            self.ep().close_listener(now, l).map_err(errno)?;
        }
        Ok(())
    }
}

impl Shared {
    /// close(2).
    pub fn close(&self, fd: i32) -> SysResult<()> {
        self.close_fd(fd, true)
    }

    fn close_fd(&self, fd: i32, release: bool) -> SysResult<()> {
        let mut g = self.lock();
        let now = g.now;
        let removed = g.fds.remove(&fd);
        // packetdrill closes the live descriptors of its sockets when a script ends, not
        // those of its pipes.
        let pipe = matches!(removed, Some(Fd::Pipe(_)));
        if removed.is_some() && (release || pipe) {
            crate::sys::release_fd(fd);
        }
        match removed {
            None => return Err(libc::EBADF),
            Some(Fd::Epoll(_)) => {}
            Some(Fd::Pipe(end)) => g.close_pipe_end(end),
            Some(Fd::Socket(s)) => {
                for (_, f) in g.fds.iter_mut() {
                    if let Fd::Epoll(e) = f {
                        e.interest.remove(&fd);
                    }
                }
                let linger = s.opts.linger;
                let listener = match s.kind {
                    Kind::Listener(l) => Some(l),
                    _ => None,
                };
                g.end_listening(s.accepted, listener)?;
                if let Some((a, reuse)) = s.binding {
                    let _ = g.ep().release_binding(a, reuse);
                }
                match s.kind {
                    Kind::Fresh | Kind::Listener(_) => {}
                    Kind::Conn(h) => {
                        g.conn_fd.remove(&h);
                        match linger {
                            Some(0) => g.ep().abort(h).map_err(errno)?,
                            Some(secs) if release && g.ep().recv_queue_len(h).unwrap_or(0) == 0 => {
                                g = self.linger(g, h, secs);
                                let now = g.now;
                                g.ep().close(now, h).map_err(errno)?;
                            }
                            _ => g.ep().close(now, h).map_err(errno)?,
                        }
                    }
                }
            }
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }

    /// SO_LINGER with a timeout: close() sends the FIN and waits until it is acknowledged,
    /// or `secs` pass (Linux's inet_release, tcp_close).
    fn linger<'a>(&'a self, mut g: Guard<'a>, h: ConnectionHandle, secs: i32) -> Guard<'a> {
        let now = g.now;
        let _ = g.ep().shutdown(h);
        g.drain();
        self.kick(&mut g);
        let deadline = now + Duration::from_secs(secs.max(0) as u64);
        let (g, _) = self.block(g, Some(deadline), |st| {
            let state = st.ep().state(h).unwrap_or(State::Closed);
            matches!(state, State::FinWait2 | State::TimeWait | State::Closed).then_some(())
        });
        g
    }

    /// shutdown(2).
    pub fn shutdown(&self, fd: i32, how: i32) -> SysResult<()> {
        let mut g = self.lock();
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(libc::EINVAL),
        };
        let s = g.socket(fd)?;
        let h = match s.kind {
            Kind::Conn(h) => h,
            // Linux's `inet_shutdown` on a listener: reading shut stops it as a disconnect
            // does (`tcp_disconnect`: its queue reset, free to listen again); writing shut
            // alone changes nothing.
            Kind::Listener(_) if rd => {
                drop(g);
                return self.disconnect(fd);
            }
            Kind::Listener(_) => return Ok(()),
            Kind::Fresh => return Err(libc::ENOTCONN),
        };
        if g.ep().state(h) == Ok(State::SynSent) {
            // Linux's `inet_shutdown` disconnects a socket still connecting, whatever `how`
            // (`tcp_disconnect`): the attempt ends with no RST, and ECONNRESET is left on
            // the socket.
            drop(g);
            return self.disconnect(fd);
        }
        let s = g.socket(fd)?;
        let first_rd = rd && !s.shut_rd;
        s.shut_rd |= rd;
        let first_wr = wr && !s.shut_wr;
        s.shut_wr |= wr;
        s.wake(Wake::All);
        if first_rd {
            g.ep().shutdown_read(h).map_err(errno)?;
        }
        if first_wr {
            match g.ep().shutdown(h) {
                Ok(()) | Err(Error::BrokenPipe) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        g.drain();
        self.kick(&mut g);
        Ok(())
    }

    /// Close everything (packetdrill is done with the library).
    pub fn shutdown_all(&self) {
        let fds: Vec<i32> = self.lock().fds.keys().copied().collect();
        for fd in fds {
            // packetdrill closes the descriptors itself.
            let _ = self.close_fd(fd, false);
        }
    }
}
