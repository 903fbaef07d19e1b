//! The integrations against the kernel's own tools, each test in a namespace of its own
//! (kernel 198.18.0.1, synack 198.18.0.2): an axum app on synack served to curl, hyper-util's
//! pooled client on synack against a kernel HTTP/1.1 server, and TLS through tokio-rustls in
//! both directions against Debian's openssl (`s_server` and `s_client`).

mod kernel_support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kernel_support::{host, pattern, require_tool, stack_addr, Net, Proc, HOST, STACK};
use synack_tokio::integration::axum::PeerAddr;
use synack_tokio::integration::hyper::HyperConnector;
use synack_tokio::netns::require_tun;
use synack_tokio::{TcpListener, TcpStream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Bounds every wait on the stack, so a hang fails instead of stalling the suite.
async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

/// FNV-1a over `data`: what the upload route answers, so curl's upload is checked byte for
/// byte without sending it back.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const BIG: usize = 4 << 20;

/// An axum app on synack, `ConnectInfo` and all, fetched and fed by the kernel's curl: a
/// greeting that names the peer, a 4 MiB download and a 3 MiB upload, every byte checked.
/// A second listener shows the `tap_io` route to `ConnectInfo<SocketAddr>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_curl_fetches_from_axum_on_synack() {
    use axum::extract::ConnectInfo;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use axum::serve::ListenerExt;
    use axum::Router;

    let test = "kernel_curl_fetches_from_axum_on_synack";
    if !require_tun(test) || !require_tool(test, "curl") {
        return;
    }
    let net = Net::new("synack-axum", synack_core::Config::default(), None);
    let app = Router::new()
        .route(
            "/hello",
            get(|ConnectInfo(peer): ConnectInfo<PeerAddr>| async move { format!("hello {peer}") }),
        )
        .route("/big", get(|| async { pattern(BIG, 7) }))
        .route(
            "/sum",
            post(|body: axum::body::Bytes| async move {
                format!("{} {:016x}", body.len(), fnv1a(&body))
            }),
        )
        .layer(DefaultBodyLimit::max(8 << 20));
    let listener = TcpListener::bind(&net.stack, stack_addr(8080))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .into_future(),
    );
    let tapped = TcpListener::bind(&net.stack, stack_addr(8081))
        .await
        .unwrap()
        .tap_io(|stream: &mut TcpStream| stream.set_nodelay(true).unwrap());
    let plain_addr = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let second = tokio::spawn(
        axum::serve(
            tapped,
            plain_addr.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .into_future(),
    );

    let curl = |args: Vec<String>| {
        let net = &net;
        async move {
            let mut all = vec!["-sS".to_string(), "--max-time".into(), "30".into()];
            all.extend(args);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let out = within(40, net.run("curl", &refs)).await;
            assert!(
                out.status.success(),
                "curl {all:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    };
    let base = format!("http://{STACK}:8080");
    let hello = curl(vec![format!("{base}/hello")]).await;
    let hello = String::from_utf8(hello).unwrap();
    assert!(hello.starts_with(&format!("hello {HOST}:")), "{hello}");

    let big = net.dir.path().join("big.bin");
    curl(vec![
        "-o".into(),
        big.display().to_string(),
        format!("{base}/big"),
    ])
    .await;
    assert!(std::fs::read(&big).unwrap() == pattern(BIG, 7), "download");

    let up = pattern(3 << 20, 11);
    let up_file = net.dir.path().join("up.bin");
    std::fs::write(&up_file, &up).unwrap();
    let sum = curl(vec![
        "--data-binary".into(),
        format!("@{}", up_file.display()),
        "-H".into(),
        "Content-Type: application/octet-stream".into(),
        format!("{base}/sum"),
    ])
    .await;
    assert_eq!(
        String::from_utf8(sum).unwrap(),
        format!("{} {:016x}", up.len(), fnv1a(&up))
    );

    let peer = curl(vec![format!("http://{STACK}:8081/")]).await;
    let peer: SocketAddr = String::from_utf8(peer).unwrap().parse().unwrap();
    assert_eq!(peer.ip(), HOST);

    stop_tx.send(()).unwrap();
    within(10, server).await.unwrap().unwrap();
    second.abort();
    within(10, net.stack.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// The kernel's HTTP/1.1 server for the hyper test: every response carries the client's
/// port, so the test sees whether the pool reused its connection.
const HTTP11_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        body = (self.path.encode() + b'\n') * 20000
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('X-Peer-Port', str(self.client_address[1]))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], 8090), H).serve_forever()
"#;

/// hyper-util's pooled client over [`HyperConnector`]: five requests over one pooled
/// connection, a sixth by a host name given to the connector, every body intact; a name it
/// was not given fails as a connect error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_hyper_pooled_client_reuses_its_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let test = "kernel_hyper_pooled_client_reuses_its_connection";
    if !require_tun(test) || !require_tool(test, "python3") {
        return;
    }
    let net = Net::new("synack-hyper", synack_core::Config::default(), None);
    let _server = net.python(HTTP11_SERVER, &[&HOST.to_string()]);
    net.wait_listening(8090).await;

    let connector = HyperConnector::new(&net.stack).resolve("kernel.test", HOST.into());
    let client =
        Client::builder(TokioExecutor::new()).build::<_, Empty<hyper::body::Bytes>>(connector);
    let mut ports = Vec::new();
    for i in 0..6 {
        // The pool keys connections by authority: the last request, by name, opens a
        // second one.
        let uri = if i < 5 {
            format!("http://{HOST}:8090/r{i}")
        } else {
            format!("http://kernel.test:8090/r{i}")
        };
        let response = within(20, client.get(uri.parse().unwrap())).await.unwrap();

        assert_eq!(response.status(), 200);
        ports.push(
            response.headers()["x-peer-port"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let body = within(20, response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, format!("/r{i}\n").repeat(20000).as_bytes());
        // hyper-util returns a connection to its pool from a task of its own once the
        // response is done; a request sent at once may find the pool still empty.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ports[..5].iter().all(|p| *p == ports[0]),
        "ports: {ports:?}"
    );
    assert_ne!(ports[5], ports[0]);

    let err = within(10, client.get("http://unknown.test:8090/".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    drop(client);
}

// ---- TLS ----------------------------------------------------------------------------------

/// A CA and a server certificate it signs for both addresses, made by openssl in `dir`:
/// rustls refuses a self-signed CA certificate as a server's own.
fn make_certificates(dir: &Path) {
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj /CN=synack-test-ca",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout server.key -out server.csr -subj /CN=synack-test",
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{HOST},IP:{STACK}\n"),
    )
    .unwrap();
    sh(
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile ext.cnf -out server.pem",
    );
}

fn tls_client_config(dir: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn tls_acceptor(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::ServerConfig;

    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// tokio-rustls on synack as the client of `openssl s_server -rev` on the kernel: the
/// certificate verifies against the CA, 200 lines (200 kB) come back reversed, then CLOSE
/// ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tls_client_on_synack_talks_to_openssl_s_server() {
    let test = "kernel_tls_client_on_synack_talks_to_openssl_s_server";
    if !require_tun(test) || !require_tool(test, "openssl") {
        return;
    }
    let net = Net::new("synack-tls-c", synack_core::Config::default(), None);
    make_certificates(net.dir.path());
    let mut cmd = net.ns.command("openssl");
    cmd.current_dir(net.dir.path()).args([
        "s_server",
        "-accept",
        &format!("{HOST}:8443"),
        "-cert",
        "server.pem",
        "-key",
        "server.key",
        "-naccept",
        "1",
        "-rev",
        "-quiet",
    ]);
    let server = Proc::spawn(cmd);
    net.wait_listening(8443).await;

    let tcp = within(10, TcpStream::connect(&net.stack, host(8443)))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::IpAddr::V4(HOST).into());
    let tls = within(10, tls_client_config(net.dir.path()).connect(name, tcp))
        .await
        .unwrap();
    let (rx, mut tx) = tokio::io::split(tls);
    let lines: Vec<String> = (0..200)
        .map(|i| {
            let bytes = pattern(500, i + 1);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    let writer = {
        let lines = lines.clone();
        tokio::spawn(async move {
            for line in &lines {
                tx.write_all(line.as_bytes()).await?;
                tx.write_all(b"\n").await?;
            }
            tx.flush().await?;
            Ok::<_, std::io::Error>(tx)
        })
    };
    let mut rx = BufReader::new(rx);
    for line in &lines {
        let mut back = String::new();
        within(20, rx.read_line(&mut back)).await.unwrap();
        let expect: String = line.chars().rev().collect();
        assert_eq!(back.trim_end(), expect);
    }
    let mut tx = writer.await.unwrap().unwrap();
    tx.write_all(b"CLOSE\n").await.unwrap();
    tx.flush().await.unwrap();
    // s_server ends the session: whatever it says last, the stream then ends.
    let mut rest = Vec::new();
    let _ = within(10, rx.read_to_end(&mut rest)).await;
    let _ = within(10, tx.shutdown()).await;
    drop((rx, tx));
    let out = server.finish(Duration::from_secs(10)).await;
    assert!(
        out.status.success(),
        "s_server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tokio-rustls on synack as the server, `openssl s_client` on the kernel as the client,
/// under TLS 1.2 and 1.3: s_client verifies the chain and the IP address, asks for 256 KiB,
/// and gets every byte before the server's close_notify ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tls_server_on_synack_serves_openssl_s_client() {
    let test = "kernel_tls_server_on_synack_serves_openssl_s_client";
    if !require_tun(test) || !require_tool(test, "openssl") {
        return;
    }
    let net = Net::new("synack-tls-s", synack_core::Config::default(), None);
    make_certificates(net.dir.path());
    std::fs::write(net.dir.path().join("request.txt"), "GET 262144\n").unwrap();
    let acceptor = tls_acceptor(net.dir.path());
    let listener = TcpListener::bind(&net.stack, stack_addr(8443))
        .await
        .unwrap();
    let payload = pattern(256 << 10, 99);

    for version in ["-tls1_2", "-tls1_3"] {
        let script = format!(
            "openssl s_client -connect {STACK}:8443 -CAfile ca.pem -verify_return_error \
             -verify_ip {STACK} -quiet {version} < request.txt"
        );
        let mut cmd = net.ns.command("sh");
        cmd.current_dir(net.dir.path()).args(["-c", &script]);
        let client = Proc::spawn(cmd);

        let (tcp, _) = within(10, listener.accept()).await.unwrap();
        let mut tls = within(10, acceptor.accept(tcp)).await.unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            within(10, tls.read_exact(&mut byte)).await.unwrap();
            line.push(byte[0]);
        }
        assert_eq!(line, b"GET 262144\n");
        within(20, tls.write_all(&payload)).await.unwrap();
        within(10, tls.shutdown()).await.unwrap(); // close_notify, then FIN

        let out = client.finish(Duration::from_secs(20)).await;
        assert!(
            out.status.success(),
            "s_client {version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == payload, "s_client {version}: payload differs");
    }
    within(10, net.stack.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}
