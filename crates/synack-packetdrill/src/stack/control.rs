//! fcntl and ioctl: the non-blocking flag, the bytes queued each way, and the urgent mark.

use super::errno::SysResult;
use super::fd::Kind;
use super::state::Shared;

/// SIOCATMARK on Linux (include/uapi/asm-generic/sockios.h); the libc crate names it for
/// other systems only.
const SIOCATMARK: libc::c_ulong = 0x8905;

/// SIOCOUTQNSD on Linux (include/uapi/linux/sockios.h): bytes written and not yet sent.
const SIOCOUTQNSD: libc::c_ulong = 0x894b;

impl Shared {
    /// fcntl(2): F_GETFL and F_SETFL (O_NONBLOCK).
    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i32) -> SysResult<i32> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        match cmd {
            libc::F_GETFL => Ok(libc::O_RDWR | if s.nonblock { libc::O_NONBLOCK } else { 0 }),
            libc::F_SETFL => {
                s.nonblock = arg & libc::O_NONBLOCK != 0;
                Ok(0)
            }
            _ => Err(libc::EINVAL),
        }
    }

    /// ioctl(2): SIOCINQ (FIONREAD), SIOCOUTQ, SIOCOUTQNSD and SIOCATMARK.
    pub fn ioctl(&self, fd: i32, request: libc::c_ulong) -> SysResult<i32> {
        let mut g = self.lock();
        let s = g.socket(fd)?;
        // Linux tcp_ioctl: the queue sizes are EINVAL on a listener; SIOCATMARK is not
        // (a listener is never at a mark: 0), nor a request it does not know (ENOTTY).
        let queue = [libc::FIONREAD, libc::TIOCOUTQ, SIOCOUTQNSD].contains(&request);
        if queue && matches!(s.kind, Kind::Listener(_)) {
            return Err(libc::EINVAL);
        }
        match request {
            r if r == libc::FIONREAD => Ok(g.inq(fd) as i32),
            // Linux tcp_ioctl: write_seq - snd_una and write_seq - snd_nxt.
            r if r == libc::TIOCOUTQ => {
                let Ok(h) = g.conn(fd) else { return Ok(0) };
                Ok(g.ep().outq(h).map_or(0, |(unacked, _)| unacked) as i32)
            }
            SIOCOUTQNSD => {
                let Ok(h) = g.conn(fd) else { return Ok(0) };
                Ok(g.ep().outq(h).map_or(0, |(_, unsent)| unsent) as i32)
            }
            // Linux tcp_ioctl: 1 while the next byte read is the urgent mark's.
            SIOCATMARK => {
                let Ok(h) = g.conn(fd) else { return Ok(0) };
                Ok(i32::from(g.ep().urgent_mark(h).ok().flatten() == Some(0)))
            }
            _ => Err(libc::ENOTTY),
        }
    }
}
