//! NAR (Nix ARchive): the canonical serialisation of a file system tree that Nix hashes and ships.
//!
//! Format: every token is a u64 little-endian length, the bytes, zero padding to 8. A node is
//! `( type regular [executable ""] contents <data> )`, `( type symlink target <t> )` or
//! `( type directory entry ( name <n> node <node> ) ... )` with entries sorted by name bytes.
//! The writer streams file contents through a fixed buffer, so memory does not grow with file size.
//! The reader validates a NAR (structure, ordering, padding, truncation) and can unpack it.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const MAGIC: &str = "nix-archive-1";
/// Read buffer for file contents: big enough that syscalls and hasher calls are amortised.
pub const CHUNK: usize = 1 << 20;
/// Longest non-content token we accept when reading (names, targets, keywords).
const MAX_TOKEN: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum NarError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write NAR output: {0}")]
    Write(io::Error),
    #[error("{path}: unsupported file type (only regular files, directories and symlinks can be archived)")]
    UnsupportedType { path: PathBuf },
    #[error("{path}: file changed size while being archived (expected {expected} bytes, read {read})")]
    Changed { path: PathBuf, expected: u64, read: u64 },
    #[error("NAR is truncated: stream ended at byte {offset} while reading {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("NAR is malformed at byte {offset}: {msg}")]
    Malformed { offset: u64, msg: String },
    #[error("NAR has {0} trailing bytes after the root node")]
    TrailingData(u64),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NarError + '_ {
    move |source| NarError::Io { path: path.to_path_buf(), source }
}

/// Counts bytes passed to the inner writer, so callers learn the NAR size while streaming.
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn padding(len: u64) -> usize {
    ((8 - (len % 8)) % 8) as usize
}

/// Where the NAR writer puts bytes. `put_chunk` hands over a whole read buffer so a sink that
/// can take ownership (the threaded hasher) avoids copying file contents; any `Write` works
/// through [`WriteSink`].
pub trait NarSink {
    fn put(&mut self, b: &[u8]) -> io::Result<()>;
    /// `buf[..n]` holds file contents; returns a buffer (same length) for the next read.
    fn put_chunk(&mut self, buf: Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
        self.put(&buf[..n])?;
        Ok(buf)
    }
}

/// Adapts any `Write` to [`NarSink`].
pub struct WriteSink<W>(pub W);

impl<W: Write> NarSink for WriteSink<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.0.write_all(b)
    }
}

fn write_u64<S: NarSink>(w: &mut S, n: u64) -> Result<(), NarError> {
    w.put(&n.to_le_bytes()).map_err(NarError::Write)
}

fn write_str<S: NarSink>(w: &mut S, s: &[u8]) -> Result<(), NarError> {
    write_u64(w, s.len() as u64)?;
    w.put(s).map_err(NarError::Write)?;
    w.put(&[0u8; 8][..padding(s.len() as u64)]).map_err(NarError::Write)
}

/// Write the NAR serialisation of `path` (file, directory or symlink; not followed) to `out`.
/// Returns the number of bytes written.
pub fn dump_path<W: Write>(path: &Path, out: W) -> Result<u64, NarError> {
    let mut w = WriteSink(CountingWriter::new(out));
    dump_into(path, &mut w)?;
    w.0.flush().map_err(NarError::Write)?;
    Ok(w.0.count())
}

/// Write the NAR serialisation of `path` into any [`NarSink`].
pub fn dump_into<S: NarSink>(path: &Path, sink: &mut S) -> Result<(), NarError> {
    dump_into_with(path, sink, CHUNK)
}

pub fn dump_into_with<S: NarSink>(path: &Path, sink: &mut S, chunk: usize) -> Result<(), NarError> {
    let mut buf = vec![0u8; chunk];
    write_str(sink, MAGIC.as_bytes())?;
    let ft = fs::symlink_metadata(path).map_err(io_err(path))?.file_type();
    dump_node(path, ft, sink, &mut buf)
}

/// A callback that sees a regular file's raw contents as they stream past.
pub type ContentTee<'a> = &'a mut dyn FnMut(&[u8]);

/// Stream one regular file's contents into the NAR: header, data, padding.
/// `tee` also receives the raw contents (used to compute a plain sha256 in the same pass).
pub fn dump_regular_file<S: NarSink>(
    path: &Path,
    out: &mut S,
    buf: &mut Vec<u8>,
    mut tee: Option<ContentTee<'_>>,
) -> Result<(), NarError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    // One fstat on the open file gives size and mode (no separate lstat per file).
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.file_type().is_file() {
        return Err(NarError::UnsupportedType { path: path.to_path_buf() });
    }
    let size = meta.len();
    // Nix marks a file executable when the owner-execute bit is set.
    let executable = meta.permissions().mode() & 0o100 != 0;
    write_str(out, b"(")?;
    write_str(out, b"type")?;
    write_str(out, b"regular")?;
    if executable {
        write_str(out, b"executable")?;
        write_str(out, b"")?;
    }
    write_str(out, b"contents")?;
    write_u64(out, size)?;
    // Read exactly the size we announced (as Nix does): one read() per small file, and a
    // file that shrinks while we read is an error rather than a corrupt NAR.
    let mut read: u64 = 0;
    while read < size {
        let want = (size - read).min(buf.len() as u64) as usize;
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => return Err(NarError::Changed { path: path.to_path_buf(), expected: size, read }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(NarError::Io { path: path.to_path_buf(), source: e }),
        };
        read += n as u64;
        if let Some(t) = tee.as_mut() {
            t(&buf[..n]);
        }
        *buf = out.put_chunk(std::mem::take(buf), n).map_err(NarError::Write)?;
    }
    out.put(&[0u8; 8][..padding(size)]).map_err(NarError::Write)?;
    write_str(out, b")")
}

