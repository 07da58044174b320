//! The HTTP/1.1 server: the router on hyper connections, with bounds on what one client can hold
//! (docs/architecture.md §8). A connection must send each request's head within
//! `header_timeout` — the same clock closes a kept-alive connection that sits idle — and its body
//! within `body_timeout`; at most `max_connections` are served at once, the next waiting in the
//! kernel's listen backlog. axum's own `serve` sets no timeout at all, so a slow or silent client
//! held a connection (and its memory) for ever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::error::ApiError;
use crate::config::ServerLimits;

/// The largest request body any route takes (axum's default limit; routes set lower ones).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `app` on `listener` until `stop` resolves, then stops accepting and lets each
/// connection finish the request in hand; returns when the last connection has closed (the
/// caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(limits.body_timeout, body_deadline));
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
    Ok(())
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
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
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

/// Reads the whole request body within `timeout` from the end of its head, so that the handler
/// never waits on a client that sends a byte now and then. Bodies are small (2 MiB at most), so
/// reading them here costs nothing the handler would not spend anyway.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let may_have_body = !matches!(parts.method, Method::GET | Method::HEAD)
        || parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if !may_have_body {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_length_limit(&e) => {
            return ApiError::TooLarge { limit: MAX_BODY_BYTES }.into_response();
        }
        Ok(Err(_)) => {
            return closing(ApiError::BadRequest { message: "the request body could not be read".into() });
        }
        Err(_) => return closing(ApiError::RequestTimeout),
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An answer after which the connection is closed: the rest of the body is not worth reading.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
