//! The status page: a read-only page, served by the daemon on `web.listen`, that shows
//! every uplink's state and its history (see [`crate::history`]). The page and its script
//! are embedded in the binary (no CDN, nothing fetched at run time); it polls
//! `/api/status` (the same document as `multiwan status --json`) every second and
//! `/api/history?range=hour|day|week` every few seconds, and draws its charts as SVG.
//! Off loopback, the API asks for a token (`Authorization: Bearer TOKEN` or `?token=`),
//! compared by its SHA-256 with the configured hash; the page itself holds no data.
//! Same server and limits as /metrics ([`super::http`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::http::{Get, Handler, Reply};
use crate::control::proto::Request;
use crate::control::server::{Caches, status_answer};
use crate::history::{History, Range};

const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");

/// What the page's server needs: the agent (for status), the history, the token's hash.
pub struct Web {
    agent: mpsc::Sender<Request>,
    history: Arc<Mutex<History>>,
    token_sha256: Option<[u8; 32]>,
    caches: Caches,
}

impl Web {
    pub fn new(
        agent: mpsc::Sender<Request>,
        history: Arc<Mutex<History>>,
        token_sha256: Option<[u8; 32]>,
    ) -> Web {
        Web {
            agent,
            history,
            token_sha256,
            caches: Caches::default(),
        }
    }
}

/// Serves the page on `addr` until the runtime ends.
pub async fn serve(addr: SocketAddr, web: Arc<Web>) -> std::io::Result<()> {
    let handler: Handler = Arc::new(move |get: Get| {
        let web = web.clone();
        Box::pin(async move { answer(&web, &get).await })
    });
    super::http::serve(addr, "status page", handler).await
}

async fn answer(web: &Web, get: &Get) -> Reply {
    match get.path.as_str() {
        "/" | "/index.html" => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: PAGE.to_string(),
        },
        "/app.js" => Reply {
            status: 200,
            content_type: "text/javascript; charset=utf-8",
            body: SCRIPT.to_string(),
        },
        "/api/status" | "/api/history" if !authorized(web.token_sha256, get) => Reply {
            status: 401,
            content_type: "application/json",
            body: "{\"error\":\"token required\"}\n".into(),
        },
        "/api/status" => json(status_answer(&web.agent, &web.caches).await),
        "/api/history" => {
            let Some(range) = Range::parse(get.param("range").unwrap_or("hour")) else {
                return Reply::text(400, "range: hour, day or week\n");
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            let charted = match web.history.lock() {
                Ok(h) => h.chart(range, now),
                Err(_) => return Reply::text(500, "history unavailable\n"),
            };
            json(serde_json::to_string(&charted).unwrap_or_default())
        }
        _ => Reply::text(404, "not found\n"),
    }
}

fn json(body: String) -> Reply {
    if body.is_empty() {
        return Reply::text(503, "the agent did not answer\n");
    }
    Reply {
        status: 200,
        content_type: "application/json",
        body,
    }
}

/// Whether the request carries the token (always, when none is configured).
pub fn authorized(expected: Option<[u8; 32]>, get: &Get) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = get
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .or_else(|| get.param("token"));
    let Some(given) = given else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
    // Compared in constant time: no byte-by-byte timing to learn the hash from.
    digest
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_by_its_hash_from_the_header_or_the_query() {
        let hash: [u8; 32] = Sha256::digest(b"s3cret").into();
        let get = |auth: Option<&str>, query: &str| Get {
            path: "/api/status".into(),
            query: query.into(),
            authorization: auth.map(str::to_string),
        };
        assert!(authorized(None, &get(None, "")));
        assert!(authorized(Some(hash), &get(Some("Bearer s3cret"), "")));
        assert!(authorized(Some(hash), &get(None, "range=day&token=s3cret")));
        assert!(!authorized(Some(hash), &get(Some("Bearer wrong"), "")));
        assert!(!authorized(Some(hash), &get(None, "range=day")));
        assert!(!authorized(Some(hash), &get(Some("s3cret"), "")));
    }
}
