//! The HTTP/1.1 server: the router on hyper connections, with bounds on what one client can hold
//! (docs/architecture.md §8). A connection must send each request's head within
//! `header_timeout` — the same clock closes a kept-alive connection that sits idle — and its body
//! within `body_timeout`, and must read what it is sent: a write that makes no progress for
//! `body_timeout` ends the connection. At most `max_connections` are served at once, the next
//! waiting in the kernel's listen backlog. axum's own `serve` sets no timeout at all, so a slow or silent client
//! held a connection (and its memory) for ever.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::error::ApiError;
use crate::config::ServerLimits;

/// Serves `app` on `listener` until `stop` resolves, then stops accepting and lets each
/// connection finish the request in hand; returns when the last connection has closed (the
/// caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        // A slot first: at the cap, connections wait in the backlog rather than being accepted
        // and starved.
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin on it.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(stream, peer, app.clone(), limits, closing.clone(), slot));
        // Reap the finished ones so the set stays as small as the open connections.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    mut closing: watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    // The peer address, for the per-address rate limits.
    let service = app.map_request(move |req: Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    // A client that stops reading its answers would hold the connection for ever (the kernel
    // keeps probing a zero window): a write that makes no progress for `body_timeout` ends it.
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.body_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(Box::pin(stream)), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let closing = async move {
        let _ = closing.wait_for(|c| *c).await.map(|_| ());
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = closing => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Gives the request's body `timeout` from the end of its head, in total: a client that sends a
/// byte now and then cannot hold a handler (and its connection) longer. The body is not read
/// here — the route's extractors read it after authentication, within their own size limits —
/// only bounded; when the deadline cut it, the answer is 408 and the connection closes.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
        })
    });
    let response = next.run(req).await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    let mut response = ApiError::RequestTimeout.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline has passed, and says so in `expired`.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(ApiError::RequestTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
