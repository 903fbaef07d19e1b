//! Shared set-up of the kernel end-to-end tests: a namespace with a TUN and a stack on it,
//! kernel-side processes that are killed on drop, and bounded waits.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use synack_tokio::device::{Device, PcapDevice, TunConfig, TunDevice};
use synack_tokio::netns::NetNs;
use synack_tokio::Stack;

/// The kernel's address on the TUN.
pub const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The stack's address.
pub const STACK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

pub fn host(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(HOST), port)
}

pub fn stack_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(STACK), port)
}

/// The kernel's IPv6 address on the TUN (2001:2::/48, RFC 5180's benchmarking range).
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// The stack's IPv6 address.
pub const STACK6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

pub fn host6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(HOST6), port)
}

pub fn stack6_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(STACK6), port)
}

/// One test's world: its namespace, a scratch directory, and the stack on the namespace's
/// TUN. Field order is drop order: the stack stops before the namespace goes.
pub struct Net {
    pub stack: Stack,
    pub dir: ScratchDir,
    pub ns: NetNs,
}

impl Net {
    /// A namespace named after the test, a TUN `synack0` (kernel 198.18.0.1/24) and a stack
    /// on 198.18.0.2, recording to `pcap` (inside the scratch directory) if given.
    ///
    /// The TUN is the default device (offloads on) unless the test records: a recording is
    /// made on the plain TUN, so that it holds what crosses the wire, finished checksums and
    /// segments of at most an MSS, for tshark to judge. Either way the MTU is Ethernet's
    /// (the offloading device's default; the plain one's is larger), so that every test sees
    /// the same MSS, 1460.
    pub fn new(prefix: &str, config: synack_core::Config, pcap: Option<&str>) -> Net {
        let ns = NetNs::new(prefix).expect("create namespace");
        let dir = ScratchDir::new(ns.name());
        let tun_config = TunConfig {
            offload: pcap.is_none(),
            mtu: 1500,
            ..TunConfig::default()
        };
        let tun = TunDevice::create_in(&ns, &tun_config).expect("create TUN");
        let addrs = [IpAddr::V4(STACK)];
        let stack = match pcap {
            Some(name) => Stack::new(
                config,
                PcapDevice::new(tun, dir.path().join(name)).expect("pcap file"),
                &addrs,
            ),
            None => Stack::new(config, tun, &addrs),
        }
        .expect("start the stack");
        Net { stack, dir, ns }
    }

    /// As [`new`](Self::new) recording to `pcap`, but on the default, offloading TUN: the
    /// recording then holds super-segments whole, with the checksums the device completes
    /// completed (what a user's `--pcap` shows). Also returns whether the kernel took the
    /// offloads (`false`: the TUN fell back to the plain device).
    pub fn recorded_offload(prefix: &str, config: synack_core::Config, pcap: &str) -> (Net, bool) {
        let ns = NetNs::new(prefix).expect("create namespace");
        let dir = ScratchDir::new(ns.name());
        let tun_config = TunConfig {
            mtu: 1500,
            ..TunConfig::default()
        };
        let tun = TunDevice::create_in(&ns, &tun_config).expect("create TUN");
        let offloads = tun.capabilities().tx_checksum_partial;
        let device = PcapDevice::new(tun, dir.path().join(pcap)).expect("pcap file");
        let stack = Stack::new(config, device, &[IpAddr::V4(STACK)]).expect("start the stack");
        (Net { stack, dir, ns }, offloads)
    }

    /// A namespace named after the test with a TUN made from `tun_config` (its kernel-side
    /// addresses, offloads or not) and a stack on it that owns `addrs`, built with
    /// `Stack::builder`.
    pub fn with_tun(
        prefix: &str,
        config: synack_core::Config,
        tun_config: &TunConfig,
        addrs: &[IpAddr],
    ) -> Net {
        let ns = NetNs::new(prefix).expect("create namespace");
        let dir = ScratchDir::new(ns.name());
        let tun = TunDevice::create_in(&ns, tun_config).expect("create TUN");
        let stack = Stack::builder()
            .config(config)
            .addresses(addrs.iter().copied())
            .build(tun)
            .expect("start the stack");
        Net { stack, dir, ns }
    }