/// NAR of a single regular file, also handing the raw contents to `tee` (one read for two hashes).
pub fn dump_file_tee<W: Write>(path: &Path, out: W, tee: &mut dyn FnMut(&[u8])) -> Result<u64, NarError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if !meta.file_type().is_file() {
        return Err(NarError::UnsupportedType { path: path.to_path_buf() });
    }
    let mut w = WriteSink(CountingWriter::new(out));
    let mut buf = vec![0u8; CHUNK];
    write_str(&mut w, MAGIC.as_bytes())?;
    dump_regular_file(path, &mut w, &mut buf, Some(tee))?;
    w.0.flush().map_err(NarError::Write)?;
    Ok(w.0.count())
}

/// `ft` comes from the parent's directory listing (d_type), so no lstat per entry.
fn dump_node<S: NarSink>(path: &Path, ft: fs::FileType, w: &mut S, buf: &mut Vec<u8>) -> Result<(), NarError> {
    if ft.is_file() {
        dump_regular_file(path, w, buf, None)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        write_str(w, b"(")?;
        write_str(w, b"type")?;
        write_str(w, b"symlink")?;
        write_str(w, b"target")?;
        write_str(w, target.as_os_str().as_bytes())?;
        write_str(w, b")")
    } else if ft.is_dir() {
        let mut entries: Vec<(std::ffi::OsString, fs::FileType)> = fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?))))
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        // Nix sorts entries by raw name bytes.
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        write_str(w, b"(")?;
        write_str(w, b"type")?;
        write_str(w, b"directory")?;
        for (name, ft) in entries {
            write_str(w, b"entry")?;
            write_str(w, b"(")?;
            write_str(w, b"name")?;
            write_str(w, name.as_bytes())?;
            write_str(w, b"node")?;
            dump_node(&path.join(&name), ft, w, buf)?;
            write_str(w, b")")?;
        }
        write_str(w, b")")
    } else {
        Err(NarError::UnsupportedType { path: path.to_path_buf() })
    }
}

/// What a validated NAR contained.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NarStats {
    pub nar_size: u64,
    pub regular_files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub content_bytes: u64,
}

struct Reader<R> {
    r: R,
    offset: u64,
    stats: NarStats,
}

