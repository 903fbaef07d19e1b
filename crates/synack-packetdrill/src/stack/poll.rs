//! Readiness: what poll and epoll report for a socket, as Linux's tcp_poll computes it, and
//! the epoll sets.

use std::time::Duration;

use synack_core::State;

use super::errno::SysResult;
use super::ev;
use super::fd::{Epoll, Fd, Kind, Wakes};
use super::state::{Shared, Stack};

impl Stack {
    /// poll/epoll readiness of `fd`, as Linux's tcp_poll computes it.
    fn readiness(&mut self, fd: i32) -> u32 {
        if let Some(Fd::Pipe(end)) = self.fds.get(&fd) {
            let end = *end;
            return self.pipe_readiness(end);
        }
        let Ok(s) = self.socket(fd) else {
            return libc::POLLNVAL as u32;
        };
        // tcp_poll: EPOLLERR while the error queue holds anything.
        let errq = if s.errq.is_empty() { 0 } else { ev::ERR };
        errq | match s.kind {
            Kind::Fresh => ev::OUT | ev::WRNORM | ev::HUP,
            Kind::Listener(l) => {
                if s.accepted.is_empty() {
                    if let Ok(h) = self.ep.as_mut().expect("listening").accept(l) {
                        self.conn_fd.insert(h, fd);
                        if let Ok(s) = self.socket(fd) {
                            s.accepted.push_back(h);
                        }
                    }
                }
                match self.socket(fd) {
                    Ok(s) if !s.accepted.is_empty() => ev::IN | ev::RDNORM,
                    _ => 0,
                }
            }
            Kind::Conn(h) => {
                let (shut_rd, shut_wr, reported) = (s.shut_rd, s.shut_wr, s.error_reported);
                let deferred = s.fastopen_deferred;
                let ep = self.ep();
                let state = ep.state(h).unwrap_or(State::Closed);
                let error = ep.take_error(h).ok().flatten();
                let mut mask = 0;
                if error.is_some() && !reported {
                    mask |= ev::ERR;
                }
                let fin_in = matches!(
                    state,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                );
                let fin_out = matches!(
                    state,
                    State::FinWait1
                        | State::FinWait2
                        | State::Closing
                        | State::LastAck
                        | State::TimeWait
                );
                let closed = state == State::Closed;
                let rcv_shut = shut_rd || fin_in || closed;
                let snd_shut = shut_wr || fin_out || closed;
                if (rcv_shut && snd_shut) || closed {
                    mask |= ev::HUP;
                }
                if rcv_shut {
                    mask |= ev::IN | ev::RDNORM | ev::RDHUP;
                }
                // A Fast Open child polls as a connected socket (tcp_poll lets a passive Fast
                // Open socket be read and written in SYN-RECV).
                let fast_open = ep.is_fast_open_pending(h).unwrap_or(false);
                if !matches!(state, State::SynSent | State::SynReceived) || fast_open {
                    if ep.recv_ready(h).unwrap_or(false) {
                        mask |= ev::IN | ev::RDNORM;
                    }
                    // tcp_poll: EPOLLPRI while the urgent byte waits for MSG_OOB.
                    if ep.urgent_pending(h).unwrap_or(false) {
                        mask |= ev::PRI;
                    }
                    if snd_shut {
                        mask |= ev::OUT | ev::WRNORM;
                    } else if ep.poll_writable(h).unwrap_or(false) {
                        // tcp_poll's __sk_stream_is_writeable(sk, 1), and SOCK_NOSPACE if not.
                        mask |= ev::OUT | ev::WRNORM;
                    }
                } else if deferred {
                    // tcp_poll: a connect that TCP_FASTOPEN_CONNECT deferred is writable, so
                    // that the application writes what its SYN is to carry.
                    mask |= ev::OUT | ev::WRNORM;
                }
                mask
            }
        }
    }
}

