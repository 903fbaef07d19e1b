//! The socket error queue that `recvmsg(MSG_ERRQUEUE)` reads, and what fills it:
//! `MSG_ZEROCOPY` completions (SO_ZEROCOPY) and transmit timestamps (SO_TIMESTAMPING), as
//! Linux reports them (Documentation/networking/msg_zerocopy.rst and timestamping.rst).
//!
//! The core copies every byte it is given, so a zerocopy send here is an ordinary send whose
//! completion is reported the way Linux reports a send it had to copy after all
//! (`SO_EE_CODE_ZEROCOPY_COPIED`): once the peer has acknowledged all of its bytes. Timestamps
//! come from the virtual clock: a write's last byte is "scheduled" and "sent" when the
//! segment that carries it first leaves the endpoint, and "acknowledged" when the cumulative
//! ACK covers it. Both follow the byte stream through [`TcpInfo`]'s counters, read after
//! every change the endpoint makes (`Stack::drain`), so the core needs nothing new.

use std::collections::VecDeque;

use synack_core::tcp::info::TcpInfo;
use synack_core::{SendFlags, State};

use super::errno::SysResult;
use super::fd::{Fd, Wake};
use super::state::{Shared, Stack};

/// `SO_ZEROCOPY` (asm-generic/socket.h).
pub const SO_ZEROCOPY: i32 = 60;
/// `SO_TIMESTAMPING` as a 64-bit libc names it (`SO_TIMESTAMPING_OLD`), which is also the
/// type of the `SCM_TIMESTAMPING` control message.
pub const SO_TIMESTAMPING: i32 = 37;
/// `SO_MARK`.
pub const SO_MARK: i32 = 36;

/// `SOF_TIMESTAMPING_*` (linux/net_tstamp.h).
pub mod sof {
    /// Hardware transmit timestamps.
    pub const TX_HARDWARE: u32 = 1 << 0;
    /// Software transmit timestamps (`SCM_TSTAMP_SND`).
    pub const TX_SOFTWARE: u32 = 1 << 1;
    /// Hardware receive timestamps.
    pub const RX_HARDWARE: u32 = 1 << 2;
    /// Software receive timestamps.
    pub const RX_SOFTWARE: u32 = 1 << 3;
    /// Report software timestamps (`ts[0]` of `SCM_TIMESTAMPING`).
    pub const SOFTWARE: u32 = 1 << 4;
    /// Report hardware timestamps converted to system time (obsolete).
    pub const SYS_HARDWARE: u32 = 1 << 5;
    /// Report raw hardware timestamps.
    pub const RAW_HARDWARE: u32 = 1 << 6;
    /// Number each timestamp (`ee_data`): for TCP, by byte.
    pub const OPT_ID: u32 = 1 << 7;
    /// Timestamps when data enters the packet scheduler (`SCM_TSTAMP_SCHED`).
    pub const TX_SCHED: u32 = 1 << 8;
    /// Timestamps when the peer acknowledges data (`SCM_TSTAMP_ACK`).
    pub const TX_ACK: u32 = 1 << 9;
    /// `IP_PKTINFO` beside transmit timestamps.
    pub const OPT_CMSG: u32 = 1 << 10;
    /// Timestamps without the packet.
    pub const OPT_TSONLY: u32 = 1 << 11;
    /// `SCM_TIMESTAMPING_OPT_STATS` beside timestamps.
    pub const OPT_STATS: u32 = 1 << 12;
    /// `SCM_TIMESTAMPING_PKTINFO` beside receive timestamps.
    pub const OPT_PKTINFO: u32 = 1 << 13;
    /// Both hardware and software transmit timestamps.
    pub const OPT_TX_SWHW: u32 = 1 << 14;
    /// Bind to a PTP hardware clock.
    pub const BIND_PHC: u32 = 1 << 15;
    /// With `OPT_ID`, count from the next byte written rather than from SND.UNA (Linux 6.2).
    pub const OPT_ID_TCP: u32 = 1 << 16;
    /// Receive timestamps only where asked for.
    pub const OPT_RX_FILTER: u32 = 1 << 17;
    /// Every flag Linux knows.
    pub const MASK: u32 = (OPT_RX_FILTER << 1) - 1;
    /// The flags that ask for transmit timestamps to be recorded.
    pub const TX_RECORD_MASK: u32 = TX_HARDWARE | TX_SOFTWARE | TX_SCHED | TX_ACK;
    /// The flags whose reports the error queue here cannot make: receive timestamps and the
    /// extra control messages. Asking for them fails with ENOPROTOOPT rather than silently
    /// doing nothing. (Hardware flags are accepted: there is no timestamping hardware, and
    /// Linux with such a device reports nothing for them either.)
    pub const UNSUPPORTED: u32 = RX_SOFTWARE | OPT_CMSG | OPT_STATS | OPT_PKTINFO;
}

