//! `http_server --root DIR [--port 8080]`: serves the files under DIR over HTTP/1.1, with hyper
//! on synack's `TcpListener`. A missing file is a 404; every connection is its own task, so
//! many clients are served at once. Small files (up to 64 KiB) are read whole; larger ones are
//! streamed, never read into memory.
//!
//! Run it inside a network namespace that has nothing else in it; it creates the TUN device
//! there and listens on `--addr` (198.18.0.2), which the kernel reaches through the device:
//!
//! ```text
//! ip netns add synack
//! ip netns exec synack cargo run --example http_server -- --root ./site &
//! # until it has built, made synack0 and brought it up (its route to 198.18.0.2 is there):
//! until ip -n synack route get 198.18.0.2 >/dev/null 2>&1; do sleep 0.1; done
//! ip netns exec synack curl http://198.18.0.2:8080/index.html
//! ```
//!
//! It runs until Ctrl-C or SIGTERM; `--stats` then prints the stack's counters.
//!
//! `--kernel` serves the same files with the same code on the kernel's TCP instead (tokio's
//! `TcpListener` on `--addr`, no TUN): the benchmark harness measures the two side by side.
//!
//! A request's head must arrive within `--header-timeout` seconds (30), or the connection is
//! closed, so that clients trickling a header byte by byte cannot hold connections for ever.

mod common;

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

/// A static file server on the synack stack.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// The TCP port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Serve on the kernel's TCP (tokio::net) at --addr instead of on synack: the same
    /// server code, for comparisons.
    #[arg(long)]
    kernel: bool,
    /// Seconds a request's head may take to arrive before the connection is closed (1 to
    /// 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    header_timeout: u64,
    #[command(flatten)]
    net: common::NetArgs,
}

type Body = BoxBody<Bytes, io::Error>;

/// Files up to this size are read in the request's task and sent whole; larger ones are
/// streamed.
const SMALL_FILE: u64 = 64 * 1024;

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The file under `root` that `uri_path` names, or `None` if it tries to leave `root` or is
/// not a path: each segment is percent-decoded (`my%20file.html`), and a segment that
/// decodes to `..`, or holds a `/` (`%2F`) or a NUL, or a malformed escape, is refused.
fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = root.to_path_buf();
    for segment in uri_path.split('/') {
        let name = percent_decode(segment)?;
        if name.contains(&b'/') || name.contains(&0) {
            return None;
        }
        let name = Path::new(std::ffi::OsStr::from_bytes(&name));
        // One segment without a `/`: an empty one, `.`, `..` or a name.
        for part in name.components() {
            match part {
                Component::Normal(p) => path.push(p),
                Component::CurDir => {}
                // `..`: never outside the root.
                _ => return None,
            }
        }
    }
    Some(path)
}

/// `segment` with each `%XX` replaced by its byte; `None` for a `%` not followed by two
/// hex digits.
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

async fn serve(root: Arc<PathBuf>, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"));
    }
    let Some(mut path) = resolve(&root, req.uri().path()) else {
        return Ok(text(StatusCode::FORBIDDEN, "forbidden"));
    };
    // Opened and sized in the task: on a page-cache hit these are microseconds, less than a
    // hop to tokio's blocking pool and back, which costs a thread wake-up each way (three
    // of them a request, with the read). As nginx does, the path is opened first and then
    // looked at, one path walk a request: O_NONBLOCK keeps the open of a FIFO from waiting
    // for a writer, and anything but a regular file (a FIFO, a device, a socket) is refused
    // once its open has shown what it is. A directory is served by its index.html.
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    };
    let refused = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => text(StatusCode::NOT_FOUND, "not found"),
        _ => text(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let mut file = match open(&path) {
        Ok(f) => f,
        Err(e) => return Ok(refused(e)),
    };
    let mut meta = file.metadata()?;
    if meta.is_dir() {
        path.push("index.html");
        file = match open(&path) {
            Ok(f) => f,
            Err(e) => return Ok(refused(e)),
        };
        meta = file.metadata()?;
    }
    if !meta.is_file() {
        return Ok(text(StatusCode::FORBIDDEN, "not a regular file"));
    }
    let len = meta.len();
    let body: Body = if req.method() == Method::HEAD {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed()
    } else if len <= SMALL_FILE {
        // Small files are read whole, here, and leave with the head in one write.
        let mut data = Vec::with_capacity(len as usize);
        io::Read::read_to_end(&mut io::Read::take(&file, len), &mut data)?;
        if (data.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            ));
        }
        Full::new(Bytes::from(data))
            .map_err(|never| match never {})
            .boxed()
    } else {
        // Larger ones are streamed through the blocking pool, 64 KiB at a time.
        common::FileBody::new(tokio::fs::File::from_std(file), len).boxed()
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(len),
    );
    Ok(response)
}

