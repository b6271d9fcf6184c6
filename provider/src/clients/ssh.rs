//! SSH to nodes: a pinned host key (never trust-on-first-use), public-key authentication, and
//! fixed commands whose arguments are single-quoted words, so no value is ever read as shell
//! syntax by the remote login shell. Secrets go over the channel's stdin, never on a command line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Output beyond this is an error: the commands we run print a few lines per peer.
const MAX_OUTPUT: usize = 16 << 20;
/// Commands run at once over one connection. OpenSSH allows 10 sessions per connection
/// (`MaxSessions`): stay below it.
const MAX_CHANNELS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid pinned host key: {0}")]
    BadHostKey(String),
    #[error("invalid SSH private key: {0}")]
    BadPrivateKey(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error(
        "the host key of {addr} does not match the pinned key: expected {expected}, the server presented {presented}. \
         Refusing to connect (a changed host key can mean a reinstalled node or an attacker in between); \
         if the node was reinstalled, update host_key"
    )]
    HostKeyMismatch { addr: String, expected: String, presented: String },
    #[error("SSH authentication as {user:?} at {addr} failed: the server did not accept the private key")]
    AuthFailed { addr: String, user: String },
    #[error("{what} with {addr} timed out after {secs}s")]
    Timeout { addr: String, what: &'static str, secs: u64 },
    #[error("SSH error with {addr}: {source}")]
    Protocol { addr: String, source: russh::Error },
    #[error("argument {0} holds a NUL byte, which no remote command can receive")]
    NulInArgument(usize),
    #[error("the output of the command on {addr} exceeds {MAX_OUTPUT} bytes")]
    OutputTooLarge { addr: String },
}

/// Where and how to log in. The private key is zeroed on drop and never printed.
#[derive(Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub private_key: Zeroizing<String>,
    /// `ssh-ed25519 AAAA…` (OpenSSH public key line; a trailing comment is allowed).
    pub host_key: String,
}

impl fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"<redacted>")
            .field("host_key", &self.host_key)
            .finish()
    }
}

impl SshTarget {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses a pinned host key line (`ALGORITHM BASE64 [comment]`).
pub fn parse_host_key(line: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| {
        SshError::BadHostKey(format!("{e}: expected an OpenSSH public key line such as `ssh-ed25519 AAAAC3Nza…`"))
    })
}

/// Parses a private key as the login uses it (also what `terraform validate` checks). The
/// message never contains the key.
pub fn parse_private_key(pem: &str) -> Result<russh::keys::PrivateKey, SshError> {
    russh::keys::decode_secret_key(pem, None).map_err(|e| {
        SshError::BadPrivateKey(format!(
            "{e}: an unencrypted OpenSSH ed25519 or ECDSA key is expected (-----BEGIN OPENSSH PRIVATE KEY-----, \
             as `ssh-keygen -t ed25519 -N ''` writes it)"
        ))
    })
}

/// `SHA256:…` as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Accepts exactly the pinned key and remembers what the server showed, for the error message.
struct PinnedHost {
    pinned: PublicKey,
    /// (accepted, what the server showed), set once the server has shown its key.
    presented: Arc<Mutex<Option<(bool, String)>>>,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let (ok, shown) = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                (key.key_data() == self.pinned.key_data(), format!("{} {}", key.algorithm(), fingerprint(key)))
            }
            // Certificates are not pinned keys: refuse rather than guess which CA to trust.
            PublicKeyOrCertificate::Certificate(c) => (false, format!("a certificate ({})", c.algorithm())),
        };
        if let Ok(mut p) = self.presented.lock() {
            *p = Some((ok, shown));
        }
        Ok(ok)
    }
}

/// What a remote command did.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `None` when the command died without one (e.g. killed by a signal).
    pub status: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// One logged-in SSH connection; commands may run on it concurrently.
pub struct Session {
    handle: Handle<PinnedHost>,
    addr: String,
    channels: tokio::sync::Semaphore,
}

impl Session {
    /// Connects, checks the host key against the pin and logs in with the private key, all
    /// within `timeout`.
    pub async fn connect(target: &SshTarget, timeout: Duration) -> Result<Session, SshError> {
        let addr = target.addr();
        let pinned = parse_host_key(&target.host_key)?;
        let key = parse_private_key(&target.private_key)?;
        let config = client::Config {
            inactivity_timeout: Some(timeout.max(Duration::from_secs(30))),
            // Ask only for the pinned key's algorithm, so a server with several host keys shows
            // the one we can check.
            preferred: Preferred { key: Cow::Owned(vec![pinned.algorithm()]), ..Preferred::default() },
            ..client::Config::default()
        };
        let presented = Arc::new(Mutex::new(None));
        let handler = PinnedHost { pinned: pinned.clone(), presented: presented.clone() };
        let timed_out = || SshError::Timeout { addr: addr.clone(), what: "SSH login", secs: timeout.as_secs() };
        let deadline = tokio::time::Instant::now() + timeout;

        let tcp =
            tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((target.host.as_str(), target.port)))
                .await
                .map_err(|_| timed_out())?
                .map_err(|source| SshError::Connect { addr: addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let mut handle = match tokio::time::timeout_at(deadline, client::connect_stream(Arc::new(config), tcp, handler))
            .await
            .map_err(|_| timed_out())?
        {
            Ok(h) => h,
            Err(source) => {
                // Whatever the library calls it, a refused key is a host key mismatch.
                let seen = presented.lock().ok().and_then(|p| p.clone());
                return Err(match seen {
                    Some((false, shown)) => SshError::HostKeyMismatch {
                        addr,
                        expected: format!("{} {}", pinned.algorithm(), fingerprint(&pinned)),
                        presented: shown,
                    },
                    _ => SshError::Protocol { addr, source },
                });
            }
        };
        let proto = |source| SshError::Protocol { addr: addr.clone(), source };
        let hash = tokio::time::timeout_at(deadline, handle.best_supported_rsa_hash())
            .await
            .map_err(|_| timed_out())?
            .map_err(proto)?
            .flatten();
        let auth = tokio::time::timeout_at(
            deadline,
            handle.authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash)),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(proto)?;
        if !auth.success() {
            return Err(SshError::AuthFailed { addr, user: target.user.clone() });
        }
        tracing::debug!(%addr, user = %target.user, "ssh: logged in");
        Ok(Session { handle, addr, channels: tokio::sync::Semaphore::new(MAX_CHANNELS) })
    }

