//! Shared by the fleet tests: the real `terraform`, and a static file server standing in for the
//! hub's tree (any static server or object store serves it).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub fn terraform() -> PathBuf {
    let p = std::env::var_os("EDGE_TERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/terraform"));
    assert!(p.is_file(), "{} missing: run scripts/install-deps.sh", p.display());
    p
}

/// What a counting server sent for one path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub hits: usize,
    /// Body bytes written to the client.
    pub bytes: u64,
}

pub type ServedLog = Arc<Mutex<BTreeMap<String, Served>>>;

/// A static file server over `root` that counts requests and body bytes sent per path (what
/// crossed the "WAN").
pub fn serve(root: PathBuf) -> (String, ServedLog) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let log: ServedLog = Arc::default();
    let h = log.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut hdr = String::new();
                if r.read_line(&mut hdr).map(|n| n == 0).unwrap_or(true) || hdr == "\r\n" {
                    break;
                }
            }
            h.lock().expect("log").entry(path.clone()).or_default().hits += 1;
            let mut conn = r.into_inner();
            let file = root.join(path.trim_start_matches('/'));
            let Ok(b) = std::fs::read(&file) else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len());
            if conn.write_all(head.as_bytes()).is_err() {
                continue;
            }
            // In pieces, each counted before it is written (so a client that has read the body
            // sees the count complete); a client that stops reading early is charged roughly
            // what it was sent, not the whole file.
            for piece in b.chunks(64 * 1024) {
                h.lock().expect("log").entry(path.clone()).or_default().bytes += piece.len() as u64;
                if conn.write_all(piece).is_err() {
                    break;
                }
            }
        }
    });
    (url, log)
}

/// Total body bytes a counting server sent for paths starting with `prefix`.
pub fn served_bytes(log: &ServedLog, prefix: &str) -> u64 {
    log.lock().expect("log").iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, s)| s.bytes).sum()
}
