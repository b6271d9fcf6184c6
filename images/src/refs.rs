//! Store path references: which other store paths a path's contents mention, found the way Nix
//! finds them (searching the bytes for the 32-character hash parts of candidate paths), and
//! closures built from that.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::hash::{HashWriter, Sha256Hash};
use crate::nar::{self, NarError};
use crate::nixbase32::is_base32_char;
use crate::store_path::{StorePath, HASH_CHARS};

const H: usize = HASH_CHARS;

/// Streaming search for hash parts. Keeps the last 31 bytes so hashes split across writes are found.
pub struct RefScanner {
    wanted: HashSet<[u8; H]>,
    found: HashSet<[u8; H]>,
    tail: Vec<u8>,
}

impl RefScanner {
    pub fn new<'a>(hash_parts: impl IntoIterator<Item = &'a str>) -> Self {
        let wanted = hash_parts.into_iter().filter_map(|h| h.as_bytes().try_into().ok()).collect();
        Self { wanted, found: HashSet::new(), tail: Vec::with_capacity(2 * H) }
    }

    /// Nix's search: test the last byte of a window first and skip past non-base32 bytes.
    fn search(&mut self, s: &[u8]) {
        let mut i = 0;
        while i + H <= s.len() {
            let mut j = H;
            let mut skip = 0;
            while j > 0 {
                if !is_base32_char(s[i + j - 1]) {
                    skip = j;
                    break;
                }
                j -= 1;
            }
            if skip > 0 {
                i += skip;
                continue;
            }
            let w: [u8; H] = s[i..i + H].try_into().unwrap_or([0; H]);
            if self.wanted.contains(&w) {
                self.found.insert(w);
            }
            i += 1;
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.wanted.is_empty() {
            return;
        }
        // Windows straddling the previous write and this one.
        let head = &data[..data.len().min(H - 1)];
        let old = std::mem::take(&mut self.tail);
        let mut joint = old.clone();
        joint.extend_from_slice(head);
        self.search(&joint);
        self.search(data);
        // Remember the last H-1 bytes of everything seen so far.
        let mut tail = if data.len() >= H - 1 { Vec::new() } else { old };
        tail.extend_from_slice(data);
        let cut = tail.len().saturating_sub(H - 1);
        self.tail = tail.split_off(cut);
    }

    pub fn found(&self) -> impl Iterator<Item = &str> {
        self.found.iter().filter_map(|h| std::str::from_utf8(h).ok())
    }
}

struct Tee<'a> {
    hash: HashWriter,
    scan: &'a mut RefScanner,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.write_all(buf)?;
        self.scan.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What Nix's database records for a valid path (the parts a narinfo needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    pub references: BTreeSet<StorePath>,
}

/// Candidate store paths by hash part: the entries of a store directory.
pub fn store_candidates(store_dir: &Path) -> Result<HashMap<String, StorePath>, NarError> {
    let io_err = |source| NarError::Io { path: store_dir.to_path_buf(), source };
    let mut out = HashMap::new();
    for e in std::fs::read_dir(store_dir).map_err(io_err)? {
        let e = e.map_err(io_err)?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Build lock files share the hash part of their path; never prefer them.
        if name.ends_with(".lock") {
            continue;
        }
        if let Ok(p) = StorePath::from_base_name(&name) {
            out.insert(p.hash_part().to_string(), p);
        }
    }
    Ok(out)
}

/// NAR hash, size and references of one store object at `fs_path`, in one pass.
pub fn path_info(
    path: &StorePath,
    fs_path: &Path,
    candidates: &HashMap<String, StorePath>,
) -> Result<PathInfo, NarError> {
    let mut scan = RefScanner::new(candidates.keys().map(String::as_str));
    let mut w = BufWriter::with_capacity(64 * 1024, Tee { hash: HashWriter::new(), scan: &mut scan });
    nar::dump_path(fs_path, &mut w)?;
    let tee = w.into_inner().map_err(|e| NarError::Write(e.into_error()))?;
    let (nar_hash, nar_size) = tee.hash.finish();
    let references = scan.found().filter_map(|h| candidates.get(h).cloned()).collect();
    Ok(PathInfo { path: path.clone(), nar_hash, nar_size, references })
}

/// The closure of `roots` inside `store_dir`, computed by scanning (sorted by path).
pub fn closure(store_dir: &Path, roots: &[StorePath]) -> Result<Vec<PathInfo>, NarError> {
    let candidates = store_candidates(store_dir)?;
    let mut done: BTreeMap<StorePath, PathInfo> = BTreeMap::new();
    let mut todo: Vec<StorePath> = roots.to_vec();
    while let Some(p) = todo.pop() {
        if done.contains_key(&p) {
            continue;
        }
        let info = path_info(&p, &store_dir.join(p.base_name()), &candidates)?;
        for r in &info.references {
            if !done.contains_key(r) {
                todo.push(r.clone());
            }
        }
        done.insert(p, info);
    }
    Ok(done.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hash_across_chunks() {
        let h = "7h7qgvs4kgzsn8a6rb273saxyqh4jxlz";
        let data = format!("\0\0/nix/store/{h}-foo/bin\0xx");
        for split in 0..data.len() {
            let mut s = RefScanner::new([h]);
            s.feed(&data.as_bytes()[..split]);
            s.feed(&data.as_bytes()[split..]);
            assert_eq!(s.found().collect::<Vec<_>>(), vec![h], "split {split}");
        }
        let mut s = RefScanner::new([h]);
        for b in data.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.found().count(), 1);
        let mut s = RefScanner::new([h]);
        s.feed(b"7h7qgvs4kgzsn8a6rb273saxyqh4jxl");
        assert_eq!(s.found().count(), 0);
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A hash part anywhere in random bytes, fed in random pieces, is found; nothing else is.
        #[test]
        fn scanner_finds_embedded_hash(
            before in proptest::collection::vec(any::<u8>(), 0..200),
            after in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..450, 0..6),
        ) {
            let h = "7h7qgvs4kgzsn8a6rb273saxyqh4jxlz";
            let other = "0000000000000000000000000000000z";
            let mut data = before.clone();
            data.extend_from_slice(h.as_bytes());
            data.extend_from_slice(&after);
            let mut s = RefScanner::new([h, other]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut last = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                s.feed(&data[last..c]);
                last = c;
            }
            let found: Vec<&str> = s.found().collect();
            prop_assert!(found.contains(&h));
            let has_other = data.windows(32).any(|w| w == other.as_bytes());
            prop_assert_eq!(found.contains(&other), has_other);
        }
    }
}
