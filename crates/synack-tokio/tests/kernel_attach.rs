//! `TunDevice::attach` against the real kernel: a stack on a persistent TUN that `ip tuntap`
//! made beforehand (as an administrator makes one for an unprivileged user), each test in a
//! network namespace of its own. The kernel's own tools judge: `ip` makes and shows the
//! interfaces, python3 runs the clients and reads the interface's offloads back with the
//! ethtool ioctl.
//!
//! Needs root (network namespaces, TUN); skipped otherwise. The unprivileged run itself is
//! `kernel_examples`' `echo_server_runs_unprivileged_on_an_attached_tun`.

mod kernel_support;

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use kernel_support::{
    output, require_tool, succeed, tso, vnet_hdr_len, Proc, ECHO_CLIENTS, HOST, STACK,
};
use synack_tokio::device::{Device, OffloadTun, PlainTun, TunConfig, TunDevice};
use synack_tokio::netns::{require_tun, NetNs};
use synack_tokio::{Stack, TcpListener};
use tokio::io::AsyncWriteExt;

/// Attaches to the multi-queue TUN argv[1] with the virtio-net header, turns TSO on and
/// closes the file: a reader that leaves its offloads behind, which the kernel keeps.
const LEAVE_TSO: &str = r#"
import fcntl, os, struct, sys
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x1 | 0x1000 | 0x100 | 0x4000) + bytes(22))
fcntl.ioctl(fd, 0x400454d0, 0x1 | 0x2 | 0x4)
os.close(fd)
"#;

/// Runs `ip ARGS` in `ns`, which must succeed.
async fn ip(ns: &NetNs, args: &[&str]) {
    let mut cmd = ns.command("ip");
    cmd.args(args);
    succeed(cmd).await;
}

/// Whether an interface `name` exists in `ns`.
async fn exists(ns: &NetNs, name: &str) -> bool {
    let mut cmd = ns.command("ip");
    cmd.args(["link", "show", "dev", name]);
    output(cmd).await.status.success()
}

/// Makes the persistent TUN `name` in `ns` as an administrator would: `ip tuntap add` with
/// `extra` (owner, `multi_queue`), the kernel's 198.18.0.1/24 on it, `mtu`, up.
async fn persistent_tun(ns: &NetNs, name: &str, extra: &[&str], mtu: u32) {
    let mut args = vec!["tuntap", "add", "dev", name, "mode", "tun"];
    args.extend_from_slice(extra);
    ip(ns, &args).await;
    ip(ns, &["addr", "add", "198.18.0.1/24", "dev", name]).await;
    ip(
        ns,
        &["link", "set", "dev", name, "mtu", &mtu.to_string(), "up"],
    )
    .await;
}

fn attach_config(name: &str, offload: bool) -> TunConfig {
    TunConfig {
        name: name.into(),
        offload,
        ..TunConfig::default()
    }
}

