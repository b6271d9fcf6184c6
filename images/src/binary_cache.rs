//! A `file://` binary cache: `nix-cache-info`, `<hashpart>.narinfo`, `nar/<filehash>.nar`.
//! The writer produces what `nix copy --from file:///DIR` substitutes from (uncompressed NARs);
//! the checker re-verifies a cached path the way a substituter does (signature, file hash,
//! NAR structure, NAR hash) and says which check failed.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::hash::{HashWriter, Sha256Hash};
use crate::keys::{PublicKey, SecretKey, SigCheck};
use crate::nar::{self, NarError};
use crate::narinfo::{NarInfo, NarInfoError};
use crate::refs::PathInfo;
use crate::store_path::{StorePath, DEFAULT_STORE_DIR};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("binary cache URL {0:?} is not supported: use file:///absolute/dir")]
    Url(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nar(#[from] NarError),
    #[error("{path}: {source}")]
    NarInfo { path: PathBuf, source: NarInfoError },
    #[error("{0} is not in the binary cache (no {1})")]
    NotCached(StorePath, PathBuf),
    #[error("{path}: signed by key {names:?}, which is not in the trusted key list")]
    UnknownKey { path: StorePath, names: Vec<String> },
    #[error("{path}: signature by trusted key {key:?} does not verify: narinfo was altered or signed with another key of that name")]
    BadSignature { path: StorePath, key: String },
    #[error("{path}: compression {0:?} is not supported by this checker", .compression)]
    Compression { path: StorePath, compression: String },
    #[error("{path}: NAR file {file} has {actual} bytes, narinfo says {expected}")]
    FileSize { path: StorePath, file: PathBuf, expected: u64, actual: u64 },
    #[error("{path}: NAR file {file} hash mismatch: narinfo says {expected}, file has {actual} (tampered or corrupt)")]
    FileHash { path: StorePath, file: PathBuf, expected: Sha256Hash, actual: Sha256Hash },
    #[error("{path}: NAR content hash mismatch: narinfo says {expected} ({expected_size} bytes), NAR has {actual} ({actual_size} bytes)")]
    NarHash { path: StorePath, expected: Sha256Hash, actual: Sha256Hash, expected_size: u64, actual_size: u64 },
}

fn io(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// `file:///dir` or a plain absolute directory → the directory.
pub fn cache_dir(url: &str) -> Result<PathBuf, CacheError> {
    let p = url.strip_prefix("file://").unwrap_or(url);
    let p = p.split('?').next().unwrap_or(p);
    if !p.starts_with('/') {
        return Err(CacheError::Url(url.to_string()));
    }
    Ok(PathBuf::from(p))
}

/// Write `contents` to `path` via a temp file and rename, so readers never see half a file.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, contents).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// How NAR files are stored in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `nar/<filehash>.nar`: fastest, what the tests and the benchmark use.
    #[default]
    None,
    /// `nar/<filehash>.nar.xz` (xz level 6, Nix's default for binary caches).
    Xz,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
        }
    }
    fn extension(self) -> &'static str {
        match self {
            Compression::None => "nar",
            Compression::Xz => "nar.xz",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "xz" => Ok(Compression::Xz),
            other => Err(format!("unsupported compression {other:?} (use none or xz)")),
        }
    }
}

pub struct BinaryCacheWriter {
    dir: PathBuf,
    compression: Compression,
}

/// Passes bytes on to `inner` and hashes them on the way.
struct HashTee<W> {
    inner: W,
    hash: HashWriter,
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        self.hash.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BinaryCacheWriter {
    /// Create (or reuse) a cache directory and write its `nix-cache-info`.
    pub fn create(dir: &Path) -> Result<Self, CacheError> {
        Self::create_with(dir, Compression::None)
    }

    pub fn create_with(dir: &Path, compression: Compression) -> Result<Self, CacheError> {
        fs::create_dir_all(dir.join("nar")).map_err(io(dir))?;
        write_atomic(
            &dir.join("nix-cache-info"),
            format!("StoreDir: {DEFAULT_STORE_DIR}\nWantMassQuery: 1\nPriority: 30\n").as_bytes(),
        )?;
        Ok(Self { dir: dir.to_path_buf(), compression })
    }

    /// Write the NAR of `fs_path` to `tmp`; returns (NAR hash, NAR size, file hash, file size).
    fn write_nar(&self, fs_path: &Path, tmp: &Path) -> Result<(Sha256Hash, u64, Sha256Hash, u64), CacheError> {
        let f = fs::File::create(tmp).map_err(io(tmp))?;
        let file = HashTee { inner: BufWriter::with_capacity(1 << 20, f), hash: HashWriter::new() };
        let (nar, file) = match self.compression {
            Compression::None => {
                let mut file = file;
                nar::dump_path(fs_path, &mut file)?;
                let (h, n) = file.hash.clone_finish();
                ((h, n), file)
            }
            Compression::Xz => {
                let mut w = HashTee { inner: xz2::write::XzEncoder::new(file, 6), hash: HashWriter::new() };
                nar::dump_path(fs_path, &mut w)?;
                let nar = w.hash.finish();
                let file = w.inner.finish().map_err(io(tmp))?;
                (nar, file)
            }
        };
        let HashTee { inner: mut buf, hash } = file;
        buf.flush().map_err(io(tmp))?;
        buf.get_ref().sync_all().map_err(io(tmp))?;
        let (fh, fsz) = hash.finish();
        Ok((nar.0, nar.1, fh, fsz))
    }

    /// Add one store path whose contents are at `fs_path`; `info` must describe those contents
    /// (its NAR hash is re-checked while the NAR is written). Signs with `key` if given.
    pub fn add(&self, info: &PathInfo, fs_path: &Path, key: Option<&SecretKey>) -> Result<NarInfo, CacheError> {
        let tmp = self.dir.join("nar").join(format!(".{}.tmp{}", info.path.hash_part(), std::process::id()));
        let (nar_hash, nar_size, file_hash, file_size) = match self.write_nar(fs_path, &tmp) {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if nar_hash != info.nar_hash || nar_size != info.nar_size {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::NarHash {
                path: info.path.clone(),
                expected: info.nar_hash,
                actual: nar_hash,
                expected_size: info.nar_size,
                actual_size: nar_size,
            });
        }
        let url = format!("nar/{}.{}", file_hash.to_nixbase32(), self.compression.extension());
        let nar_path = self.dir.join(&url);
        fs::rename(&tmp, &nar_path).map_err(io(&nar_path))?;
        let mut ni = NarInfo {
            store_path: info.path.clone(),
            url,
            compression: self.compression.name().into(),
            file_hash: Some(file_hash),
            file_size: Some(file_size),
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
            references: info.references.iter().cloned().collect(),
            deriver: None,
            sigs: Vec::new(),
            ca: None,
        };
        if let Some(k) = key {
            ni.sign(k);
        }
        write_atomic(&self.dir.join(format!("{}.narinfo", info.path.hash_part())), ni.render().as_bytes())?;
        Ok(ni)
    }
}

/// Read a path's narinfo from a cache directory.
pub fn read_narinfo(dir: &Path, path: &StorePath) -> Result<NarInfo, CacheError> {
    let f = dir.join(format!("{}.narinfo", path.hash_part()));
    let text = match fs::read_to_string(&f) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::NotCached(path.clone(), f)),
        Err(e) => return Err(CacheError::Io { path: f, source: e }),
    };
    NarInfo::parse(&text).map_err(|source| CacheError::NarInfo { path: f, source })
}