impl Shared {
    /// poll(2) over `fds` (fd, events) -> revents, waiting up to `timeout_ms` (-1: forever).
    pub fn poll(&self, fds: &[(i32, i16)], timeout_ms: i32) -> SysResult<Vec<i16>> {
        let g = self.lock();
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        let scan = |st: &mut Stack| {
            let mut any = false;
            let revents: Vec<i16> = fds
                .iter()
                .map(|&(fd, events)| {
                    if fd < 0 {
                        return 0;
                    }
                    let r = st.readiness(fd);
                    let wanted = (events as u16 as u32) | ev::ERR | ev::HUP | libc::POLLNVAL as u32;
                    let r = (r & wanted) as u16 as i16;
                    any |= r != 0;
                    r
                })
                .collect();
            (any, revents)
        };
        let (mut g, r) = self.block(g, deadline, |st| {
            let (any, revents) = scan(st);
            any.then_some(revents)
        });
        Ok(r.unwrap_or_else(|| scan(&mut g).1))
    }

    /// epoll_create(2).
    pub fn epoll_create(&self) -> SysResult<i32> {
        let mut g = self.lock();
        let fd = g.alloc_fd()?;
        g.fds.insert(fd, Fd::Epoll(Epoll::default()));
        Ok(fd)
    }

    /// epoll_ctl(2).
    pub fn epoll_ctl(&self, epfd: i32, op: i32, fd: i32, events: u32, data: u64) -> SysResult<()> {
        let mut g = self.lock();
        g.socket(fd)?;
        let Some(Fd::Epoll(e)) = g.fds.get_mut(&epfd) else {
            return Err(libc::EINVAL);
        };
        match op {
            libc::EPOLL_CTL_ADD => {
                if e.interest.contains_key(&fd) {
                    return Err(libc::EEXIST);
                }
                // Linux always adds EPOLLERR and EPOLLHUP; a one-shot entry, once reported,
                // loses them too (ep_send_events), until EPOLL_CTL_MOD.
                e.interest
                    .insert(fd, (events | ev::ERR | ev::HUP, data, Wakes::default()));
            }
            libc::EPOLL_CTL_MOD => match e.interest.get_mut(&fd) {
                Some(entry) => *entry = (events | ev::ERR | ev::HUP, data, Wakes::default()),
                None => return Err(libc::ENOENT),
            },
            libc::EPOLL_CTL_DEL => {
                if e.interest.remove(&fd).is_none() {
                    return Err(libc::ENOENT);
                }
            }
            _ => return Err(libc::EINVAL),
        }
        Ok(())
    }

    /// epoll_wait(2): up to `max` (events, data), waiting up to `timeout_ms`.
    pub fn epoll_wait(&self, epfd: i32, max: usize, timeout_ms: i32) -> SysResult<Vec<(u32, u64)>> {
        let g = self.lock();
        if max == 0 {
            return Err(libc::EINVAL);
        }
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        let scan = |st: &mut Stack| -> SysResult<Vec<(u32, u64)>> {
            let interest = match st.fds.get(&epfd) {
                Some(Fd::Epoll(e)) => e.interest.clone(),
                _ => return Err(libc::EBADF),
            };
            let mut out = Vec::new();
            for (fd, (events, data, last)) in interest {
                if out.len() >= max {
                    break;
                }
                let r = st.readiness(fd) & events;
                let r = r & !(ev::ET | ev::ONESHOT);
                if r == 0 {
                    continue;
                }
                let wakes = st.socket(fd).map(|s| s.wakes).unwrap_or_default();
                if events & ev::ET != 0 && !wakes.edge_since(&last, events) {
                    continue;
                }
                out.push((r, data));
                if let Some(Fd::Epoll(e)) = st.fds.get_mut(&epfd) {
                    if let Some(entry) = e.interest.get_mut(&fd) {
                        entry.2 = wakes;
                        if events & ev::ONESHOT != 0 {
                            entry.0 = 0;
                        }
                    }
                }
            }
            Ok(out)
        };
        let (mut g, r) = self.block(g, deadline, |st| match scan(st) {
            Ok(v) if v.is_empty() => None,
            other => Some(other),
        });
        match r {
            Some(r) => r,
            None => scan(&mut g),
        }
    }
}
