//! SHA-256 hashes as Nix prints them (`sha256:<nixbase32>`), and the NAR hash of a path
//! (what `nix hash path` and a narinfo's `NarHash` report).

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use base64::Engine;

use crate::nar::{self, NarError, NarSink};
use crate::nixbase32;

/// A SHA-256 digest. Displays as `sha256:<nixbase32>`, Nix's form in narinfo files and fingerprints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hash(pub [u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashParseError {
    #[error("hash {0:?} is not SHA-256 (expected sha256:<nixbase32|hex> or sha256-<base64>)")]
    Algorithm(String),
    #[error("hash {0:?} has a bad encoding or length")]
    Encoding(String),
}

impl Sha256Hash {
    pub fn digest(data: &[u8]) -> Self {
        let mut h = Sha256Stream::default();
        h.update(data);
        h.finalize()
    }
    pub fn to_nixbase32(&self) -> String {
        nixbase32::encode(&self.0)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// SRI form, the default output of `nix hash path` in Nix 2.8.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(self.0))
    }
    /// Parse a bare digest in any of Nix's encodings (nixbase32, hex, base64), told apart by length.
    pub fn parse_bare(s: &str) -> Result<Self, HashParseError> {
        let bad = || HashParseError::Encoding(s.to_string());
        let v = match s.len() {
            52 => nixbase32::decode(s).map_err(|_| bad())?,
            64 => hex::decode(s).map_err(|_| bad())?,
            44 => base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let a: [u8; 32] = v.try_into().map_err(|_| bad())?;
        Ok(Self(a))
    }
}

impl fmt::Display for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_nixbase32())
    }
}

impl fmt::Debug for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("sha256:") {
            Self::parse_bare(rest)
        } else if let Some(rest) = s.strip_prefix("sha256-") {
            let v = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| HashParseError::Encoding(s.to_string()))?;
            Ok(Self(v.try_into().map_err(|_| HashParseError::Encoding(s.to_string()))?))
        } else {
            Err(HashParseError::Algorithm(s.to_string()))
        }
    }
}

impl serde::Serialize for Sha256Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Streaming SHA-256. `ring`'s implementation (BoringSSL assembly with SHA-NI / AVX2 paths,
/// picked at run time) measured ~8% faster than the `sha2` crate here, and hashing is the
/// critical path of a NAR hash.
#[derive(Clone)]
pub struct Sha256Stream(ring::digest::Context);

impl Default for Sha256Stream {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256Stream {
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b)
    }
    pub fn finalize(self) -> Sha256Hash {
        let d = self.0.finish();
        let mut a = [0u8; 32];
        a.copy_from_slice(d.as_ref());
        Sha256Hash(a)
    }
}

/// A `Write` sink that hashes everything written to it.
#[derive(Default)]
pub struct HashWriter {
    hasher: Sha256Stream,
    count: u64,
}

impl HashWriter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn finish(self) -> (Sha256Hash, u64) {
        (self.hasher.finalize(), self.count)
    }
    /// The hash so far, leaving this writer usable.
    pub fn clone_finish(&self) -> (Sha256Hash, u64) {
        (self.hasher.clone().finalize(), self.count)
    }
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Small NAR tokens are batched by this buffer; big file chunks bypass it (BufWriter passes
/// writes larger than its capacity straight through).
const SMALL_WRITES: usize = 64 * 1024;

/// Block size handed to the hashing thread.
const BLOCK: usize = nar::CHUNK;
/// Blocks in flight: bounds memory (a few MiB, whatever the input size).
const IN_FLIGHT: usize = 4;

/// A NAR sink that hashes on a second thread, so reading files (syscalls, page-cache copies)
/// overlaps with SHA-256 instead of taking turns with it. File-content buffers are handed over
/// without copying; small NAR tokens are gathered into blocks. Memory stays at a few blocks.
pub struct ThreadedHasher {
    cur: Vec<u8>,
    fill: usize,
    tx: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<(Sha256Hash, u64)>>,
}

/// Chunks smaller than this are copied into the current block rather than sent on their own
/// (one channel message per small file would cost more than the copy).
const HANDOFF_MIN: usize = 64 * 1024;

impl Default for ThreadedHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadedHasher {
    pub fn new() -> Self {
        Self::with_block(BLOCK)
    }
    pub fn with_block(block: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(IN_FLIGHT);
        let (free_tx, free) = std::sync::mpsc::channel::<Vec<u8>>();
        let worker = std::thread::spawn(move || {
            let mut h = HashWriter::new();
            for (b, n) in rx {
                h.hasher.update(&b[..n]);
                h.count += n as u64;
                // Hand the buffer back for reuse; the writer may already be gone.
                let _ = free_tx.send(b);
            }
            h.finish()
        });
        Self { cur: vec![0u8; block], fill: 0, tx: Some(tx), free, worker: Some(worker) }
    }

    /// A free buffer of BLOCK bytes: a returned one if any, else a new one. Allocation is
    /// bounded because buffers only go missing while queued (at most IN_FLIGHT) or hashed.
    fn spare(&mut self) -> Vec<u8> {
        match self.free.try_recv() {
            Ok(v) => v,
            Err(_) => vec![0u8; self.cur.len()],
        }
    }

    fn send(&mut self, buf: Vec<u8>, n: usize) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::other("hasher already finished"))?;
        tx.send((buf, n)).map_err(|_| io::Error::other("hashing thread stopped"))
    }

    fn flush_cur(&mut self) -> io::Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let next = self.spare();
        let full = std::mem::replace(&mut self.cur, next);
        let n = std::mem::take(&mut self.fill);
        self.send(full, n)
    }

    pub fn finish(mut self) -> io::Result<(Sha256Hash, u64)> {
        self.flush_cur()?;
        self.tx = None; // closes the channel: the worker drains and returns
        let worker = self.worker.take().ok_or_else(|| io::Error::other("hasher already finished"))?;
        worker.join().map_err(|_| io::Error::other("hashing thread panicked"))
    }
}