/// A stack with two workers on a multi-queue TUN that `ip tuntap` made, with an MTU of its
/// own: the device takes the interface's MTU and its queues, 24 kernel clients echo 200 kB
/// each through it intact, and once the stack is gone the interface is still there, its
/// addresses kept, its offloads and steering program gone (both were there while the stack
/// ran), and the virtio-net header length another reader left it (12 bytes, where ours is
/// 10) put back. Then the plain device attaches to the same interface, after another reader
/// left the offloads on, turns them off and serves as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_tun_serves_kernel_clients_and_is_left_as_found() {
    let test = "attached_tun_serves_kernel_clients_and_is_left_as_found";
    if !require_tun(test) || !require_tool(test, "python3") {
        return;
    }
    let ns = NetNs::new("synack-attach").expect("create namespace");
    persistent_tun(&ns, "sa0", &["multi_queue"], 4000).await;
    assert!(!tso(&ns, "sa0").await, "a new interface has no offloads");

    for offload in [true, false] {
        if offload {
            // Another reader left the virtio-net header 12 bytes long (a mergeable buffers'
            // header); ours is 10, and it is put back when we go.
            assert_eq!(vnet_hdr_len(&ns, "sa0", Some(12)).await, 12);
        }
        if !offload {
            // Another reader left the offloads on; the plain device must not be handed
            // super-packets it cannot tell from packets.
            let mut cmd = ns.command("python3");
            cmd.args(["-c", LEAVE_TSO, "sa0"]);
            let out = Proc::spawn(cmd).finish(Duration::from_secs(10)).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(tso(&ns, "sa0").await, "TSO left on");
        }
        let tun = TunDevice::attach_in(&ns, &attach_config("sa0", offload)).expect("attach");
        assert_eq!(tun.capabilities().mtu, 4000, "the interface's own MTU");
        assert_eq!(tun.name(), "sa0");
        let offloaded = tun.is_offloaded();
        if offload && !offloaded {
            eprintln!("{test}: this kernel has no TUN offloads; the plain device attached");
        }
        assert!(
            offload || !offloaded,
            "offload false attaches the plain device"
        );
        assert_eq!(tso(&ns, "sa0").await, offloaded, "TSO while attached");
        let before = steering_programs().await;
        let stack = Stack::builder()
            .addresses([IpAddr::V4(STACK)])
            .workers(2)
            .build(tun)
            .expect("start the stack");
        assert_eq!(stack.workers(), 2, "one worker per queue of the interface");
        // Root may load the steering program (as kernel_multiqueue requires too); the
        // interface holds the only reference to it.
        assert!(stack.flows_steered(), "the steering program");
        // The programs loaded since (another process may load one too), where the machine's
        // programs can be listed.
        let ours: Option<Vec<u32>> = match (&before, steering_programs().await) {
            (Some(before), Some(now)) => {
                Some(now.into_iter().filter(|id| !before.contains(id)).collect())
            }
            _ => None,
        };
        if let Some(ours) = &ours {
            assert!(!ours.is_empty(), "no steering program was loaded");
        }

        const CLIENTS: usize = 24;
        let listener = TcpListener::bind(&stack, "198.18.0.2:7000")
            .await
            .expect("bind");
        let server = tokio::spawn(async move {
            for _ in 0..CLIENTS {
                let (mut stream, peer) = listener.accept().await.expect("accept");
                assert_eq!(peer.ip(), IpAddr::V4(HOST));
                tokio::spawn(async move {
                    let (mut rx, mut tx) = stream.split();
                    tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                    tx.shutdown().await.expect("FIN");
                });
            }
        });
        let mut cmd = ns.command("python3");
        cmd.args(["-c", ECHO_CLIENTS, &STACK.to_string(), "7000"])
            .args([&CLIENTS.to_string(), "200000"]);
        let out = Proc::spawn(cmd).finish(Duration::from_secs(60)).await;
        assert!(
            out.status.success(),
            "offload {offload}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("every client accepted")
            .expect("server");
        let stats = stack.stats();
        assert_eq!(stats.drop_malformed, 0, "{stats:?}");

        stack
            .shutdown(Duration::from_secs(10))
            .await
            .expect("shutdown");
        drop(stack);
        // Each driver drops its queue as it ends, the last perhaps a moment after: the
        // offloads go with the first, the header's length (which the plain device never
        // sets) with the last.
        let mut left = (true, 0);
        for _ in 0..100 {
            left = (tso(&ns, "sa0").await, vnet_hdr_len(&ns, "sa0", None).await);
            if left == (false, 12) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!left.0, "the offloads were left on after the stack ended");
        assert_eq!(left.1, 12, "the header's length was not put back");
        // The interface let go of our steering program, which is then freed (after an RCU
        // grace period: bounded, 10 s at most). Only one of those loaded during the run is
        // the interface's.
        if let Some(ours) = ours {
            let mut freed = false;
            for _ in 0..100 {
                let now = steering_programs().await.unwrap_or_default();
                if ours.iter().any(|id| !now.contains(id)) {
                    freed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(freed, "the interface kept the steering program {ours:?}");
        } else {
            eprintln!("{test}: the machine's BPF programs cannot be listed here; not checked");
        }
        assert!(exists(&ns, "sa0").await, "the interface outlives the stack");
        let mut cmd = ns.command("ip");
        cmd.args(["-o", "-4", "addr", "show", "dev", "sa0"]);
        let out = succeed(cmd).await;
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("198.18.0.1/24"),
            "the interface keeps its address"
        );
    }
}

/// Attaching takes no interface that is not there for it, and creates none: a missing name
/// is `NotFound` (and stays missing); a TAP and the loopback are not TUNs; another running
/// program's own TUN (not persistent) is `AlreadyExists` and keeps its settings; a
/// persistent multi-queue TUN that a reader holds (one of ours, or a program using the
/// packet information prefix) is the kernel's EBUSY, and keeps its settings and its single
/// reader, as does a single-queue one (free again once the first is gone); an MTU that is
/// not the interface's is `InvalidInput`. Each error names the interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_refuses_what_is_not_there_for_it() {
    let test = "attach_refuses_what_is_not_there_for_it";
    if !require_tun(test) || !require_tool(test, "python3") {
        return;
    }
    let ns = NetNs::new("synack-attachno").expect("create namespace");
    let refused = |name: &str, offload: bool| -> io::Error {
        TunDevice::attach_in(&ns, &attach_config(name, offload))
            .map(|d| panic!("{name}: attached {d:?}"))
            .unwrap_err()
    };

    for offload in [true, false] {
        let e = refused("nosuch0", offload);
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("nosuch0"), "{e}");
        assert!(e.to_string().contains("ip tuntap add"), "{e}");
    }
    assert!(
        !exists(&ns, "nosuch0").await,
        "attaching created an interface"
    );

    ip(&ns, &["tuntap", "add", "dev", "tap0", "mode", "tap"]).await;
    for name in ["tap0", "lo"] {
        let e = refused(name, true);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("not a TUN"), "{e}");
    }

    // Another stack's TUN, which it created (not persistent) and reads: refused, and left
    // as it was (no offloads turned on behind its back).
    let own = TunConfig {
        name: "own0".into(),
        host_addr: Some("198.18.1.1/24".parse().unwrap()),
        offload: false,
        ..TunConfig::default()
    };
    let theirs = TunDevice::create_in(&ns, &own).expect("create");
    for offload in [true, false] {
        let e = refused("own0", offload);
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("not persistent"), "{e}");
    }
    assert!(
        exists(&ns, "own0").await,
        "the other program's TUN is still there"
    );
    assert!(
        !tso(&ns, "own0").await,
        "the other program's TUN was given offloads"
    );
    let mut theirs = theirs;
    theirs.check().expect("the other program's TUN still works");
    drop(theirs);

    // A persistent multi-queue TUN that another reader holds, whatever its framing: one of
    // ours (the plain device), or a program reading with the packet information prefix.
    // Joining would split the interface's flows between the two, and our settings (the
    // offloads, the steering program) would be its too.
    for (tun, reader) in [("mq0", "plain"), ("pi0", "python")] {
        ip(
            &ns,
            &["tuntap", "add", "dev", tun, "mode", "tun", "multi_queue"],
        )
        .await;
        let (_plain, _python) = match reader {
            "plain" => (
                Some(TunDevice::attach_in(&ns, &attach_config(tun, false)).expect("plain")),
                None,
            ),
            _ if files(&ns, tun).await.is_none() => {
                eprintln!("{test}: this `ip` shows no TUN queue count; the PI reader not tried");
                continue;
            }
            _ => {
                let mut cmd = ns.command("python3");
                cmd.args(["-c", HOLD_WITH_PI, tun]);
                let python = Proc::spawn(cmd);
                // Bounded: until the kernel counts its file, at most 10 s.
                let mut held = false;
                for _ in 0..100 {
                    if files(&ns, tun).await == Some(1) {
                        held = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(held, "python never attached to {tun}");
                (None, Some(python))
            }
        };
        for offload in [true, false] {
            let e = refused(tun, offload);
            assert_eq!(e.kind(), ebusy(), "{reader}: {e}");
            assert!(e.to_string().contains("another program reads it"), "{e}");
        }
        assert!(
            !tso(&ns, tun).await,
            "{reader}'s interface was given offloads"
        );
        assert_eq!(files(&ns, tun).await, Some(1), "{reader} reads it alone");
    }

    // A single-queue persistent TUN takes one reader.
    ip(&ns, &["tuntap", "add", "dev", "one0", "mode", "tun"]).await;
    let first = TunDevice::attach_in(&ns, &attach_config("one0", true)).expect("first");
    assert_eq!(first.max_queues(), 1, "a single-queue interface");
    let e = refused("one0", true);
    assert_eq!(e.raw_os_error(), None);
    assert_eq!(e.kind(), ebusy(), "{e}");
    assert!(e.to_string().contains("another program reads it"), "{e}");
    drop(first);
    let again = TunDevice::attach_in(&ns, &attach_config("one0", true)).expect("free again");
    drop(again);

    let wrong_mtu = TunConfig {
        mtu: 9000,
        ..attach_config("one0", false)
    };
    let e = TunDevice::attach_in(&ns, &wrong_mtu).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("its MTU is 1500"), "{e}");
}

