//! `edge-image`: sign, verify, hash and publish Nix store paths and node-image manifests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use edge_images::binary_cache::{self, BinaryCacheWriter};
use edge_images::cosign::{self, CosignPublicKey};
use edge_images::hash::{nar_hash, Sha256Hash};
use edge_images::keys::{check_signatures, PublicKey, SecretKey, SigCheck, Signature};
use edge_images::manifest::{Manifest, SignedManifest};
use edge_images::narinfo::fingerprint;
use edge_images::refs::{self, PathInfo};
use edge_images::store_path::StorePath;
use edge_images::{attest, nar, sbom};

#[derive(Parser)]
#[command(name = "edge-image", version, about = "Nix-compatible signing, hashing and publishing of node images")]
struct Cli {
    /// Store directory that store paths live in.
    #[arg(long, global = true, default_value = "/nix/store")]
    store_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate an Ed25519 key pair in Nix's `name:base64` format.
    Keygen {
        name: String,
        /// Write the secret key here (mode 0600) instead of printing it.
        #[arg(long)]
        out_secret: Option<PathBuf>,
        /// Write the public key here instead of printing it.
        #[arg(long)]
        out_public: Option<PathBuf>,
    },
    /// Print the public key of a secret key file.
    Public {
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign store paths like `nix store sign` (prints `PATH SIG`), or add a signature to a manifest.
    Sign {
        /// Secret key file (`nix key generate-secret` format).
        #[arg(long)]
        key: PathBuf,
        /// Co-sign this manifest file in place instead of signing store paths.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also print the fingerprint that was signed.
        #[arg(long)]
        fingerprint: bool,
        /// Sign the paths' narinfos in this binary cache (file:///DIR) in place, after checking
        /// their NARs (e.g. a cache written by `nix copy --to file://…?compression=none`).
        #[arg(long, conflicts_with = "manifest")]
        cache: Option<String>,
        /// With --manifest: also (re)write its SBOM attestation (signed with this key), since
        /// the co-signature changed the manifest's bytes (see `attest`).
        #[arg(long, requires = "manifest")]
        sbom: Option<PathBuf>,
        /// Where the attestation goes; default `sbom.intoto.json` beside `manifest.json`
        /// (`NAME.sbom.intoto.json` beside `NAME.json`).
        #[arg(long, requires = "sbom")]
        attestation: Option<PathBuf>,
        paths: Vec<String>,
    },
    /// Verify a manifest (+ its files), paths in a binary cache, a store path signature, or a NAR.
    Verify {
        /// Trusted public key `name:base64` (repeatable).
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
        /// File with trusted public keys, one per line or space separated (repeatable).
        #[arg(long = "trusted-key-file")]
        trusted_key_files: Vec<PathBuf>,
        /// Signed manifest to verify.
        #[arg(long, conflicts_with_all = ["cache", "nar"])]
        manifest: Option<PathBuf>,
        /// Trusted Cosign public key (PEM, P-256) (repeatable): the manifest also passes with a
        /// valid Cosign signature (`cosign sign-blob`) by one of these instead of a Nix one.
        #[arg(long = "trusted-cosign-key", requires = "manifest")]
        trusted_cosign_keys: Vec<PathBuf>,
        /// The manifest's Cosign signature file; default `MANIFEST.sig`.
        #[arg(long, requires = "trusted_cosign_keys")]
        cosign_signature: Option<PathBuf>,
        /// Directory holding the manifest's files (each checked as DIR/NAME).
        #[arg(long, requires = "manifest")]
        dir: Option<PathBuf>,
        /// One manifest file to check, as NAME=PATH (repeatable).
        #[arg(long = "file", requires = "manifest")]
        files: Vec<String>,
        /// Binary cache (file:///DIR) whose entries for PATHS are checked.
        #[arg(long, conflicts_with = "nar")]
        cache: Option<String>,
        /// Store path signature to check against PATHS (as computed from disk).
        #[arg(long = "sig")]
        sigs: Vec<String>,
        /// A NAR file to validate (structure and truncation; with --nar-hash also its hash).
        #[arg(long)]
        nar: Option<PathBuf>,
        #[arg(long, requires = "nar")]
        nar_hash: Option<String>,
        paths: Vec<String>,
    },
    /// Print the NAR hash of a path (`sha256:<nixbase32>`, as `nix hash path --base32` with prefix).
    Hash {
        path: PathBuf,
        /// Print the NAR serialisation to stdout instead.
        #[arg(long)]
        nar: bool,
        /// Print in SRI form (`sha256-<base64>`, the default of `nix hash path`).
        #[arg(long)]
        sri: bool,
        /// Also sign the hash: prints the signature over `1;<path>;<hash>;<size>;` with this key.
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Create and sign an image manifest.
    Manifest {
        /// The NixOS system store path.
        #[arg(long)]
        system: String,
        /// Image file, `NAME=PATH` or `PATH` (name = file name) (repeatable).
        #[arg(long = "file")]
        files: Vec<String>,
        #[arg(long)]
        version: String,
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Build metadata `KEY=VALUE` (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// Do not compute the system's closure (references) by scanning the store.
        #[arg(long)]
        no_closure: bool,
        /// The system's CycloneDX SBOM (`edge-image sbom`): also write its attestation, signed
        /// with the same key, to --attestation (see `attest`).
        #[arg(long)]
        sbom: Option<PathBuf>,
        /// Where the attestation goes; default `sbom.intoto.json` beside `manifest.json`
        /// (`NAME.sbom.intoto.json` beside `NAME.json`).
        #[arg(long, requires = "sbom")]
        attestation: Option<PathBuf>,
    },
    /// Sign the SBOM attestation of a manifest: an in-toto Statement (DSSE) whose subjects are the
    /// image files and manifest.json by sha256, predicate type https://cyclonedx.org/bom, the SBOM
    /// as predicate. Run it after the manifest's last co-signature (that changes its sha256).
    Attest {
        #[arg(long)]
        manifest: PathBuf,
        /// CycloneDX SBOM JSON (`edge-image sbom`).
        #[arg(long)]
        sbom: PathBuf,
        /// Secret key file (Nix format) (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Default `sbom.intoto.json` beside `manifest.json` (`NAME.sbom.intoto.json` beside `NAME.json`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a manifest's SBOM attestation: signature by a trusted key, subjects = the manifest's
    /// files and the manifest's own sha256; prints the SBOM's component count.
    VerifyAttestation {
        #[arg(long)]
        manifest: PathBuf,
        /// Default: as `attest` writes it.
        #[arg(long)]
        attestation: Option<PathBuf>,
        /// Trusted public key `name:base64` (repeatable).
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
        /// File with trusted public keys (repeatable).
        #[arg(long = "trusted-key-file")]
        trusted_key_files: Vec<PathBuf>,
        /// Distinct trusted signers required.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// Also write the attested SBOM here.
        #[arg(long)]
        sbom_out: Option<PathBuf>,
    },
    /// Verify a Cosign blob signature (`cosign sign-blob --key`, or `openssl dgst -sha256 -sign
    /// K.pem FILE | base64 -w0`) with a PEM P-256 public key, streaming FILE.
    VerifyCosign {
        /// Trusted public key, PEM (`cosign.pub`) (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Signature file (base64 DER); default `FILE.sig`.
        #[arg(long)]
        signature: Option<PathBuf>,
        file: PathBuf,
    },
    /// Print a CycloneDX 1.5 SBOM of a store path's closure.
    Sbom {
        path: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write store paths and their closures into a signed file:// binary cache.
    Publish {
        /// file:///DIR
        #[arg(long)]
        to: String,
        /// Secret key file to sign narinfos with.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Publish only the given paths, not their closures.
        #[arg(long)]
        no_closure: bool,
        /// NAR file compression: none or xz (xz is ~10x slower to write).
        #[arg(long, default_value = "none")]
        compression: binary_cache::Compression,
        paths: Vec<String>,
    },
}

fn read_secret(path: &Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read secret key file {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| format!("bad secret key file {}", path.display()))
}

fn trusted(keys: &[String], files: &[PathBuf]) -> Result<Vec<PublicKey>> {
    let mut out = Vec::new();
    for k in keys {
        for part in k.split_whitespace() {
            out.push(PublicKey::parse(part).context("bad --trusted-key")?);
        }
    }
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for part in text.split_whitespace() {
            out.push(PublicKey::parse(part).with_context(|| format!("bad key in {}", f.display()))?);
        }
    }
    if out.is_empty() {
        bail!("no trusted keys given: pass --trusted-key NAME:BASE64 or --trusted-key-file F");
    }
    Ok(out)
}

fn cosign_keys(files: &[PathBuf]) -> Result<Vec<CosignPublicKey>> {
    files
        .iter()
        .map(|f| CosignPublicKey::from_file(f).with_context(|| format!("bad Cosign public key {}", f.display())))
        .collect()
}

/// `FILE.sig`, where `cosign sign-blob --output-signature` is usually told to write.
fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Signs and writes the SBOM attestation of the manifest at `manifest` (its current bytes).
fn write_attestation(manifest: &Path, sbom_file: &Path, keys: &[&SecretKey], out: Option<PathBuf>) -> Result<()> {
    let bytes = std::fs::read(manifest).with_context(|| format!("cannot read manifest {}", manifest.display()))?;
    let sbom_text = std::fs::read(sbom_file).with_context(|| format!("cannot read SBOM {}", sbom_file.display()))?;
    let sbom: serde_json::Value = serde_json::from_slice(&sbom_text)
        .with_context(|| format!("{} is not JSON (a CycloneDX SBOM)", sbom_file.display()))?;
    let name = manifest.file_name().and_then(|n| n.to_str()).unwrap_or("manifest.json");
    let env = attest::attest(&bytes, name, &sbom, keys).with_context(|| format!("{}", manifest.display()))?;
    let out = out.unwrap_or_else(|| attest::default_path(manifest));
    std::fs::write(&out, env.to_json()).with_context(|| format!("cannot write {}", out.display()))?;
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    println!("{}: SBOM attestation of {}, signed by {}", out.display(), manifest.display(), names.join(", "));
    Ok(())
}

fn store_path(store_dir: &Path, p: &str) -> Result<StorePath> {
    let dir = store_dir.to_str().context("store dir is not UTF-8")?;
    StorePath::from_absolute_in(p, dir).with_context(|| format!("{p} is not a store path"))
}

fn path_infos(store_dir: &Path, paths: &[StorePath], closure: bool) -> Result<Vec<PathInfo>> {
    if closure {
        return refs::closure(store_dir, paths).context("computing closure");
    }
    let cands = refs::store_candidates(store_dir)?;
    paths.iter().map(|p| refs::path_info(p, &store_dir.join(p.base_name()), &cands).map_err(Into::into)).collect()
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let store_dir = cli.store_dir;
    match cli.cmd {
        Cmd::Keygen { name, out_secret, out_public } => {
            let sk = SecretKey::generate(&name)?;
            match out_secret {
                Some(f) => write_secret(&f, &sk.to_nix_string())?,
                None => println!("{}", sk.to_nix_string()),
            }
            match out_public {
                Some(f) => std::fs::write(&f, sk.public().to_string())
                    .with_context(|| format!("cannot write {}", f.display()))?,
                None => println!("{}", sk.public()),
            }
        }
        Cmd::Public { key } => println!("{}", read_secret(&key)?.public()),
        Cmd::Sign { key, manifest, fingerprint: show_fp, cache, sbom: sbom_file, attestation, paths } => {
            let sk = read_secret(&key)?;
            if let Some(m) = manifest {
                let bytes = std::fs::read(&m).with_context(|| format!("cannot read {}", m.display()))?;
                let mut sm = SignedManifest::from_json(&bytes)?;
                sm.add_signature(&sk);
                std::fs::write(&m, sm.to_json()).with_context(|| format!("cannot write {}", m.display()))?;
                println!("{}: signed by {}", m.display(), sk.name);
                if let Some(sb) = sbom_file {
                    write_attestation(&m, &sb, &[&sk], attestation)?;
                }
                return Ok(());
            }
            if paths.is_empty() {
                bail!("nothing to sign: give store paths or --manifest FILE");
            }
            let sps = paths.iter().map(|p| store_path(&store_dir, p)).collect::<Result<Vec<_>>>()?;
            if let Some(c) = cache {
                let d = binary_cache::cache_dir(&c)?;
                for p in &sps {
                    let ni = binary_cache::sign_cached(&d, p, &sk)?;
                    if show_fp {
                        println!("{}", ni.fingerprint());
                    }
                    println!("{p}: signed by {} in {}", sk.name, d.display());
                }
                return Ok(());
            }
            for info in path_infos(&store_dir, &sps, false)? {
                let refs: Vec<StorePath> = info.references.iter().cloned().collect();
                let fp = fingerprint(&info.path, &info.nar_hash, info.nar_size, &refs);
                if show_fp {
                    println!("{fp}");
                }
                println!("{} {}", info.path, sk.sign(fp.as_bytes()));
            }
        }
        Cmd::Verify {
            trusted_keys,
            trusted_key_files,
            manifest,
            trusted_cosign_keys,
            cosign_signature,
            dir,
            files,
            cache,
            sigs,
            nar: nar_file,
            nar_hash: want_hash,
            paths,
        } => {
            if let Some(f) = nar_file {
                let file = std::fs::File::open(&f).with_context(|| format!("cannot open {}", f.display()))?;
                let mut hw = edge_images::hash::HashWriter::new();
                let stats = {
                    let mut r = TeeRead { r: std::io::BufReader::with_capacity(1 << 20, file), w: &mut hw };
                    nar::validate(&mut r).with_context(|| format!("{} is not a valid NAR", f.display()))?
                };
                let (h, _) = hw.finish();
                if let Some(w) = want_hash {
                    let w: Sha256Hash = w.parse()?;
                    if w != h {
                        bail!("{}: NAR hash mismatch: expected {w}, got {h}", f.display());
                    }
                }
                println!(
                    "{}: valid NAR, {} bytes, {h} ({} files, {} dirs, {} symlinks)",
                    f.display(),
                    stats.nar_size,
                    stats.regular_files,
                    stats.directories,
                    stats.symlinks
                );
                return Ok(());
            }
            let cosign_only =
                !trusted_cosign_keys.is_empty() && trusted_keys.is_empty() && trusted_key_files.is_empty();
            let keys = if cosign_only { Vec::new() } else { trusted(&trusted_keys, &trusted_key_files)? };
            if let Some(m) = manifest {
                let bytes = std::fs::read(&m).with_context(|| format!("cannot read manifest {}", m.display()))?;
                let sm = SignedManifest::from_json(&bytes).with_context(|| format!("{}", m.display()))?;
                let man = match sm.verify(&keys) {
                    Ok(man) => {
                        println!("{}: signature OK (version {}, system {})", m.display(), man.version, man.system);
                        man
                    }
                    // Either trust path suffices: a Nix signature by a trusted key, or a Cosign one.
                    Err(nix_err) if !trusted_cosign_keys.is_empty() => {
                        let ck = cosign_keys(&trusted_cosign_keys)?;
                        let sp = cosign_signature.unwrap_or_else(|| sig_path(&m));
                        let checked = std::fs::read_to_string(&sp)
                            .map_err(|e| anyhow::anyhow!("cannot read the Cosign signature {}: {e}", sp.display()))
                            .and_then(|text| cosign::verify_bytes(&bytes, &text, &ck).map_err(Into::into));
                        let k = checked.map_err(|e| {
                            let nix = if cosign_only { String::new() } else { format!("Nix signature: {nix_err}; ") };
                            anyhow::anyhow!("{}: not trusted: {nix}Cosign signature: {e}", m.display())
                        })?;
                        let man = sm.unverified();
                        println!(
                            "{}: Cosign signature OK ({}, {}) (version {}, system {})",
                            m.display(),
                            k.id(),
                            sp.display(),
                            man.version,
                            man.system
                        );
                        man
                    }
                    Err(e) => return Err(e).with_context(|| format!("{}", m.display())),
                };
                if let Some(d) = dir {
                    man.verify_files_in(&d)?;
                    for f in &man.files {
                        println!("{}: OK", f.name);
                    }
                }
                for spec in files {
                    let (name, path) = spec.split_once('=').context("--file wants NAME=PATH")?;
                    man.verify_file(name, Path::new(path))?;
                    println!("{name}: OK");
                }
                return Ok(());
            }
            if paths.is_empty() {
                bail!("nothing to verify: give --manifest, --nar, or store paths (with --cache or --sig)");
            }
            let sps = paths.iter().map(|p| store_path(&store_dir, p)).collect::<Result<Vec<_>>>()?;
            if let Some(c) = cache {
                let d = binary_cache::cache_dir(&c)?;
                for p in &sps {
                    binary_cache::verify_cached(&d, p, &keys)?;
                    println!("{p}: OK (signature, file hash, NAR hash)");
                }
                return Ok(());
            }
            if sigs.is_empty() {
                bail!("give --cache file:///DIR or --sig NAME:BASE64 to say what to verify the paths against");
            }
            let sigs = sigs.iter().map(|s| Signature::parse(s)).collect::<Result<Vec<_>, _>>()?;
            for info in path_infos(&store_dir, &sps, false)? {
                let refs: Vec<StorePath> = info.references.iter().cloned().collect();
                let fp = fingerprint(&info.path, &info.nar_hash, info.nar_size, &refs);
                match check_signatures(fp.as_bytes(), &sigs, &keys) {
                    SigCheck::Valid(k) => println!("{}: OK (signed by {k})", info.path),
                    SigCheck::BadSignature(k) => {
                        bail!("{}: signature by trusted key {k:?} does not verify: contents or references differ from what was signed", info.path)
                    }
                    SigCheck::UnknownKey(n) => bail!("{}: no signature by a trusted key (signed by {n:?})", info.path),
                }
            }
        }
        Cmd::Hash { path, nar: dump, sri, sign_key } => {
            if dump {
                let out = std::io::stdout().lock();
                let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
                nar::dump_path(&path, &mut w)?;
                w.flush()?;
                return Ok(());
            }
            let (h, size) = nar_hash(&path)?;
            if sri {
                println!("{}", h.to_sri());
            } else {
                println!("{h}");
            }
            if let Some(k) = sign_key {
                let sk = read_secret(&k)?;
                let abs = std::fs::canonicalize(&path)?;
                let name = abs.file_name().and_then(|n| n.to_str()).unwrap_or("source");
                let sp = StorePath::from_base_name(name)
                    .or_else(|_| edge_images::store_path::add_path_store_path(&h, name))
                    .context("naming the path for its fingerprint")?;
                println!("{}", sk.sign(fingerprint(&sp, &h, size, &[]).as_bytes()));
            }
        }
        Cmd::Manifest { system, files, version, key, out, meta, no_closure, sbom: sbom_file, attestation } => {
            let sk = read_secret(&key)?;
            let mut m = Manifest::new(&version, &system);
            if let Ok(sp) = store_path(&store_dir, &system) {
                let fs_path = store_dir.join(sp.base_name());
                if fs_path.exists() {
                    let (h, _) = nar_hash(&fs_path)?;
                    m.system_nar_hash = Some(h);
                    if !no_closure {
                        m.references =
                            refs::closure(&store_dir, &[sp])?.into_iter().map(|i| i.path.to_string()).collect();
                    }
                }
            }
            for spec in files {
                let (name, path) = match spec.split_once('=') {
                    Some((n, p)) => (n.to_string(), PathBuf::from(p)),
                    None => {
                        let p = PathBuf::from(&spec);
                        let n = p.file_name().and_then(|n| n.to_str()).context("file has no name")?.to_string();
                        (n, p)
                    }
                };
                m.add_file(&name, &path)?;
            }
            for kv in meta {
                let (k, v) = kv.split_once('=').context("--meta wants KEY=VALUE")?;
                m.build.metadata.insert(k.into(), v.into());
            }
            let sm = m.sign(&[&sk]);
            std::fs::write(&out, sm.to_json()).with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}: {} file(s), signed by {}", out.display(), m.files.len(), sk.name);
            if let Some(sb) = sbom_file {
                write_attestation(&out, &sb, &[&sk], attestation)?;
            }
        }
        Cmd::Attest { manifest, sbom: sbom_file, keys, out } => {
            let sks = keys.iter().map(|k| read_secret(k)).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&SecretKey> = sks.iter().collect();
            write_attestation(&manifest, &sbom_file, &refs, out)?;
        }
        Cmd::VerifyAttestation { manifest, attestation, trusted_keys, trusted_key_files, threshold, sbom_out } => {
            let keys = trusted(&trusted_keys, &trusted_key_files)?;
            let att = attestation.unwrap_or_else(|| attest::default_path(&manifest));
            let mbytes =
                std::fs::read(&manifest).with_context(|| format!("cannot read manifest {}", manifest.display()))?;
            let abytes = std::fs::read(&att).with_context(|| format!("cannot read attestation {}", att.display()))?;
            let v = attest::verify(&mbytes, &abytes, &keys, threshold).with_context(|| format!("{}", att.display()))?;
            let by: Vec<&str> = v.signed_by.iter().map(String::as_str).collect();
            println!(
                "{}: OK (signed by {}; {} subjects match {}; SBOM: {} components)",
                att.display(),
                by.join(", "),
                v.subjects.len(),
                manifest.display(),
                v.components
            );
            if let Some(f) = sbom_out {
                let mut text = serde_json::to_string_pretty(&v.sbom)?;
                text.push('\n');
                std::fs::write(&f, text).with_context(|| format!("cannot write {}", f.display()))?;
            }
        }
        Cmd::VerifyCosign { keys, signature, file } => {
            let ck = cosign_keys(&keys)?;
            let sp = signature.unwrap_or_else(|| sig_path(&file));
            let text =
                std::fs::read_to_string(&sp).with_context(|| format!("cannot read the signature {}", sp.display()))?;
            let k = cosign::verify_file(&file, &text, &ck).with_context(|| format!("{}", file.display()))?;
            println!("{}: Cosign signature OK ({})", file.display(), k.id());
        }
        Cmd::Sbom { path, out } => {
            let sp = store_path(&store_dir, &path)?;
            let closure = refs::closure(&store_dir, std::slice::from_ref(&sp))?;
            let doc = sbom::cyclonedx(&sp, &closure, env!("CARGO_PKG_VERSION"));
            let mut text = serde_json::to_string_pretty(&doc)?;
            text.push('\n');
            match out {
                Some(f) => std::fs::write(&f, text).with_context(|| format!("cannot write {}", f.display()))?,
                None => print!("{text}"),
            }
        }
        Cmd::Publish { to, key, no_closure, compression, paths } => {
            let sk = key.as_deref().map(read_secret).transpose()?;
            if sk.is_none() {
                tracing::warn!("publishing unsigned: Nix will refuse these paths unless told not to check signatures");
            }
            let dir = binary_cache::cache_dir(&to)?;
            let sps = paths.iter().map(|p| store_path(&store_dir, p)).collect::<Result<Vec<_>>>()?;
            let w = BinaryCacheWriter::create_with(&dir, compression)?;
            for info in path_infos(&store_dir, &sps, !no_closure)? {
                let ni = w.add(&info, &store_dir.join(info.path.base_name()), sk.as_ref())?;
                println!("{} -> {}/{}", ni.store_path, dir.display(), ni.url);
            }
        }
    }
    Ok(())
}

struct TeeRead<'a, R> {
    r: R,
    w: &'a mut edge_images::hash::HashWriter,
}

impl<R: std::io::Read> std::io::Read for TeeRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_IMAGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
