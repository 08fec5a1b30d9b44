//! The daemon's small HTTP/1.1 server for read-only endpoints (`/metrics`), on hyper. A
//! client gets one request per connection (no keep-alive), GET only, and lives under two
//! deadlines: its request head within 5 s, the whole exchange within 10 s. At most
//! [`MAX_CONNECTIONS`] are served at once; beyond that a connection is closed at once, so
//! slow or idle clients can never use up the daemon's file descriptors. A failing accept
//! (out of descriptors) waits instead of spinning.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tracing::{info, warn};

pub const MAX_CONNECTIONS: usize = 64;
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(10);

/// What a handler answers for a path.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

/// What a handler is told of a GET: the path, the query string, and the Authorization
/// header (for a page that asks for a token).
#[derive(Debug, Clone, Default)]
pub struct Get {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
}

impl Get {
    /// A query parameter's value (`range` in `?range=day&token=x`), undecoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Answers a GET.
pub type Handler =
    Arc<dyn Fn(Get) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Serves `handler` on `addr` until the runtime ends; `name` names the endpoint in the log.
pub async fn serve(addr: SocketAddr, name: &'static str, handler: Handler) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(%addr, "{name} endpoint listening");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "{name}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // dropped: the cap is reached
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let reply = respond(handler.clone(), req);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(DEADLINE, connection).await;
        });
    }
}

async fn respond(handler: Handler, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = if req.method() == Method::GET {
        let get = Get {
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            authorization: req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        handler(get).await
    } else {
        Reply::text(405, "only GET\n")
    };
    Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        // Read-only documents about a router: never cached, framed or sniffed.
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
