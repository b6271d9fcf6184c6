//! Shared plumbing for the real peers (Ceph daemons, sushy-emulator): finding tools, running
//! commands with a timeout, pid files, signalling by PID and polling with backoff.
//!
//! Everything here works by PID and by paths under a peer's own directory, never by process
//! name, so several labs (and several tests) can run side by side.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What went wrong below the peer-specific layer.
#[derive(Debug, thiserror::Error)]
pub enum UtilError {
    #[error("`{tool}` not found (looked in {looked}); run scripts/install-deps.sh")]
    ToolMissing { tool: String, looked: String },
    #[error("starting `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout { cmd: String, secs: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Finds an executable: `dir/name` when a directory is given, otherwise on `PATH`.
pub fn find_tool(name: &str, dir: Option<&Path>) -> Result<PathBuf, UtilError> {
    let candidates: Vec<PathBuf> = match dir {
        Some(d) => vec![d.join(name)],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
            .unwrap_or_default(),
    };
    candidates.iter().find(|p| is_executable(p)).cloned().ok_or_else(|| UtilError::ToolMissing {
        tool: name.to_string(),
        looked: match dir {
            Some(d) => d.display().to_string(),
            None => "PATH".to_string(),
        },
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Renders a command line for error messages.
pub fn describe(program: &Path, args: &[impl AsRef<OsStr>]) -> String {
    let mut s =
        program.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| program.display().to_string());
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Runs a command to completion with piped stdout/stderr, optional stdin bytes and a hard
/// timeout (the child is killed when the timeout fires). The exit status is left to the caller.
pub async fn run_with_timeout(
    mut cmd: Command,
    label: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, UtilError> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| UtilError::Spawn { cmd: label.to_string(), source })?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failed write shows up as a failed command below; no need to report it twice.
        let _ = pipe.write_all(bytes).await;
        drop(pipe);
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(res) => res.map_err(|source| UtilError::Spawn { cmd: label.to_string(), source }),
        // Dropping the future drops the child, and kill_on_drop ends it.
        Err(_) => Err(UtilError::Timeout { cmd: label.to_string(), secs: timeout.as_secs() }),
    }
}

/// Reads a pid file (a decimal PID, possibly followed by a newline).
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes a pid file atomically (temp file + rename) so readers never see half a number.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<(), UtilError> {
    write_atomic(path, format!("{pid}\n").as_bytes())
}

/// Writes a file atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UtilError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| UtilError::Io { path: path.to_path_buf(), source })
}

/// True when `pid` is a live (non-zombie) process whose command line contains `needle`.
/// The needle (usually the peer's directory or config path) guards against PID reuse: a
/// stale pid file must never make us signal an unrelated process.
pub fn pid_alive_matching(pid: u32, needle: &str) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline.contains(needle)
        }
        Err(_) => false,
    }
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised comm, which may contain spaces) is the state.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// Sends a signal to one PID. Errors (already gone) are ignored: callers poll for exit anyway.
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; pid > 0 targets exactly one process.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Ends a set of processes: SIGTERM to all, wait (with backoff) up to `grace`, then SIGKILL to
/// whatever is left and wait up to 5 s more. Each entry is (pid, needle) as for
/// [`pid_alive_matching`]; processes whose command line no longer matches are left alone.
/// Returns the PIDs that are still alive at the end (normally none).
pub async fn terminate_all(procs: &[(u32, String)], grace: Duration) -> Vec<u32> {
    let live: Vec<&(u32, String)> = procs.iter().filter(|(pid, needle)| pid_alive_matching(*pid, needle)).collect();
    for (pid, _) in &live {
        tracing::debug!(pid, "SIGTERM");
        signal(*pid, libc::SIGTERM);
    }
    let all_gone = || live.iter().all(|(pid, _)| !pid_alive(*pid));
    if poll_until(grace, || async { all_gone().then_some(()) }).await.is_some() {
        return Vec::new();
    }
    for (pid, needle) in &live {
        if pid_alive_matching(*pid, needle) {
            tracing::warn!(pid, "did not exit on SIGTERM, sending SIGKILL");
            signal(*pid, libc::SIGKILL);
        }
    }
    let _ = poll_until(Duration::from_secs(5), || async { all_gone().then_some(()) }).await;
    live.iter().map(|(pid, _)| *pid).filter(|pid| pid_alive(*pid)).collect()
}

/// Calls `probe` with exponential backoff (25 ms doubling to 1 s) until it returns `Some` or
/// `deadline` passes; returns `None` on timeout. This is the only way peers wait for things.
pub async fn poll_until<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(25);
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return None;
        }
        tokio::time::sleep(delay.min(deadline - elapsed)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// The last `max` bytes of a log file, for error messages when a daemon fails to start.
pub fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let start = b.len().saturating_sub(max);
            String::from_utf8_lossy(&b[start..]).into_owned()
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// A fresh random UUID (v4) from the kernel, for Ceph fsid / OSD ids.
pub fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        use rand::Rng;
        let b: [u8; 16] = rand::thread_rng().gen();
        format!(
            "{}-{}-4{}-a{}-{}",
            hex::encode(&b[0..4]),
            hex::encode(&b[4..6]),
            &hex::encode(&b[6..8])[1..],
            &hex::encode(&b[8..10])[1..],
            hex::encode(&b[10..16])
        )
    })
}

/// Lists live PIDs whose command line contains `needle` (used by tests to prove nothing of a
/// peer's directory survives `stop`).
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && pid_alive_matching(*pid, needle))
        .collect()
}

/// Resident set size of a process in bytes (VmRSS), `None` when it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Asks the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
/// Racy by nature, good enough for tests and for picking a lab's default ports.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