/// `SO_EE_ORIGIN_TIMESTAMPING`.
const ORIGIN_TIMESTAMPING: u8 = 4;
/// `SO_EE_ORIGIN_ZEROCOPY`.
const ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`.
const CODE_ZEROCOPY_COPIED: u8 = 1;

/// Linux's `MAX_SKB_FRAGS`: the pages one zerocopy skb can hold.
pub const MAX_SKB_FRAGS: usize = 17;
/// The page size zerocopy pins pages by.
const PAGE_SIZE: usize = 4096;
/// `msg_zerocopy_realloc`'s `byte_limit`: one notification covers at most this many bytes.
const ZC_BYTE_LIMIT: u64 = 1 << 19;

/// Which moment a timestamp marks (`SCM_TSTAMP_*`, the `ee_info` of its report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tstamp {
    /// The segment left the endpoint (`SCM_TSTAMP_SND`, 0).
    Snd = 0,
    /// The segment entered the packet scheduler (`SCM_TSTAMP_SCHED`, 1).
    Sched = 1,
    /// The peer acknowledged the byte (`SCM_TSTAMP_ACK`, 2).
    Ack = 2,
}

/// One report on the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The zerocopy sends numbered `lo..=hi` are complete.
    Zerocopy {
        /// The first send's number (`ee_info`).
        lo: u32,
        /// The last send's number (`ee_data`).
        hi: u32,
    },
    /// A transmit timestamp.
    Timestamp {
        /// Which moment.
        kind: Tstamp,
        /// The byte's number with `OPT_ID` (`ee_data`), else 0.
        key: u32,
        /// When, in microseconds of (virtual) wall-clock time.
        at_us: u64,
        /// `OPT_TSONLY`: the report carries no packet.
        tsonly: bool,
    },
}

/// A zerocopy send not yet complete: its numbers and where its bytes end in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ZcRange {
    lo: u32,
    len: u32,
    bytes: u64,
    end: u64,
}

/// A write whose last byte is to be timestamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TsRecord {
    /// The stream offset just past the write's last byte.
    end: u64,
    /// The `TX_*` flags in force when it was written.
    flags: u32,
    sent: bool,
}

/// Where a connection's byte stream stands: offsets from its first data byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes sent at least once.
    pub sent: u64,
    /// Bytes cumulatively acknowledged.
    pub acked: u64,
    /// The connection is gone: what it held was freed.
    pub gone: bool,
}

impl Progress {
    /// The progress a `TCP_INFO` snapshot shows, of a connection that an active open made
    /// (`active`) or a listener.
    pub fn from_info(i: &TcpInfo, active: bool) -> Progress {
        let acked = data_acked(i, active);
        // Before the handshake completes, what is in flight is the SYN, not data. After a
        // shutdown, `notsent_bytes` counts an unsent FIN as a byte, which (coming last) is
        // unsent whenever anything is.
        let fin_queued = matches!(
            i.state,
            Some(State::FinWait1 | State::Closing | State::LastAck)
        );
        let unsent_data = i.notsent_bytes - u32::from(fin_queued && i.notsent_bytes > 0);
        let in_flight = match i.state {
            Some(State::SynSent | State::SynReceived) | None => 0,
            _ => i.send_queued.saturating_sub(unsent_data),
        };
        Progress {
            sent: acked + u64::from(in_flight),
            acked,
            gone: false,
        }
    }
}

/// Data bytes acknowledged: `tcpi_bytes_acked` sums SND.UNA's moves, as Linux's, and so counts
/// an active open's SYN and, once acknowledged, the FIN (FIN-WAIT-2 and TIME-WAIT; a closed
/// connection is `gone`).
fn data_acked(i: &TcpInfo, active: bool) -> u64 {
    let syn = active && !matches!(i.state, Some(State::SynSent | State::SynReceived) | None);
    let fin = matches!(i.state, Some(State::FinWait2 | State::TimeWait));
    i.bytes_acked
        .saturating_sub(u64::from(syn))
        .saturating_sub(u64::from(fin))
}

/// One socket's error queue, and the sends and writes still to be reported on it.
#[derive(Debug, Default)]
pub struct ErrQueue {
    queue: VecDeque<Report>,
    /// Bytes written so far: the stream offset of the next byte.
    written: u64,
    /// Bytes of the write under way.
    this_write: u64,
    /// The next zerocopy number (Linux `sk_zckey`).
    zc_next: u32,
    zc_pending: VecDeque<ZcRange>,
    /// The last write was a zerocopy one (another can only join its notification then).
    last_zc: bool,
    /// The `OPT_ID` origin, in sequence space from the ISN (Linux `sk_tskey`).
    ts_base: u64,
    ts_pending: VecDeque<TsRecord>,
}

impl ErrQueue {
    /// Nothing queued to read.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Something still waits on the connection's progress.
    pub fn waiting(&self) -> bool {
        !self.zc_pending.is_empty() || !self.ts_pending.is_empty()
    }

    /// Take the oldest report.
    pub fn pop(&mut self) -> Option<Report> {
        self.queue.pop_front()
    }

    /// `n` more bytes of a write were queued; `done` once the write returns. A zerocopy write
    /// takes the next number, or joins the previous zerocopy write's while that one's last
    /// bytes are still unsent (`msg_zerocopy_realloc`: they would share its skb). `tsflags`
    /// are the socket's SO_TIMESTAMPING flags: a write asking for transmit timestamps gets
    /// them for its last byte (`tcp_tx_timestamp`), unless that byte is already gone.
    pub fn on_write(&mut self, n: usize, zerocopy: bool, done: bool, tsflags: u32, p: Progress) {
        self.written += n as u64;
        self.this_write += n as u64;
        if !done {
            return;
        }
        let bytes = std::mem::take(&mut self.this_write);
        if bytes == 0 {
            // Linux takes no number for an empty or failed send (net_zcopy_put_abort).
            return;
        }
        if zerocopy {
            let next = self.zc_next;
            let joined = match self.zc_pending.back_mut() {
                Some(r)
                    if self.last_zc
                        && p.sent < r.end
                        && r.lo.wrapping_add(r.len) == next
                        && r.len < u32::from(u16::MAX) - 1
                        && r.bytes + bytes <= ZC_BYTE_LIMIT =>
                {
                    r.len += 1;
                    r.bytes += bytes;
                    r.end = self.written;
                    true
                }
                _ => false,
            };
            if !joined {
                self.zc_pending.push_back(ZcRange {
                    lo: next,
                    len: 1,
                    bytes,
                    end: self.written,
                });
            }
            self.zc_next = next.wrapping_add(1);
        }
        self.last_zc = zerocopy;
        let flags = tsflags & sof::TX_RECORD_MASK;
        if flags != 0 && p.sent < self.written {
            // Linux tags the write queue's tail skb; a later write that lands in the same skb
            // moves the tag to its own last byte.
            if let Some(prev) = self.ts_pending.back() {
                if !prev.sent && p.sent < prev.end {
                    self.ts_pending.pop_back();
                }
            }
            self.ts_pending.push_back(TsRecord {
                end: self.written,
                flags,
                sent: false,
            });
        }
    }

    /// SO_TIMESTAMPING turned `OPT_ID` on: number bytes from here (`sk_tskey`): from the
    /// next byte written with `OPT_ID_TCP`, else from SND.UNA. `syn_acked` says whether
    /// SND.UNA is past the SYN.
    pub fn set_ts_origin(&mut self, tcp: bool, acked: u64, syn_acked: bool) {
        self.ts_base = if tcp {
            self.written + 1
        } else {
            acked + u64::from(syn_acked)
        };
    }

    /// The connection moved on to `p` at `now_us`: queue what that completes. True if
    /// anything was queued or a queued report grew (the socket's error report: Linux's
    /// `sock_zerocopy_callback` calls `sk_error_report` after extending a report too, which
    /// an edge-triggered epoll sees as a new edge).
    pub fn on_progress(&mut self, p: Progress, now_us: u64, tsflags: u32) -> bool {
        let before = self.queue.len();
        let mut grew = false;
        let key = |end: u64, base: u64| {
            if tsflags & sof::OPT_ID != 0 {
                // The last byte's sequence number (end, counting the SYN) less sk_tskey.
                end.wrapping_sub(base) as u32
            } else {
                0
            }
        };
        let tsonly = tsflags & sof::OPT_TSONLY != 0;
        let mut stamps = Vec::new();
        for r in self.ts_pending.iter_mut().filter(|r| !r.sent) {
            if p.sent < r.end && !p.gone {
                break;
            }
            r.sent = true;
            if p.gone {
                continue;
            }
            let key = key(r.end, self.ts_base);
            for (flag, kind) in [
                (sof::TX_SCHED, Tstamp::Sched),
                (sof::TX_SOFTWARE, Tstamp::Snd),
            ] {
                if r.flags & flag != 0 {
                    stamps.push(Report::Timestamp {
                        kind,
                        key,
                        at_us: now_us,
                        tsonly,
                    });
                }
            }
        }
        while let Some(r) = self.ts_pending.front() {
            if !r.sent || (p.acked < r.end && !p.gone && r.flags & sof::TX_ACK != 0) {
                break;
            }
            if r.flags & sof::TX_ACK != 0 && !p.gone {
                stamps.push(Report::Timestamp {
                    kind: Tstamp::Ack,
                    key: key(r.end, self.ts_base),
                    at_us: now_us,
                    tsonly,
                });
            }
            self.ts_pending.pop_front();
        }
        self.queue.extend(stamps);
        while let Some(r) = self.zc_pending.front().copied() {
            if p.acked < r.end && !p.gone {
                break;
            }
            self.zc_pending.pop_front();
            self.notify_zerocopy(r.lo, r.len);
            grew = true;
        }
        grew || self.queue.len() != before
    }

    /// Queue the completion of zerocopy sends `lo..lo + len`, extending the last report
    /// instead when it is a zerocopy one that ends just before (`skb_zerocopy_notify_extend`).
    fn notify_zerocopy(&mut self, lo: u32, len: u32) {
        if let Some(Report::Zerocopy { lo: old_lo, hi }) = self.queue.back_mut() {
            let total = u64::from(hi.wrapping_sub(*old_lo)) + 1 + u64::from(len);
            if hi.wrapping_add(1) == lo && total < 1 << 32 {
                *hi = hi.wrapping_add(len);
                return;
            }
        }
        self.queue.push_back(Report::Zerocopy {
            lo,
            hi: lo.wrapping_add(len - 1),
        });
    }
}

/// Where a zerocopy write's bytes run out of skb frags, as offsets into the write: each
/// iovec element is pinned page by page, and a piece that does not continue the previous one
/// in the same page takes a frag of its own; Linux starts a new skb (with PSH on the full
/// one, `tcp_mark_push`) when one has `MAX_SKB_FRAGS`. `iov` is (address, length) per
/// element.
pub fn frag_breaks(iov: &[(usize, usize)]) -> Vec<usize> {
    let mut breaks = Vec::new();
    let mut frags = 0;
    let mut last: Option<usize> = None; // the address just past the previous piece
    let mut offset = 0;
    for &(addr, len) in iov {
        let mut a = addr;
        let end = addr.saturating_add(len);
        while a < end {
            let piece_end = end.min((a / PAGE_SIZE + 1) * PAGE_SIZE);
            let continues = last == Some(a) && a % PAGE_SIZE != 0;
            if !continues {
                if frags == MAX_SKB_FRAGS {
                    breaks.push(offset);
                    frags = 0;
                }
                frags += 1;
            }
            offset += piece_end - a;
            last = Some(piece_end);
            a = piece_end;
        }
    }
    breaks
}

/// One control message: level, type, data.
pub type Cmsg = (i32, i32, Vec<u8>);

/// `CMSG_ALIGN`: control messages are aligned to `size_t`.
fn cmsg_align(n: usize) -> usize {
    let a = std::mem::size_of::<usize>();
    n.div_ceil(a) * a
}

/// `sizeof(struct cmsghdr)`: `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const CMSG_HDR: usize = std::mem::size_of::<usize>() + 8;

