//! The seed server: serves each node's first-boot seed (docs/design/node-bootstrap.md) to its
//! BMC, which fetches virtual media from a URL. One server per provider process, started on
//! first use on `bootstrap.listen` (default `127.0.0.1:0`, a free port); every seed gets an
//! unguessable path (`/seed/<128-bit random>.img`) and is served only while its [`Published`]
//! handle lives — the node's converge drops it once the node confirmed the seed, or failed.
//! Anything else is 404.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

type Files = Arc<Mutex<HashMap<String, Bytes>>>;

/// Where the server listens and the URL base the BMC reaches it under.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootstrapSettings {
    /// `ADDR:PORT` to listen on; default `127.0.0.1:0`.
    pub listen: Option<String>,
    /// `http://HOST:PORT` as the BMCs see the server; default `http://` + the bound address.
    pub url: Option<String>,
}

pub struct SeedServer {
    base: String,
    files: Files,
}

/// A seed being served; dropping it stops serving it.
pub struct Published {
    pub url: String,
    path: String,
    files: Files,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.path);
    }
}

static SERVER: OnceCell<SeedServer> = OnceCell::const_new();

impl SeedServer {
    /// The process's server, started with `settings` on first use.
    pub async fn get(settings: &BootstrapSettings) -> Result<&'static SeedServer, String> {
        SERVER.get_or_try_init(|| SeedServer::start(settings)).await
    }

    async fn start(settings: &BootstrapSettings) -> Result<SeedServer, String> {
        let listen = settings.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        let listener =
            TcpListener::bind(&listen).await.map_err(|e| format!("seed server: cannot listen on {listen}: {e}"))?;
        let bound: SocketAddr = listener.local_addr().map_err(|e| format!("seed server: {e}"))?;
        let base = match &settings.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        };
        let files: Files = Arc::default();
        tracing::info!(%bound, %base, "seed server listening");
        tokio::spawn(serve(listener, Arc::clone(&files)));
        Ok(SeedServer { base, files })
    }

    /// Serves `bytes` under a new random path until the handle is dropped.
    pub fn publish(&self, bytes: Vec<u8>) -> Published {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let path = format!("/seed/{}.img", hex::encode(id));
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(path.clone(), Bytes::from(bytes));
        Published { url: format!("{}{path}", self.base), path, files: Arc::clone(&self.files) }
    }
}

async fn serve(listener: TcpListener, files: Files) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "seed server: accept failed");
                continue;
            }
        };
        let files = Arc::clone(&files);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let files = Arc::clone(&files);
                async move {
                    let found = (req.method() == hyper::Method::GET || req.method() == hyper::Method::HEAD)
                        .then(|| files.lock().unwrap_or_else(|p| p.into_inner()).get(req.uri().path()).cloned())
                        .flatten();
                    // The path is the secret: it is never logged.
                    tracing::debug!(%peer, found = found.is_some(), "seed server: request");
                    match found {
                        Some(b) => {
                            Response::builder().header("Content-Type", "application/octet-stream").body(Full::new(b))
                        }
                        None => Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new())),
                    }
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                tracing::debug!(error = %e, "seed server: connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_a_seed_only_while_it_is_published() {
        let srv = SeedServer::start(&BootstrapSettings::default()).await.expect("server");
        let http = reqwest::Client::new();
        let p = srv.publish(b"{\"edge-seed\":1}".to_vec());
        assert!(p.url.starts_with("http://127.0.0.1:") && p.url.contains("/seed/"), "{}", p.url);
        let r = http.get(&p.url).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.bytes().await.expect("body").as_ref(), b"{\"edge-seed\":1}");
        let other = p.url.replace("/seed/", "/seed/0");
        assert_eq!(http.get(&other).send().await.expect("get").status().as_u16(), 404);
        let url = p.url.clone();
        drop(p);
        assert_eq!(http.get(&url).send().await.expect("get").status().as_u16(), 404, "withdrawn");
    }
}
