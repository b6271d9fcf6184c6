//! The fleet's small files — state, manifests, reports, bundle files: read as JSON, written whole.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

impl FileError {
    pub fn new(path: &Path, e: impl Display) -> Self {
        Self { path: path.to_path_buf(), message: e.to_string() }
    }
}

/// `p` parsed as JSON; `None` when there is no such file.
pub fn read_json<T: DeserializeOwned>(p: &Path) -> Result<Option<T>, FileError> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| FileError::new(p, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new(p, e)),
    }
}

/// `v` as pretty JSON with a final newline, written with [`write_atomic`].
pub fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<(), FileError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|e| FileError::new(p, e))?;
    b.push(b'\n');
    write_atomic(p, &b)
}

/// Written whole under a hidden temporary name beside it, then renamed: a crash never leaves
/// half a file, and a store never fetches half a manifest.
pub fn write_atomic(p: &Path, b: &[u8]) -> Result<(), FileError> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FileError::new(parent, e))?;
    }
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = p.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, b).map_err(|e| FileError::new(&tmp, e))?;
    std::fs::rename(&tmp, p).map_err(|e| FileError::new(p, e))
}