/// Lay `cmsgs` out as Linux's `put_cmsg` does into `room` bytes of `msg_control`: each
/// header and data, padded to the next alignment; a message that does not fit is cut short
/// and the result says so (`MSG_CTRUNC`).
pub fn put_cmsgs(cmsgs: &[Cmsg], room: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    for (level, ty, data) in cmsgs {
        let left = room - out.len();
        if left < CMSG_HDR {
            truncated = true;
            break;
        }
        let len = cmsg_align(CMSG_HDR) + data.len();
        let mut m = Vec::with_capacity(cmsg_align(len));
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&level.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.resize(cmsg_align(CMSG_HDR), 0);
        m.extend_from_slice(data);
        if len > left {
            truncated = true;
        }
        m.resize(cmsg_align(len).min(left), 0);
        out.extend_from_slice(&m);
    }
    (out, truncated)
}

/// `struct sock_extended_err` followed by the zeroed offender address `ip_recv_error` (or
/// `ipv6_recv_error`) appends: a `sockaddr_in`, or a `sockaddr_in6` on an IPv6 socket.
fn extended_err(errno: u32, origin: u8, code: u8, info: u32, data: u32, v6: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(&errno.to_ne_bytes());
    b.extend_from_slice(&[origin, 0, code, 0]); // ee_origin, ee_type, ee_code, ee_pad
    b.extend_from_slice(&info.to_ne_bytes());
    b.extend_from_slice(&data.to_ne_bytes());
    b.resize(16 + if v6 { 28 } else { 16 }, 0);
    b
}

