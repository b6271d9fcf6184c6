//! The HTTPS client the Proxmox APIs (PVE and PBS) share: TLS trust (a pinned leaf fingerprint,
//! a CA, or — only when asked — nothing), authentication (API token header or ticket + CSRF),
//! the `{"data": …}` envelope, and retries of idempotent calls with backoff.
//!
//! Secrets (tokens, passwords, tickets) are never logged and never appear in errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::{pbs, pve, ClientError, TlsFailure};
use crate::provider::ApiConfig;

/// Which Proxmox product an endpoint is: they differ in header and cookie names only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Pve,
    Pbs,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Pve => "PVE",
            Product::Pbs => "PBS",
        }
    }
    fn token_prefix(self) -> &'static str {
        match self {
            Product::Pve => "PVEAPIToken=",
            Product::Pbs => "PBSAPIToken=",
        }
    }
    /// Methods only the literal user root@pam may call (no token can).
    fn root_only(self, method: &str, path: &str) -> bool {
        match self {
            Product::Pve => pve::root_only(method, path),
            Product::Pbs => false,
        }
    }
    fn cookie(self) -> &'static str {
        match self {
            Product::Pve => "PVEAuthCookie",
            Product::Pbs => "PBSAuthCookie",
        }
    }
    /// The typed error for an error answer: the product's classifier decides the kind, its
    /// reader the message (display only).
    fn api_error(self, method: &str, path: &str, answer: &ErrorAnswer) -> ClientError {
        let (kind, message, errors) = match self {
            Product::Pve => {
                (pve::classify(method, path, answer.status), pve::error_message(answer), answer.param_errors())
            }
            Product::Pbs => {
                (pbs::classify(method, path, answer.status), pbs::error_message(answer), pbs::param_errors(answer))
            }
        };
        ClientError::Api {
            kind,
            method: method.to_string(),
            path: path.to_string(),
            status: answer.status,
            message,
            errors,
        }
    }
}

/// An error answer as it came: status, the reason phrase the server sent, and the raw body
/// (PVE: JSON, with or without `message`; PBS: the bare message text under a JSON content type).
#[derive(Debug, Clone, Default)]
pub struct ErrorAnswer {
    pub status: u16,
    /// The status line's reason phrase; PVE puts the error's first line there.
    pub reason: String,
    pub body: Vec<u8>,
}

impl ErrorAnswer {
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&self.body).ok().filter(serde_json::Value::is_object)
    }
    /// The JSON body's `message`, trimmed, if there is a non-empty one.
    pub fn json_message(&self) -> Option<String> {
        self.json()?.get("message")?.as_str().map(|m| m.trim().to_string()).filter(|m| !m.is_empty())
    }
    /// The body as text when it is not JSON (PBS), trimmed.
    pub fn text(&self) -> Option<String> {
        if self.json().is_some() {
            return None;
        }
        Some(String::from_utf8_lossy(&self.body).trim().to_string()).filter(|t| !t.is_empty())
    }
    /// `errors: {param: message}` of a JSON body.
    pub fn param_errors(&self) -> BTreeMap<String, String> {
        self.json()
            .and_then(|j| j.get("errors").and_then(|e| e.as_object()).cloned())
            .map(|o| {
                o.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or(v.to_string()))).collect()
            })
            .unwrap_or_default()
    }
}

/// The reason phrase of the status line. reqwest's `StatusCode::canonical_reason` is only the
/// standard text; hyper keeps a non-standard phrase (PVE's error message) in the response's
/// extensions as `ReasonPhrase` (and none when the phrase is the standard one).
fn reason_phrase(resp: &reqwest::Response) -> String {
    match resp.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(r) => String::from_utf8_lossy(r.as_bytes()).trim().to_string(),
        None => resp.status().canonical_reason().unwrap_or("").to_string(),
    }
}

/// A failed request without an answer: a refused certificate (typed, found in the error's
/// causes where the TLS verifier put it) or a transport failure.
fn transport_error(method: &str, path: &str, e: &reqwest::Error) -> ClientError {
    match tls_failure(e) {
        Some((failure, why)) => {
            ClientError::Tls { method: method.to_string(), path: path.to_string(), failure, message: why }
        }
        None => ClientError::Transport {
            method: method.to_string(),
            path: path.to_string(),
            connect: e.is_connect(),
            message: error_text(e),
        },
    }
}

/// The TLS verdict somewhere in `e`'s causes. rustls's error travels inside `io::Error`s
/// (tokio-rustls wraps it, reqwest's connector wraps that again), whose `source()` skips the
/// wrapped error, so an `io::Error` is opened with `get_ref` instead.
/// Returns the verdict and its text (the pin mismatch names the presented fingerprint).
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<(TlsFailure, String)> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return match r {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))
                    if o.0.downcast_ref::<PinMismatch>().is_some() =>
                {
                    Some((TlsFailure::PinMismatch, o.0.to_string()))
                }
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    Some((TlsFailure::Untrusted, r.to_string()))
                }
                _ => None,
            };
        }
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// What [`CertCheck`] fails a handshake with when the certificate is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("certificate fingerprint mismatch: the server presented {presented}, the provider pins another one")]
pub struct PinMismatch {
    pub presented: String,
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// `USER@REALM!TOKENID=SECRET` (PVE) or `USER@REALM!TOKENID:SECRET` (PBS).
    Token(Zeroizing<String>),
    /// A password login: `POST /access/ticket`, then the ticket cookie and the CSRF header.
    Password { user: String, password: Zeroizing<String> },
}

impl Credentials {
    /// root@pam with `password` (what PVE's and PBS's root-only methods need).
    pub fn root(password: &str) -> Credentials {
        Credentials::Password { user: "root@pam".into(), password: Zeroizing::new(password.to_string()) }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Password { user, .. } => write!(f, "Password({user}, <redacted>)"),
        }
    }
}

