//! Correctness under random loss against the real kernel: 16 MiB each way across a TUN that
//! drops 3 % of packets in each direction (an nft rule in the test's own namespace; netem is
//! not in this kernel). The bytes must arrive intact and the transfer must not stall: it is
//! bounded in time by far less than a stall behind backed-off retransmission timeouts would
//! take. Speed under loss is measured by the benchmark harness, not here.

mod kernel_support;

use std::time::{Duration, Instant};

use kernel_support::{host, pattern, require_tool, Net};
use synack_tokio::netns::require_tun;
use synack_tokio::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: usize = 16 << 20;
/// Far above what 16 MiB needs at 3 % loss (seconds), far below a stall: with the RTO backed
/// off a few times, one stalled hole alone would cost tens of seconds.
const LIMIT: Duration = Duration::from_secs(120);

/// Drop `percent` % of the packets crossing `synack0` in each direction.
async fn lossy(net: &Net, percent: u32) {
    let rules = format!(
        "table inet loss {{\n\
         chain in {{ type filter hook input priority 0; iifname \"synack0\" numgen random mod 100 < {percent} drop; }}\n\
         chain out {{ type filter hook output priority 0; oifname \"synack0\" numgen random mod 100 < {percent} drop; }}\n\
         }}\n"
    );
    // Without this the kernel hands the TUN 64 KiB GSO batches and the output rule would drop
    // whole batches: one segment per packet makes the loss per segment.
    let out = net
        .run(
            "ip",
            &["link", "set", "dev", "synack0", "gso_max_segs", "1"],
        )
        .await;
    assert!(
        out.status.success(),
        "ip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    net.nft(&rules).await;
}

/// A kernel-side python3 peer: `sink PORT N` reads N bytes and prints their SHA-256;
/// `source PORT N SEED` accepts and sends the pattern.
const PEER: &str = r#"
import hashlib, socket, sys
mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("198.18.0.1", port)); srv.listen(1); srv.settimeout(150)
c, _ = srv.accept(); c.settimeout(150)
if mode == "sink":
    h = hashlib.sha256(); got = 0
    while got < n:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); got += len(b)
    print(got, h.hexdigest(), flush=True)
else:
    data = open(sys.argv[4], "rb").read()
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    c.recv(1)
"#;

fn sha256_hex(data: &[u8]) -> String {
    // sha256sum is in coreutils everywhere the tests run; one call per test.
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_16_mib_upload_survives_3_percent_loss_each_way() {
    let test = "kernel_16_mib_upload_survives_3_percent_loss_each_way";
    if !require_tun(test) || !require_tool(test, "python3") || !require_tool(test, "nft") {
        return;
    }
    let net = Net::new("synack-loss-up", synack_core::Config::default(), None);
    lossy(&net, 3).await;
    let sink = net.python(PEER, &["sink", "9000", &SIZE.to_string()]);
    net.wait_listening(9000).await;
    let data = pattern(SIZE, 3);
    let start = Instant::now();
    let mut s = TcpStream::connect(&net.stack, host(9000)).await.unwrap();
    tokio::time::timeout(LIMIT, async {
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await
    .expect("the upload stalled");
    let out = sink.finish(LIMIT).await;
    let line = String::from_utf8_lossy(&out.stdout);
    let expected = format!("{} {}", SIZE, sha256_hex(&data));
    assert_eq!(line.trim(), expected, "bytes intact at the kernel");
    let stats = net.stack.stats();
    eprintln!(
        "upload: {:?}, {} retransmits",
        start.elapsed(),
        stats.retransmits
    );
    assert!(stats.retransmits > 0, "the link really lost packets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_16_mib_download_survives_3_percent_loss_each_way() {
    let test = "kernel_16_mib_download_survives_3_percent_loss_each_way";
    if !require_tun(test) || !require_tool(test, "python3") || !require_tool(test, "nft") {
        return;
    }
    let net = Net::new("synack-loss-down", synack_core::Config::default(), None);
    lossy(&net, 3).await;
    let data = pattern(SIZE, 4);
    let file = net.dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let source = net.python(
        PEER,
        &["source", "9001", &SIZE.to_string(), file.to_str().unwrap()],
    );
    net.wait_listening(9001).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(&net.stack, host(9001)).await.unwrap();
    let mut got = Vec::with_capacity(SIZE);
    tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .expect("the download stalled")
        .unwrap();
    s.write_all(b"k").await.unwrap();
    drop(s);
    assert_eq!(got.len(), SIZE);
    assert!(got == data, "bytes intact at synack");
    let _ = source.finish(Duration::from_secs(10)).await;
    eprintln!("download: {:?}", start.elapsed());
}