/// `struct scm_timestamping`: three `timespec`s, software, (deprecated), hardware.
fn scm_timestamping(at_us: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    let sec = (at_us / 1_000_000) as i64;
    let nsec = (at_us % 1_000_000 * 1000) as i64;
    b.extend_from_slice(&sec.to_ne_bytes());
    b.extend_from_slice(&nsec.to_ne_bytes());
    b.resize(48, 0);
    b
}

/// The control messages `recvmsg(MSG_ERRQUEUE)` returns for `r` (Linux's order: the
/// timestamp, if the socket reports software ones, then the extended error), and whether
/// the report carries a packet.
pub fn report_cmsgs(r: &Report, tsflags: u32, v6: bool) -> (Vec<Cmsg>, bool) {
    let (level, ty) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    match *r {
        Report::Zerocopy { lo, hi } => {
            let ee = extended_err(0, ORIGIN_ZEROCOPY, CODE_ZEROCOPY_COPIED, lo, hi, v6);
            (vec![(level, ty, ee)], false)
        }
        Report::Timestamp {
            kind,
            key,
            at_us,
            tsonly,
        } => {
            let mut v = Vec::new();
            if tsflags & sof::SOFTWARE != 0 {
                v.push((libc::SOL_SOCKET, SO_TIMESTAMPING, scm_timestamping(at_us)));
            }
            let ee = extended_err(
                libc::ENOMSG as u32,
                ORIGIN_TIMESTAMPING,
                0,
                kind as u32,
                key,
                v6,
            );
            v.push((level, ty, ee));
            (v, !tsonly)
        }
    }
}