/// Where the server certificate's trust comes from.
#[derive(Clone, Debug)]
pub enum Trust {
    /// SHA-256 of the leaf certificate (DER), 32 bytes.
    Fingerprint([u8; 32]),
    /// PEM CA certificate(s).
    CaPem(String),
    /// No verification at all (labs only).
    Insecure,
    /// Nothing configured: refused. Proxmox nodes use self-signed certificates, so a system CA
    /// bundle would not help; the user must pin or name a CA.
    Unset,
}

/// How persistent a call may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Safe to repeat (GET, PUT of a full value, DELETE): retried on 5xx and connection errors.
    Idempotent,
    /// Not safe to repeat blindly: retried only when the request never reached the server.
    Once,
}

/// Retry budget: attempts and backoff between them.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 6, first_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) }
    }
}

#[derive(Default)]
struct Ticket {
    cookie: Zeroizing<String>,
    csrf: String,
}

/// Credentials with the ticket a password login got (kept until a 401).
struct Auth {
    creds: Credentials,
    ticket: Mutex<Option<Ticket>>,
}

impl Auth {
    fn new(creds: Credentials) -> Auth {
        Auth { creds, ticket: Mutex::new(None) }
    }
}

/// One Proxmox API endpoint (`https://host:port/api2/json`).
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    product: Product,
    auth: Auth,
    /// root@pam's password login, for the methods only root@pam may call ([`Product::root_only`])
    /// when `auth` is a token.
    root: Option<Auth>,
    retry: RetryPolicy,
    writes: WriteClock,
}

/// Counts the writes made through one client, so that a read shared by several resources
/// ([`crate::clients::pve::PveClient::pools_for_refresh`]) can tell whether this process changed
/// anything since it was fetched. A write counts from before its request is sent until its
/// answer is in, and the end of every task wait counts again: a task (pool create, destroy)
/// changes things after the call that started it has answered.
#[derive(Debug, Default)]
struct WriteClock {
    epoch: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicU64,
}

impl WriteClock {
    fn begin(&self) -> WriteGuard<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        self.in_flight.fetch_add(1, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
        WriteGuard(self)
    }
    fn tick(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Ends a write on drop, also when the caller's future is dropped halfway (a cancelled apply).
struct WriteGuard<'a>(&'a WriteClock);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.epoch.fetch_add(1, SeqCst);
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.base).field("product", &self.product).finish()
    }
}

/// Parses `AB:CD:…` (32 hex pairs) into bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], ClientError> {
    let hex: String = s.split(':').collect();
    let bytes = hex::decode(&hex).map_err(|_| ClientError::Config(format!("{s:?} is not a SHA-256 fingerprint")))?;
    bytes.try_into().map_err(|_| ClientError::Config(format!("{s:?} is not a SHA-256 fingerprint (32 bytes)")))
}

/// `AB:CD:…` of a certificate (what Proxmox shows as the fingerprint).
pub fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

impl ApiClient {
    /// Builds a client from the provider's settings for one API.
    pub fn from_config(product: Product, cfg: &ApiConfig) -> Result<ApiClient, ClientError> {
        let endpoint = cfg.endpoint.as_deref().ok_or_else(|| {
            ClientError::Config(format!(
                "no {} endpoint: set it in the provider block or EDGE_{}_ENDPOINT",
                product.name(),
                product.name()
            ))
        })?;
        let root = cfg.root_password.as_ref().map(|p| Credentials::root(p));
        let creds = match (&cfg.api_token, &root) {
            (Some(t), _) => Credentials::Token(Zeroizing::new(t.to_string())),
            (None, Some(r)) => r.clone(),
            (None, None) => {
                return Err(ClientError::Config(format!(
                    "no {p} credentials: set api_token or root_password in the provider block (EDGE_{p}_API_TOKEN, EDGE_{p}_ROOT_PASSWORD)",
                    p = product.name()
                )))
            }
        };
        let trust = if cfg.insecure == Some(true) {
            Trust::Insecure
        } else if let Some(fp) = &cfg.tls_fingerprint {
            Trust::Fingerprint(parse_fingerprint(fp)?)
        } else if let Some(pem) = &cfg.ca_pem {
            Trust::CaPem(pem.clone())
        } else {
            Trust::Unset
        };
        let root = root.filter(|_| cfg.api_token.is_some());
        Ok(Self::new(product, endpoint, creds, trust)?.with_root(root))
    }

    pub fn new(product: Product, endpoint: &str, creds: Credentials, trust: Trust) -> Result<ApiClient, ClientError> {
        let tls = tls_config(&trust)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        let base = format!("{}/api2/json", endpoint.trim_end_matches('/'));
        Ok(ApiClient {
            http,
            base,
            product,
            auth: Auth::new(creds),
            root: None,
            retry: RetryPolicy::default(),
            writes: WriteClock::default(),
        })
    }

    /// Where this client's writes stand: `None` while one is under way, else a number that
    /// changes with every write and task wait. Two equal stamps mean nothing was written through
    /// this client in between.
    pub(in crate::clients) fn write_stamp(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::SeqCst;
        let epoch = self.writes.epoch.load(SeqCst);
        (self.writes.in_flight.load(SeqCst) == 0).then_some(epoch)
    }

    /// Uses `root` (a root@pam password login) for the methods only root@pam may call.
    pub fn with_root(mut self, root: Option<Credentials>) -> Self {
        self.root = root.map(Auth::new);
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn product(&self) -> Product {
        self.product
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(in crate::clients) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>, Retry::Idempotent).await
    }