struct HashingReader<R> {
    inner: R,
    hash: HashWriter,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Verify one cached path: trusted signature over the fingerprint, NAR file size and hash,
/// NAR well-formedness (truncation), NAR hash and size.
pub fn verify_cached(dir: &Path, path: &StorePath, trusted: &[PublicKey]) -> Result<NarInfo, CacheError> {
    let ni = read_narinfo(dir, path)?;
    match ni.check_signatures(trusted) {
        SigCheck::Valid(_) => {}
        SigCheck::BadSignature(key) => return Err(CacheError::BadSignature { path: path.clone(), key }),
        SigCheck::UnknownKey(names) => return Err(CacheError::UnknownKey { path: path.clone(), names }),
    }
    check_contents(dir, &ni)?;
    Ok(ni)
}

/// Add `key`'s signature to a cached path's narinfo (e.g. one written by `nix copy --to
/// file://…`), after checking that the NAR it points to really has the hash it claims.
pub fn sign_cached(dir: &Path, path: &StorePath, key: &SecretKey) -> Result<NarInfo, CacheError> {
    let mut ni = read_narinfo(dir, path)?;
    check_contents(dir, &ni)?;
    ni.sign(key);
    write_atomic(&dir.join(format!("{}.narinfo", path.hash_part())), ni.render().as_bytes())?;
    Ok(ni)
}

/// The NAR file a narinfo points to: size, file hash, structure, NAR hash and size.
pub fn check_contents(dir: &Path, ni: &NarInfo) -> Result<(), CacheError> {
    let path = &ni.store_path;
    let compression: Compression = ni
        .compression
        .parse()
        .map_err(|_| CacheError::Compression { path: path.clone(), compression: ni.compression.clone() })?;
    let file = dir.join(&ni.url);
    let f = fs::File::open(&file).map_err(io(&file))?;
    let actual = f.metadata().map_err(io(&file))?.len();
    if let Some(expected) = ni.file_size {
        if expected != actual {
            return Err(CacheError::FileSize { path: path.clone(), file, expected, actual });
        }
    }
    let mut raw = HashingReader { inner: io::BufReader::with_capacity(1 << 20, f), hash: HashWriter::new() };
    let (parsed, got, got_size) = match compression {
        Compression::None => {
            let parsed = nar::validate(&mut raw);
            let (h, n) = raw.hash.clone_finish();
            (parsed, h, n)
        }
        Compression::Xz => {
            let mut dec = HashingReader { inner: xz2::read::XzDecoder::new(&mut raw), hash: HashWriter::new() };
            let parsed = nar::validate(&mut dec);
            let (h, n) = dec.hash.finish();
            (parsed, h, n)
        }
    };
    // The file hash covers every byte of the file, whatever the parser stopped at.
    io::copy(&mut raw, &mut io::sink()).map_err(io(&file))?;
    let (file_got, _) = raw.hash.finish();
    if let Some(expected) = ni.file_hash {
        if expected != file_got {
            return Err(CacheError::FileHash { path: path.clone(), file, expected, actual: file_got });
        }
    }
    parsed?;
    if got != ni.nar_hash || got_size != ni.nar_size {
        return Err(CacheError::NarHash {
            path: path.clone(),
            expected: ni.nar_hash,
            actual: got,
            expected_size: ni.nar_size,
            actual_size: got_size,
        });
    }
    Ok(())
}