    /// Both families: the kernel at 198.18.0.1 and 2001:2::1 on the TUN, the stack at
    /// 198.18.0.2 and 2001:2::2.
    pub fn dual(prefix: &str, config: synack_core::Config) -> Net {
        let tun_config = TunConfig {
            host_addr6: Some("2001:2::1/64".parse().unwrap()),
            ..TunConfig::default()
        };
        Net::with_tun(
            prefix,
            config,
            &tun_config,
            &[IpAddr::V4(STACK), IpAddr::V6(STACK6)],
        )
    }

    /// A kernel UDP socket bound to `addr` inside the namespace, as tokio's.
    pub fn kernel_udp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let std = self
            .ns
            .run_in(move || {
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })
            .expect("enter the namespace")?;
        tokio::net::UdpSocket::from_std(std)
    }

    /// Starts `python3 -c SCRIPT ARGS..` in the namespace; killed when the guard drops.
    pub fn python(&self, script: &str, args: &[&str]) -> Proc {
        let mut cmd = self.ns.command("python3");
        cmd.arg("-c").arg(script).args(args);
        Proc::spawn(cmd)
    }

    /// A kernel server for one connection: python3 listens on the kernel's address and
    /// `port`, accepts one connection as `c`, and runs `body` (Python, one statement a line,
    /// `socket`, `sys` and `time` imported). Returns once it listens; killed when the guard
    /// drops.
    pub async fn kernel_server(&self, port: u16, body: &str) -> Proc {
        let script = format!(
            "import socket, sys, time\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind((sys.argv[1], {port})); s.listen(1)\n\
             c, _ = s.accept()\n{body}"
        );
        let server = self.python(&script, &[&HOST.to_string()]);
        self.wait_listening(port).await;
        server
    }

    /// Waits (at most 10 s) until a kernel socket in the namespace listens on `port`.
    pub async fn wait_listening(&self, port: u16) {
        self.wait_listening_n(port, 1).await;
    }

    /// Waits (at most 10 s) until `n` kernel sockets in the namespace listen on `port`: a
    /// server with one listener per family is ready only when both are.
    pub async fn wait_listening_n(&self, port: u16, n: usize) {
        let mut seen = 0;
        for _ in 0..200 {
            let out = self
                .run("ss", &["-Hltn", &format!("sport = :{port}")])
                .await;
            seen = String::from_utf8_lossy(&out.stdout).lines().count();
            if seen >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{seen} of {n} sockets listen on port {port} after 10 s");
    }

    /// Loads nftables `rules` (nft's own syntax, any number of lines) into the namespace's
    /// kernel; panics with nft's complaint if it refuses them.
    pub async fn nft(&self, rules: &str) {
        let path = self.dir.path().join("rules.nft");
        std::fs::write(&path, rules).unwrap();
        let out = self.run("nft", &["-f", path.to_str().unwrap()]).await;
        assert!(
            out.status.success(),
            "nft: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The packets counted by the rule commented `name` in `chain` of the inet `table`.
    pub async fn nft_count(&self, table: &str, chain: &str, name: &str) -> u64 {
        let out = self
            .run("nft", &["list", "chain", "inet", table, chain])
            .await;
        assert!(out.status.success(), "nft: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.contains(&format!("comment \"{name}\"")))
            .unwrap_or_else(|| panic!("no rule {name} in {text}"));
        let after = line.split("packets ").nth(1).expect("a counter");
        after.split(' ').next().unwrap().parse().expect("a count")
    }

    /// Runs a command in the namespace to completion, off the async threads.
    pub async fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.ns.command(program);
        cmd.args(args);
        output(cmd).await
    }
}

