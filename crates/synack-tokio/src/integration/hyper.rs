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
//! synack resolves no names (see [`ToSocketAddrs`](crate::ToSocketAddrs)), so a URI's host
//! must be an IP address, or a name that [`HyperConnector::resolve`] was told about.

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
/// Each stream gets TCP_NODELAY, as hyper-util's own `HttpConnector` sets by default: a
/// request is written head and body apart, and Nagle would hold the body for the server's
/// delayed ACK.
#[derive(Clone)]
pub struct HyperConnector {
    stack: Stack,
    names: Arc<HashMap<String, IpAddr>>,
    nodelay: bool,
}

impl HyperConnector {
    /// A connector on `stack`.
    pub fn new(stack: &Stack) -> HyperConnector {
        HyperConnector {
            stack: stack.clone(),
            names: Arc::default(),
            nodelay: true,
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

    /// The address `uri` names: its host (an IP literal, brackets for IPv6, or a name given
    /// to [`resolve`](Self::resolve)) and its port, or the scheme's (80, 443).
    fn address(&self, uri: &Uri) -> io::Result<SocketAddr> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let host = uri
            .host()
            .ok_or_else(|| invalid(format!("no host in {uri}")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match bare.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => *self.names.get(&bare.to_ascii_lowercase()).ok_or_else(|| {
                invalid(format!("{host}: synack has no resolver; use an IP address"))
            })?,
        };
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, Some("http") | None) => 80,
            (None, Some(other)) => return Err(invalid(format!("no default port for {other}"))),
        };
        Ok(SocketAddr::new(ip, port))
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
        let addr = self.address(&uri);
        Box::pin(async move {
            let stream = TcpStream::connect(&stack, addr?).await?;
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
