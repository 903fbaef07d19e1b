//! The state behind every call: [`Stack`] (the endpoint, the virtual clock, the file
//! descriptors and the packets sent) and [`Shared`] (the stack behind a mutex, with the
//! condition variable its blocked callers wait on); the lookups by file descriptor, and the
//! drain that sends what the endpoint has to send after each change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use synack_core::{ConnectionHandle, Endpoint, Event, Instant, ListenerHandle, State};

use super::errno::{errno, SysResult};
use super::fd::{Fd, Kind, Socket, Wake};
use crate::flags::{self, Flags, Sysctls};

/// The mutable state: the endpoint, the clock, the file descriptors and the packets sent.
pub struct Stack {
    pub(super) flags: Flags,
    pub(super) ep: Option<Endpoint>,
    sys: Option<Sysctls>,
    pub(super) now: Instant,
    pub(super) wall_base_us: u64,
    pub(super) fds: BTreeMap<i32, Fd>,
    pub(super) conn_fd: HashMap<ConnectionHandle, i32>,
    pub(super) listener_fd: HashMap<ListenerHandle, i32>,
    pub(super) out: VecDeque<(Vec<u8>, Instant)>,
    buf: Vec<u8>,
    pub(super) blocked: usize,
    pub(super) gen: u64,
    pub(super) pending: usize,
    pub(super) wait_deadlines: Vec<Instant>,
    pub(super) spin_calls: u32,
    pub(super) main_thread: ThreadId,
    /// The pipes, by id (see `pipe.rs`), and the last id given.
    pub(super) pipes: HashMap<u64, super::pipe::Pipe>,
    pub(super) next_pipe: u64,
}

/// The stack and the condition variable its blocked callers wait on.
pub struct Shared {
    pub(super) state: Mutex<Stack>,
    pub(super) cv: Condvar,
}

pub(super) type Guard<'a> = MutexGuard<'a, Stack>;

impl Stack {
    pub(super) fn ep(&mut self) -> &mut Endpoint {
        if self.ep.is_none() {
            let (config, sys) = flags::config(&self.flags);
            let addrs = [self.flags.local4, self.flags.local6];
            self.ep = Some(Endpoint::new(config, &addrs));
            self.sys = Some(sys);
        }
        self.ep.as_mut().expect("just made")
    }

    pub(super) fn sys(&mut self) -> &Sysctls {
        self.ep();
        self.sys.as_ref().expect("made with the endpoint")
    }

    pub(super) fn socket(&mut self, fd: i32) -> SysResult<&mut Socket> {
        match self.fds.get_mut(&fd) {
            Some(Fd::Socket(s)) => Ok(s),
            Some(Fd::Epoll(_) | Fd::Pipe(_)) => Err(libc::ENOTSOCK),
            None => Err(libc::EBADF),
        }
    }

    pub(super) fn alloc_fd(&self) -> SysResult<i32> {
        let fd = crate::sys::reserve_fd()?;
        debug_assert!(!self.fds.contains_key(&fd));
        Ok(fd)
    }