    /// GET with query parameters.
    pub(in crate::clients) async fn get_query<Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, Some(query), Retry::Idempotent).await
    }

    /// POST: only retried when the request never reached the server, unless `retry` says it
    /// is safe (the caller then copes with "already exists" on a repeat).
    pub(in crate::clients) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        retry: Retry,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body), retry).await
    }

    pub(in crate::clients) async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body), Retry::Idempotent).await
    }

    pub(in crate::clients) async fn delete<Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, Some(query), Retry::Idempotent).await
    }

    /// One API call with the envelope unwrapped. GET and DELETE send parameters in the query,
    /// POST and PUT as a JSON body.
    pub(in crate::clients) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Option<&B>,
        retry: Retry,
    ) -> Result<T, ClientError> {
        let _write = (method != Method::GET).then(|| self.writes.begin());
        let mut backoff = Backoff::new(self.retry.first_delay, self.retry.max_delay);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(&method, path, params).await {
                Ok(v) => {
                    return serde_json::from_value(v).map_err(|e| ClientError::Decode {
                        method: method.to_string(),
                        path: path.to_string(),
                        message: e.to_string(),
                    })
                }
                Err(e) => {
                    let again = attempt < self.retry.attempts
                        && match retry {
                            Retry::Idempotent => e.is_transient(),
                            Retry::Once => e.never_sent(),
                        };
                    if !again {
                        return Err(e);
                    }
                    tracing::debug!(%method, path, attempt, error = %e, "retrying {} call", self.product.name());
                    backoff.wait().await;
                }
            }
        }
    }

    async fn once<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        path: &str,
        params: Option<&B>,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(p) = params {
            req = if *method == Method::GET || *method == Method::DELETE { req.query(p) } else { req.json(p) };
        }
        let auth = match &self.root {
            Some(root) if self.product.root_only(method.as_str(), path) => root,
            _ => &self.auth,
        };
        req = self.authorize(auth, req, method).await?;
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| transport_error(method.as_str(), path, &e))?;
        let status = resp.status();
        let reason = reason_phrase(&resp);
        let body = resp.bytes().await.map_err(|e| transport_error(method.as_str(), path, &e))?;
        // Where a plan's time goes (TF_LOG_PROVIDER=trace): one line per call. The path only —
        // no query, body or headers, which may carry secrets.
        tracing::trace!(
            api = self.product.name(),
            %method,
            path,
            status = status.as_u16(),
            ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            "API call"
        );
        if !status.is_success() {
            if status.as_u16() == 401 {
                // A ticket may have expired: log in again on the next attempt.
                *auth.ticket.lock().await = None;
            }
            let answer = ErrorAnswer { status: status.as_u16(), reason, body: body.to_vec() };
            return Err(self.product.api_error(method.as_str(), path, &answer));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok(json.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }

    async fn authorize(
        &self,
        auth: &Auth,
        req: reqwest::RequestBuilder,
        method: &Method,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        match &auth.creds {
            Credentials::Token(t) => {
                Ok(req.header("Authorization", format!("{}{}", self.product.token_prefix(), t.as_str())))
            }
            Credentials::Password { user, password } => {
                let mut guard = auth.ticket.lock().await;
                if guard.is_none() {
                    *guard = Some(self.login(user, password).await?);
                }
                let t = guard.as_ref().ok_or_else(|| ClientError::Config("login gave no ticket".into()))?;
                let mut req = req.header("Cookie", format!("{}={}", self.product.cookie(), t.cookie.as_str()));
                if *method != Method::GET {
                    req = req.header("CSRFPreventionToken", &t.csrf);
                }
                Ok(req)
            }
        }
    }

    async fn login(&self, user: &str, password: &str) -> Result<Ticket, ClientError> {
        #[derive(serde::Deserialize)]
        struct Login {
            ticket: String,
            #[serde(rename = "CSRFPreventionToken")]
            csrf: String,
        }
        let url = format!("{}/access/ticket", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .map_err(|e| transport_error("POST", "/access/ticket", &e))?;
        let status = resp.status();
        let reason = reason_phrase(&resp);
        let body = resp.bytes().await.map_err(|e| transport_error("POST", "/access/ticket", &e))?;
        if !status.is_success() {
            let answer = ErrorAnswer { status: status.as_u16(), reason, body: body.to_vec() };
            return Err(self.product.api_error("POST", "/access/ticket", &answer));
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let l: Login = serde_json::from_value(body.get("data").cloned().unwrap_or_default()).map_err(|e| {
            ClientError::Decode { method: "POST".into(), path: "/access/ticket".into(), message: e.to_string() }
        })?;
        Ok(Ticket { cookie: Zeroizing::new(l.ticket), csrf: l.csrf })
    }
}

/// Polling of worker tasks (UPIDs), the same on PVE and PBS.
impl ApiClient {
    /// Waits until the task `upid` ends: polls its status starting at ~50 ms and backing off to
    /// ~1 s, gives up at `deadline` or when `stop` fires. A failed task's error carries the last
    /// lines of its log.
    /// Waits until task `upid` ends. `through_restart`: the task restarts the API it is polled
    /// through (cluster create, join), so errors of a restarting node
    /// ([`ClientError::is_restarting`]) mean "not yet" rather than failure.
    pub(in crate::clients) async fn wait_task(
        &self,
        upid: &str,
        deadline: tokio::time::Instant,
        stop: &tokio_util::sync::CancellationToken,
        through_restart: bool,
    ) -> Result<(), ClientError> {
        #[derive(serde::Deserialize)]
        struct Status {
            status: String,
            #[serde(default)]
            exitstatus: Option<String>,
        }
        let node = upid_node(upid)?;
        let path = format!("/nodes/{}/tasks/{}/status", segment(node), segment(upid));
        let path = &path;
        let probe = move || async move {
            let st: Status = match self.get(path).await {
                Ok(st) => st,
                Err(e) if through_restart && e.is_restarting() => return Probe::NotYet(e.to_string()),
                Err(e) => return Probe::Fail(e),
            };
            if st.status == "running" {
                return Probe::NotYet(st.status);
            }
            let exit = st.exitstatus.unwrap_or_else(|| "unknown".into());
            // PVE says "OK", PBS too; "WARNINGS: n" still succeeded.
            if exit == "OK" || exit.starts_with("WARNINGS") {
                return Probe::Ready(());
            }
            let log = self.task_log_tail(upid, 12).await;
            Probe::Fail(ClientError::TaskFailed { upid: upid.to_string(), exitstatus: exit, log })
        };
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1)).growth(3, 2);
        let result = poll_until(deadline, stop, &format!("task {upid}"), backoff, probe).await;
        // The task has changed what it changes by now (or failed halfway): reads shared before
        // it ended are stale.
        self.writes.tick();
        match result {
            Ok(()) => Ok(()),
            Err(PollError::Failed(e)) => Err(e),
            Err(PollError::Timeout { after, .. }) => Err(ClientError::Timeout { upid: upid.to_string(), after }),
            Err(PollError::Cancelled) => Err(ClientError::Cancelled { upid: upid.to_string() }),
        }
    }

    /// The last `n` lines of a task's log (best effort: empty when the log cannot be read).
    pub(in crate::clients) async fn task_log_tail(&self, upid: &str, n: usize) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default)]
            t: String,
        }
        let Ok(node) = upid_node(upid) else { return vec![] };
        let path = format!("/nodes/{}/tasks/{}/log", segment(node), segment(upid));
        let lines: Vec<Line> = match self.get_query(&path, &[("start", "0"), ("limit", "5000")]).await {
            Ok(l) => l,
            Err(_) => return vec![],
        };
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).map(|l| l.t).collect()
    }
}

