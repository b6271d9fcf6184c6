//! HTTP(S) plumbing shared by the PVE, PBS, admin and artifact listeners: accept loop with an
//! optional TLS config and an optional gate (a powered-off node resets connections), request
//! parameter parsing the way PVE reads them, and response helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;

pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    pub local: SocketAddr,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: Option<String>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            reason: None,
            content_type: "application/json;charset=UTF-8",
            headers: Vec::new(),
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }
    /// A status line and nothing else: no body, no content type (PVE's authentication
    /// failures).
    pub fn status_only(status: u16, reason: &str) -> Resp {
        Resp { status, reason: None, content_type: "", headers: Vec::new(), body: Vec::new() }.with_reason(reason)
    }
    /// A plain-text body under the JSON content type: how PBS sends every API error.
    pub fn text(status: u16, text: &str) -> Resp {
        Resp {
            status,
            reason: None,
            content_type: "application/json;charset=UTF-8",
            headers: Vec::new(),
            body: text.as_bytes().to_vec(),
        }
    }
    /// A plain-text body with no content type at all (PBS's authentication failures).
    pub fn bare(status: u16, text: &str) -> Resp {
        Resp { content_type: "", ..Resp::text(status, text) }
    }
    pub fn data(v: Value) -> Resp {
        Resp::json(200, &serde_json::json!({ "data": v }))
    }
    pub fn with_reason(mut self, r: &str) -> Resp {
        // Status lines cannot carry newlines or non-ASCII.
        let clean: String =
            r.lines().next().unwrap_or("").chars().filter(|c| c.is_ascii() && !c.is_control()).collect();
        self.reason = Some(clean);
        self
    }
    pub fn header(mut self, k: &str, v: String) -> Resp {
        self.headers.push((k.to_string(), v));
        self
    }
}

/// What a handler returns: a response, or `None` to drop the connection (fault injection).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Option<Resp>> + Send>>;
pub type Handler = Arc<dyn Fn(Req) -> HandlerFuture + Send + Sync>;
/// Returns false while the host is "down": connections are reset.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped")
    }
}
impl std::error::Error for Dropped {}

pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    gate: Option<Gate>,
    handler: Handler,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(g) = &gate {
            if !g() {
                // A host that is off: reset instead of answering.
                #[allow(deprecated)] // linger 0 never blocks: it resets
                let _ = stream.set_linger(Some(std::time::Duration::from_secs(0)));
                drop(stream);
                continue;
            }
        }
        // No Nagle, as pveproxy: pve-common @ stable-bookworm `src/PVE/Daemon.pm`
        // `create_reusable_socket` sets TCP_NODELAY on the listening socket ("we often observe
        // delays when using Nagle algorithm"). Without it, over TLS 1.3 the session tickets go
        // out unacknowledged right after the handshake, and a response written behind them waits
        // for the client's delayed ACK (40 ms on Linux) on most new connections.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let handler = Arc::clone(&handler);
        let acceptor = acceptor.clone();
        let gate_conn = gate.clone();
        tokio::spawn(async move {
            let req_gate = gate_conn.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                let req_gate = req_gate.clone();
                async move {
                    // A kept-alive connection must not outlive its host going down.
                    if req_gate.as_ref().is_some_and(|g| !g()) {
                        return Err(Dropped);
                    }
                    let (parts, body) = req.into_parts();
                    let body = match body.collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => return Err(Dropped),
                    };
                    let r = Req {
                        method: parts.method.as_str().to_string(),
                        path: parts.uri.path().to_string(),
                        query: parts.uri.query().unwrap_or("").to_string(),
                        headers: parts.headers,
                        body,
                        local,
                    };
                    match handler(r).await {
                        Some(resp) => Ok(to_hyper(resp)),
                        None => Err(Dropped),
                    }
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            // A host that goes down takes its open (keep-alive) connections with it.
            let down = async move {
                match gate_conn {
                    Some(g) => {
                        while g() {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let conn = async move {
                match acceptor {
                    Some(acc) => {
                        if let Ok(tls) = acc.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            };
            tokio::select! {
                _ = conn => {}
                _ = down => {}
            }
        });
    }
}

fn to_hyper(r: Resp) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // An empty content type means none: some answers carry no Content-Type header.
    if let Some(v) = hyper::header::HeaderValue::from_str(r.content_type).ok().filter(|_| !r.content_type.is_empty()) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) =
            (hyper::header::HeaderName::from_bytes(k.as_bytes()), hyper::header::HeaderValue::from_str(&v))
        {
            resp.headers_mut().append(k, v);
        }
    }
    if let Some(reason) = r.reason {
        if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
            resp.extensions_mut().insert(rp);
        }
    }
    resp
}

/// Parameters as PVE reads them: query string always, plus a form-encoded or JSON body.
pub fn parse_params(req: &Req) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    let mut add = |k: String, v: Value| match m.get_mut(&k) {
        // Repeated keys become arrays (PVE's array parameters).
        Some(Value::Array(a)) => a.push(v),
        Some(old) => {
            let prev = old.take();
            *old = Value::Array(vec![prev, v]);
        }
        None => {
            m.insert(k, v);
        }
    };
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        add(k.into_owned(), Value::String(v.into_owned()));
    }
    if !req.body.is_empty() {
        let ct = req.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if ct.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&req.body).map_err(|e| format!("failed to parse JSON body: {e}"))?;
            match v {
                Value::Object(o) => {
                    for (k, v) in o {
                        add(k, v);
                    }
                }
                Value::Null => {}
                _ => return Err("JSON body must be an object".into()),
            }
        } else {
            for (k, v) in form_urlencoded::parse(&req.body) {
                add(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    Ok(m)
}

pub fn cookie(req: &Req, name: &str) -> Option<String> {
    for h in req.headers.get_all(hyper::header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name {
                    return Some(crate::schema::pct_decode(v));
                }
            }
        }
    }
    None
}

pub fn header(req: &Req, name: &str) -> Option<String> {
    req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
