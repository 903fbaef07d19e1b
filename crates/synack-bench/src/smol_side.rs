//! smoltcp's side: smoltcp 0.14 on its own TUN (`phy::TunTapInterface`), driven by the plain
//! poll loop its examples use (`Interface::poll`, then `phy::wait` until `poll_delay`), as a
//! client of the same kernel-side server as synack.
//!
//! smoltcp's TUN type is neither `Send` nor async, so the whole loop runs on one thread that
//! has joined the namespace (`NetNs::run_in`): the device is created there, in the right
//! namespace, and never leaves that thread.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{wait, Medium, TunTapInterface};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::net::{ip, PORT_SERVE, TUN_HOST, TUN_STACK};
use crate::pattern::{self, Checker};
use crate::proto::{Header, Op, Outcome, HEADER_LEN, REPLY_LEN};

/// smoltcp's TUN device name (in a namespace of its own).
pub const TUN_NAME: &str = "sbsmol0";
/// Each socket's receive and send buffer: 256 KiB, as synack's defaults (smoltcp scales its
/// window to fit, RFC 7323).
pub const BUFFER: usize = 256 * 1024;
/// The longest single sleep in `phy::wait`, so that timeouts and cancellation are noticed.
const MAX_WAIT: Duration = Duration::from_millis(10);

fn smol_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::now()
}

/// Runs every `(header, timeout)` of `plan` in turn, one fresh socket each, on a TUN made in
/// the calling thread's namespace `ns_name`, of MTU `mtu` (`None`: Linux's default for a TUN,
/// 1500). Stops early (with an error) once `cancel` is set.
pub fn run_plan(
    ns_name: &str,
    mtu: Option<usize>,
    plan: &[(Header, Duration)],
    cancel: &Arc<AtomicBool>,
    mut progress: impl FnMut(usize, &io::Result<Outcome>),
) -> io::Result<Vec<io::Result<Outcome>>> {
    if let Some(mtu) = mtu {
        // smoltcp takes its MTU from the interface when it attaches: the interface is made
        // first (persistent, so that it outlives this command; it goes with the namespace),
        // then sized.
        ip(ns_name, &["tuntap", "add", "dev", TUN_NAME, "mode", "tun"])?;
        ip(ns_name, &["link", "set", TUN_NAME, "mtu", &mtu.to_string()])?;
    }
    let mut dev = TunTapInterface::new(TUN_NAME, Medium::Ip)?;
    // smoltcp attaches to the device; the kernel's address and the link state are ours to set.
    ip(
        ns_name,
        &["addr", "add", &format!("{TUN_HOST}/24"), "dev", TUN_NAME],
    )?;
    ip(ns_name, &["link", "set", TUN_NAME, "up"])?;

    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = u64::from(std::process::id()) ^ 0x5eed;
    let mut iface = Interface::new(config, &mut dev, smol_now());
    let mut addr_err = None;
    iface.update_ip_addrs(|addrs| {
        if addrs
            .push(IpCidr::new(IpAddress::from(TUN_STACK), 24))
            .is_err()
        {
            addr_err = Some(io::Error::other("smoltcp: no room for an address"));
        }
    });
    if let Some(e) = addr_err {
        return Err(e);
    }
    let mut sockets = SocketSet::new(Vec::new());
    let mut results = Vec::new();
    for (i, (header, timeout)) in plan.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let socket = Socket::new(
            SocketBuffer::new(vec![0; BUFFER]),
            SocketBuffer::new(vec![0; BUFFER]),
        );
        let handle = sockets.add(socket);
        // A distinct local port per run, so that no run meets the previous one's TIME-WAIT.
        let local_port = 40000 + (i % 20000) as u16;
        let r = one_run(
            &mut dev,
            &mut iface,
            &mut sockets,
            handle,
            local_port,
            *header,
            *timeout,
            cancel,
        );
        sockets.get_mut::<Socket>(handle).abort();
        // Let the RST out before the socket goes.
        iface.poll(smol_now(), &mut dev, &mut sockets);
        sockets.remove(handle);
        progress(i, &r);
        results.push(r);
    }
    Ok(results)
}

fn fail(state: State, what: &str) -> io::Error {
    io::Error::other(format!("smoltcp: {what} (state {state})"))
}