/// The node a UPID ran on: `UPID:node:…`.
pub fn upid_node(upid: &str) -> Result<&str, ClientError> {
    let mut parts = upid.split(':');
    match (parts.next(), parts.next()) {
        (Some("UPID"), Some(node)) if !node.is_empty() => Ok(node),
        _ => Err(ClientError::Decode {
            method: "task".into(),
            path: upid.to_string(),
            message: "not a UPID (expected UPID:node:…)".into(),
        }),
    }
}

/// The fields set in `old` that `new` leaves out, by their API names: what an update must
/// `delete` (PVE and PBS reset a field only when told to).
pub fn removed_keys<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let names = |v: &T| match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(o)) => o.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect(),
        _ => Vec::new(),
    };
    let keep = names(new);
    names(old).into_iter().filter(|k| k != "id" && !keep.contains(k)).collect()
}

/// Percent-encodes one path segment (UPIDs hold `:` and PBS ones `\`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@' | b'!') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lenient readers for Proxmox JSON, which sends numbers and booleans as numbers, strings
/// or `true`/`false` depending on the endpoint and version.
pub mod de {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn int(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn float(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    pub fn boolean(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            Value::String(s) => match s.trim() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
    pub fn string(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(int))
    }
    pub fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(float))
    }
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(boolean))
    }
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(string))
    }
    /// Integers that may come as an array (of numbers or strings) or as one comma list.
    pub fn opt_ints<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Array(a)) => Some(a.iter().filter_map(int).collect()),
            Some(Value::String(s)) => Some(s.split(',').filter_map(|x| x.trim().parse().ok()).collect()),
            Some(v) => int(&v).map(|i| vec![i]),
            None => None,
        })
    }
    /// A flag as PVE's parameters want it: 0 or 1.
    pub fn ser_opt_flag<S: serde::Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_u8(u8::from(*b)),
            None => s.serialize_none(),
        }
    }
    /// A list that may come as a JSON array or as one string (PBS `group-filter`).
    pub fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Array(a)) => Some(a.iter().filter_map(string).collect()),
            Some(Value::String(s)) => Some(vec![s]),
            _ => None,
        })
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificate(s) of a PEM text as trust anchors (a node's or cluster's `pve-root-ca.pem`).
fn ca_roots(pem: &str) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        let c = c.map_err(|e| ClientError::Config(format!("ca_pem: {e}")))?;
        roots.add(c).map_err(|e| ClientError::Config(format!("ca_pem: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Config("ca_pem holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// What a TLS server presented in one handshake (the handshake's signature checked, the
/// certificate not yet trusted for anything).
#[derive(Clone, Debug)]
pub struct Presented {
    /// SHA-256 of the leaf, `AB:CD:…`.
    pub fingerprint: String,
    chain: Vec<CertificateDer<'static>>,
}

impl Presented {
    /// A presentation with no certificate behind it, for tests of fingerprint pins.
    #[cfg(test)]
    pub fn for_tests(fingerprint: &str) -> Presented {
        Presented { fingerprint: fingerprint.to_string(), chain: Vec::new() }
    }

    /// Whether the certificate chains to a CA of `ca_pem` and names `host` (DNS name or IP
    /// address), as a client that trusts only that CA would check it.
    pub fn verify(&self, ca_pem: &str, host: &str) -> Result<(), String> {
        let roots = ca_roots(ca_pem).map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
        let (leaf, rest) = self.chain.split_first().ok_or("no certificate presented")?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))?;
        verifier.verify_server_cert(leaf, rest, &name, &[], UnixTime::now()).map(drop).map_err(|e| e.to_string())
    }
}

/// Connects to `host:port` over TLS and returns what the server presents, without trusting it.
pub async fn probe_certificate(host: &str, port: u16, timeout: Duration) -> Result<Presented, ClientError> {
    let check = CertCheck::any();
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&check) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ClientError::Config(format!("{host:?} is not a host name or address: {e}")))?;
    let url = format!("{host}:{port}");
    let fail =
        |message: String| ClientError::Transport { method: "TLS".into(), path: url.clone(), connect: true, message };
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| fail(format!("connect: {e}")))?;
        connector.connect(name, tcp).await.map_err(|e| fail(format!("handshake: {e}")))?;
        let chain = check.seen_chain();
        let fingerprint = check.seen().ok_or_else(|| fail("no certificate presented".into()))?;
        Ok(Presented { fingerprint, chain })
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| fail(format!("connect: no answer within {timeout:?}")))?
}

fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
    let cfg = match trust {
        Trust::Fingerprint(fp) => {
            builder.dangerous().with_custom_certificate_verifier(CertCheck::pinned(*fp)).with_no_client_auth()
        }
        Trust::Insecure => builder.dangerous().with_custom_certificate_verifier(CertCheck::any()).with_no_client_auth(),
        Trust::CaPem(pem) => builder.with_root_certificates(ca_roots(pem)?).with_no_client_auth(),
        Trust::Unset => {
            return Err(ClientError::Config(
                "no way to trust the server: set tls_fingerprint (recommended, `pvenode cert info` shows it) or ca_pem"
                    .into(),
            ))
        }
    };
    Ok(cfg)
}

/// Checks a server certificate against a pin, or accepts any and remembers what it saw (used
/// to learn a node's fingerprint on first contact, and for `insecure`). Handshake signatures
/// are always verified, so the peer must hold the certificate's key.
#[derive(Debug)]
pub struct CertCheck {
    pin: Option<[u8; 32]>,
    seen: std::sync::Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl CertCheck {
    pub fn pinned(fp: [u8; 32]) -> Arc<CertCheck> {
        Arc::new(CertCheck { pin: Some(fp), seen: Default::default(), provider: provider() })
    }
    pub fn any() -> Arc<CertCheck> {
        Arc::new(CertCheck { pin: None, seen: Default::default(), provider: provider() })
    }
    /// The fingerprint of the last certificate presented.
    pub fn seen(&self) -> Option<String> {
        self.seen_chain().first().map(|c| fingerprint_of(c.as_ref()))
    }
    /// The last chain presented, leaf first.
    fn seen_chain(&self) -> Vec<CertificateDer<'static>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for CertCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint_of(end_entity.as_ref());
        let chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = chain;
        match self.pin {
            Some(pin) if <[u8; 32]>::from(Sha256::digest(end_entity.as_ref())) != pin => {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    PinMismatch { presented: fp },
                )))))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ApiErrorKind;

    #[test]
    fn fingerprints_round_trip() {
        let fp = fingerprint_of(b"hello");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(parse_fingerprint(&fp).ok(), Some(<[u8; 32]>::from(Sha256::digest(b"hello"))));
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint("zz").is_err());
    }

    #[test]
    fn credentials_never_print_secrets() {
        let c = Credentials::Token(Zeroizing::new("root@pam!t=SECRET".into()));
        assert!(!format!("{c:?}").contains("SECRET"));
        let c = Credentials::Password { user: "root@pam".into(), password: Zeroizing::new("SECRET".into()) };
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    /// A scripted HTTPS server on 127.0.0.1: one request per connection, answers by path.
    mod server {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        pub struct Server {
            pub endpoint: String,
            pub fingerprint: String,
            pub ca_pem: String,
            pub hits: Arc<Mutex<HashMap<String, usize>>>,
        }

        pub async fn start() -> Server {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            params.is_ca = rcgen::IsCa::NoCa;
            let cert = params.self_signed(&key).unwrap();
            let der = cert.der().to_vec();
            let cfg = rustls::ServerConfig::builder_with_provider(super::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
            let h = Arc::clone(&hits);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let h = Arc::clone(&h);
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let head_end = loop {
                            let Ok(n) = tls.read(&mut chunk).await else { return };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let Ok(n) = tls.read(&mut chunk).await else { return };
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let mut first = head.lines().next().unwrap_or("").split_whitespace();
                        let (method, target) =
                            (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
                        let path = target.split('?').next().unwrap_or("").to_string();
                        let n = {
                            let mut m = h.lock().unwrap();
                            let c = m.entry(format!("{method} {path}")).or_insert(0);
                            *c += 1;
                            *c
                        };
                        let header = |name: &str| {
                            head.lines().find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                        };
                        let query = target.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
                        let (status, body) = respond(&method, &path, &query, n, &header);
                        let reason = reason(&path, status);
                        let resp = format!(
                            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(resp.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
            Server {
                endpoint: format!("https://{addr}"),
                fingerprint: super::fingerprint_of(&der),
                ca_pem: cert.pem(),
                hits,
            }
        }

        /// PVE sends the error's first line as the reason phrase; everything else the standard one.
        fn reason(path: &str, status: u16) -> &'static str {
            match (path.trim_start_matches("/api2/json"), status) {
                ("/pve/old" | "/pve/new", _) => "pool 'x' not found",
                ("/cluster/config", 403) => "Permission check failed (user != root@pam)",
                (_, 200) => "OK",
                (_, 400) => "Bad Request",
                (_, 401) => "Unauthorized",
                (_, 403) => "Forbidden",
                (_, 404) => "Not Found",
                _ => "Internal Server Error",
            }
        }

        fn respond(
            method: &str,
            path: &str,
            query: &str,
            n: usize,
            header: &dyn Fn(&str) -> Option<String>,
        ) -> (u16, String) {
            let p = path.trim_start_matches("/api2/json");
            // A PBS 3.4 (token `root@pam!new`) with a push job `p1`, which its sync list shows
            // only when asked for all directions.
            if header("authorization").is_some_and(|a| a.starts_with("PBSAPIToken=root@pam!new")) {
                return match (method, p, query) {
                    ("GET", "/version", _) => (200, r#"{"data":{"version":"3.4","release":"2"}}"#.into()),
                    ("POST", "/config/sync", _) => {
                        (400, "parameter verification failed - 'id': job 'p1' already exists.".into())
                    }
                    ("GET", "/config/sync", "sync-direction=all") => {
                        (200, r#"{"data":[{"id":"p1","sync-direction":"push"}]}"#.into())
                    }
                    ("GET", "/config/sync", _) => (200, r#"{"data":[]}"#.into()),
                    _ => (404, format!("Path '{path}' not found.")),
                };
            }
            match (method, p) {
                // PVE before pve-http-server 5.2.0: the text only in the reason phrase.
                ("GET", "/pve/old") => (500, r#"{"data":null}"#.into()),
                // PVE 5.2.0 and later: also in the body.
                ("GET", "/pve/new") => (500, "{\"data\":null,\"message\":\"pool 'x' not found\\n\"}".into()),
                ("POST", "/cluster/config") | ("GET", "/nodes/n1/dns") => {
                    (403, "{\"data\":null,\"message\":\"Permission check failed (user != root@pam)\\n\"}".into())
                }
                // Typed endpoints' follow-up reads.
                ("GET", "/version") => match header("authorization") {
                    Some(a) if a.starts_with("PBSAPIToken=") => {
                        (200, r#"{"data":{"version":"3.2","release":"4","repoid":"abc"}}"#.into())
                    }
                    _ => (200, r#"{"data":{"version":"8.4.2","release":"8.4","repoid":"abc"}}"#.into()),
                },
                ("GET", "/config/sync") => (200, r#"{"data":[{"id":"other","store":"a"}]}"#.into()),
                // PBS 3.2.4 knows no sync directions.
                ("POST", "/config/sync") => (
                    400,
                    "parameter verification failed - 'sync-direction': schema does not allow additional properties"
                        .into(),
                ),
                ("GET", "/nodes/n1/ceph/pool") => (200, r#"{"data":[{"pool_name":"rbd","pool":1}]}"#.into()),
                ("GET", "/nodes/n1/ceph/pool/gone/status") | ("GET", "/nodes/n1/ceph/status") => {
                    (500, r#"{"data":null}"#.into())
                }
                ("GET", "/nodes/n1/status") => (200, r#"{"data":{"uptime":5}}"#.into()),
                // PBS: the bare message under a JSON content type.
                ("GET", "/config/sync/x") => (400, "no such sync 'x'".into()),
                ("DELETE", "/config/sync/x") => (404, "job 'x' does not exist.".into()),
                ("GET", "/token") => match header("authorization").as_deref() {
                    Some("PVEAPIToken=root@pam!t=s3cret") => (200, r#"{"data":"tok"}"#.into()),
                    _ => (401, r#"{"data":null}"#.into()),
                },
                ("POST", "/access/ticket") => {
                    (200, r#"{"data":{"ticket":"PVE:root@pam:T1","CSRFPreventionToken":"C1"}}"#.into())
                }
                ("POST", "/needcsrf") => {
                    let ok = header("cookie").as_deref() == Some("PVEAuthCookie=PVE:root@pam:T1")
                        && header("csrfpreventiontoken").as_deref() == Some("C1");
                    if ok {
                        (200, r#"{"data":"ok"}"#.into())
                    } else {
                        (401, r#"{"data":null}"#.into())
                    }
                }
                ("GET", "/flaky") if n <= 2 => (500, r#"{"data":null,"message":"busy"}"#.into()),
                ("GET", "/flaky") => (200, r#"{"data":42}"#.into()),
                ("POST", "/once") => (500, r#"{"data":null}"#.into()),
                ("POST", "/bad") => (400, r#"{"data":null,"errors":{"size":"value must be <= 7"}}"#.into()),
                ("GET", p) if p.ends_with("/status") && p.contains("UPID:n1:") => {
                    if n <= 2 {
                        (200, r#"{"data":{"status":"running"}}"#.into())
                    } else if p.contains(":okjob:") {
                        (200, r#"{"data":{"status":"stopped","exitstatus":"OK"}}"#.into())
                    } else {
                        (200, r#"{"data":{"status":"stopped","exitstatus":"boom"}}"#.into())
                    }
                }
                ("GET", p) if p.ends_with("/log") => (
                    200,
                    r#"{"data":[{"n":1,"t":"starting"},{"n":2,"t":"doing"},{"n":3,"t":"TASK ERROR: boom"}]}"#.into(),
                ),
                _ => (404, r#"{"data":null}"#.into()),
            }
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy { attempts: 4, first_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) }
    }

    fn token() -> Credentials {
        Credentials::Token(Zeroizing::new("root@pam!t=s3cret".into()))
    }

    #[tokio::test]
    async fn pinned_token_client_against_a_real_tls_server() {
        let srv = server::start().await;
        let pin = parse_fingerprint(&srv.fingerprint).unwrap();
        let c =
            ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::Fingerprint(pin)).unwrap().with_retry(fast());
        let v: String = c.get("/token").await.unwrap();
        assert_eq!(v, "tok");
        // 5xx on an idempotent call: retried with backoff until it answers.
        let v: i64 = c.get("/flaky").await.unwrap();
        assert_eq!(v, 42);
        assert_eq!(srv.hits.lock().unwrap()["GET /api2/json/flaky"], 3);
        // A POST that reached the server is not repeated.
        let e = c.post::<_, serde_json::Value>("/once", &serde_json::json!({}), Retry::Once).await.unwrap_err();
        assert_eq!(e.status(), Some(500));
        assert_eq!(srv.hits.lock().unwrap()["POST /api2/json/once"], 1);
        // Parameter errors come back by name.
        let e = c.post::<_, serde_json::Value>("/bad", &serde_json::json!({"size": 9}), Retry::Once).await.unwrap_err();
        assert_eq!(e.param_errors().and_then(|m| m.get("size")).map(String::as_str), Some("value must be <= 7"));
    }

    #[tokio::test]
    async fn wrong_pin_and_ca() {
        let srv = server::start().await;
        let c = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::Fingerprint([7; 32]))
            .unwrap()
            .with_retry(fast());
        let e = c.get::<String>("/token").await.unwrap_err();
        assert!(matches!(e, ClientError::Tls { failure: TlsFailure::PinMismatch, .. }), "{e:?}");
        assert!(e.to_string().ends_with("the provider pins another one"), "{e}");
        assert!(!e.is_transient() && !e.is_unreachable(), "a pin mismatch is not retried, and not a dark site");
        assert_eq!(srv.hits.lock().unwrap().get("GET /api2/json/token"), None, "nothing was sent");
        let c = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::CaPem(srv.ca_pem.clone())).unwrap();
        assert_eq!(c.get::<String>("/token").await.unwrap(), "tok");
        // Another CA: the certificate is untrusted, which is not a pin mismatch either.
        let other = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let c = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::CaPem(other.pem())).unwrap();
        let e = c.get::<String>("/token").await.unwrap_err();
        assert!(matches!(e, ClientError::Tls { failure: TlsFailure::Untrusted, .. }), "{e:?}");
        // Nobody listening: unreachable, and worth retrying.
        let c = ApiClient::new(Product::Pve, "https://127.0.0.1:9", token(), Trust::Insecure).unwrap().with_retry(
            RetryPolicy { attempts: 1, first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(1) },
        );
        let e = c.get::<String>("/token").await.unwrap_err();
        assert!(e.is_unreachable() && e.is_transient() && e.never_sent(), "{e:?}");
    }

    #[tokio::test]
    async fn pve_errors_are_classified_by_status_and_read_from_body_or_reason_phrase() {
        let srv = server::start().await;
        let c = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::Insecure).unwrap().with_retry(fast());
        for path in ["/pve/old", "/pve/new"] {
            let e = c.get::<serde_json::Value>(path).await.unwrap_err();
            match &e {
                ClientError::Api { kind, status, message, .. } => {
                    assert_eq!((*kind, *status), (ApiErrorKind::Server, 500), "{path}");
                    // Without a body message the custom reason phrase carries the text.
                    assert_eq!(message, "pool 'x' not found", "{path}");
                }
                other => panic!("{path}: {other:?}"),
            }
            assert!(e.is_transient());
            assert_eq!(srv.hits.lock().unwrap()[&format!("GET /api2/json{path}")], 4, "a 500 on a GET is retried");
        }
        let e =
            c.post::<_, serde_json::Value>("/cluster/config", &serde_json::json!({}), Retry::Once).await.unwrap_err();
        assert!(e.is(ApiErrorKind::RootOnly), "{e:?}");
        let e = c.get::<serde_json::Value>("/nodes/n1/dns").await.unwrap_err();
        assert!(e.is(ApiErrorKind::Forbidden), "{e:?}");
        let e = c.get::<serde_json::Value>("/nothing").await.unwrap_err();
        assert!(e.is(ApiErrorKind::NotFound) && !e.is_transient(), "{e:?}");
        let e = c.post::<_, serde_json::Value>("/bad", &serde_json::json!({}), Retry::Once).await.unwrap_err();
        assert!(e.is(ApiErrorKind::InvalidParams), "{e:?}");
        // 401 from PVE's authentication layer: an empty body.
        let e = ApiClient::new(
            Product::Pve,
            &srv.endpoint,
            Credentials::Token(Zeroizing::new("x@pam!t=no".into())),
            Trust::Insecure,
        )
        .unwrap()
        .get::<String>("/token")
        .await
        .unwrap_err();
        assert!(e.is(ApiErrorKind::Unauthorized), "{e:?}");
    }

    #[tokio::test]
    async fn typed_endpoints_decide_absence_by_follow_up_reads_and_read_the_version_once() {
        use crate::clients::pbs::{JobConfig, JobKind, PbsClient, PbsFeature, SyncJob};
        use crate::clients::pve::{PveClient, PveFeature};
        use crate::clients::version::Version;
        let srv = server::start().await;
        let api = |p, creds| ApiClient::new(p, &srv.endpoint, creds, Trust::Insecure).unwrap().with_retry(fast());
        let pve = PveClient::new(api(Product::Pve, token()));
        // A 500 on the pool's status, and the pool list does not show it: gone.
        assert!(pve.pool_status("n1", "gone").await.unwrap().is_none());
        // A 500 on Ceph's status that outlives the retries while the node answers.
        let e = pve.ceph_status("n1").await.unwrap_err();
        assert!(e.is(ApiErrorKind::NotInitialized), "{e:?}");
        assert_eq!(pve.version().await.unwrap(), Version::new(8, 4, 2));
        assert!(pve.supports(PveFeature::BackupNotificationMode).await.unwrap());
        assert!(!pve.supports(PveFeature::PerPoolStatistics).await.unwrap());
        let pbs = PbsClient::new(api(Product::Pbs, token()));
        // PBS's 400 for a missing sync job, and the list without it: absent.
        assert!(pbs.job::<SyncJob>("x").await.unwrap().is_none());
        assert!(!pbs.job_exists(JobKind::Sync, "x").await.unwrap());
        // DELETE of a missing sync job (404): done.
        pbs.job_delete(JobKind::Sync, "x").await.unwrap();
        assert_eq!(pbs.version().await.unwrap(), Version::new(3, 2, 4));
        assert!(!pbs.supports(PbsFeature::SyncDirection).await.unwrap());
        assert!(pbs.supports(PbsFeature::LocalSync).await.unwrap());
        assert_eq!(srv.hits.lock().unwrap()["GET /api2/json/version"], 2, "once per client");
        // 3.2: the sync list as it is (it takes no parameters); 3.3+: all directions, so a push
        // job in the way is "already exists", and its parameter error is read from the text.
        let push = JobConfig::Sync(SyncJob {
            id: Some("p1".into()),
            sync_direction: Some("push".into()),
            ..Default::default()
        });
        let e = pbs.job_create(&push).await.unwrap_err();
        assert!(e.is(ApiErrorKind::InvalidParams), "3.2 has no such job: {e:?}");
        assert!(e.param_errors().is_some_and(|m| m.contains_key("sync-direction")), "{e:?}");
        let new = api(Product::Pbs, Credentials::Token(Zeroizing::new("root@pam!new:s".into())));
        let e = PbsClient::new(new).job_create(&push).await.unwrap_err();
        assert!(e.is(ApiErrorKind::AlreadyExists), "{e:?}");
        assert_eq!(e.param_errors().and_then(|m| m.get("id")).map(String::as_str), Some("job 'p1' already exists."));
    }

    #[tokio::test]
    async fn pbs_error_bodies_are_text_under_a_json_content_type() {
        let srv = server::start().await;
        let c = ApiClient::new(Product::Pbs, &srv.endpoint, token(), Trust::Insecure).unwrap().with_retry(fast());
        let e = c.get::<serde_json::Value>("/config/sync/x").await.unwrap_err();
        match &e {
            ClientError::Api { kind, status, message, .. } => {
                assert_eq!((*kind, *status), (ApiErrorKind::InvalidParams, 400));
                assert_eq!(message, "no such sync 'x'", "the body, not 'Bad Request'");
            }
            other => panic!("{other:?}"),
        }
        let e = c.delete::<_, serde_json::Value>("/config/sync/x", &()).await.unwrap_err();
        assert!(e.is(ApiErrorKind::NotFound), "{e:?}");
        assert!(e.to_string().ends_with("job 'x' does not exist."), "{e}");
    }

    #[tokio::test]
    async fn ticket_login_sends_cookie_and_csrf() {
        let srv = server::start().await;
        let creds = Credentials::Password { user: "root@pam".into(), password: Zeroizing::new("pw".into()) };
        let c = ApiClient::new(Product::Pve, &srv.endpoint, creds, Trust::Insecure).unwrap().with_retry(fast());
        let v: String = c.post("/needcsrf", &serde_json::json!({}), Retry::Once).await.unwrap();
        assert_eq!(v, "ok");
        let _: String = c.post("/needcsrf", &serde_json::json!({}), Retry::Once).await.unwrap();
        assert_eq!(srv.hits.lock().unwrap()["POST /api2/json/access/ticket"], 1, "the ticket is reused");
    }

    #[tokio::test]
    async fn task_wait_polls_and_reports_the_log() {
        let srv = server::start().await;
        let c = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::Insecure).unwrap().with_retry(fast());
        let stop = tokio_util::sync::CancellationToken::new();
        let far = tokio::time::Instant::now() + Duration::from_secs(30);
        c.wait_task("UPID:n1:0001:0002:0003:okjob:x:root@pam:", far, &stop, false).await.unwrap();
        let e = c.wait_task("UPID:n1:0001:0002:0003:bad:x:root@pam:", far, &stop, false).await.unwrap_err();
        match e {
            ClientError::TaskFailed { exitstatus, log, .. } => {
                assert_eq!(exitstatus, "boom");
                assert_eq!(log.last().map(String::as_str), Some("TASK ERROR: boom"));
            }
            other => panic!("{other}"),
        }
        // A deadline that passes while the task runs.
        let soon = tokio::time::Instant::now() + Duration::from_millis(1);
        let e = c.wait_task("UPID:n1:0001:0002:0003:slow:y:root@pam:", soon, &stop, false).await.unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        // Terraform's stop signal.
        stop.cancel();
        let e = c.wait_task("UPID:n1:0001:0002:0003:slow:z:root@pam:", far, &stop, false).await.unwrap_err();
        assert!(matches!(e, ClientError::Cancelled { .. }), "{e}");
        assert!(upid_node("nope").is_err());
    }

    #[tokio::test]
    async fn refreshes_share_a_pool_list_until_the_client_writes() {
        let srv = server::start().await;
        let api = ApiClient::new(Product::Pve, &srv.endpoint, token(), Trust::Insecure).unwrap().with_retry(fast());
        let pve = crate::clients::pve::PveClient::new(api);
        let lists = || srv.hits.lock().unwrap().get("GET /api2/json/nodes/n1/ceph/pool").copied().unwrap_or(0);
        // Five pools refreshed at once: one list.
        let all = futures::future::join_all((0..5).map(|_| pve.pools_for_refresh("n1"))).await;
        assert!(all.iter().all(|l| l.as_ref().is_ok_and(|l| l[0].pool_name.as_deref() == Some("rbd"))));
        assert_eq!(lists(), 1);
        // A write through this client, failed or not, ends the sharing; so does a task's end.
        let _ = pve.pool_update("n1", "rbd", &crate::clients::pve::PoolUpdate::default()).await;
        pve.pools_for_refresh("n1").await.unwrap();
        pve.pools_for_refresh("n1").await.unwrap();
        assert_eq!(lists(), 2, "read again after the write, then shared");
        let far = tokio::time::Instant::now() + Duration::from_secs(30);
        let stop = tokio_util::sync::CancellationToken::new();
        pve.wait_task("UPID:n1:0001:0002:0003:okjob:s:root@pam:", far, &stop).await.unwrap();
        pve.pools_for_refresh("n1").await.unwrap();
        assert_eq!(lists(), 3, "read again after the task ended");
        // The list that decides a write is never the shared one.
        pve.pools("n1").await.unwrap();
        assert_eq!(lists(), 4);
    }

    #[test]
    fn no_trust_is_refused() {
        assert!(tls_config(&Trust::Unset).is_err());
        assert!(tls_config(&Trust::CaPem("nothing".into())).is_err());
        assert!(tls_config(&Trust::Insecure).is_ok());
    }
}