/// `TunDevice::from_fd` (and each device's own) refuses, as `InvalidInput`, a file that is
/// not a TUN and one of `/dev/net/tun` attached to no interface, and fails outside a tokio
/// runtime. Taking a file another program attached is `kernel_examples`'
/// `echo_server_runs_unprivileged_on_a_tun_file_it_is_given`.
#[test]
fn from_fd_refuses_what_is_not_an_attached_tun() {
    let test = "from_fd_refuses_what_is_not_an_attached_tun";
    if !require_tun(test) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = |path: &str| OwnedFd::from(std::fs::File::open(path).unwrap());
    let tun = || {
        OwnedFd::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .unwrap(),
        )
    };
    runtime.block_on(async {
        let check = |e: io::Error, why: &str| {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains(why), "{e}");
        };
        check(
            TunDevice::from_fd(open("/dev/null")).unwrap_err(),
            "not a TUN file",
        );
        check(
            TunDevice::from_fd(tun()).unwrap_err(),
            "attached to no interface",
        );
        check(
            PlainTun::from_fd(tun()).unwrap_err(),
            "attached to no interface",
        );
        check(
            OffloadTun::from_fd(open("/dev/null")).unwrap_err(),
            "not a TUN file",
        );
    });
    let e = TunDevice::from_fd(tun()).unwrap_err();
    assert!(e.to_string().contains("runtime"), "{e}");
}

