//! A connector for hyper-util's pooled client (`hyper_util::client::legacy::Client`).
//!
//! ```no_run
//! # async fn run(stack: synack_tokio::Stack) -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::{BodyExt, Empty};
//! use hyper::body::Bytes;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use synack_tokio::integration::hyper::HyperConnector;
//!
//! let client = Client::builder(TokioExecutor::new())
//!     .build::<_, Empty<Bytes>>(HyperConnector::new(&stack));
//! let response = client.get("http://198.18.0.1:8000/".parse()?).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! # Ok(()) }
//! ```
//!
//! A URI's host is an IP address, a name [`HyperConnector::resolve`] was told about, or a
//! name the stack's resolver looks up, through the stack (`Stack::set_resolver`, the
//! `hickory` feature; see [`ToSocketAddrs`](crate::ToSocketAddrs)).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::hyper::rt::{Read, ReadBufCursor, Write};
use ::hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use crate::{Stack, TcpStream};

/// Opens a [`TcpStream`] on a synack [`Stack`] for each connection hyper's pool asks for.
///
/// Each stream gets TCP_NODELAY (hyper-util's own `HttpConnector` leaves it off unless asked):
/// a request is written head and body apart, and Nagle would hold the body for the server's
/// delayed ACK.
///
/// Like hyper-util's `HttpConnector`, it refuses any URI whose scheme is not `http` before
/// connecting: the stream is plain TCP, and an `https` request sent on it would go out in
/// the clear, its headers and credentials included. A TLS layer on top turns that off with
/// [`enforce_http(false)`](Self::enforce_http).
#[derive(Clone)]
pub struct HyperConnector {
    stack: Stack,
    names: Arc<HashMap<String, IpAddr>>,
    nodelay: bool,
    enforce_http: bool,
}

/// Where a connection goes: an address, or a name for the stack's resolver.
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

impl HyperConnector {
    /// A connector on `stack`.
    pub fn new(stack: &Stack) -> HyperConnector {
        HyperConnector {
            stack: stack.clone(),
            names: Arc::default(),
            nodelay: true,
            enforce_http: true,
        }
    }

    /// Maps a host name to an address, as an `/etc/hosts` line would.
    pub fn resolve(mut self, name: impl Into<String>, ip: IpAddr) -> HyperConnector {
        Arc::make_mut(&mut self.names).insert(name.into().to_ascii_lowercase(), ip);
        self
    }

    /// Whether streams get TCP_NODELAY (default `true`).
    pub fn set_nodelay(mut self, nodelay: bool) -> HyperConnector {
        self.nodelay = nodelay;
        self
    }

    /// Whether only `http` URIs are taken (default `true`, as hyper-util's
    /// `HttpConnector::enforce_http`). Turn it off only under a connector that wraps the
    /// stream in TLS for `https` (tokio-rustls, say); then a URI without a scheme is taken
    /// too, and goes to port 80.
    pub fn enforce_http(mut self, is_enforced: bool) -> HyperConnector {
        self.enforce_http = is_enforced;
        self
    }

    /// Where `uri` goes: its host (an IP literal, brackets for IPv6, a name given to
    /// [`resolve`](Self::resolve), or one for the stack's resolver) and its port, or the
    /// scheme's (80, 443).
    fn target(&self, uri: &Uri) -> io::Result<Target> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if self.enforce_http {
            match uri.scheme_str() {
                Some("http") => {}
                Some(_) => return Err(invalid(format!("not an http URI: {uri}"))),
                None => return Err(invalid(format!("no scheme in {uri}"))),
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| invalid(format!("no host in {uri}")))?;
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, Some("http") | None) => 80,
            (None, Some(other)) => return Err(invalid(format!("no default port for {other}"))),
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Target::Addr(SocketAddr::new(ip, port)));
        }
        let name = bare.to_ascii_lowercase();
        Ok(match self.names.get(&name) {
            Some(&ip) => Target::Addr(SocketAddr::new(ip, port)),
            None => Target::Name(name, port),
        })
    }
}

impl tower_service::Service<Uri> for HyperConnector {
    type Response = HyperStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<HyperStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let stack = self.stack.clone();
        let nodelay = self.nodelay;
        let target = self.target(&uri);
        Box::pin(async move {
            let stream = match target? {
                Target::Addr(addr) => TcpStream::connect(&stack, addr).await?,
                Target::Name(name, port) => TcpStream::connect(&stack, (name, port)).await?,
            };
            stream.set_nodelay(nodelay)?;
            Ok(HyperStream(TokioIo::new(stream)))
        })
    }
}

/// A [`TcpStream`] in hyper's I/O traits, with what the pool needs to know of it.
#[derive(Debug)]
pub struct HyperStream(TokioIo<TcpStream>);

impl HyperStream {
    /// The stream underneath.
    pub fn get_ref(&self) -> &TcpStream {
        self.0.inner()
    }

    /// The stream underneath, for good.
    pub fn into_inner(self) -> TcpStream {
        self.0.into_inner()
    }
}

impl Connection for HyperStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for HyperStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for HyperStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