    /// Send what the endpoint has to send, stamped with the current time, route its events
    /// to the sockets they concern, and queue the error-queue reports that completes.
    pub(super) fn drain(&mut self) {
        let now = self.now;
        if self.buf.len() < 65536 {
            self.buf.resize(65536, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        self.ep();
        let ep = self.ep.as_mut().expect("made above");
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            self.out.push_back((buf[..t.len].to_vec(), now));
        }
        self.buf = buf;
        while let Some(event) = self.ep().poll_event() {
            // The wake-up's key, as Linux's callbacks give it: data (sock_def_readable),
            // room (sk_stream_write_space), or a state change (sock_def_wakeup, no key).
            let (fd, key) = match event {
                Event::Readable(h) => {
                    // The peer's FIN: tcp_fin calls sk_state_change.
                    let fin = matches!(
                        self.ep().state(h),
                        Ok(State::CloseWait
                            | State::LastAck
                            | State::Closing
                            | State::TimeWait
                            | State::Closed)
                    );
                    let fd = self.conn_fd.get(&h).copied();
                    let first_fin = match fd.and_then(|fd| self.fds.get_mut(&fd)) {
                        Some(Fd::Socket(s)) if fin => !std::mem::replace(&mut s.fin_woken, true),
                        _ => false,
                    };
                    (fd, if first_fin { Wake::All } else { Wake::Read })
                }
                Event::Writable(h) => (self.conn_fd.get(&h).copied(), Wake::Write),
                Event::Connected(h) | Event::Closed(h, _) => {
                    (self.conn_fd.get(&h).copied(), Wake::All)
                }
                Event::Incoming(l) => (self.listener_fd.get(&l).copied(), Wake::Read),
                // Scripts never turn interception on.
                Event::Intercepted(_) => (None, Wake::All),
                // Scripts drive TCP only.
                Event::UdpReadable(_) | Event::UdpWritable | Event::UdpIntercepted => {
                    (None, Wake::All)
                }
            };
            if let Some(Fd::Socket(s)) = fd.and_then(|fd| self.fds.get_mut(&fd)) {
                s.wake(key);
            }
        }
        self.errq_progress();
    }

    /// Bytes waiting to be read (SIOCINQ, TCP_INQ): up to the urgent mark while the urgent
    /// byte is out of band and already here (Linux `tcp_inq`).
    pub(super) fn inq(&mut self, fd: i32) -> usize {
        let Ok(h) = self.conn(fd) else {
            return 0;
        };
        let inline = self.socket(fd).map(|s| s.opts.oobinline).unwrap_or(false);
        let len = self.ep().recv_queue_len(h).unwrap_or(0);
        match self.ep().urgent_mark(h) {
            Ok(Some(mark)) if !inline && mark < len => mark,
            _ => len,
        }
    }

    pub(super) fn conn(&mut self, fd: i32) -> SysResult<ConnectionHandle> {
        match self.socket(fd)?.kind {
            Kind::Conn(h) => Ok(h),
            _ => Err(libc::ENOTCONN),
        }
    }

    /// The connection's error, once: as a call's result the first time, then not again.
    pub(super) fn take_conn_error(&mut self, fd: i32) -> SysResult<Option<i32>> {
        let h = self.conn(fd)?;
        let e = self.ep().take_error(h).map_err(errno)?;
        let s = self.socket(fd)?;
        match e {
            Some(e) if !s.error_reported => {
                s.error_reported = true;
                Ok(Some(errno(e)))
            }
            _ => Ok(None),
        }
    }
}

pub(super) fn lock(m: &Mutex<Stack>) -> Guard<'_> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A fresh stack; the endpoint itself is made at the first `socket` call, once the
    /// script's init command has set the namespace's sysctls.
    pub fn new(flags: Flags) -> Shared {
        let wall_base_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Shared {
            state: Mutex::new(Stack {
                flags,
                ep: None,
                sys: None,
                now: Instant::ZERO,
                wall_base_us,
                fds: BTreeMap::new(),
                conn_fd: HashMap::new(),
                listener_fd: HashMap::new(),
                out: VecDeque::new(),
                buf: Vec::new(),
                blocked: 0,
                gen: 0,
                pending: 0,
                wait_deadlines: Vec::new(),
                spin_calls: 0,
                main_thread: thread::current().id(),
                pipes: HashMap::new(),
                next_pipe: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// With `--so_flags=verbose`, log a call and its result on stderr, at the virtual time.
    pub fn trace(&self, call: std::fmt::Arguments<'_>, result: &dyn std::fmt::Debug) {
        let g = lock(&self.state);
        if g.flags.verbose {
            eprintln!("synack-packetdrill: {} {call} = {result:?}", g.now);
        }
    }

    pub(super) fn lock(&self) -> Guard<'_> {
        let mut g = lock(&self.state);
        g.spin_calls = 0;
        // The link's MTU as it is now (a script's `ip link set dev tun0 mtu N`): open
        // connections follow it from their next segment, as Linux's follow their device's,
        // and new handshakes advertise it. The runtime's driver asks its device the same
        // about once a second.
        if let (Some(ep), Some(mtu)) = (g.ep.as_mut(), crate::flags::link_mtu()) {
            let _ = ep.set_mtu(mtu);
        }
        g
    }
}