impl<R: Read> Reader<R> {
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), NarError> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => return Err(NarError::Truncated { offset: self.offset, what }),
                Ok(n) => {
                    done += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NarError::Io { path: PathBuf::from("<nar stream>"), source: e }),
            }
        }
        Ok(())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, NarError> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn pad(&mut self, len: u64, what: &'static str) -> Result<(), NarError> {
        let p = padding(len);
        let mut b = [0u8; 8];
        self.fill(&mut b[..p], what)?;
        if b[..p].iter().any(|&x| x != 0) {
            return Err(self.malformed(format!("non-zero padding after {what}")));
        }
        Ok(())
    }

    fn malformed(&self, msg: String) -> NarError {
        NarError::Malformed { offset: self.offset, msg }
    }

    fn token(&mut self, what: &'static str) -> Result<Vec<u8>, NarError> {
        let len = self.u64(what)?;
        if len > MAX_TOKEN {
            return Err(self.malformed(format!("{what} is {len} bytes long (limit {MAX_TOKEN})")));
        }
        let mut v = vec![0u8; len as usize];
        self.fill(&mut v, what)?;
        self.pad(len, what)?;
        Ok(v)
    }

    fn expect(&mut self, want: &str) -> Result<(), NarError> {
        let start = self.offset;
        let got = self.token("a keyword")?;
        if got != want.as_bytes() {
            return Err(NarError::Malformed {
                offset: start,
                msg: format!("expected {want:?}, found {:?}", String::from_utf8_lossy(&got)),
            });
        }
        Ok(())
    }

    fn node(&mut self, dest: Option<&Path>, buf: &mut [u8]) -> Result<(), NarError> {
        self.expect("(")?;
        self.expect("type")?;
        let start = self.offset;
        let ty = self.token("node type")?;
        match ty.as_slice() {
            b"regular" => {
                self.stats.regular_files += 1;
                let mut tok = self.token("regular file field")?;
                let mut exec = false;
                if tok == b"executable" {
                    exec = true;
                    if !self.token("executable marker")?.is_empty() {
                        return Err(self.malformed("executable marker must be empty".into()));
                    }
                    tok = self.token("regular file field")?;
                }
                if tok != b"contents" {
                    return Err(
                        self.malformed(format!("expected \"contents\", found {:?}", String::from_utf8_lossy(&tok)))
                    );
                }
                let size = self.u64("file size")?;
                let mut file = match dest {
                    Some(d) => Some(
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(if exec { 0o555 } else { 0o444 } | 0o200)
                            .open(d)
                            .map_err(io_err(d))?,
                    ),
                    None => None,
                };
                let mut left = size;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    self.fill(&mut buf[..n], "file contents")?;
                    if let (Some(f), Some(d)) = (file.as_mut(), dest) {
                        f.write_all(&buf[..n]).map_err(io_err(d))?;
                    }
                    left -= n as u64;
                }
                self.stats.content_bytes += size;
                self.pad(size, "file contents")?;
                self.expect(")")
            }
            b"symlink" => {
                self.stats.symlinks += 1;
                self.expect("target")?;
                let target = self.token("symlink target")?;
                if target.is_empty() || target.contains(&0) {
                    return Err(self.malformed("invalid symlink target".into()));
                }
                if let Some(d) = dest {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), d).map_err(io_err(d))?;
                }
                self.expect(")")
            }
            b"directory" => {
                self.stats.directories += 1;
                if let Some(d) = dest {
                    fs::create_dir(d).map_err(io_err(d))?;
                }
                let mut prev: Option<Vec<u8>> = None;
                loop {
                    let at = self.offset;
                    let tok = self.token("directory entry")?;
                    if tok == b")" {
                        return Ok(());
                    }
                    if tok != b"entry" {
                        return Err(NarError::Malformed {
                            offset: at,
                            msg: format!("expected \"entry\" or \")\", found {:?}", String::from_utf8_lossy(&tok)),
                        });
                    }
                    self.expect("(")?;
                    self.expect("name")?;
                    let name = self.token("entry name")?;
                    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                        return Err(self.malformed(format!("invalid entry name {:?}", String::from_utf8_lossy(&name))));
                    }
                    if let Some(p) = &prev {
                        if name <= *p {
                            return Err(self.malformed(format!(
                                "entry {:?} is not sorted after {:?} (or is a duplicate)",
                                String::from_utf8_lossy(&name),
                                String::from_utf8_lossy(p)
                            )));
                        }
                    }
                    self.expect("node")?;
                    let child = dest.map(|d| d.join(std::ffi::OsStr::from_bytes(&name)));
                    self.node(child.as_deref(), buf)?;
                    self.expect(")")?;
                    prev = Some(name);
                }
            }
            other => Err(NarError::Malformed {
                offset: start,
                msg: format!("unknown node type {:?}", String::from_utf8_lossy(other)),
            }),
        }
    }
}

fn parse<R: Read>(r: R, dest: Option<&Path>) -> Result<NarStats, NarError> {
    let mut rd = Reader { r, offset: 0, stats: NarStats::default() };
    let magic = rd.token("the NAR magic")?;
    if magic != MAGIC.as_bytes() {
        return Err(NarError::Malformed { offset: 0, msg: "not a NAR (bad magic)".into() });
    }
    let mut buf = vec![0u8; CHUNK];
    rd.node(dest, &mut buf)?;
    // Anything after the root node means the stream is not what its producer meant to send.
    let mut extra = [0u8; 4096];
    let mut trailing = 0u64;
    loop {
        match rd.r.read(&mut extra) {
            Ok(0) => break,
            Ok(n) => trailing += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(NarError::Io { path: PathBuf::from("<nar stream>"), source: e }),
        }
    }
    if trailing > 0 {
        return Err(NarError::TrailingData(trailing));
    }
    rd.stats.nar_size = rd.offset;
    Ok(rd.stats)
}

/// Check that `r` holds exactly one well-formed NAR; report truncation with the byte offset.
pub fn validate<R: Read>(r: R) -> Result<NarStats, NarError> {
    parse(r, None)
}

/// Unpack a NAR into `dest` (which must not exist), validating it on the way.
pub fn restore<R: Read>(r: R, dest: &Path) -> Result<NarStats, NarError> {
    parse(r, Some(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("b"), b"hello").unwrap();
        fs::write(root.join("a"), vec![7u8; 3000]).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("b", root.join("l")).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        let mut nar = Vec::new();
        let n = dump_path(&root, &mut nar).unwrap();
        assert_eq!(n as usize, nar.len());
        let st = validate(&nar[..]).unwrap();
        assert_eq!(st.nar_size, n);
        assert_eq!((st.regular_files, st.directories, st.symlinks), (2, 2, 1));
        let out = d.path().join("out");
        restore(&nar[..], &out).unwrap();
        let mut again = Vec::new();
        dump_path(&out, &mut again).unwrap();
        assert_eq!(nar, again);
        for cut in [0, 5, 8, 100, nar.len() - 1] {
            assert!(matches!(validate(&nar[..cut]), Err(NarError::Truncated { .. })), "cut {cut}");
        }
        let mut longer = nar.clone();
        longer.push(0);
        assert!(matches!(validate(&longer[..]), Err(NarError::TrailingData(1))));
    }
}