async fn run(args: Args) -> io::Result<()> {
    if !args.root.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("--root {}: not a directory", args.root.display()),
        ));
    }
    let root = Arc::new(args.root.clone());
    let addr = SocketAddr::new(args.net.addr.into(), args.port);
    let header_timeout = std::time::Duration::from_secs(args.header_timeout);
    if args.kernel {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--kernel: binding {addr} (--addr, an address this namespace holds): {e}"),
            )
        })?;
        eprintln!("serving {} on http://{addr}/ (kernel TCP)", root.display());
        return serve_all(root, header_timeout, || async {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((stream, peer))
        })
        .await;
    }
    let stack = args.net.open_stack()?;
    // Dual stack: the IPv6 address too.
    let listeners = common::Listeners::bind(&stack, &args.net, args.port).await?;
    for addr in listeners.local_addrs()? {
        eprintln!("serving {} on http://{addr}/", root.display());
    }
    let served = serve_all(root, header_timeout, || async {
        let (stream, peer) = listeners.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    })
    .await;
    // Let the connections still open finish what they queued (their FINs after it) before
    // the process exits, rather than leaving them to be reset.
    common::finish(&stack).await;
    args.net.print_stats(&stack);
    served
}

/// Accepts until Ctrl-C or SIGTERM and serves each connection in a task of its own.
///
/// Streams get TCP_NODELAY, as nginx's `tcp_nodelay` default gives its keep-alive
/// connections: hyper writes a response's head and a streamed body apart, and Nagle would
/// hold the body until the client's delayed ACK for the head came (40 ms on Linux).
///
/// A request's head must arrive within `header_timeout` (`--header-timeout`, 30 s as
/// hyper's default), or the connection is closed
/// (nginx's `client_header_timeout`): hyper enforces its header timeout only with a timer,
/// and without one a client trickling a byte now and then held a connection and its task
/// for ever (slowloris).
async fn serve_all<S, F, Fut>(
    root: Arc<PathBuf>,
    header_timeout: std::time::Duration,
    mut accept: F,
) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = io::Result<(S, SocketAddr)>>,
{
    let stop = common::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept() => accepted?,
            r = &mut stop => return r,
        };
        let root = root.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| serve(root.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection failed");
            }
        });
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    args.net.init_tracing();
    common::report("http_server", run(args).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_decodes_and_stays_under_the_root() {
        let root = Path::new("/srv/site");
        let ok = |uri: &str| resolve(root, uri).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(ok("/"), Some("/srv/site".into()));
        assert_eq!(ok("/a/b.html"), Some("/srv/site/a/b.html".into()));
        assert_eq!(ok("/my%20file.html"), Some("/srv/site/my file.html".into()));
        assert_eq!(ok("/caf%C3%A9/./x"), Some("/srv/site/café/x".into()));
        assert_eq!(ok("//a//b/"), Some("/srv/site/a/b".into()));
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/etc/passwd",
            "/a%2F..%2F..%2Fx",
            "/a%2fb",
            "/a%00b",
            "/bad%2",
            "/bad%zz",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }
}