/// A child process, killed and reaped when dropped (a failing test leaves nothing running).
pub struct Proc(Option<Child>);

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Proc(Some(child))
    }

    /// Takes charge of a child started elsewhere.
    pub fn from_child(child: Child) -> Proc {
        Proc(Some(child))
    }

    /// The running process's ID.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// The resident set size of the running process, in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Waits (at most `limit`) for the process to exit by itself and returns its output.
    /// Past the limit it is stopped, with SIGTERM first (a program that made a namespace or
    /// started a server cleans them up on it) and SIGKILL five seconds later, and the test
    /// fails: a process run outside any test namespace, which no namespace's drop would
    /// kill, is not left running, nor the test binary waiting on it.
    pub async fn finish(mut self, limit: Duration) -> Output {
        let child = self.0.take().expect("running");
        let pid = child.id().to_string();
        let mut wait = tokio::task::spawn_blocking(move || child.wait_with_output());
        if let Ok(joined) = tokio::time::timeout(limit, &mut wait).await {
            return joined.expect("join").expect("wait");
        }
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        if tokio::time::timeout(Duration::from_secs(5), &mut wait)
            .await
            .is_err()
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = wait.await;
        }
        panic!("process still running after {limit:?}");
    }

    /// Sends SIGTERM, as a service manager stops a server, and waits (at most `limit`) for
    /// the process to exit; returns its output.
    pub async fn terminate(self, limit: Duration) -> Output {
        let pid = self.pid();
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(kill.success(), "kill -TERM {pid}");
        self.finish(limit).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new directory of the test's own: named at random and created, not found, so that
    /// no local user can have put a directory or a symlink there first for the test, run as
    /// root, to write through. Mode 0755: the servers a test starts may run as another user
    /// (nginx's workers as www-data) and read what it holds.
    pub fn new(name: &str) -> ScratchDir {
        use std::hash::{BuildHasher, Hasher};
        use std::os::unix::fs::DirBuilderExt;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let path = std::env::temp_dir().join(format!("{name}-{random:016x}.test"));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .expect("scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic test data: xorshift32 bytes from `seed`.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The errno behind an error, for comparing synack's with the kernel's: the kernel's, or
/// the one synack's carries, as its `raw_os_error` or, for the few errnos std gives no kind
/// of their own (EDESTADDRREQ, EAFNOSUPPORT...), in the `synack_core::Error` it holds.
pub fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| {
        e.raw_os_error()
            .or_else(|| {
                let inner = e.get_ref()?.downcast_ref::<synack_core::Error>()?;
                Some(inner.errno())
            })
            .unwrap_or_else(|| panic!("an error with no errno: {e:?}"))
    })
}

/// Whether a kernel-side tool is installed; under CI=true its absence is a failure.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let present = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {tool} is required under CI"
        );
        eprintln!("skipping {test}: {tool} is not installed");
    }
    present
}

/// An example binary built by `cargo test --workspace` (target/<profile>/examples/NAME), or
/// `None` (after saying why) when this run did not build it, e.g. `cargo test -p synack-tokio`.
pub fn example(test: &str, name: &str) -> Option<PathBuf> {
    // This test runs as target/<profile>/deps/kernel_x-HASH.
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: example {name} was not built ({})",
        path.display()
    );
    eprintln!(
        "skipping {test}: example {name} not built; run cargo test --workspace ({})",
        path.display()
    );
    None
}

/// Waits, for three seconds at most, for `stream`'s sending MSS (less the timestamps, as
/// TCP_INFO counts it) to be `mss`: the driver reads the TUN's MTU every half second.
pub async fn snd_mss_becomes(stream: &synack_tokio::TcpStream, mss: u32) {
    for _ in 0..300 {
        if stream.info().unwrap().snd_mss == mss {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "snd_mss {} after 3 s, not {mss}",
        stream.info().unwrap().snd_mss
    );
}

/// tshark's fields, one line per packet, for the packets of `pcap` matching `filter`, with
/// IP and TCP checksum validation on.
pub async fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-Y", filter, "-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = succeed(cmd).await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Kernel echo clients (python3, argv: HOST PORT N SIZE): N concurrent connections, each
/// sends SIZE random bytes, half-closes, reads the echo to EOF and compares; prints `ok N`
/// and exits 0 only if all N got their bytes back.
pub const ECHO_CLIENTS: &str = r#"
import os, socket, sys, threading
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok = []
def one(i):
    try:
        data = os.urandom(size)
        s = socket.create_connection((host, port), timeout=30)
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        t.join()
        s.close()
        if bytes(got) == data:
            ok.append(i)
        else:
            print(f"conn {i}: {len(got)} of {size} bytes, mismatch", file=sys.stderr)
    except Exception as e:
        print(f"conn {i}: {e!r}", file=sys.stderr)
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"ok {len(ok)}")
sys.exit(0 if len(ok) == n else 1)
"#;