/// The kind of EBUSY (asm-generic/errno-base.h: 16), which is not stable on every Rust this
/// crate builds with.
fn ebusy() -> io::ErrorKind {
    io::Error::from_raw_os_error(16).kind()
}

/// Attaches to the multi-queue TUN argv[1] with the 4-byte packet information prefix (no
/// `IFF_NO_PI`) and holds it for 60 s: another program reading the interface.
const HOLD_WITH_PI: &str = r#"
import fcntl, os, struct, sys, time
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x1 | 0x100) + bytes(22))
time.sleep(60)
"#;

/// How many files the kernel counts on multi-queue TUN `name` in `ns`, as `ip -d link`
/// shows them (`numqueues`).
async fn files(ns: &NetNs, name: &str) -> Option<u32> {
    let mut cmd = ns.command("ip");
    cmd.args(["-d", "link", "show", "dev", name]);
    let text = String::from_utf8_lossy(&output(cmd).await.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|&w| w == "numqueues")?;
    words.next()?.parse().ok()
}

/// Lists the IDs of the BPF programs loaded on the machine that are named `synack_steer`
/// (`bpf(2)`: `BPF_PROG_GET_NEXT_ID`, `BPF_PROG_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD`; the
/// name is at offset 64 of `struct bpf_prog_info`), one a line; `unsupported` where the
/// system call's number is not known here.
const STEERING_PROGRAMS: &str = r#"
import ctypes, os, platform, struct
libc = ctypes.CDLL(None, use_errno=True)
nr = {'x86_64': 321, 'aarch64': 280}.get(platform.machine())
if nr is None:
    print('unsupported')
    raise SystemExit(0)
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    return libc.syscall(nr, cmd, buf, 128), buf
prog = 0
for _ in range(100000):
    r, buf = bpf(11, struct.pack('I', prog))
    if r < 0:
        break
    prog = struct.unpack_from('I', buf.raw, 4)[0]
    fd, _ = bpf(13, struct.pack('I', prog))
    if fd < 0:
        continue
    info = ctypes.create_string_buffer(256)
    r, _ = bpf(15, struct.pack('IIQ', fd, 256, ctypes.addressof(info)))
    os.close(fd)
    if r == 0 and info.raw[64:80].split(b'\0')[0] == b'synack_steer':
        print(prog)
"#;

/// The IDs of the loaded BPF programs named `synack_steer` (`STEERING_PROGRAMS`), or `None`
/// where they cannot be listed.
async fn steering_programs() -> Option<Vec<u32>> {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", STEERING_PROGRAMS]);
    let text = String::from_utf8_lossy(&succeed(cmd).await.stdout).into_owned();
    if text.trim() == "unsupported" {
        return None;
    }
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}