impl NarSink for ThreadedHasher {
    fn put(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            let n = (self.cur.len() - self.fill).min(b.len());
            self.cur[self.fill..self.fill + n].copy_from_slice(&b[..n]);
            self.fill += n;
            b = &b[n..];
            if self.fill == self.cur.len() {
                self.flush_cur()?;
            }
        }
        Ok(())
    }

    fn put_chunk(&mut self, buf: Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
        if n < HANDOFF_MIN || buf.len() != self.cur.len() {
            self.put(&buf[..n])?;
            return Ok(buf);
        }
        self.flush_cur()?; // keep byte order: pending tokens go first
        self.send(buf, n)?;
        Ok(self.spare())
    }
}

impl Drop for ThreadedHasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// NAR hash and NAR size of a path, exactly as `nix hash path` / `nix path-info` report them.
pub fn nar_hash(path: &Path) -> Result<(Sha256Hash, u64), NarError> {
    nar_hash_with(path, use_hash_thread())
}

/// [`nar_hash`] with the threading choice made by the caller.
pub fn nar_hash_with(path: &Path, threaded: bool) -> Result<(Sha256Hash, u64), NarError> {
    if threaded {
        let mut h = ThreadedHasher::new();
        nar::dump_into_with(path, &mut h, BLOCK)?;
        return h.finish().map_err(NarError::Write);
    }
    let mut h = HashWriter::new();
    nar::dump_into_with(path, &mut nar::WriteSink(&mut h), INLINE_CHUNK)?;
    Ok(h.finish())
}

/// Read size when hashing inline: small enough that the page-cache copy is still in L2 when
/// the hasher reads it.
const INLINE_CHUNK: usize = 128 * 1024;

/// A second hashing thread only pays when a core is idle: it costs ~10% more CPU (hand-off,
/// cache misses), which on a saturated machine is lost wall time. Measured on 2 shared cores:
/// idle → threaded wins on wall time; load ≥ cores → inline wins. `EDGE_IMAGE_HASH_THREADS=1|2`
/// overrides the guess.
fn use_hash_thread() -> bool {
    match std::env::var("EDGE_IMAGE_HASH_THREADS").ok().as_deref() {
        Some("1") => return false,
        Some("2") => return true,
        _ => {}
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores < 2 {
        return false;
    }
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()))
        .unwrap_or(0.0);
    load + 1.0 <= cores as f64
}

/// SHA-256 and size of a file, read as it streams (images are 1–2 GB: never read whole).
pub fn sha256_file(path: &Path) -> std::io::Result<(Sha256Hash, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = HashWriter::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finish())
}

/// For a regular file: NAR hash, NAR size, plain sha256 and size, all from one read.
pub fn file_hashes(path: &Path) -> Result<FileHashes, NarError> {
    let mut plain = Sha256Stream::default();
    let mut size = 0u64;
    let mut w = BufWriter::with_capacity(SMALL_WRITES, HashWriter::new());
    nar::dump_file_tee(path, &mut w, &mut |b: &[u8]| {
        plain.update(b);
        size += b.len() as u64;
    })?;
    let (nar_hash, nar_size) = w.into_inner().map_err(|e| NarError::Write(e.into_error()))?.finish();
    Ok(FileHashes { nar_hash, nar_size, sha256: plain.finalize(), size })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHashes {
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    pub sha256: Sha256Hash,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threaded hasher (buffer hand-off for big chunks, copies for small ones) hashes
    /// exactly the bytes `dump_path` writes, in order.
    #[test]
    fn threaded_hash_equals_plain_nar_hash() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        std::fs::create_dir(&root).unwrap();
        let big: Vec<u8> = (0..(3 * nar::CHUNK + 12345)).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(root.join("big"), &big).unwrap();
        for i in 0..50 {
            std::fs::write(root.join(format!("s{i}")), &big[..i * 997]).unwrap();
        }
        std::fs::write(root.join("mid"), &big[..nar::CHUNK]).unwrap();
        let mut nar_bytes = Vec::new();
        let n = nar::dump_path(&root, &mut nar_bytes).unwrap();
        for threaded in [false, true] {
            assert_eq!(nar_hash_with(&root, threaded).unwrap(), (Sha256Hash::digest(&nar_bytes), n));
        }
    }

    #[test]
    fn parse_forms() {
        let h = Sha256Hash::digest(b"abc");
        for s in [h.to_string(), format!("sha256:{}", h.to_hex()), h.to_sri()] {
            assert_eq!(s.parse::<Sha256Hash>().unwrap(), h, "{s}");
        }
        assert!("md5:abc".parse::<Sha256Hash>().is_err());
        assert!("sha256:xyz".parse::<Sha256Hash>().is_err());
    }
}