/// Whether the interface argv[1] has TCP segmentation offload on, as `ethtool -k` shows it
/// (SIOCETHTOOL with ETHTOOL_GTSO): prints 1 or 0.
const TSO_STATE: &str = r#"
import ctypes, fcntl, socket, struct, sys
value = ctypes.create_string_buffer(struct.pack('II', 0x1e, 0), 8)
req = struct.pack('16sQ', sys.argv[1].encode(), ctypes.addressof(value)) + bytes(16)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s.fileno(), 0x8946, req)
print(struct.unpack('II', value.raw)[1])
"#;

/// Whether interface `name` in `ns` has TCP segmentation offload on, as the kernel says
/// (`TSO_STATE`, python3).
pub async fn tso(ns: &NetNs, name: &str) -> bool {
    let mut cmd = ns.command("python3");
    cmd.args(["-c", TSO_STATE, name]);
    String::from_utf8_lossy(&succeed(cmd).await.stdout).trim() == "1"
}

/// Attaches to the persistent TUN argv[1] (single- or multi-queue: the kernel takes only the
/// interface's own flag) with the virtio-net header, sets the header's length to argv[2] if
/// given (TUNSETVNETHDRSZ: the interface's, kept after the file closes), and prints it
/// (TUNGETVNETHDRSZ).
const VNET_HDR_LEN: &str = r#"
import fcntl, os, struct, sys
fd = os.open('/dev/net/tun', os.O_RDWR)
for mq in (0, 0x100):
    try:
        fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x1 | 0x1000 | 0x4000 | mq) + bytes(22))
        break
    except OSError:
        if mq:
            raise
if len(sys.argv) > 2:
    fcntl.ioctl(fd, 0x400454d8, struct.pack('i', int(sys.argv[2])))
print(struct.unpack('i', fcntl.ioctl(fd, 0x800454d7, struct.pack('i', 0)))[0])
"#;

/// The virtio-net header length of persistent TUN `name` in `ns`, after setting it to
/// `set` if given (python3, as a reader that takes the header would).
pub async fn vnet_hdr_len(ns: &NetNs, name: &str, set: Option<u32>) -> u32 {
    let mut cmd = ns.command("python3");
    cmd.args(["-c", VNET_HDR_LEN, name]);
    cmd.args(set.map(|n| n.to_string()));
    let out = succeed(cmd).await;
    let len = String::from_utf8_lossy(&out.stdout);
    len.trim().parse().unwrap_or_else(|_| panic!("{len:?}"))
}

/// Runs `cmd` to completion off the async threads, with nothing on its stdin, and returns
/// its output.
pub async fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    let what = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// [`output`], for a command that must succeed.
pub async fn succeed(cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Debian's dnsmasq in `ns`, in the foreground, as the kernel tests run it: no
/// configuration, resolv.conf or hosts file of the machine's, authoritative for
/// `synack.test` alone (anything else there is NXDOMAIN), every query logged on stderr with
/// the address it came from. `args` adds where it listens and its records.
pub fn dnsmasq(ns: &NetNs, args: &[&str]) -> Proc {
    let mut cmd = ns.command("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--user=root",
        "--no-resolv",
        "--no-hosts",
        "--local=/synack.test/",
        "--log-queries=extra",
        "--log-facility=-",
    ])
    .args(args);
    Proc::spawn(cmd)
}
