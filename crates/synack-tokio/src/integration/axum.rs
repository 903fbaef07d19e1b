//! `axum::serve` over synack: [`TcpListener`] implements `axum::serve::Listener`.
//!
//! ```no_run
//! # async fn run(stack: synack_tokio::Stack) -> std::io::Result<()> {
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use synack_tokio::integration::axum::PeerAddr;
//! use synack_tokio::TcpListener;
//!
//! let app = Router::new().route(
//!     "/",
//!     get(|ConnectInfo(peer): ConnectInfo<PeerAddr>| async move { format!("hello, {peer}\n") }),
//! );
//! let listener = TcpListener::bind(&stack, "198.18.0.2:80").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await
//! # }
//! ```
//!
//! The peer's address comes as [`PeerAddr`] on the listener as `bind` returns it. axum
//! hands out `ConnectInfo<SocketAddr>` only for tokio's own listener and for listeners
//! wrapped by its `ListenerExt::tap_io`, and Rust's orphan rule forbids any other crate to
//! add it for synack's: `listener.tap_io(|_| {})` gets it where an application needs that
//! exact type.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ::axum::extract::connect_info::Connected;
use ::axum::serve::{IncomingStream, Listener};
use tracing::{error, warn};

use crate::{TcpListener, TcpStream};

/// How long `accept` waits before it tries again after an error, as axum's own listener
/// does: an error here means the stack is failing (its device gone, or closed), and a loop
/// without a pause would spin.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

impl Listener for TcpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    /// axum's contract: accept never fails, it logs and retries. A listener that can never
    /// accept again (the stack is gone, or `Stack::shutdown` closed it) says so once and
    /// then waits for ever, rather than warning every second: `serve`'s graceful shutdown
    /// is the way out, as it is for a server that is idle.
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match TcpListener::accept(self).await {
                Ok(accepted) => return accepted,
                Err(e) if self.is_closed() => {
                    error!(error = %e, "the listener is closed for good; accepting nothing more");
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

/// The peer's address, for `into_make_service_with_connect_info::<PeerAddr>()`.
///
/// axum implements `Connected` for `SocketAddr` over tokio's listener only, and the orphan
/// rule forbids any other crate from adding `SocketAddr: Connected<IncomingStream<'_,
/// synack_tokio::TcpListener>>`; this local type is what this crate can implement it for.
/// It dereferences to the `SocketAddr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl std::ops::Deref for PeerAddr {
    type Target = SocketAddr;
    fn deref(&self) -> &SocketAddr {
        &self.0
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}