/// What `recvmsg(MSG_ERRQUEUE)` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrRead {
    /// Bytes read into the iovecs.
    pub len: usize,
    /// `msg_flags`.
    pub flags: i32,
    /// `msg_control`'s new contents (its length is the new `msg_controllen`).
    pub control: Vec<u8>,
}

impl Stack {
    /// Where the connection behind `fd` stands.
    fn progress(&mut self, fd: i32) -> Progress {
        let now = self.now;
        let Ok(h) = self.conn(fd) else {
            return Progress::default();
        };
        let active = self.socket(fd).is_ok_and(|s| !s.passive);
        match self.ep().info(now, h) {
            Ok(i) if i.state != Some(State::Closed) => Progress::from_info(&i, active),
            _ => Progress {
                gone: true,
                ..Progress::default()
            },
        }
    }

    /// `n` more bytes of a write on `fd` were queued; `done` once the write returns. Called
    /// before the endpoint sends any of them.
    pub(super) fn note_write(&mut self, fd: i32, n: usize, zerocopy: bool, done: bool) {
        let Ok(tsflags) = self.socket(fd).map(|s| s.opts.timestamping) else {
            return;
        };
        // Only a write to be reported needs to know where the connection stands.
        let p = if zerocopy || tsflags & sof::TX_RECORD_MASK != 0 {
            self.progress(fd)
        } else {
            Progress::default()
        };
        if let Ok(s) = self.socket(fd) {
            s.errq.on_write(n, zerocopy, done, tsflags, p);
        }
    }

    /// After the endpoint changed: queue the reports its progress completes, and wake the
    /// sockets that got one (`sk_error_report`).
    pub(super) fn errq_progress(&mut self) {
        let fds: Vec<i32> = self
            .fds
            .iter()
            .filter_map(|(&fd, f)| match f {
                Fd::Socket(s) if s.errq.waiting() => Some(fd),
                _ => None,
            })
            .collect();
        let now_us = self.wall_base_us + self.now.total_micros();
        for fd in fds {
            let p = self.progress(fd);
            if let Ok(s) = self.socket(fd) {
                let tsflags = s.opts.timestamping;
                if s.errq.on_progress(p, now_us, tsflags) {
                    s.wake(Wake::All);
                }
            }
        }
    }

    /// setsockopt(SO_ZEROCOPY): 0 or 1 (Linux: EINVAL otherwise).
    pub(super) fn set_zerocopy(&mut self, fd: i32, v: i32) -> SysResult<()> {
        if !(0..=1).contains(&v) {
            return Err(libc::EINVAL);
        }
        self.socket(fd)?.opts.zerocopy = v == 1;
        Ok(())
    }

    /// setsockopt(SO_TIMESTAMPING): the flags (an int, or `struct so_timestamping` with a
    /// PHC index), checked as Linux's `sock_set_timestamping` does.
    pub(super) fn set_timestamping(&mut self, fd: i32, value: &[u8]) -> SysResult<()> {
        let b: [u8; 4] = value
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(libc::EINVAL)?;
        let v = u32::from_ne_bytes(b);
        if v & !sof::MASK != 0 || (v & sof::OPT_ID_TCP != 0 && v & sof::OPT_ID == 0) {
            return Err(libc::EINVAL);
        }
        if v & sof::BIND_PHC != 0 {
            // Only for a socket bound to a device with a PTP clock.
            return Err(libc::EOPNOTSUPP);
        }
        if v & sof::UNSUPPORTED != 0 {
            return Err(libc::ENOPROTOOPT);
        }
        let old = self.socket(fd)?.opts.timestamping;
        if v & sof::OPT_ID != 0 && old & sof::OPT_ID == 0 {
            // No numbering on a socket that is not connected (TCP_CLOSE, TCP_LISTEN).
            let h = self.conn(fd).map_err(|_| libc::EINVAL)?;
            let now = self.now;
            let i = self.ep().info(now, h).map_err(|_| libc::EINVAL)?;
            if matches!(i.state, Some(State::Closed) | None) {
                return Err(libc::EINVAL);
            }
            let syn_acked = !matches!(i.state, Some(State::SynSent | State::SynReceived));
            let s = self.socket(fd)?;
            let acked = data_acked(&i, !s.passive);
            s.errq
                .set_ts_origin(v & sof::OPT_ID_TCP != 0, acked, syn_acked);
        }
        self.socket(fd)?.opts.timestamping = v;
        Ok(())
    }
}

/// getsockopt(SO_TIMESTAMPING): `struct so_timestamping` (flags, PHC index).
pub(super) fn timestamping_bytes(flags: u32) -> Vec<u8> {
    let mut v = flags.to_ne_bytes().to_vec();
    v.extend_from_slice(&0i32.to_ne_bytes());
    v
}

