//! The protocol boundary, like the Go framework's `internal/`: handshake and AutoMTLS, the gRPC
//! services (provider, controller, stdio, health), the DynamicValue codec and wire conversions.

pub mod codec;
pub mod handshake;
pub mod logging;
pub mod server;
pub mod tls;
pub mod wire;

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt as _;
use tfplugin_proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use tfplugin_proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use tfplugin_proto::plugin::{Empty, StdioData};
use tfplugin_proto::tfplugin6::provider_server::ProviderServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{error, info, warn};

use crate::framework::verbs::DynEphemeral;
use crate::framework::Catalog;
use handshake::{HandshakeError, ListenSpec};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("could not listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("no free port in PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT ({0}..={1})")]
    NoFreePort(u16, u16),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// How the server is started: by Terraform (handshake + AutoMTLS) or by hand for debugging.
pub enum Mode {
    Terraform,
    /// `--debug`: no cookie, no TLS; prints `TF_REATTACH_PROVIDERS` for the user to export.
    Debug,
}

/// Serves the provider until Terraform shuts it down.
pub async fn serve(mode: Mode, catalog: Catalog) -> Result<(), ServeError> {
    let env = |k: &str| std::env::var(k).ok();
    if matches!(mode, Mode::Terraform) {
        handshake::check_env(&env)?;
    }
    let tls = match (&mode, env("PLUGIN_CLIENT_CERT")) {
        (Mode::Terraform, Some(pem)) if !pem.trim().is_empty() => Some(tls::auto_mtls(&pem)?),
        _ => None,
    };
    let spec = match mode {
        Mode::Debug => ListenSpec::from_env(&|k| if k == "PLUGIN_TRANSPORT" { None } else { env(k) })?,
        Mode::Terraform => ListenSpec::from_env(&env)?,
    };
    let (listener, network, addr) = listen(&spec).await?;

    let stop = CancellationToken::new();
    let shutdown = CancellationToken::new();
    let (incoming_tx, incoming_rx) = mpsc::channel::<Result<Conn, std::io::Error>>(16);
    let acceptor = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
    tokio::spawn(accept_loop(listener, acceptor, incoming_tx, shutdown.clone()));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;

    let ephemeral = catalog.ephemeral_resources.clone();
    let provider = server::EdgeProvider::new(catalog, stop.clone());
    let controller = Controller { shutdown: shutdown.clone(), ephemeral };
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(GrpcControllerServer::new(controller))
        .add_service(GrpcStdioServer::new(Stdio { shutdown: shutdown.clone() }))
        .add_service(
            ProviderServer::new(provider).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20),
        );

    match mode {
        Mode::Terraform => {
            let line = handshake::handshake_line(network, &addr, tls.as_ref().map(|t| t.cert_der.as_slice()));
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Mode::Debug => {
            let reattach = serde_json::json!({
                "registry.terraform.io/edgeform/edge": {
                    "Protocol": "grpc",
                    "ProtocolVersion": 6,
                    "Pid": std::process::id(),
                    "Test": true,
                    "Addr": { "Network": network, "String": addr },
                }
            });
            println!(
                "Provider started. To attach Terraform, set in your shell:\n\n\tTF_REATTACH_PROVIDERS='{reattach}'\n"
            );
        }
    }
    info!(network, addr = %addr, mtls = tls.is_some(), "serving");

    let signals = watch_signals(shutdown.clone(), stop.clone());
    let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming_rx);
    let result = router.serve_with_incoming_shutdown(incoming, shutdown.cancelled()).await;
    signals.abort();
    if let ListenSpec::Unix(path) = &spec {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    result.map_err(ServeError::from)
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

async fn listen(spec: &ListenSpec) -> Result<(Listener, &'static str, String), ServeError> {
    match spec {
        ListenSpec::Unix(path) => {
            let l = tokio::net::UnixListener::bind(path)
                .map_err(|source| ServeError::Listen { addr: path.display().to_string(), source })?;
            Ok((Listener::Unix(l), "unix", path.display().to_string()))
        }
        ListenSpec::Tcp { min, max } => {
            for port in *min..=*max {
                if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    return Ok((Listener::Tcp(l), "tcp", format!("127.0.0.1:{port}")));
                }
            }
            Err(ServeError::NoFreePort(*min, *max))
        }
    }
}

/// One accepted connection, plain or TLS, over a unix socket or TCP.
pub struct Conn(Pin<Box<dyn Io>>);
trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}
impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf)
    }
}
impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_shutdown(cx)
    }
}

