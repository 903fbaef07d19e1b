//! C memory read and written: the socket addresses, iovecs and buffers packetdrill hands
//! over, each turned into a Rust value (or filled in) under the promise its `# Safety` states.

use std::ffi::{c_int, c_void};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{iovec, sockaddr, socklen_t};

use crate::stack::SysResult;

/// # Safety
/// `addr` points to `len` readable bytes (or is null).
pub(super) unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> SysResult<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { (*addr).sa_family } as c_int;
    match family {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say it is a sockaddr_in; read unaligned since C
            // gives no alignment promise for a byte buffer.
            let a = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        libc::AF_INET | libc::AF_INET6 => Err(libc::EINVAL),
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// Whether `addr` is an `AF_UNSPEC` address (connect(2) with one disconnects).
///
/// # Safety
/// `addr` is null or has `len` readable bytes.
pub(super) unsafe fn is_unspec(addr: *const sockaddr, len: socklen_t) -> bool {
    !addr.is_null()
        && (len as usize) >= std::mem::size_of::<libc::sa_family_t>()
        // SAFETY: non-null with at least the family field readable (checked here).
        && c_int::from(unsafe { (*addr).sa_family }) == libc::AF_UNSPEC
}

/// # Safety
/// `addr`, if not null, points to `*len` writable bytes, and `len` is valid.
pub(super) unsafe fn write_sockaddr(a: SocketAddr, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: both pointers are non-null and, the caller promises, valid.
    let room = unsafe { *len } as usize;
    let bytes: Vec<u8> = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            pod_bytes(&s)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 is plain old data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            pod_bytes(&s)
        }
    };
    let n = room.min(bytes.len());
    // SAFETY: `addr` has `room` writable bytes (caller), we write at most that many, from a
    // buffer that does not overlap it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, n);
        *len = bytes.len() as socklen_t;
    }
}

fn pod_bytes<T: Copy>(v: &T) -> Vec<u8> {
    let size = std::mem::size_of::<T>();
    // SAFETY: T is a plain C struct (sockaddr_*) fully initialised (zeroed, then fields set);
    // we read exactly its size in bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size).to_vec() }
}

/// # Safety
/// `iov` points to `cnt` iovecs, each naming `iov_len` bytes readable (and writable for reads).
pub(super) unsafe fn iovecs<'a>(iov: *const iovec, cnt: c_int) -> SysResult<&'a [iovec]> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) {
        return Err(libc::EINVAL);
    }
    if cnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller promises `cnt` iovecs at `iov`.
    Ok(unsafe { std::slice::from_raw_parts(iov, cnt as usize) })
}

/// # Safety
/// Each iovec names readable memory.
pub(super) unsafe fn gather(iov: &[iovec]) -> SysResult<Vec<u8>> {
    let mut v = Vec::new();
    for i in iov {
        if i.iov_len == 0 {
            continue;
        }
        if i.iov_base.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: the caller promises each iovec names iov_len readable bytes.
        v.extend_from_slice(unsafe {
            std::slice::from_raw_parts(i.iov_base as *const u8, i.iov_len)
        });
    }
    Ok(v)
}

/// # Safety
/// Each iovec names writable memory.
pub(super) unsafe fn scatter(iov: &[iovec], mut data: &[u8]) {
    for i in iov {
        if data.is_empty() {
            break;
        }
        let n = i.iov_len.min(data.len());
        if n == 0 || i.iov_base.is_null() {
            continue;
        }
        // SAFETY: the caller promises iov_len writable bytes; n is no more than that.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), i.iov_base as *mut u8, n) };
        data = &data[n..];
    }
}

pub(super) fn total_len(iov: &[iovec]) -> usize {
    iov.iter().map(|i| i.iov_len).sum()
}

/// # Safety
/// `buf` is null only if `len` is 0, otherwise it names `len` readable bytes.
pub(super) unsafe fn in_buf<'a>(buf: *const c_void, len: usize) -> SysResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null and `len` readable bytes, the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(buf as *const u8, len) })
}

/// # Safety
/// `buf` is null only if `len` is 0, otherwise it names `len` writable bytes.
pub(super) unsafe fn out_buf<'a>(buf: *mut c_void, len: usize) -> SysResult<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null and `len` writable bytes, the caller promises.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, len) })
}