    /// Runs `argv` (every word quoted, see [`command_line`]) with `stdin` sent and closed,
    /// and collects its output, within `timeout`.
    pub async fn run(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, SshError> {
        let cmd = command_line(argv)?;
        let addr = self.addr.clone();
        // Log the program only: arguments may be long scripts, and stdin may hold secrets.
        tracing::debug!(%addr, program = argv.first().copied().unwrap_or_default(), "ssh: exec");
        tokio::time::timeout(timeout, self.exec(cmd, stdin)).await.map_err(|_| SshError::Timeout {
            addr,
            what: "remote command",
            secs: timeout.as_secs(),
        })?
    }

    async fn exec(&self, cmd: String, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let proto = |source| SshError::Protocol { addr: self.addr.clone(), source };
        // Never closed, so acquiring cannot fail.
        let _permit = self.channels.acquire().await.map_err(|_| proto(russh::Error::Disconnect))?;
        let mut ch = self.handle.channel_open_session().await.map_err(proto)?;
        ch.exec(true, cmd).await.map_err(proto)?;
        if let Some(input) = stdin {
            ch.data(input).await.map_err(proto)?;
        }
        ch.eof().await.map_err(proto)?;
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
            if out.len() + err.len() > MAX_OUTPUT {
                return Err(SshError::OutputTooLarge { addr: self.addr.clone() });
            }
        }
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Sessions shared by all resources of this provider process: a hub with 500 peers is one
/// connection (and one login) per run, not 500.
static POOL: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();

/// Everything that makes a session: a different key or pin is a different session. The private
/// key enters the map only as a hash.
fn pool_key(t: &SshTarget) -> String {
    let key_hash = hex::encode(Sha256::digest(t.private_key.as_bytes()));
    format!("{}\n{}\n{}\n{}\n{key_hash}", t.host, t.port, t.user, t.host_key.trim())
}

fn slot(t: &SshTarget) -> Slot {
    let mut pool = POOL.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    pool.entry(pool_key(t)).or_default().clone()
}

/// The shared logged-in session to `target`, connecting (once, however many callers wait)
/// when there is none or it has closed.
pub async fn shared(target: &SshTarget, timeout: Duration) -> Result<Arc<Session>, SshError> {
    let slot = slot(target);
    let mut current = slot.lock().await;
    if let Some(s) = current.as_ref().filter(|s| !s.is_closed()) {
        return Ok(s.clone());
    }
    let s = Arc::new(Session::connect(target, timeout).await?);
    *current = Some(s.clone());
    Ok(s)
}

/// Forgets `session` (it failed) if it is still the shared one for `target`.
pub async fn evict(target: &SshTarget, session: &Arc<Session>) {
    let slot = slot(target);
    let mut current = slot.lock().await;
    if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
        *current = None;
    }
}

/// Quotes one word for a POSIX shell: `'…'`, with each `'` written as `'\''`. Inside single
/// quotes nothing is special, so `$(…)`, `;`, newlines and backslashes stay literal.
pub fn quote(word: &str) -> String {
    let mut s = String::with_capacity(word.len() + 2);
    s.push('\'');
    for c in word.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

/// The command line the remote login shell runs: every word quoted.
pub fn command_line(argv: &[&str]) -> Result<String, SshError> {
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(SshError::NulInArgument(i));
    }
    Ok(argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real shell must hand every hostile word back unchanged, as one argument each.
    #[test]
    fn quoted_words_reach_the_program_verbatim() {
        let hostile = [
            "; rm -rf /tmp/nonexistent-edge-test",
            "$(touch /tmp/edge-pwned)",
            "`id`",
            "a'b\"c",
            "'",
            "line1\nline2",
            "\\",
            "",
            "*",
            "$HOME ${PATH}",
            "-n",
        ];
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend(hostile);
        let line = command_line(&argv).unwrap();
        let out = std::process::Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert!(out.status.success());
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = hostile.iter().map(|s| s.as_bytes()).chain([&b""[..]]).collect();
        assert_eq!(got, want);
        assert!(!std::path::Path::new("/tmp/edge-pwned").exists());
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert!(matches!(command_line(&["a", "b\0c"]), Err(SshError::NulInArgument(1))));
    }

    #[test]
    fn host_keys_parse_and_fingerprint() {
        // ssh-keygen -t ed25519 public key (a throwaway test key).
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH test";
        let k = parse_host_key(line).unwrap();
        assert!(fingerprint(&k).starts_with("SHA256:"));
        assert!(parse_host_key("ssh-ed25519 not-base64").is_err());
        assert!(parse_host_key("").is_err());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let t = SshTarget {
            host: "h".into(),
            port: 22,
            user: "root".into(),
            private_key: Zeroizing::new("-----BEGIN OPENSSH PRIVATE KEY-----secret".into()),
            host_key: String::new(),
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