async fn accept_loop(
    listener: Listener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<Result<Conn, std::io::Error>>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted: std::io::Result<Pin<Box<dyn Io>>> = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = async {
                match &listener {
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::pin(s) as Pin<Box<dyn Io>>),
                    Listener::Tcp(l) => l.accept().await.map(|(s, _)| Box::pin(s) as Pin<Box<dyn Io>>),
                }
            } => r,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        let tx = tx.clone();
        let acceptor = acceptor.clone();
        // Handshake off the accept loop, so one slow client cannot hold up the next.
        tokio::spawn(async move {
            let conn = match acceptor {
                None => Ok(Conn(stream)),
                Some(a) => a.accept(stream).await.map(|s| Conn(Box::pin(s))),
            };
            match conn {
                Ok(c) => {
                    let _ = tx.send(Ok(c)).await;
                }
                Err(e) => warn!(error = %e, "TLS handshake refused"),
            }
        });
    }
}

/// SIGTERM ends the server; SIGINT is left to Terraform, which forwards a graceful stop
/// (StopProvider) — as go-plugin plugins do. If Terraform itself dies, the kernel sends us
/// SIGTERM (parent-death signal), so no provider outlives it.
fn watch_signals(shutdown: CancellationToken, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    info!("SIGTERM: stopping");
                    stop.cancel();
                    shutdown.cancel();
                    return;
                }
                _ = int.recv() => info!("SIGINT ignored: Terraform stops providers itself"),
            }
        }
    })
}

struct Controller {
    shutdown: CancellationToken,
    /// Closed at shutdown: what Terraform opened and never closed.
    ephemeral: Vec<Arc<dyn DynEphemeral>>,
}

/// How long shutdown may spend closing ephemeral resources Terraform left open (Terraform waits
/// for the shutdown call, then gives the process two seconds to exit).
const LEFTOVER_BUDGET: Duration = Duration::from_secs(10);

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _r: tonic::Request<Empty>) -> Result<tonic::Response<Empty>, tonic::Status> {
        info!("GRPCController.Shutdown");
        // Before answering: Terraform waits for the answer, then gives the process 2 s to exit.
        let leftovers = async {
            for e in &self.ephemeral {
                let (closed, tried) = e.close_leftovers().await;
                if tried > 0 {
                    info!(ephemeral = e.type_name(), closed, tried, "closed what Terraform left open");
                }
            }
        };
        if tokio::time::timeout(LEFTOVER_BUDGET, leftovers).await.is_err() {
            warn!("gave up closing ephemeral resources Terraform left open; they expire by themselves");
        }
        self.shutdown.cancel();
        Ok(tonic::Response::new(Empty {}))
    }
}

/// go-plugin's stdio stream. We never write to stdout/stderr through it (logs go to stderr
/// directly), so the stream stays open and silent until shutdown.
struct Stdio {
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = Pin<Box<dyn futures::Stream<Item = Result<StdioData, tonic::Status>> + Send>>;
    async fn stream_stdio(
        &self,
        _r: tonic::Request<()>,
    ) -> Result<tonic::Response<Self::StreamStdioStream>, tonic::Status> {
        let shutdown = self.shutdown.clone();
        let s = futures::stream::once(async move {
            shutdown.cancelled().await;
        })
        .filter_map(|_| async { None });
        Ok(tonic::Response::new(Box::pin(s)))
    }
}