/// Where a client run is.
enum Phase {
    /// Handshake in progress; then the header goes out.
    Header { written: usize },
    /// Sending the pattern.
    Upload { sent: u64 },
    /// Our FIN is queued; waiting for the server's count.
    Reply { sent: u64, got: usize },
    /// Reading the pattern until the server's FIN.
    Download { check: Checker },
    /// Our FIN is queued; waiting for the socket to settle (bounded).
    Closing { until: Instant },
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    dev: &mut TunTapInterface,
    iface: &mut Interface,
    sockets: &mut SocketSet<'_>,
    handle: SocketHandle,
    local_port: u16,
    header: Header,
    timeout: Duration,
    cancel: &AtomicBool,
) -> io::Result<Outcome> {
    if header.op == Op::PingPong {
        return Err(io::Error::other("ping-pong is not measured on smoltcp"));
    }
    let start = Instant::now();
    sockets
        .get_mut::<Socket>(handle)
        .connect(
            iface.context(),
            (IpAddress::from(TUN_HOST), PORT_SERVE),
            local_port,
        )
        .map_err(|e| io::Error::other(format!("smoltcp connect: {e}")))?;
    let head = header.encode();
    let mut reply = [0; REPLY_LEN];
    let mut phase = Phase::Header { written: 0 };
    let mut out = Outcome {
        count: 0,
        secs: 0.0,
        intact: false,
        timed_out: false,
    };
    let mut finished = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        if !finished && start.elapsed() >= timeout {
            out.secs = start.elapsed().as_secs_f64();
            out.timed_out = true;
            out.intact = false;
            return Ok(out);
        }
        iface.poll(smol_now(), dev, sockets);
        let s = sockets.get_mut::<Socket>(handle);
        match &mut phase {
            Phase::Header { written } => {
                if s.state() == State::Closed {
                    return Err(fail(s.state(), "connection refused or reset"));
                }
                if s.may_send() {
                    *written += s
                        .send_slice(&head[*written..])
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    if *written == HEADER_LEN {
                        phase = match header.op {
                            Op::Upload => Phase::Upload { sent: 0 },
                            _ => Phase::Download {
                                check: Checker::new(),
                            },
                        };
                    }
                }
            }
            Phase::Upload { sent } => {
                while *sent < header.limit && start.elapsed() < header.duration && s.can_send() {
                    let want = usize::try_from(header.limit - *sent).unwrap_or(usize::MAX);
                    let n = s
                        .send_slice(pattern::slice(*sent, want))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    *sent += n as u64;
                }
                if !s.may_send() {
                    return Err(fail(s.state(), "connection lost while sending"));
                }
                if *sent >= header.limit || start.elapsed() >= header.duration {
                    s.close();
                    phase = Phase::Reply {
                        sent: *sent,
                        got: 0,
                    };
                }
            }
            Phase::Reply { sent, got } => {
                while s.can_recv() && *got < REPLY_LEN {
                    *got += s
                        .recv_slice(&mut reply[*got..])
                        .map_err(|e| io::Error::other(e.to_string()))?;
                }
                if *got == REPLY_LEN {
                    out.take_reply(&reply, *sent);
                    out.secs = start.elapsed().as_secs_f64();
                    finished = true;
                    phase = Phase::Closing {
                        until: Instant::now() + Duration::from_secs(1),
                    };
                } else if !s.may_recv() {
                    return Err(fail(
                        s.state(),
                        "connection closed before the server's count",
                    ));
                }
            }
            Phase::Download { check } => {
                while s.can_recv() {
                    s.recv(|data| {
                        check.feed(data);
                        (data.len(), ())
                    })
                    .map_err(|e| io::Error::other(e.to_string()))?;
                }
                if !s.may_recv() {
                    if !matches!(s.state(), State::CloseWait | State::LastAck | State::Closed) {
                        return Err(fail(s.state(), "connection lost while receiving"));
                    }
                    out.count = check.bytes;
                    out.intact = check.intact;
                    out.secs = start.elapsed().as_secs_f64();
                    finished = true;
                    s.close();
                    phase = Phase::Closing {
                        until: Instant::now() + Duration::from_secs(1),
                    };
                }
            }
            Phase::Closing { until } => {
                if matches!(s.state(), State::Closed | State::TimeWait) || Instant::now() >= *until
                {
                    return Ok(out);
                }
            }
        }
        let delay = iface
            .poll_delay(smol_now(), sockets)
            .map_or(MAX_WAIT, Duration::from)
            .min(MAX_WAIT);
        wait(dev.as_raw_fd(), Some(delay.into()))?;
    }
}