impl Shared {
    /// send(2)/sendmsg(2) with `MSG_ZEROCOPY`; `iov` is the (address, length) of each iovec
    /// element, `data` their bytes. On a socket without SO_ZEROCOPY, Linux ignores the flag.
    /// Otherwise the write is numbered for its completion report, and split where Linux's
    /// skbs would run out of frags (each part ends a record, so it ends a segment with PSH).
    pub fn send_zerocopy(
        &self,
        fd: i32,
        data: &[u8],
        iov: &[(usize, usize)],
        dontwait: bool,
        flags: SendFlags,
    ) -> SysResult<usize> {
        let on = self.lock().socket(fd)?.opts.zerocopy;
        if !on {
            return self.send(fd, data, dontwait, flags);
        }
        self.send_parts(fd, data, &frag_breaks(iov), dontwait, flags, true)
    }

    /// recvmsg(2) with `MSG_ERRQUEUE`: the oldest report, never waiting (Linux's
    /// `sock_recv_errqueue`: EAGAIN when there is none); `room` is the room for control
    /// messages. A timestamp's packet is not kept, so one that has it (no `OPT_TSONLY`)
    /// always reads as truncated, with no bytes, whatever room the iovecs have.
    pub fn recv_errqueue(&self, fd: i32, room: usize) -> SysResult<ErrRead> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        let r = s.errq.pop().ok_or(libc::EAGAIN)?;
        let (cmsgs, payload) = report_cmsgs(&r, s.opts.timestamping, s.v6);
        if !s.errq.is_empty() {
            // sock_dequeue_err_skb reports the socket's error again while more are queued.
            s.wake(Wake::All);
        }
        let (control, ctrunc) = put_cmsgs(&cmsgs, room);
        let mut flags = libc::MSG_ERRQUEUE;
        if payload {
            flags |= libc::MSG_TRUNC;
        }
        if ctrunc {
            flags |= libc::MSG_CTRUNC;
        }
        Ok(ErrRead {
            len: 0,
            flags,
            control,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;
    use crate::stack::ev;

    fn at(sent: u64, acked: u64) -> Progress {
        Progress {
            sent,
            acked,
            gone: false,
        }
    }

    fn drain(q: &mut ErrQueue) -> Vec<Report> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn zerocopy_numbers_each_send_and_reports_on_ack() {
        let mut q = ErrQueue::default();
        q.on_write(4000, true, true, 0, at(0, 0));
        assert!(!q.on_progress(at(4000, 0), 1, 0), "sent is not complete");
        assert!(q.on_progress(at(4000, 4000), 2, 0));
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 0, hi: 0 }]);
        q.on_write(4000, true, true, 0, at(4000, 4000));
        q.on_progress(at(8000, 8000), 3, 0);
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 1, hi: 1 }]);
    }

    #[test]
    fn zerocopy_reports_coalesce_until_read() {
        // batch.pkt: two sends, each acked, read once: one report for both.
        let mut q = ErrQueue::default();
        q.on_write(4000, true, true, 0, at(0, 0));
        q.on_progress(at(4000, 4000), 1, 0);
        q.on_write(4000, true, true, 0, at(4000, 4000));
        q.on_progress(at(8000, 8000), 2, 0);
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 0, hi: 1 }]);
    }

    #[test]
    fn zerocopy_sends_sharing_unsent_bytes_share_a_number_range() {
        let mut q = ErrQueue::default();
        q.on_write(100, true, true, 0, at(0, 0));
        // The first send's bytes are still unsent: the second joins its notification.
        q.on_write(100, true, true, 0, at(0, 0));
        // A plain write in between keeps the next one apart.
        q.on_write(100, false, true, 0, at(0, 0));
        q.on_write(100, true, true, 0, at(0, 0));
        q.on_progress(at(200, 200), 1, 0);
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 0, hi: 1 }]);
        q.on_progress(at(400, 400), 2, 0);
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 2, hi: 2 }]);
    }

    #[test]
    fn failed_or_empty_zerocopy_send_takes_no_number() {
        let mut q = ErrQueue::default();
        q.on_write(0, true, true, 0, at(0, 0));
        q.on_write(10, true, true, 0, at(0, 0));
        q.on_progress(at(10, 10), 1, 0);
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 0, hi: 0 }]);
    }

    #[test]
    fn zerocopy_completes_when_the_connection_goes() {
        let mut q = ErrQueue::default();
        q.on_write(10, true, true, 0, at(0, 0));
        let gone = Progress {
            gone: true,
            ..Progress::default()
        };
        assert!(q.on_progress(gone, 1, 0));
        assert_eq!(drain(&mut q), [Report::Zerocopy { lo: 0, hi: 0 }]);
        assert!(!q.waiting());
    }

    const TS: u32 = sof::TX_SCHED | sof::TX_SOFTWARE | sof::TX_ACK | sof::SOFTWARE | sof::OPT_ID;

    fn stamp(kind: Tstamp, key: u32, at_us: u64) -> Report {
        Report::Timestamp {
            kind,
            key,
            at_us,
            tsonly: false,
        }
    }

    #[test]
    fn timestamps_mark_the_last_byte_of_each_write() {
        // server.pkt: OPT_ID set once established, two writes of 2000.
        let mut q = ErrQueue::default();
        q.set_ts_origin(false, 0, true);
        q.on_write(2000, false, true, TS, at(0, 0));
        q.on_progress(at(2000, 0), 10, TS);
        q.on_write(2000, false, true, TS, at(2000, 0));
        q.on_progress(at(4000, 0), 10, TS);
        q.on_progress(at(4000, 2000), 20, TS);
        q.on_progress(at(4000, 4000), 30, TS);
        assert_eq!(
            drain(&mut q),
            [
                stamp(Tstamp::Sched, 1999, 10),
                stamp(Tstamp::Snd, 1999, 10),
                stamp(Tstamp::Sched, 3999, 10),
                stamp(Tstamp::Snd, 3999, 10),
                stamp(Tstamp::Ack, 1999, 20),
                stamp(Tstamp::Ack, 3999, 30),
            ]
        );
    }

    #[test]
    fn timestamp_waits_for_the_segment_with_the_last_byte() {
        // client-only-last-byte.pkt: 10000 of 11000 go at once, the rest after an ACK.
        let mut q = ErrQueue::default();
        q.set_ts_origin(false, 0, true);
        q.on_write(11000, false, true, TS, at(0, 0));
        assert!(!q.on_progress(at(10000, 0), 10, TS));
        assert!(q.on_progress(at(11000, 10000), 20, TS));
        assert!(q.on_progress(at(11000, 11000), 30, TS));
        assert_eq!(
            drain(&mut q),
            [
                stamp(Tstamp::Sched, 10999, 20),
                stamp(Tstamp::Snd, 10999, 20),
                stamp(Tstamp::Ack, 10999, 30),
            ]
        );
    }

    #[test]
    fn timestamp_keys_count_from_the_origin() {
        let mut q = ErrQueue::default();
        q.on_write(500, false, true, 0, at(0, 0));
        // OPT_ID after 500 bytes were written and 300 acknowledged: SND.UNA is the origin.
        q.set_ts_origin(false, 300, true);
        q.on_write(100, false, true, sof::TX_ACK | sof::OPT_ID, at(500, 300));
        q.on_progress(at(600, 600), 7, sof::TX_ACK | sof::OPT_ID);
        assert_eq!(drain(&mut q), [stamp(Tstamp::Ack, 299, 7)]);
        // OPT_ID_TCP counts from the next byte written.
        q.set_ts_origin(true, 600, true);
        q.on_write(10, false, true, sof::TX_ACK | sof::OPT_ID, at(600, 600));
        q.on_progress(at(610, 610), 8, sof::TX_ACK | sof::OPT_ID);
        assert_eq!(drain(&mut q), [stamp(Tstamp::Ack, 9, 8)]);
    }

    #[test]
    fn a_write_into_the_same_unsent_bytes_moves_the_stamp() {
        let mut q = ErrQueue::default();
        q.on_write(10, false, true, sof::TX_SCHED, at(0, 0));
        q.on_write(10, false, true, sof::TX_SCHED, at(0, 0));
        q.on_progress(at(20, 0), 5, sof::TX_SCHED);
        assert_eq!(drain(&mut q), [stamp(Tstamp::Sched, 0, 5)]);
        assert!(!q.waiting());
    }

    #[test]
    fn frags_break_after_seventeen_pieces() {
        // 18 one-byte elements 32 bytes apart: 17 frags, then one more.
        let iov: Vec<_> = (0..18).map(|i| (0x10000 + 32 * i, 1)).collect();
        assert_eq!(frag_breaks(&iov), [17]);
        let iov: Vec<_> = (0..64).map(|i| (0x10000 + 32 * i, 1)).collect();
        assert_eq!(frag_breaks(&iov), [17, 34, 51]);
        // One buffer of 4000 bytes across a page boundary: two frags.
        assert!(frag_breaks(&[(0x10f00, 4000)]).is_empty());
        // Contiguous elements in one page share a frag.
        let iov: Vec<_> = (0..40).map(|i| (0x20000 + i, 1)).collect();
        assert!(frag_breaks(&iov).is_empty());
        // 18 pages of one buffer.
        assert_eq!(frag_breaks(&[(0x30000, 18 * 4096)]), [17 * 4096]);
    }

    #[test]
    fn cmsgs_have_linux_layout() {
        let (c, trunc) = report_cmsgs(&Report::Zerocopy { lo: 3, hi: 5 }, 0, false);
        assert!(!trunc);
        let (b, ctrunc) = put_cmsgs(&c, 2000);
        assert!(!ctrunc);
        // CMSG_SPACE(sizeof(sock_extended_err) + sizeof(sockaddr_in)) on 64-bit Linux.
        assert_eq!(b.len(), 48);
        assert_eq!(usize::from_ne_bytes(b[0..8].try_into().unwrap()), 16 + 32);
        assert_eq!(
            i32::from_ne_bytes(b[8..12].try_into().unwrap()),
            libc::SOL_IP
        );
        assert_eq!(
            i32::from_ne_bytes(b[12..16].try_into().unwrap()),
            libc::IP_RECVERR
        );
        assert_eq!(
            &b[16..24],
            &[0, 0, 0, 0, ORIGIN_ZEROCOPY, 0, CODE_ZEROCOPY_COPIED, 0]
        );
        assert_eq!(u32::from_ne_bytes(b[24..28].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 5);

        let r = stamp(Tstamp::Ack, 7, 1_500_000);
        let (c, payload) = report_cmsgs(&r, sof::SOFTWARE, true);
        assert!(payload);
        let (b, _) = put_cmsgs(&c, 2000);
        // CMSG_SPACE(48) + CMSG_SPACE(16 + 28).
        assert_eq!(b.len(), 64 + 64);
        assert_eq!(
            i32::from_ne_bytes(b[12..16].try_into().unwrap()),
            SO_TIMESTAMPING
        );
        assert_eq!(i64::from_ne_bytes(b[16..24].try_into().unwrap()), 1);
        assert_eq!(
            i64::from_ne_bytes(b[24..32].try_into().unwrap()),
            500_000_000
        );
        assert_eq!(
            i32::from_ne_bytes(b[72..76].try_into().unwrap()),
            libc::SOL_IPV6
        );
        assert_eq!(
            u32::from_ne_bytes(b[80..84].try_into().unwrap()),
            libc::ENOMSG as u32
        );
        assert_eq!(
            u32::from_ne_bytes(b[88..92].try_into().unwrap()),
            Tstamp::Ack as u32
        );

        // Without room for all of it, the control data is cut short.
        let (b, ctrunc) = put_cmsgs(&c, 70);
        assert!(ctrunc);
        assert_eq!(b.len(), 64);
        let (b, ctrunc) = put_cmsgs(&c, 0);
        assert!(ctrunc && b.is_empty());
    }

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    #[test]
    fn socket_options_check_as_linux_does() {
        let s = Shared::new(Flags::default());
        let fd = s.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let sol = libc::SOL_SOCKET;
        assert_eq!(
            s.setsockopt(fd, sol, SO_ZEROCOPY, &int(2)),
            Err(libc::EINVAL)
        );
        s.setsockopt(fd, sol, SO_ZEROCOPY, &int(1)).unwrap();
        assert_eq!(s.getsockopt(fd, sol, SO_ZEROCOPY).unwrap(), int(1));
        // Numbering needs a connection; an unknown bit is EINVAL; receive stamps are not kept.
        let v = (sof::OPT_ID | sof::TX_ACK) as i32;
        assert_eq!(
            s.setsockopt(fd, sol, SO_TIMESTAMPING, &int(v)),
            Err(libc::EINVAL)
        );
        let v = (sof::OPT_ID_TCP | sof::TX_ACK) as i32;
        assert_eq!(
            s.setsockopt(fd, sol, SO_TIMESTAMPING, &int(v)),
            Err(libc::EINVAL)
        );
        let v = (sof::MASK + 1) as i32;
        assert_eq!(
            s.setsockopt(fd, sol, SO_TIMESTAMPING, &int(v)),
            Err(libc::EINVAL)
        );
        let v = (sof::RX_SOFTWARE | sof::SOFTWARE) as i32;
        assert_eq!(
            s.setsockopt(fd, sol, SO_TIMESTAMPING, &int(v)),
            Err(libc::ENOPROTOOPT)
        );
        let v = (sof::TX_SCHED | sof::SOFTWARE) as i32;
        s.setsockopt(fd, sol, SO_TIMESTAMPING, &int(v)).unwrap();
        assert_eq!(s.getsockopt(fd, sol, SO_TIMESTAMPING).unwrap()[..4], int(v));
        // Nothing queued: EAGAIN, never a wait.
        assert_eq!(s.recv_errqueue(fd, 100), Err(libc::EAGAIN));
    }

    #[test]
    fn a_reported_oneshot_entry_reports_nothing_until_rearmed() {
        let s = Shared::new(Flags::default());
        let fd = s.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let ep = s.epoll_create().unwrap();
        s.epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, ev::OUT | ev::ONESHOT, 7)
            .unwrap();
        // A fresh socket is writable and hung up (tcp_poll in TCP_CLOSE).
        assert_eq!(s.epoll_wait(ep, 4, 0).unwrap(), [(ev::OUT | ev::HUP, 7)]);
        // Disabled: not even EPOLLHUP, which Linux otherwise always reports.
        assert_eq!(s.epoll_wait(ep, 4, 0).unwrap(), []);
        s.epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, ev::IN | ev::ONESHOT, 8)
            .unwrap();
        assert_eq!(s.epoll_wait(ep, 4, 0).unwrap(), [(ev::HUP, 8)]);
    }
}
