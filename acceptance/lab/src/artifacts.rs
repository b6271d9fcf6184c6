//! Plain-HTTP static file server for the artifact directory (the store's pull source:
//! signed manifests, images, a Nix binary cache), so virtual-media URLs really resolve.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::http::{Handler, Req, Resp};

pub fn handler(root: PathBuf) -> Handler {
    let root = Arc::new(root);
    Arc::new(move |req: Req| {
        let root = Arc::clone(&root);
        Box::pin(async move { Some(serve_file(&root, &req).await) })
    })
}

/// Maps a URL path into `root`, refusing `..` and absolute components.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = crate::schema::pct_decode(url_path);
    let mut p = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(x) => p.push(x),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(p)
}

async fn serve_file(root: &Path, req: &Req) -> Resp {
    let text = |status: u16, msg: &str| Resp {
        status,
        reason: None,
        content_type: "text/plain",
        headers: vec![],
        body: msg.as_bytes().to_vec(),
    };
    if req.method != "GET" && req.method != "HEAD" {
        return text(405, "method not allowed\n");
    }
    let Some(path) = resolve(root, &req.path) else {
        return text(400, "bad path\n");
    };
    if path.is_dir() {
        let mut names = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&path) {
            for e in rd.flatten() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        return Resp {
            status: 200,
            reason: None,
            content_type: "text/plain",
            headers: vec![],
            body: (names.join("\n") + "\n").into_bytes(),
        };
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let ct = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => "application/json",
                Some("narinfo") => "text/x-nix-narinfo",
                Some("iso") => "application/octet-stream",
                _ => "application/octet-stream",
            };
            let len = bytes.len();
            let body = if req.method == "HEAD" { Vec::new() } else { bytes };
            Resp {
                status: 200,
                reason: None,
                content_type: ct,
                headers: vec![("content-length".into(), len.to_string())],
                body,
            }
        }
        Err(_) => text(404, "not found\n"),
    }
}

/// sha256 of a file the artifact server serves at `url` (None if it is not ours / missing).
pub fn sha256_of_url(root: &Path, endpoint: &str, url: &str) -> Option<String> {
    let rest = url.strip_prefix(endpoint)?;
    let path = resolve(root, rest.split('?').next().unwrap_or(rest))?;
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(Sha256::digest(&bytes)))
}
